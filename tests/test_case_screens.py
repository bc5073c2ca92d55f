"""The center's case screens through the test client on PostgreSQL: list, case page, steps, queue, 12345."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import Account, AuditLog, Case, CasePhoto, CaseStep
from commandcenter.timeutil import utcnow
from tests.conftest import csrf_from

pytestmark = pytest.mark.postgres


# --- helpers ---------------------------------------------------------------------------------------


def account(username: str) -> Account:
    return db.query(Account).filter_by(username=username).one()


def new_case(
    app,
    world,
    *,
    grid: int = 0,
    code: str = "9901",
    reporter: str | None = "gw0",
    source: str = "app",
    description: str = "路边有问题需要处理",
    state: str = "reported",
    department: int | None = None,
    offset_m: float = 0.0,
    **extra,
) -> Case:
    """A case reported in grid `grid` (and moved on to `state`), made through the loop as the app would."""
    with app.app_context():
        lat, lon = world.grid_point(grid)
        actor = account(reporter) if reporter else None
        data = loop.ReportInput(
            category_id=world.category(code).id,
            description=description,
            lat=lat + offset_m / 111_320,
            lon=lon,
            address=extra.pop("address", "人民路 1 号"),
            **extra,
        )
        case, _ = loop.report_case(data, actor=actor, source=source, client_key=None)
        town = "city_operator"
        if state in ("registered", "dispatched", "handling", "feedback"):
            loop.register(case, account(town))
        if state in ("dispatched", "handling", "feedback"):
            dept = world.departments[department if department is not None else 0]
            loop.dispatch(case, account(town), department_id=dept.id)
        if state in ("handling", "feedback"):
            handler = account("dept0" if (department or 0) == 0 else "dept1")
            loop.accept(case, handler)
        if state == "feedback":
            loop.feedback(case, account("dept0" if (department or 0) == 0 else "dept1"), note="已处理完毕")
        return case


def html(response) -> str:
    return response.get_data(as_text=True)


def post_action(client, case_id: int, action: str, **form):
    token = csrf_from(html(client.get(f"/cases/{case_id}"))) if "csrf_token" not in form else form.pop("csrf_token")
    return client.post(f"/cases/{case_id}/actions/{action}", data={"csrf_token": token, **form})


def buttons(page_html: str) -> list[str]:
    """The step buttons of a case page (not the logout button of the top bar)."""
    return re.findall(r'<button type="submit" class="(?:primary|secondary)[^"]*">([^<]+)</button>', page_html)


# --- 1. the list -------------------------------------------------------------------------------------


def test_list_is_scoped_to_the_viewers_jurisdiction(app, world, client, auth):
    east = new_case(app, world, grid=0)  # town 0
    west = new_case(app, world, grid=4, reporter="gw4")  # town 1
    auth.login("town1_supervisor")
    listing = html(client.get("/cases/"))
    assert west.number in listing and east.number not in listing
    # the other town's case page, its actions and its photos do not exist for him
    assert client.get(f"/cases/{east.id}").status_code == 404
    token = csrf_from(listing)
    assert client.post(f"/cases/{east.id}/actions/register", data={"csrf_token": token}).status_code in (403, 404)
    assert client.post(
        f"/cases/{east.id}/actions/reject", data={"csrf_token": token, "reason": "无效"}
    ).status_code in (403, 404)
    assert client.get(f"/cases/{east.id}/photos/1").status_code == 404
    assert db.get(Case, east.id).state == "reported"
    # a town filter pointing outside the jurisdiction shows nothing of it
    outside = html(client.get(f"/cases/?town={world.towns[0].id}"))
    assert east.number not in outside and "所选镇街不在本辖区内" in outside


def test_city_sees_all_and_department_sees_only_what_was_sent_to_it(app, world, client, auth):
    east = new_case(app, world, grid=0, state="dispatched", department=1)  # to 东湖派出所 (dept1)
    west = new_case(app, world, grid=4, reporter="gw4", state="dispatched", department=0)  # to 城管局 (dept0)
    auth.login("city_supervisor")
    listing = html(client.get("/cases/"))
    assert east.number in listing and west.number in listing
    auth.logout()
    auth.login("dept1")
    listing = html(client.get("/cases/"))
    assert east.number in listing and west.number not in listing
    assert client.get(f"/cases/{west.id}").status_code == 404


def test_gridworker_sees_his_own_grid(app, world, client, auth):
    mine = new_case(app, world, grid=1, reporter="gw1")
    neighbour = new_case(app, world, grid=0, reporter="gw0")
    auth.login("gw1")
    listing = html(client.get("/cases/"))
    assert mine.number in listing and neighbour.number not in listing
    assert client.get(f"/cases/{neighbour.id}").status_code == 404


def test_list_columns_and_filters(app, world, client, auth):
    ordinary = new_case(app, world, grid=0, code="0101", address="人民路 8 号")  # 市容环境 / 暴露垃圾
    hazard = new_case(app, world, grid=1, reporter="gw1", code="1001", state="registered", address="花园街 3 号")
    dispute = new_case(app, world, grid=2, reporter="gw2", code="2001", state="dispatched")
    hotline = new_case(app, world, grid=4, reporter=None, source="hotline", code="9901")
    with app.app_context():  # one case past its handling limit
        late = db.get(Case, dispute.id)
        late.handle_due = utcnow() - timedelta(hours=1)
        db.commit()
    auth.login("city_supervisor")
    page = html(client.get("/cases/"))
    for column in ("案卷号", "类别", "类型", "来源", "位置(网格)", "状态", "层级", "上报时间", "时限", "逾期"):
        assert f"<th>{column}</th>" in page
    assert "市容环境 / 暴露垃圾" in page and "普通事件" in page and "12345热线" in page

    def numbers(query: str) -> set[str]:
        body = html(client.get("/cases/?" + query))
        return {n for n in (ordinary.number, hazard.number, dispute.number, hotline.number) if n in body}

    assert numbers("state=registered") == {hazard.number}
    assert numbers("kind=hazard") == {hazard.number}
    assert numbers("kind=dispute") == {dispute.number}
    big = world.category("01").id
    assert numbers(f"category={big}") == {ordinary.number}  # a big class takes its small classes and items
    assert numbers(f"category={world.category('1001').id}") == {hazard.number}
    assert numbers("source=hotline") == {hotline.number}
    assert numbers("level=grid") == {ordinary.number, hazard.number, dispute.number, hotline.number}
    assert numbers(f"town={world.towns[1].id}") == {hotline.number}
    assert numbers(f"village={world.villages[1].id}") == {dispute.number}
    assert numbers("overdue=1") == {dispute.number}
    assert numbers(f"q={ordinary.number[-6:]}") == {ordinary.number}
    assert numbers("q=花园街") == {hazard.number}
    assert numbers("q=%25") == set()  # a LIKE wildcard is searched literally
    today = utcnow().date()
    assert len(numbers(f"date_from={today - timedelta(days=1)}&date_to={today + timedelta(days=1)}")) == 4
    assert numbers(f"date_from={today + timedelta(days=2)}") == set()
    bad = html(client.get("/cases/?date_from=2026-13-45&state=bogus"))
    assert "日期格式应为 YYYY-MM-DD" in bad and "状态取值无效" in bad
    # the filter form swaps only the table: the same view answers htmx with the fragment
    fragment = client.get("/cases/?kind=hazard", headers={"HX-Request": "true"})
    body = html(fragment)
    assert fragment.status_code == 200 and "<html" not in body and "<table" in body
    assert hazard.number in body and ordinary.number not in body
    assert "HX-Request" in fragment.headers.get("Vary", "")
    assert 'hx-target="#case-table"' in page


def test_list_pages_by_fifty(app, world, client, auth):
    with app.app_context():
        gw = account("gw0")
        lat, lon = world.grid_point(0)
        for i in range(53):
            loop.report_case(
                loop.ReportInput(category_id=world.category("9901").id, description=f"第{i}件", lat=lat, lon=lon),
                actor=gw,
                source="app",
                client_key=f"k{i}",
            )
    auth.login("town0_supervisor")
    first = html(client.get("/cases/"))
    assert first.count('href="/cases/') - first.count('href="/cases/?') >= 50
    assert "共 <strong>53</strong> 件" in first and "下一页" in first
    second = html(client.get("/cases/?page=2"))
    assert len(re.findall(r'<a href="/cases/\d+">SJ', second)) == 3 and "上一页" in second
    assert len(re.findall(r'<a href="/cases/\d+">SJ', first)) == 50


# --- 2. the case page ----------------------------------------------------------------------------------


def test_case_page_shows_fields_map_timeline_and_masks_the_caller(app, world, client, auth):
    case = new_case(
        app,
        world,
        grid=0,
        reporter=None,
        source="hotline",
        caller_name="王小明",
        caller_phone="13812345678",
        external_ref="GD001",
        description="<script>alert(1)</script>井盖缺失",
    )
    auth.login("town0_operator")
    page = html(client.get(f"/cases/{case.id}"))
    assert case.number in page and "待立案" in page
    assert "138****5678" in page and "13812345678" not in page
    assert "王*明" in page and "王小明" not in page
    assert "&lt;script&gt;" in page and "<script>alert(1)" not in page
    assert "<svg" in page and 'class="map-grid"' in page and 'class="map-point"' in page  # no external tiles
    assert "处理记录" in page and "上报" in page and "系统" in page
    assert "东湖南社区第1网格" in page


def test_case_page_shows_only_the_buttons_the_viewer_may_use(app, world, client, auth):
    reported = new_case(app, world, grid=0)
    registered = new_case(app, world, grid=0, state="registered")
    dispatched = new_case(app, world, grid=0, state="dispatched", department=1)
    auth.login("town0_operator")
    assert "立案" in buttons(html(client.get(f"/cases/{reported.id}")))
    assert "派遣" in buttons(html(client.get(f"/cases/{registered.id}")))
    assert "立案" not in buttons(html(client.get(f"/cases/{registered.id}")))
    auth.logout()
    auth.login("town0_supervisor")
    sup = buttons(html(client.get(f"/cases/{registered.id}")))
    assert "派遣" not in sup and "暂停计时" not in sup
    assert "立案" in buttons(html(client.get(f"/cases/{reported.id}")))  # supervisors register (受理立案)
    assert not any(b in buttons(html(client.get(f"/cases/{dispatched.id}"))) for b in ("派遣", "签收处理"))
    auth.logout()
    auth.login("dept1")
    dept = buttons(html(client.get(f"/cases/{dispatched.id}")))
    assert dept == ["签收处理", "退回", "申请延期"]  # its steps of the loop, 退回 and 延期 included (issue 14 §2)
    auth.logout()
    auth.login("city_leader")
    page = html(client.get(f"/cases/{reported.id}"))
    assert buttons(page) == [] and "没有可办理的操作" in page


def test_an_action_through_the_page_writes_the_history_step(app, world, client, auth):
    case = new_case(app, world, grid=0)
    auth.login("town0_operator")
    response = post_action(client, case.id, "register", note="情况属实，予以立案")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/cases/{case.id}")
    page = html(client.get(f"/cases/{case.id}"))
    assert "已立案" in page and "情况属实，予以立案" in page
    steps = db.query(CaseStep).filter_by(case_id=case.id).order_by(CaseStep.id).all()
    assert [s.action for s in steps] == ["report", "register"]
    assert steps[-1].actor_id == account("town0_operator").id
    assert db.query(AuditLog).filter_by(action="case.register", object_id=str(case.id), success=True).count() == 1
    # then dispatch to a department of the town, and the department accepts it
    response = post_action(client, case.id, "dispatch", department_id=str(world.departments[1].id), note="请尽快处理")
    assert response.status_code == 302
    db.expire_all()
    assert db.get(Case, case.id).state == "dispatched"
    auth.logout()
    auth.login("dept1")
    assert post_action(client, case.id, "accept").status_code == 302
    assert post_action(client, case.id, "feedback", note="已修复").status_code == 302
    auth.logout()
    auth.login("town0_supervisor")
    assert post_action(client, case.id, "close").status_code == 302
    db.expire_all()
    assert db.get(Case, case.id).state == "closed"
    page = html(client.get(f"/cases/{case.id}"))
    for label in ("上报", "立案", "派遣", "签收处理", "处理反馈", "结案", "派遣至 东湖派出所"):
        assert label in page
    assert "标记优秀事件" in buttons(page)


def test_bad_action_input_rerenders_with_the_message_next_to_the_field(app, world, client, auth):
    reported = new_case(app, world, grid=0)
    registered = new_case(app, world, grid=0, state="registered")
    auth.login("town0_operator")

    response = post_action(client, reported.id, "reject", reason="  ")
    page = html(response)
    assert response.status_code == 400
    assert re.search(r'id="reject-reason-error">请填写说明<', page)
    assert 'id="reject-reason" name="reason" rows="2" maxlength="2000" aria-invalid="true"' in page

    response = post_action(client, registered.id, "dispatch", department_id="", note="请尽快处理")
    page = html(response)
    assert response.status_code == 400 and 'id="dispatch-department_id-error">请选择处置部门<' in page
    assert "请尽快处理</textarea>" in page  # nothing typed is lost

    response = post_action(client, registered.id, "dispatch", department_id="999999")
    assert response.status_code == 400 and "处置部门不存在" in html(response)

    response = post_action(client, reported.id, "duplicate", original_number="SJ000")
    assert response.status_code == 400 and 'id="duplicate-original_number-error">原案卷号「SJ000」不存在' in html(
        response
    )

    response = post_action(client, reported.id, "escalate", to_level="grid", note="处理不了")
    assert response.status_code == 400 and "请选择要流转到的上级层级" in html(response)

    response = post_action(client, reported.id, "escalate", to_level="town", note="")
    assert response.status_code == 400 and 'id="escalate-note-error">请填写说明<' in html(response)

    # a step the state does not allow: the message says why, at the top of the page's forms
    response = post_action(client, registered.id, "register")
    assert response.status_code == 400 and "不能执行「立案」" in html(response)
    assert post_action(client, reported.id, "nonsense").status_code == 404
    assert db.query(CaseStep).filter_by(case_id=reported.id).count() == 1
    assert db.query(AuditLog).filter_by(action="case.reject", success=False).count() == 1


def test_a_step_the_role_may_not_take_is_forbidden(app, world, client, auth):
    registered = new_case(app, world, grid=0, state="registered")
    auth.login("town0_supervisor")
    assert post_action(client, registered.id, "dispatch", department_id=str(world.departments[1].id)).status_code == 403
    auth.logout()
    auth.login("dept1")  # a department does not even see a case not sent to it
    token = csrf_from(html(client.get("/cases/")))
    assert client.post(f"/cases/{registered.id}/actions/dispatch", data={"csrf_token": token}).status_code == 404
    db.expire_all()
    assert db.get(Case, registered.id).state == "registered"


def test_missing_csrf_token_is_refused(app, world, client, auth):
    case = new_case(app, world, grid=0)
    auth.login("town0_operator")
    assert client.post(f"/cases/{case.id}/actions/register").status_code == 400
    assert db.get(Case, case.id).state == "reported"


def test_concurrent_change_answers_409(app, world, client, auth, monkeypatch):
    case = new_case(app, world, grid=0)
    auth.login("town0_operator")
    page = html(client.get(f"/cases/{case.id}"))
    token = csrf_from(page)
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    with app.app_context():  # someone else registers it meanwhile
        loop.register(db.get(Case, case.id), account("town0_supervisor"))
    response = client.post(
        f"/cases/{case.id}/actions/reject", data={"csrf_token": token, "version": version, "reason": "重复报送"}
    )
    assert response.status_code == 409 and "案件已被他人修改，请刷新后重试" in html(response)
    db.expire_all()
    assert db.get(Case, case.id).state == "registered"

    # and when the row changes between loading and committing, the version column catches it
    from sqlalchemy.orm.exc import StaleDataError

    def lost_race(*args, **kwargs):
        raise StaleDataError("UPDATE statement on table 'cases' expected to update 1 row(s); 0 were matched.")

    monkeypatch.setattr(loop, "dispatch", lost_race)
    response = post_action(client, case.id, "dispatch", department_id=str(world.departments[1].id))
    assert response.status_code == 409 and "案件已被他人修改，请刷新后重试" in html(response)


def test_probable_duplicates_offer_one_click(app, world, client, auth):
    first = new_case(app, world, grid=0, code="0101")
    second = new_case(app, world, grid=0, code="0101", offset_m=30)
    far_town = new_case(app, world, grid=4, reporter="gw4", code="0101")
    auth.login("town0_operator")
    page = html(client.get(f"/cases/{second.id}"))
    assert "疑似重复" in page and first.number in page and far_town.number not in page
    assert "判为重复" in page
    token = csrf_from(page)
    response = client.post(
        f"/cases/{second.id}/actions/duplicate", data={"csrf_token": token, "original_number": first.number}
    )
    assert response.status_code == 302
    db.expire_all()
    dup = db.get(Case, second.id)
    assert dup.state == "duplicate" and dup.duplicate_of_id == first.id
    assert first.number in html(client.get(f"/cases/{second.id}"))


def test_parking_case_transfer_and_pause_buttons(app, world, client, auth):
    parking = new_case(app, world, grid=0, code="0401", discovered_at=utcnow() - timedelta(minutes=10))
    auth.login("town0_operator")
    page = html(client.get(f"/cases/{parking.id}"))
    assert "转报市平台" in buttons(page) and "剩余" in page
    assert post_action(client, parking.id, "transfer").status_code == 302
    assert "转报市平台" not in buttons(html(client.get(f"/cases/{parking.id}")))
    assert post_action(client, parking.id, "register").status_code == 302
    page = html(client.get(f"/cases/{parking.id}"))
    assert "暂停计时" in buttons(page) and "恢复计时" not in buttons(page)
    too_long = post_action(client, parking.id, "pause", reason="等" * 201)
    assert too_long.status_code == 400 and 'id="pause-reason-error">暂停理由不能超过 200 个字<' in html(too_long)
    assert post_action(client, parking.id, "pause", reason="等待车主挪车").status_code == 302
    page = html(client.get(f"/cases/{parking.id}"))
    assert "恢复计时" in buttons(page) and "暂停计时" not in buttons(page)


# --- photos ------------------------------------------------------------------------------------------


def test_photo_route_serves_inside_the_jurisdiction_only(app, world, client, auth):
    case = new_case(app, world, grid=0)
    other = new_case(app, world, grid=1, reporter="gw1")
    upload_dir = app.config["SETTINGS"].upload_dir
    upload_dir.mkdir(parents=True, exist_ok=True)
    (upload_dir / "abc123.jpg").write_bytes(b"\xff\xd8\xff\xe0fake-jpeg")
    photo = CasePhoto(case_id=case.id, stored_name="abc123.jpg", content_type="image/jpeg", size=13, sha256="0" * 64)
    sneaky = CasePhoto(case_id=case.id, stored_name="../secret_key", content_type="image/png", size=1, sha256="0" * 64)
    db.add_all([photo, sneaky])
    db.commit()
    auth.login("town0_operator")
    assert f"/cases/{case.id}/photos/{photo.id}" in html(client.get(f"/cases/{case.id}"))
    response = client.get(f"/cases/{case.id}/photos/{photo.id}")
    assert response.status_code == 200 and response.data == b"\xff\xd8\xff\xe0fake-jpeg"
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/cases/{other.id}/photos/{photo.id}").status_code == 404  # photo of another case
    assert client.get(f"/cases/{case.id}/photos/{sneaky.id}").status_code == 404  # never outside the upload dir
    auth.logout()
    auth.login("town1_supervisor")
    assert client.get(f"/cases/{case.id}/photos/{photo.id}").status_code == 404
    auth.logout()
    assert client.get(f"/cases/{case.id}/photos/{photo.id}").status_code == 302  # login first


# --- 4. the queue ------------------------------------------------------------------------------------


def test_queue_puts_parking_first_and_stays_in_jurisdiction(app, world, client, auth):
    old = new_case(app, world, grid=0, description="较早上报")
    parking = new_case(app, world, grid=1, reporter="gw1", code="0401", discovered_at=utcnow() - timedelta(minutes=20))
    waiting = new_case(app, world, grid=0, state="registered")
    sent = new_case(app, world, grid=0, state="dispatched", department=1)
    elsewhere = new_case(app, world, grid=4, reporter="gw4")
    auth.login("town0_operator")
    response = client.get("/cases/queue")
    page = html(response)
    assert response.status_code == 200 and 'hx-trigger="every 30s"' in page
    assert page.index(parking.number) < page.index(old.number) < page.index(waiting.number)
    assert re.search(r"剩 (39|40) 分钟", page)
    assert sent.number not in page and elsewhere.number not in page
    fragment = html(client.get("/cases/queue", headers={"HX-Request": "true"}))
    assert "<html" not in fragment and parking.number in fragment
    auth.logout()
    auth.login("dept1")
    assert client.get("/cases/queue").status_code == 403


# --- 5. 12345 hotline --------------------------------------------------------------------------------


def hotline_form(world, **override) -> dict:
    form = {
        "external_ref": "GD20260301001",
        "caller_name": "李四",
        "caller_phone": "13912345678",
        "category_id": str(world.category("0503").id),
        "address": "东湖路 18 号",
        "grid_id": str(world.grids[0].id),
        "lon": "",
        "lat": "",
        "description": "路面塌陷一处，约一米见方",
        "discovered_at": "",
    }
    form.update(override)
    return form


def post_hotline(client, form: dict):
    token = csrf_from(html(client.get("/hotline/new")))
    return client.post("/hotline/new", data={"csrf_token": token, **form})


def test_hotline_validates_every_field_and_keeps_the_values(app, world, client, auth):
    auth.login("city_operator")
    future = (utcnow() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    bad = [
        ({"external_ref": ""}, "external_ref", "请填写工单号"),
        ({"external_ref": "GD 01/<x>"}, "external_ref", "工单号只能由字母、数字和连字符组成"),
        ({"caller_name": "张" * 40}, "caller_name", "来电人姓名不能超过 32 个字"),
        ({"caller_phone": ""}, "caller_phone", "请填写来电号码"),
        ({"caller_phone": "12345"}, "caller_phone", "来电号码格式不正确"),
        ({"caller_phone": "23912345678"}, "caller_phone", "来电号码格式不正确"),
        ({"category_id": ""}, "category_id", "请选择事件类别"),
        ({"category_id": str(world.category("05").id)}, "category_id", "事件类别请选择具体的小类或细项"),
        ({"category_id": "999999"}, "category_id", "事件类别不存在"),
        ({"address": ""}, "address", "请填写地址"),
        ({"address": "路" * 201}, "address", "地址不能超过 200 个字"),
        ({"grid_id": "", "lon": "", "lat": ""}, "grid_id", "请选择网格，或填写经纬度"),
        ({"grid_id": "999999"}, "grid_id", "所选网格不存在或不在本辖区内"),
        ({"grid_id": "", "lon": "abc", "lat": "31.02"}, "lon", "经度须为数字"),
        ({"grid_id": "", "lon": "120.02", "lat": "北纬"}, "lat", "纬度须为数字"),
        ({"grid_id": "", "lon": "200", "lat": "31.02"}, "lon", "经度超出范围"),
        ({"grid_id": "", "lon": "120.02", "lat": "95"}, "lat", "纬度超出范围"),
        ({"grid_id": "", "lon": "120.02", "lat": ""}, "lat", "请同时填写经度和纬度"),
        ({"grid_id": "", "lon": "110.0", "lat": "30.0"}, "lat", "该经纬度不在任何网格内"),
        ({"lon": "120.07", "lat": "31.02"}, "lat", "经纬度不在所选网格内"),
        ({"description": ""}, "description", "请填写事件描述"),
        ({"description": "长" * 2001}, "description", "事件描述不能超过 2000 个字"),
        ({"discovered_at": "昨天"}, "discovered_at", "发现时间格式不正确"),
        ({"discovered_at": future}, "discovered_at", "发现时间不能晚于当前时间"),
    ]
    for override, field, message in bad:
        form = hotline_form(world, **override)
        response = post_hotline(client, form)
        page = html(response)
        assert response.status_code == 400, override
        assert re.search(rf'id="{field}-error">[^<]*{re.escape(message)}', page), (override, field)
        assert f'id="{field}"' in page and 'aria-invalid="true"' in page
        # what the operator typed is still there
        if field != "external_ref":
            assert 'value="GD20260301001"' in page
        if field != "description":
            assert "路面塌陷一处，约一米见方</textarea>" in page
    assert db.query(Case).count() == 0


def test_hotline_creates_the_case_once_per_work_order(app, world, client, auth):
    auth.login("city_operator")
    response = post_hotline(client, hotline_form(world, caller_phone="139 1234 5678"))
    assert response.status_code == 302
    case = db.query(Case).one()
    assert response.headers["Location"].endswith(f"/cases/{case.id}")
    assert (
        case.source == "hotline" and case.client_key == "12345:GD20260301001" and case.external_ref == "GD20260301001"
    )
    assert case.caller_phone == "13912345678" and case.grid_id == world.grids[0].id and case.state == "reported"
    page = html(client.get(response.headers["Location"]))
    assert "已受理 12345 工单" in page and "139****5678" in page and "13912345678" not in page
    assert "李*" in page and "立案" in buttons(page)
    # the same work order again (a double submit, or a second call about it) goes to the same case
    again = post_hotline(client, hotline_form(world, description="另一次提交"))
    assert again.status_code == 302 and again.headers["Location"] == response.headers["Location"]
    assert "该工单已受理" in html(client.get(again.headers["Location"]))
    assert db.query(Case).count() == 1
    assert db.query(AuditLog).filter_by(action="hotline.take").count() == 1


def test_hotline_locates_the_grid_from_coordinates_and_takes_landlines(app, world, client, auth):
    auth.login("city_operator")
    lat, lon = world.grid_point(5)
    response = post_hotline(
        client,
        hotline_form(
            world,
            external_ref="GD-2",
            grid_id="",
            lon=str(lon),
            lat=str(lat),
            caller_phone="0512-65432100",
            discovered_at=(utcnow() + timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M"),
        ),
    )
    assert response.status_code == 302, html(response)[:2000]
    case = db.query(Case).one()
    assert case.grid_id == world.grids[5].id and case.town_id == world.towns[1].id
    assert case.lon == pytest.approx(lon) and case.caller_phone == "0512-65432100"
    assert abs((case.discovered_at - (utcnow() - timedelta(hours=1))).total_seconds()) < 120  # local → UTC


def test_hotline_form_posts_are_limited_per_address_and_its_gets_are_not(app, world, client, auth):
    """The intake's one limit (ratelimit.intake_limited, as for the API and Open311): past it the operator
    gets a page saying so in words, and the work order is not taken."""
    app.config["SETTINGS"].intake_rate_limit = "2 per minute"
    auth.login("city_operator")
    for _ in range(3):
        assert client.get("/hotline/new").status_code == 200  # reading the form costs nothing
    answers = [post_hotline(client, hotline_form(world, external_ref=f"GD-LIMIT-{k}")) for k in range(3)]
    assert [a.status_code for a in answers[:2]] == [302, 302]
    assert answers[2].status_code == 429 and 0 < int(answers[2].headers["Retry-After"]) <= 60
    assert "请求过于频繁，请稍后再试（每分钟最多 2 次）" in html(answers[2])
    assert db.query(Case).filter(Case.external_ref.like("GD-LIMIT-%")).count() == 2


def test_hotline_is_for_operators_only(app, world, client, auth):
    auth.login("town0_supervisor")
    assert client.get("/hotline/new").status_code == 403
    auth.logout()
    assert client.get("/hotline/new").status_code == 302


def test_every_case_view_declares_its_permission(app):
    for endpoint, view in app.view_functions.items():
        if endpoint.startswith(("cases.", "hotline.")):
            assert getattr(view, "_permission", None), endpoint
