"""Issue 14 §2–3 in Debian's chromium: a department answers a case with a photo and returns another from
/dept/ alone; an operator dispatches a case to the nearest online gridworker from its page; a supervisor
replays a gridworker's patrol of the day; an operator locates a call by a tap on the grids' map.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import pytest

from commandcenter.db import db
from commandcenter.models import Case, Heartbeat, Patrol
from commandcenter.timeutil import current_tz, day_bounds_utc, local_today, utcnow
from tests.conftest import ARTIFACTS, PASSWORD
from tests.test_basemap import png
from tests.test_case_screens import account, new_case

pytestmark = [pytest.mark.browser, pytest.mark.live]
expect = pytest.importorskip("playwright.sync_api").expect


def watch_errors(page) -> list[str]:
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def login(page, base: str, username: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def test_a_department_answers_with_a_photo_and_returns_a_case_from_its_queue(app, world, live_server, page, tmp_path):
    problems = watch_errors(page)
    answered = new_case(app, world, grid=0, state="dispatched", description="人行道上堆放建筑垃圾")
    returned = new_case(app, world, grid=1, state="dispatched", description="路灯不亮，疑似线路故障")
    photo = tmp_path / "现场.png"
    photo.write_bytes(png((30, 160, 90)))
    base = live_server.url
    login(page, base, "dept0")

    page.click("nav.mainnav >> a[href='/dept/']")
    page.wait_for_url(base + "/dept/")
    assert page.locator(f"tr[data-case='{answered.number}'] .time-left").count() == 1
    page.click(f"text={answered.number}")
    page.wait_for_url(re.compile(r".*/dept/cases/\d+$"))
    page.get_by_role("button", name="签收处理").click()
    page.wait_for_load_state()
    assert "已签收" in page.locator(".flash").inner_text()
    page.fill("#dept-feedback-note", "已清运建筑垃圾，现场恢复通行")
    page.set_input_files("#dept-feedback-photos", str(photo))
    page.get_by_role("button", name="处理反馈").click()
    page.wait_for_load_state()
    assert "已提交处理反馈，上传现场照片 1 张" in page.locator(".flash").inner_text()
    assert page.locator(".photos img").count() == 1
    assert page.locator(".photos img").evaluate("img => img.complete && img.naturalWidth > 0")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dept-feedback.png"), full_page=True)

    page.click("text=返回部门工作台")
    page.click(f"text={returned.number}")
    page.wait_for_url(re.compile(r".*/dept/cases/\d+$"))
    page.get_by_role("button", name="退回").click()  # no reason: refused, nothing lost
    assert "请填写说明" in page.locator("#dept-return-reason-error").inner_text()
    page.fill("#dept-return-reason", "路灯属供电公司产权，非本部门职责")
    page.get_by_role("button", name="退回").click()
    page.wait_for_url(base + "/dept/")
    assert "已退回指挥中心" in page.locator(".flash").inner_text()
    assert page.locator(f"tr[data-case='{returned.number}']").count() == 0
    assert page.locator(f".dept-feedback tr[data-case='{answered.number}']").count() == 1
    page.screenshot(path=str(ARTIFACTS / "dept-queue.png"), full_page=True)
    with app.app_context():
        assert db.get(Case, returned.id).state == "registered"
    assert problems == [] and page.outside_requests == []


def test_an_operator_dispatches_to_the_nearest_online_gridworker(app, world, live_server, page):
    problems = watch_errors(page)
    case = new_case(app, world, grid=0, state="registered")
    with app.app_context():
        lat, lon = world.grid_point(0)
        # rows in the database (the live server's own in-process Redis is out of reach of this process):
        # the positions read them for gridworkers without a live point
        now = utcnow()
        db.add(Heartbeat(account_id=account("gw1").id, at=now, lat=lat, lon=lon + 300 / 95_000))
        db.add(Heartbeat(account_id=account("gw0").id, at=now, lat=lat, lon=lon + 900 / 95_000))
        db.commit()
    base = live_server.url
    login(page, base, "town0_operator")
    page.goto(f"{base}/cases/{case.id}")
    rows = page.locator(".nearest-table tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("data-worker") == "gw1"
    assert re.match(r"^\d+ 米$", rows.nth(0).locator(".distance").inner_text())
    page.screenshot(path=str(ARTIFACTS / "nearest-dispatch.png"), full_page=True)
    rows.nth(0).get_by_role("button", name="指派").click()
    page.wait_for_load_state()
    assert "已派遣" in page.locator(".flash").inner_text()
    assert "gw1" in page.locator(".case-fields").inner_text()
    with app.app_context():
        assert db.get(Case, case.id).assignee_id == account("gw1").id
    assert problems == [] and page.outside_requests == []


def test_a_supervisor_replays_a_days_patrol(app, world, live_server, page):
    problems = watch_errors(page)
    with app.app_context():
        worker = account("gw0")
        lat, lon = world.grid_point(0)
        # 40 minutes ago, but inside today's local day (the replay shows the patrols begun on the day: from
        # 16:00 to 16:40 UTC, 40 minutes ago was yesterday in Asia/Shanghai and the test failed)
        midnight = day_bounds_utc(local_today(current_tz()), current_tz())[0]
        start = max(utcnow() - timedelta(minutes=40), midnight + timedelta(seconds=30))
        t0 = int(start.replace(tzinfo=UTC).timestamp())
        track = [[lon - 0.01 + i * 0.005, lat + (0.004 if i % 2 else 0), t0 + 450 * i] for i in range(5)]
        db.add(
            Patrol(
                gridworker_id=worker.id,
                grid_id=worker.place_id,
                town_id=worker.town_id,
                started_at=start,
                ended_at=start + timedelta(minutes=30),
                track=track,
                distance_m=2100,
            )
        )
        db.commit()
        worker_id = worker.id
    base = live_server.url
    login(page, base, "town0_supervisor")
    page.goto(f"{base}/drill/worker/{worker_id}")
    replay = page.locator("#patrol-replay")
    expect(replay).to_have_attribute("data-tracks", "1")
    assert "共巡查 1 次" in replay.locator(".replay-status").inner_text()
    points = replay.locator(".replay-track").get_attribute("points").split()
    assert len(points) == 5
    start_x = float(replay.locator(".replay-marker").get_attribute("cx"))
    assert abs(start_x - float(points[0].split(",")[0])) < 0.2
    replay.get_by_role("button", name="▶ 回放").click()
    page.wait_for_timeout(1500)
    moving = float(replay.locator(".replay-marker").get_attribute("cx"))
    assert moving > start_x  # the track runs west to east
    page.screenshot(path=str(ARTIFACTS / "patrol-replay.png"), full_page=True)
    expect(replay).to_have_attribute("data-playing", "done", timeout=15000)
    end_x = float(replay.locator(".replay-marker").get_attribute("cx"))
    assert abs(end_x - float(points[-1].split(",")[0])) < 0.2
    # a day without patrols says so
    page.fill("#replay-day", "2020-01-06")
    page.locator("#replay-day").dispatch_event("change")
    expect(replay).to_have_attribute("data-tracks", "0")
    expect(replay.locator(".replay-status")).to_contain_text("2020-01-06 没有巡查记录")
    assert problems == [] and page.outside_requests == []


def test_an_operator_locates_a_call_by_a_tap_on_the_map(app, world, live_server, page):
    problems = watch_errors(page)
    base = live_server.url
    login(page, base, "town0_operator")
    page.goto(base + "/hotline/new")
    target = page.locator(f"path.locate-grid[data-grid-id='{world.grids[1].id}']")
    target.click()
    assert page.input_value("#grid_id") == str(world.grids[1].id)
    lon, lat = float(page.input_value("#lon")), float(page.input_value("#lat"))
    g = world.grids[1]  # the tap falls inside the grid's square
    assert g.center_lon - 0.025 <= lon <= g.center_lon + 0.025 and g.center_lat - 0.025 <= lat <= g.center_lat + 0.025
    assert "已定位：" in page.locator(".locate-status").inner_text()
    page.screenshot(path=str(ARTIFACTS / "hotline-locate.png"), full_page=True)
    # the work order goes in with the tapped place: its grid follows from the location
    page.select_option("#grid_id", "")
    page.fill("#external_ref", "GD20261203001")
    page.fill("#caller_phone", "13912345678")
    page.select_option("#category_id", str(world.category("0503").id))
    page.fill("#address", "东湖路口")
    page.fill("#description", "路面塌陷一处")
    page.click("text=受理并生成案卷")
    page.wait_for_url(re.compile(r".*/cases/\d+$"))
    case_id = int(page.url.rsplit("/", 1)[1])
    with app.app_context():
        case = db.get(Case, case_id)
        assert case.grid_id == world.grids[1].id and abs(case.lon - lon) < 1e-6 and abs(case.lat - lat) < 1e-6
    assert problems == [] and page.outside_requests == []
