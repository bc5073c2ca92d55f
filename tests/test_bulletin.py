"""月度通报 (issue 6 part 5): built from a small month of data on the test world, read back with python-docx.

The expected figures are written out here (counted by hand from the data the test makes), never read from
the modules under test. Builds run in-process (`jobs.run_build`), through the web in embedded mode (a
thread), and once through a real RQ worker on the queue "reports".
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta
from io import BytesIO

import docx
import pytest

from commandcenter import stats
from commandcenter.bulletin import builder, jobs
from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.measures import Period
from commandcenter.models import Account, AuditLog, BaseDataCount, Bulletin, Case, PartyActivity, PartyOrganization
from commandcenter.timeutil import from_local, local_today
from tests.conftest import csrf_from, logged_in, login_session
from tests.conftest import report as shared_report

pytestmark = [pytest.mark.postgres]

TZ = "Asia/Shanghai"
STORY = "网格员gw0在日常巡查中发现东湖路路面破损，当即设置警示并现场修补，避免了行人摔倒。"
PROBLEMS = "1. 东湖北社区人房关联数据有误，需重新核对。\n2. 部分网格员巡查时长不足。"
REQUIREMENTS = "各社区下月10日前完成登记数据核对。"


def last_month() -> str:
    first = local_today(TZ).replace(day=1)
    prev = first - timedelta(days=1)
    return f"{prev.year:04d}-{prev.month:02d}"


def account(username: str) -> Account:
    return db.query(Account).filter_by(username=username).one()


def report(world, username: str, code: str, grid: int, when: datetime, text: str) -> Case:
    return shared_report(
        world,
        username,
        code,
        when,
        grid=grid,
        key=f"bul-{uuid.uuid4().hex[:12]}",
        description=text,
        address=f"东湖路 {grid + 1} 号",
        discovered_at=when - timedelta(minutes=5),
    )


def month_of_data(app, world) -> dict:
    """Last month in town 0: 3 reports in 东湖南社区 (one closed, picked as a story), 1 dispute in 东湖北社区,
    a linkage above 100 % in 东湖北社区; town 1 has a report and an outstanding case of its own."""
    month = last_month()
    period = Period.parse_month(month)
    when = from_local(datetime.combine(period.start + timedelta(days=9), datetime.min.time()).replace(hour=10), TZ)
    with app.app_context():
        road = report(world, "gw0", "0503", 0, when, "东湖路路面破损一处")  # 道路破损, ordinary
        loop.self_close(road, account("gw0"), note="现场设置警示并修补", now=when + timedelta(minutes=40))
        loop.mark_outstanding(road, account("town0_supervisor"), STORY, now=when + timedelta(hours=2))
        report(world, "gw0", "1001", 0, when + timedelta(hours=1), "楼道堵塞消防通道")  # hazard
        report(world, "gw1", "9901", 1, when + timedelta(hours=2), "路边杂物")  # ordinary
        report(world, "gw2", "2001", 2, when + timedelta(hours=3), "邻里因漏水发生纠纷")  # dispute, 东湖北社区
        west = report(world, "gw4", "0503", 4, when, "西湖路路面破损")  # town 1
        loop.self_close(west, account("gw4"), note="已修补", now=when + timedelta(minutes=30))
        loop.mark_outstanding(west, account("town1_supervisor"), "西湖街道的优秀事件", now=when + timedelta(hours=1))
        v0, v1 = world.villages[0], world.villages[1]
        db.add_all(
            [
                BaseDataCount(
                    place_id=v0.id, town_id=v0.town_id, month=month, registered_population=200, linked_persons=180
                ),
                BaseDataCount(
                    place_id=v1.id, town_id=v1.town_id, month=month, registered_population=100, linked_persons=120
                ),
            ]
        )
        org = PartyOrganization(
            name="东湖南社区第1网格党小组", place_id=world.grids[0].id, town_id=v0.town_id, members=12
        )
        db.add(org)
        db.flush()
        db.add(PartyActivity(organization_id=org.id, held_on=period.start + timedelta(days=4), title="主题党日"))
        db.commit()
        ids = {"road": road.id, "west": west.id, "month": month}
        db.remove()
    return ids


def new_bulletin(app, place_id: int, month: str, **fields) -> int:
    with app.app_context():
        defaults = {"title": "东湖街道月度通报", "status": "draft", "progress": 0, "story_case_ids": []}
        b = Bulletin(place_id=place_id, month=month, **{**defaults, **fields})
        db.add(b)
        db.commit()
        bid = b.id
        db.remove()
    return bid


def build(app, bulletin_id: int) -> tuple[str, docx.document.Document]:
    with app.app_context():
        status = jobs.run_build(bulletin_id)
        b = db.get(Bulletin, bulletin_id)
        document = docx.Document(BytesIO(b.docx)) if b.docx else None
        db.remove()
    return status, document


def headings(document) -> list[str]:
    return [p.text for p in document.paragraphs if p.style.name == "Heading 1"]


def captions(document) -> list[str]:
    return [p.text for p in document.paragraphs if p.text.startswith("表") and p.style.name == "Table Caption CC"]


def table(document, title: str) -> list[list[str]]:
    """The rows (cell texts) of the table whose caption contains `title`; tables follow their captions in order."""
    names = captions(document)
    index = next(i for i, c in enumerate(names) if title in c)
    return [[cell.text for cell in row.cells] for row in document.tables[index].rows]


def row_of(rows: list[list[str]], first: str) -> list[str]:
    return next(r for r in rows if r[0] == first)


def body_text(document) -> str:
    return "\n".join(p.text for p in document.paragraphs)


def wait_until_finished(app, bulletin_id: int, timeout: float = 30) -> Bulletin:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with app.app_context():
            b = db.get(Bulletin, bulletin_id)
            db.expunge(b)
            db.remove()
        if b.status in ("done", "failed"):
            return b
        time.sleep(0.1)
    raise AssertionError(f"bulletin {bulletin_id} still {b.status}")


# --- the document ----------------------------------------------------------------------------------


def test_town_bulletin_docx_has_sections_tables_flags_and_the_story(app, world, monkeypatch):
    data = month_of_data(app, world)
    bid = new_bulletin(
        app,
        world.towns[0].id,
        data["month"],
        problems=PROBLEMS,
        requirements=REQUIREMENTS,
        story_case_ids=[data["road"]],
    )
    seen: list[tuple[int, str]] = []
    original = builder.build

    def spy(bulletin, progress):
        return original(bulletin, lambda p, note: (seen.append((p, note)), progress(p, note)))

    monkeypatch.setattr(builder, "build", spy)
    status, document = build(app, bid)
    assert status == "done"

    # the job's progress: increasing steps, ending at 100 and done
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)
    assert [n for _, n in seen][:3] == ["汇总本级数据", "汇总下级单位数据", "生成统计表"]
    with app.app_context():
        b = db.get(Bulletin, bid)
        assert (b.status, b.progress, b.progress_note, b.error) == ("done", 100, "生成完成", None)
        assert b.built_at is not None and b.content["tables"] >= 9
        db.remove()

    assert document.paragraphs[0].text == "东湖街道月度通报"
    assert headings(document) == ["一、总体情况", "二、积分情况", "三、优秀网格事件", "四、存在问题", "五、下步要求"]
    names = captions(document)
    assert len(names) == len(document.tables)
    assert [c.split(" ")[0] for c in names] == [f"表{i}" for i in range(1, len(names) + 1)]
    section = document.sections[0]
    assert (round(section.page_width.mm), round(section.page_height.mm)) == (210, 297)
    east_asia = document.styles["Normal"].element.rPr.rFonts.get(docx.oxml.ns.qn("w:eastAsia"))
    assert east_asia == "仿宋_GB2312"
    header_row = document.tables[0].rows[0]._tr
    assert header_row.trPr is not None and header_row.trPr.find(docx.oxml.ns.qn("w:tblHeader")) is not None
    assert document.tables[0].style.name == "Table Grid"

    # events: a row per village of the town and the total, with the right numbers
    events = table(document, "事件上报与办理")
    assert events[0] == [
        "村（社区）",
        "上报事件",
        "普通事件",
        "安全隐患",
        "矛盾纠纷",
        "已办结",
        "办结率",
        "逾期事件",
        "处理及时率",
    ]
    assert [r[0] for r in events[1:]] == ["东湖南社区", "东湖北社区", "合计"]
    assert row_of(events, "东湖南社区")[:7] == ["东湖南社区", "3", "2", "1", "0", "1", "33.33%"]
    assert row_of(events, "东湖北社区")[:7] == ["东湖北社区", "1", "0", "0", "1", "0", "0.00%"]
    assert row_of(events, "合计")[:7] == ["合计", "4", "2", "1", "1", "1", "25.00%"]
    assert "西湖" not in " ".join(" ".join(r) for r in events)

    # party building and population: the flagged linkage rate is printed as 数据存疑, with a note
    party = table(document, "党建情况")
    assert party[0] == ["村（社区）", "党组织（个）", "党员（名）", "党建活动（次）"]
    assert row_of(party, "东湖南社区")[1:] == ["1", "12", "1"]
    assert row_of(party, "东湖北社区")[1:] == ["0", "0", "0"]
    linkage = table(document, "人房关联")
    assert linkage[0][-1] == "人房关联率"
    assert row_of(linkage, "东湖南社区")[2:] == ["200", "180", "90.00%"]
    assert row_of(linkage, "东湖北社区")[-1] == "数据存疑"
    assert "120.00%" not in " ".join(row_of(linkage, "东湖北社区"))
    assert row_of(linkage, "合计")[-1] == "数据存疑"  # the total adds up the suspect figure
    notes = [p.text for p in document.paragraphs if p.text.startswith("注（表")]
    assert any("数据存疑" in n and "东湖北社区" in n for n in notes)

    # the other topics have their tables too, one row per village and a total
    for title in ("事件流转", "特殊人群走访", "重点人员与场所走访率", "出勤、巡查与账号登录"):
        assert [r[0] for r in table(document, title)[1:]] == ["东湖南社区", "东湖北社区", "合计"], title
    duty = table(document, "出勤、巡查与账号登录")
    assert row_of(duty, "东湖南社区")[1] == "2" and row_of(duty, "东湖北社区")[1] == "2"  # gridworkers

    # points: 社区 and 村委 ranked apart, top and bottom by kind
    points = table(document, "积分情况（社区、村委分别排名）")
    assert points[0][:2] == ["村（社区）", "类型"] and points[0][-2:] == ["合计", "排名"]
    assert row_of(points, "东湖南社区")[1] == "社区" and row_of(points, "东湖北社区")[1] == "村委"
    assert row_of(points, "东湖南社区")[-1] == "1" and row_of(points, "东湖北社区")[-1] == "1"
    top = table(document, "前三名与后三名")
    assert top[0] == ["积分类别", "类型", "前三名", "后三名"]
    assert [r[:2] for r in top[1:3]] == [["合计积分", "社区"], ["合计积分", "村委"]]
    assert "东湖南社区" in top[1][2]

    # the story of the picked outstanding case, and the free text exactly as saved
    text = body_text(document)
    assert STORY in text
    lead = next(p.text for p in document.paragraphs if p.text.startswith("1. "))
    assert "东湖南社区第1网格" in lead and "gw0" in lead
    assert "西湖街道的优秀事件" not in text
    assert "1. 东湖北社区人房关联数据有误，需重新核对。" in text and "2. 部分网格员巡查时长不足。" in text
    assert REQUIREMENTS in text

    # units below the thresholds are offered as a suggestion for 存在问题, never printed by themselves
    with app.app_context():
        suggestion = db.get(Bulletin, bid).content["suggestion"]
        db.remove()
    assert "事件办结率低于90%的单位：" in suggestion and "东湖北社区（0.00%）" in suggestion
    assert "数据存疑" in suggestion
    assert "事件办结率低于" not in text


def test_city_bulletin_has_town_rows_points_of_towns_and_the_assessment(app, world):
    data = month_of_data(app, world)
    bid = new_bulletin(
        app, world.city.id, data["month"], title="测试市月度通报", story_case_ids=[data["road"], data["west"]]
    )
    status, document = build(app, bid)
    assert status == "done"
    assert headings(document)[1] == "二、积分及考核情况"
    events = table(document, "事件上报与办理")
    assert events[0][0] == "镇（街道）"
    assert [r[0] for r in events[1:]] == ["东湖街道", "西湖街道", "合计"]
    assert row_of(events, "东湖街道")[1] == "4" and row_of(events, "西湖街道")[1] == "1"
    assert row_of(events, "合计")[1] == "5"
    towns = table(document, "各镇（街道）积分情况")
    assert {r[0] for r in towns[1:]} == {"东湖街道", "西湖街道"}
    villages = table(document, "积分情况（社区、村委分别排名）")
    assert {r[0] for r in villages[1:]} == {
        "东湖街道东湖南社区",
        "东湖街道东湖北社区",
        "西湖街道西湖南社区",
        "西湖街道西湖北社区",
    }
    # one self-closed valid report each: the two communities tie, shown as 并列 with a shared rank
    assert row_of(villages, "东湖街道东湖南社区")[-1] == row_of(villages, "西湖街道西湖南社区")[-1] == "1（并列）"
    top = row_of(table(document, "前三名与后三名"), "合计积分")
    assert top[1] == "社区"
    assert re.search(r"东湖街道东湖南社区（[\d.]+分，并列）", top[2]) and re.search(
        r"西湖街道西湖南社区（[\d.]+分，并列）", top[2]
    )
    assessment = table(document, "月度考核得分")
    assert assessment[0][:2] == ["排名", "镇（街道）"] and assessment[0][-1] == "总分"
    assert len(assessment[0]) == 13  # rank, town, ten indicators, total
    assert {r[1] for r in assessment[1:]} == {"东湖街道", "西湖街道"}
    text = body_text(document)
    assert STORY in text and "西湖街道的优秀事件" in text  # both towns' stories in the city's bulletin


def test_free_text_is_kept_across_a_rebuild_and_only_saved_text_is_printed(app, world, client):
    data = month_of_data(app, world)
    bid = new_bulletin(app, world.towns[0].id, data["month"])
    logged_in(client, "town0_supervisor")
    page = client.get(f"/bulletins/{bid}").get_data(as_text=True)
    assert "尚未生成" in page
    token = csrf_from(page)
    saved = client.post(
        f"/bulletins/{bid}",
        data={
            "csrf_token": token,
            "title": "东湖街道十月通报",
            "problems": PROBLEMS,
            "requirements": REQUIREMENTS,
            "story": [str(data["road"])],
        },
    )
    assert saved.status_code == 302
    started = client.post(f"/bulletins/{bid}/build", data={"csrf_token": token})
    assert started.status_code == 302
    assert wait_until_finished(app, bid).status == "done"
    jobs.wait_for_threads()
    page = client.get(f"/bulletins/{bid}").get_data(as_text=True)
    assert "东湖街道十月通报" in page and "表1 " in page and STORY in page
    assert "下载 Word（.docx）" in page

    # typed but not saved: not printed; the saved text survives the rebuild
    client.post(f"/bulletins/{bid}/build", data={"csrf_token": token})
    assert wait_until_finished(app, bid).status == "done"
    jobs.wait_for_threads()
    response = client.get(f"/bulletins/{bid}.docx")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    document = docx.Document(BytesIO(response.data))
    text = body_text(document)
    assert document.paragraphs[0].text == "东湖街道十月通报"
    with app.app_context():
        actions = [a for (a,) in db.query(AuditLog.action).filter(AuditLog.object_id == str(bid)).order_by(AuditLog.id)]
        assert actions == ["bulletin.edit", "bulletin.build", "bulletin.build", "bulletin.download"]
        db.remove()
    assert "1. 东湖北社区人房关联数据有误，需重新核对。" in text and REQUIREMENTS in text
    with app.app_context():
        b = db.get(Bulletin, bid)
        assert b.problems == PROBLEMS and b.story_case_ids == [data["road"]]
        db.remove()

    # the print view: the same content as HTML, no scripts
    printed = client.get(f"/bulletins/{bid}/print").get_data(as_text=True)
    assert "<script" not in printed and "@page" in printed and "表1 " in printed and REQUIREMENTS in printed


def test_edit_form_validates_each_field(app, world, client):
    data = month_of_data(app, world)
    bid = new_bulletin(app, world.towns[0].id, data["month"])
    logged_in(client, "town0_supervisor")
    token = csrf_from(client.get(f"/bulletins/{bid}").get_data(as_text=True))
    # another town's outstanding case cannot be picked
    response = client.post(
        f"/bulletins/{bid}",
        data={"csrf_token": token, "title": "通报", "problems": "草稿内容", "story": [str(data["west"])]},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "所选优秀事件无效" in page and "草稿内容" in page  # nothing typed is lost
    response = client.post(f"/bulletins/{bid}", data={"csrf_token": token, "title": ""})
    assert response.status_code == 400 and "请填写通报标题" in response.get_data(as_text=True)
    response = client.post(f"/bulletins/{bid}", data={"csrf_token": token, "title": "x" * 201})
    assert response.status_code == 400 and "不能超过 200 个字" in response.get_data(as_text=True)
    # the picker offers this town's outstanding case of the month only
    page = client.get(f"/bulletins/{bid}").get_data(as_text=True)
    assert f'name="story" value="{data["road"]}"' in page and f'value="{data["west"]}"' not in page
    with app.app_context():
        assert db.get(Bulletin, bid).problems is None  # the refused edits stored nothing
        db.remove()


# --- the job ---------------------------------------------------------------------------------------


def test_failing_build_ends_failed_with_its_error_and_can_be_retried(app, world, client, monkeypatch):
    data = month_of_data(app, world)
    bid = new_bulletin(app, world.towns[0].id, data["month"])

    def broken(place, period, filters=None):
        raise RuntimeError("统计服务暂时不可用")

    monkeypatch.setattr(stats, "figures", broken)
    status, document = build(app, bid)
    assert status == "failed" and document is None
    with app.app_context():
        b = db.get(Bulletin, bid)
        assert b.status == "failed" and "统计服务暂时不可用" in b.error and b.progress < 100
        db.remove()
    logged_in(client, "town0_supervisor")
    page = client.get(f"/bulletins/{bid}").get_data(as_text=True)
    assert "生成失败：RuntimeError: 统计服务暂时不可用" in page
    assert client.get(f"/bulletins/{bid}.docx").status_code == 404  # nothing to download yet

    monkeypatch.undo()
    token = csrf_from(page)
    assert client.post(f"/bulletins/{bid}/build", data={"csrf_token": token}).status_code == 302
    b = wait_until_finished(app, bid)
    jobs.wait_for_threads()
    assert (b.status, b.progress, b.error) == ("done", 100, None)


def test_queue_unreachable_in_server_mode_fails_the_request_visibly(app, world, pg_url, tmp_path):
    from commandcenter import create_app
    from tests.conftest import make_settings

    bid = new_bulletin(app, world.towns[0].id, last_month())
    server = create_app(make_settings(tmp_path / "down", pg_url, redis_url="redis://127.0.0.1:1/0"))
    with server.app_context():
        assert jobs.request_build(bid, None) is False
        b = db.get(Bulletin, bid)
        assert b.status == "failed" and "任务队列不可用" in b.error and b.job_id is None
        db.remove()
    with app.app_context():  # and it can be asked again once the queue is back (here: embedded mode)
        assert jobs.request_build(bid, None) is True
        db.remove()
    assert wait_until_finished(app, bid).status == "done"
    jobs.wait_for_threads()


def test_a_second_build_request_does_not_start_another_and_the_bar_polls_until_done(app, world, client, monkeypatch):
    data = month_of_data(app, world)
    bid = new_bulletin(app, world.towns[0].id, data["month"], status="running", progress=40, progress_note="生成统计表")
    started: list[int] = []
    monkeypatch.setattr(jobs, "enqueue", lambda bulletin_id: started.append(bulletin_id) or "job-x")
    logged_in(client, "town0_supervisor")
    token = csrf_from(client.get(f"/bulletins/{bid}").get_data(as_text=True))
    # htmx asks: the answer is the progress fragment, still polling, saying a build is already running
    response = client.post(f"/bulletins/{bid}/build", data={"csrf_token": token}, headers={"HX-Request": "true"})
    fragment = response.get_data(as_text=True)
    assert response.status_code == 200 and "请勿重复提交" in fragment and 'hx-trigger="every 1s"' in fragment
    assert started == []
    with app.app_context():
        assert jobs.request_build(bid, None) is False
        b = db.get(Bulletin, bid)
        assert (b.status, b.progress) == ("running", 40)
        # a build that stopped reporting long ago (a killed worker) may be started again
        b.updated_at = b.updated_at - timedelta(minutes=jobs.STALE_MINUTES + 1)
        db.commit()
        assert jobs.request_build(bid, None) is True
        assert started == [bid]
        b = db.get(Bulletin, bid)
        assert (b.status, b.progress, b.job_id) == ("queued", 0, "job-x")
        assert jobs.request_build(bid, None) is False and started == [bid]
        db.remove()

    # the progress bar polls while the build runs and stops (and reloads the content) when it is done
    response = client.get(f"/bulletins/{bid}/progress", headers={"HX-Request": "true"})
    fragment = response.get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in fragment and 'value="0"' in fragment and "排队等待生成" in fragment
    assert "HX-Trigger" not in response.headers
    monkeypatch.undo()
    build(app, bid)
    response = client.get(f"/bulletins/{bid}/progress", headers={"HX-Request": "true"})
    fragment = response.get_data(as_text=True)
    assert "hx-trigger" not in fragment and 'value="100"' in fragment and "已生成" in fragment
    assert response.headers["HX-Trigger"] == "bulletin-built"
    assert f"/bulletins/{bid}.docx" in fragment
    content = client.get(f"/bulletins/{bid}/content").get_data(as_text=True)
    assert "一、总体情况" in content and "表1 " in content


def test_a_build_cut_off_by_an_embedded_restart_says_so_and_can_be_started_again(app, world, client, monkeypatch):
    """The embedded runner's thread dies with the process: at the next start (serve.serve_forever) the
    build is marked failed at once, not left at 生成中 for STALE_MINUTES."""
    data = month_of_data(app, world)
    bid = new_bulletin(app, world.towns[0].id, data["month"], status="running", progress=40, progress_note="生成统计表")
    other = new_bulletin(app, world.towns[1].id, data["month"], status="done", progress=100)
    with app.app_context():
        assert jobs.fail_interrupted_builds() == 1
        assert db.get(Bulletin, other).status == "done"
        db.remove()
    logged_in(client, "town0_supervisor")
    page = client.get(f"/bulletins/{bid}").get_data(as_text=True)
    assert "生成失败" in page and "服务重启" in page
    started: list[int] = []
    monkeypatch.setattr(jobs, "enqueue", lambda bulletin_id: started.append(bulletin_id) or "job-y")
    with app.app_context():
        assert jobs.request_build(bid, None) is True and started == [bid]
        db.remove()


# --- creating, jurisdiction, permissions -------------------------------------------------------------


def test_create_validates_month_and_place_and_opens_an_existing_one(app, world, client):
    logged_in(client, "town0_supervisor")
    page = client.get("/bulletins/").get_data(as_text=True)
    assert "本辖区暂无月度通报" in page
    token = csrf_from(page)
    month = last_month()
    response = client.post(
        "/bulletins/", data={"csrf_token": token, "place_id": str(world.towns[1].id), "month": month}
    )
    assert response.status_code == 400 and "通报单位：" in response.get_data(as_text=True)
    for bad in ("2026-13", "11/2026", ""):
        response = client.post(
            "/bulletins/", data={"csrf_token": token, "place_id": str(world.towns[0].id), "month": bad}
        )
        assert response.status_code == 400 and "月份：" in response.get_data(as_text=True), bad
    future = local_today(TZ).replace(day=28) + timedelta(days=10)
    response = client.post(
        "/bulletins/",
        data={
            "csrf_token": token,
            "place_id": str(world.towns[0].id),
            "month": f"{future.year:04d}-{future.month:02d}",
        },
    )
    assert response.status_code == 400 and "月份不能晚于本月" in response.get_data(as_text=True)
    response = client.post(
        "/bulletins/", data={"csrf_token": token, "place_id": str(world.towns[0].id), "month": month}
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    again = client.post("/bulletins/", data={"csrf_token": token, "place_id": str(world.towns[0].id), "month": month})
    assert again.headers["Location"] == location  # one per place and month
    listing = client.get("/bulletins/").get_data(as_text=True)
    assert month in listing and "东湖街道" in listing
    with app.app_context():
        assert db.query(Bulletin).count() == 1
        db.remove()


def test_jurisdiction_and_permissions(app, world, client):
    month = last_month()
    east = new_bulletin(app, world.towns[0].id, month)
    west = new_bulletin(app, world.towns[1].id, month, title="西湖街道月度通报")
    build(app, east)

    logged_in(client, "town1_supervisor")
    listing = client.get("/bulletins/").get_data(as_text=True)
    assert "西湖街道月度通报" in listing and "东湖街道月度通报" not in listing
    token = csrf_from(listing)
    for path in (
        f"/bulletins/{east}",
        f"/bulletins/{east}.docx",
        f"/bulletins/{east}/print",
        f"/bulletins/{east}/progress",
        f"/bulletins/{east}/content",
    ):
        assert client.get(path).status_code == 404, path
    assert client.post(f"/bulletins/{east}", data={"csrf_token": token, "title": "改"}).status_code == 404
    assert client.post(f"/bulletins/{east}/build", data={"csrf_token": token}).status_code == 404
    assert client.get(f"/bulletins/{west}").status_code == 200

    # a leader reads (the city sees every town) but may not edit or build
    client.post("/logout", data={"csrf_token": token})
    logged_in(client, "city_leader")
    page = client.get(f"/bulletins/{east}").get_data(as_text=True)
    assert "生成通报" not in page and 'name="problems"' not in page and "一、总体情况" in page
    token = csrf_from(page)
    assert client.post(f"/bulletins/{east}", data={"csrf_token": token, "title": "改"}).status_code == 403
    assert client.post(f"/bulletins/{east}/build", data={"csrf_token": token}).status_code == 403
    assert (
        client.post(
            "/bulletins/", data={"csrf_token": token, "place_id": str(world.city.id), "month": month}
        ).status_code
        == 403
    )
    assert client.get(f"/bulletins/{east}.docx").status_code == 200

    # without CSRF nothing is saved; a gridworker may not open bulletins at all
    logged_in(client, "town0_supervisor")
    assert client.post(f"/bulletins/{east}", data={"title": "无令牌"}).status_code == 400
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/bulletins/").get_data(as_text=True))})
    logged_in(client, "gw0")
    assert client.get("/bulletins/").status_code == 403
    assert client.get(f"/bulletins/{east}").status_code == 403

    # a village center has no town or city to make a bulletin for, and cannot see its town's
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/login").get_data(as_text=True))})
    logged_in(client, "village0_admin")
    page = client.get("/bulletins/").get_data(as_text=True)
    assert "没有可编制月度通报" in page and "东湖街道月度通报" not in page
    response = client.post(
        "/bulletins/", data={"csrf_token": csrf_from(page), "place_id": str(world.towns[0].id), "month": month}
    )
    assert response.status_code == 400
    assert client.get(f"/bulletins/{east}").status_code == 404
    with app.app_context():
        assert db.get(Bulletin, east).title == "东湖街道月度通报"
        db.remove()


# --- server mode: the job runs in the RQ worker ------------------------------------------------------


@pytest.mark.live
@pytest.mark.redis
def test_build_runs_in_the_rq_worker_on_the_reports_queue(app, world, live_stack, redis_conn):
    web, worker = live_stack
    assert "reports" in worker.queues
    data = month_of_data(app, world)
    bid = new_bulletin(app, world.towns[0].id, data["month"], problems=PROBLEMS)
    session = login_session(web.url, "town0_supervisor")
    page = session.get(f"{web.url}/bulletins/{bid}", timeout=10)
    response = session.post(
        f"{web.url}/bulletins/{bid}/build",
        data={"csrf_token": csrf_from(page.text)},
        headers={"HX-Request": "true"},
        timeout=10,
    )
    assert response.status_code == 200 and "bulletin-progress" in response.text
    b = wait_until_finished(app, bid, timeout=60)
    assert (b.status, b.progress) == ("done", 100), b.error
    from rq.job import Job

    job = Job.fetch(b.job_id, connection=redis_conn)
    assert job.origin == "reports" and job.func_name == "workers.jobs.build_bulletin"
    assert job.get_status() == "finished" and job.return_value() == "done"
    download = session.get(f"{web.url}/bulletins/{bid}.docx", timeout=10)
    document = docx.Document(BytesIO(download.content))
    assert row_of(table(document, "事件上报与办理"), "合计")[1] == "4"
    assert "1. 东湖北社区人房关联数据有误，需重新核对。" in body_text(document)
