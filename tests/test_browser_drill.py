"""A city supervisor drills from the city down to one case in clicks; a town supervisor cannot reach another
town by typing its address. Debian's chromium through Playwright, on a live server."""

from __future__ import annotations

import re

import pytest

from commandcenter.db import db
from commandcenter.timeutil import utcnow
from tests.conftest import ARTIFACTS, PASSWORD
from tests.test_stats import add_case
from tests.world import WorldView

pytestmark = [pytest.mark.browser, pytest.mark.live]


def login(page, base: str, username: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def watch_console(page) -> list[str]:
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


def test_city_supervisor_drills_from_city_to_a_case(app, world, live_server, page):
    problems = watch_console(page)
    with app.app_context():
        w = WorldView(world)
        now = utcnow()  # this month (本月, the default period), whatever the day
        case = add_case(w, 0, reporter="gw0", code="1001", reported=now)
        add_case(w, 0, reporter="gw0", state="closed", reported=now)
        add_case(w, 5, reporter="gw5", reported=now)
        for _ in range(2):
            add_case(w, 6, reporter="gw6", reported=now)
        db.commit()
        number = case.number
    db.remove()
    base = live_server.url
    login(page, base, "city_supervisor")

    page.click("nav.mainnav >> text=逐级下钻")
    page.wait_for_url(re.compile(rf"{base}/drill/{world.city.id}$"))
    assert "测试市" in page.locator("h1").inner_text()
    assert page.locator("dd[data-figure=reported]").inner_text() == "5"
    page.wait_for_selector("#drill-trend[data-drawn='1'] .main-svg")  # Plotly drew the trend
    rows = page.locator("table.drill-table tbody tr")
    assert rows.count() == 2

    # sort by reports, twice: the table is swapped by htmx and the address keeps the order
    page.click("table.drill-table th >> text=上报事件")
    page.wait_for_url(re.compile(r".*sort=reported$"))
    page.wait_for_selector("table.drill-table th[aria-sort=ascending]")
    assert rows.nth(0).locator("td").nth(0).inner_text() == "东湖街道"  # 2 before 3
    page.click("table.drill-table th >> text=上报事件")
    page.wait_for_url(re.compile(r".*sort=-reported$"))
    page.wait_for_selector("table.drill-table th[aria-sort=descending]")
    assert rows.nth(0).locator("td").nth(0).inner_text() == "西湖街道"
    assert page.locator("dd[data-figure=reported]").count() == 1  # only the table was swapped
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "drill-city.png"), full_page=True)

    # city → town → village → grid → gridworker → case
    page.click("table.drill-table >> text=东湖街道")
    page.wait_for_url(re.compile(rf".*/drill/{world.towns[0].id}$"))
    assert page.locator("dd[data-figure=reported]").inner_text() == "2"
    page.click("table.drill-table >> text=东湖南社区")
    page.wait_for_url(re.compile(rf".*/drill/{world.villages[0].id}$"))
    page.click("table.drill-table >> text=东湖南社区第1网格")
    page.wait_for_url(re.compile(rf".*/drill/{world.grids[0].id}$"))
    assert [t.strip() for t in page.locator(".drill-crumbs a").all_inner_texts()] == [
        "测试市",
        "东湖街道",
        "东湖南社区",
    ]
    page.click("table.drill-table >> text=gw0")
    page.wait_for_url(re.compile(r".*/drill/worker/\d+$"))
    assert page.locator("[data-figure=reports]").inner_text() == "2"
    page.screenshot(path=str(ARTIFACTS / "drill-worker.png"), full_page=True)
    page.click(f"text={number}")
    page.wait_for_url(re.compile(r".*/cases/\d+$"))
    assert number in page.locator("h1").inner_text()

    # and back up through the breadcrumb
    page.go_back()
    page.click(".drill-crumbs >> text=测试市")
    page.wait_for_url(re.compile(rf".*/drill/{world.city.id}$"))

    # a custom period with the end before the start is refused, naming the field
    page.select_option("#drill-period", "custom")
    page.fill("#drill-start", "2026-11-10")
    page.fill("#drill-end", "2026-11-01")
    page.click("form.drill-filters button[type=submit]")
    assert "结束日期：不能早于开始日期" in page.locator(".drill-error").inner_text()

    assert problems == [], f"console errors (CSP?): {problems}"
    assert page.outside_requests == [], "no page may fetch anything from outside the machine"


def test_town_supervisor_cannot_reach_another_town_by_url(world, live_server, page):
    base = live_server.url
    login(page, base, "town0_supervisor")
    page.click("nav.mainnav >> text=逐级下钻")
    page.wait_for_url(re.compile(rf"{base}/drill/{world.towns[0].id}$"))
    assert "东湖街道" in page.locator("h1").inner_text()
    for path in (
        f"/drill/{world.towns[1].id}",
        f"/drill/{world.grids[5].id}",
        f"/drill/worker/{world.accounts['gw4'].id}",
        f"/drill/{world.city.id}",
    ):
        response = page.goto(base + path)
        assert response.status == 404, path
        assert "未找到（或不在本辖区内）" in page.locator(".error-message").inner_text()
        assert "西湖街道" not in page.content()
    assert page.outside_requests == []
