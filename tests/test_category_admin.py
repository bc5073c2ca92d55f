"""事件类别 (issue 13, section 1): install-default, the editor page, export/import, the audit of every change,
the limits recorded on a case, and what intake says when the category table is empty."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import delete, func, select

from commandcenter import category_admin as ca
from commandcenter.cases import loop
from commandcenter.db import db
from commandcenter.models import AuditLog, Case, Category
from commandcenter.timeutil import current_tz
from commandcenter.workcalendar import deadline_utc
from tests.conftest import csrf_from, logged_in, report, token_for

pytestmark = pytest.mark.postgres

PAGE = "/admin/categories"


def count_categories() -> int:
    return db.execute(select(func.count(Category.id))).scalar_one()


def form_of(category: Category, **changes) -> dict:
    """Every field of the edit form, as the browser sends it (an unticked box is left out)."""
    values = {}
    for field in ca.VALUE_FIELDS:
        value = getattr(category, field)
        if field == "must_escalate":
            if value:
                values[field] = "1"
            continue
        values[field] = "" if value is None else str(value)
    values.update(changes)
    return values


def audit_rows(action: str) -> list[AuditLog]:
    return list(db.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


# --- install-default and the empty table -------------------------------------------------------------------


def test_cli_install_default_on_an_empty_database_then_idempotent(app, runner):
    result = runner.invoke(args=["categories", "install-default"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        total = count_categories()
        assert total > 50 and db.scalars(select(Category).where(Category.code == "0401")).one().name == "乱停车"
        assert f"已添加 {total} 个类别" in result.output
        row = audit_rows("category.install_default")[-1]
        assert "之前：0 个类别" in row.detail and f"之后：{total} 个类别" in row.detail
    again = runner.invoke(args=["categories", "install-default"])
    assert again.exit_code == 0 and "已添加 0 个类别" in again.output
    with app.app_context():
        assert count_categories() == total


def test_an_empty_category_table_is_said_and_the_command_named(app, client, world):
    with app.app_context():
        db.execute(delete(Category))
        db.commit()
        with pytest.raises(loop.TransitionError) as refused:
            loop.report_case(
                loop.ReportInput(category_id=1, description="测试", grid_id=world.grids[0].id),
                actor=None,
                source="app",
                client_key=None,
            )
        assert refused.value.message == (
            "事件类别表为空：请运行 flask categories install-default 或在「事件类别」页面添加"
        )
        assert refused.value.field == "category_id"
    logged_in(client, "city_admin")
    html = client.get(PAGE).get_data(as_text=True)
    assert "事件类别表为空" in html and "flask categories install-default" in html and "安装国家默认类别树" in html
    response = client.post(f"{PAGE}/install-default", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 302
    with app.app_context():
        total = count_categories()
        assert total > 50
    assert f"已添加 {total} 个类别" in client.get(PAGE).get_data(as_text=True)
    # a category that does not exist while others do keeps the old message
    with app.app_context(), pytest.raises(loop.TransitionError) as refused:
        loop.report_case(
            loop.ReportInput(category_id=999999, description="测试", grid_id=world.grids[0].id),
            actor=None,
            source="app",
            client_key=None,
        )
    assert refused.value.message == "事件类别不存在或已停用"


def test_only_the_administrator_edits_categories(app, world):
    for username, status in (("city_admin", 200), ("city_operator", 403), ("town0_admin", 403)):
        client = app.test_client()
        logged_in(client, username)
        assert client.get(PAGE).status_code == status, username
    client = app.test_client()
    logged_in(client, "city_admin")
    assert "事件类别" in client.get("/").get_data(as_text=True)  # in the nav


# --- the editor -------------------------------------------------------------------------------------------


def test_the_page_adds_renames_moves_deactivates_and_deletes(app, client, world):
    logged_in(client, "city_admin")
    csrf = csrf_from(client.get(PAGE).get_data(as_text=True))
    with app.app_context():
        big = db.scalars(select(Category).where(Category.code == "01")).one()
        other_big = db.scalars(select(Category).where(Category.code == "02")).one()
        big_id, other_big_id = big.id, other_big.id
    # add a small class under 01, then an item under it (code left empty: the next free one)
    response = client.post(
        f"{PAGE}/new?parent={big_id}",
        data={
            "csrf_token": csrf,
            "code": "0107",
            "name": "共享单车乱放",
            "kind": "ordinary",
            "dispatch_limit": "2",
            "dispatch_unit": "work_hours",
            "handle_limit": "2",
            "handle_unit": "work_days",
            "warn_ratio": "0.8",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    with app.app_context():
        small = db.scalars(select(Category).where(Category.code == "0107")).one()
        small_id = small.id
        assert (small.depth, small.parent_id, small.handle_limit, small.handle_unit) == (2, big_id, 2, "work_days")
    response = client.post(
        f"{PAGE}/new?parent={small_id}",
        data={"csrf_token": csrf, "code": "", "name": "占用盲道", "handle_limit": "1", "handle_unit": "work_days"},
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    with app.app_context():
        item = db.scalars(select(Category).where(Category.code == "010701")).one()
        item_id = item.id
        assert item.depth == 3 and item.parent_id == small_id and item.active
    html = client.get(PAGE).get_data(as_text=True)
    assert "共享单车乱放" in html and "占用盲道" in html and "办理 2 工作日" in html

    # rename and change its limits
    page = client.get(f"{PAGE}/{small_id}").get_data(as_text=True)
    assert "编辑小类 0107 共享单车乱放" in page and "移动到其他大类之下" in page and "删除（连同下级）" in page
    with app.app_context():
        values = form_of(db.get(Category, small_id), name="共享单车违规停放", handle_limit="3")
    response = client.post(f"{PAGE}/{small_id}", data={"csrf_token": csrf, **values})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    with app.app_context():
        small = db.get(Category, small_id)
        assert (small.name, small.handle_limit) == ("共享单车违规停放", 3)

    # move to big class 02: the small class and its item are re-coded
    response = client.post(f"{PAGE}/{small_id}/move", data={"csrf_token": csrf, "parent_id": other_big_id})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    with app.app_context():
        small, item = db.get(Category, small_id), db.get(Category, item_id)
        assert (small.parent_id, small.code, item.code) == (other_big_id, "0203", "020301")
    # an item cannot go under a big class
    response = client.post(f"{PAGE}/{item_id}/move", data={"csrf_token": csrf, "parent_id": big_id})
    assert response.status_code == 400 and "细项只能移到小类之下" in response.get_data(as_text=True)

    # deactivate: gone from the API, from Open311 and from intake
    api = app.test_client()  # an app with its token, not the browser session
    headers = token_for(api, "gw0")
    assert "0203" in {c["code"] for c in api.get("/api/v1/categories", headers=headers).get_json()}
    response = client.post(f"{PAGE}/{small_id}/active", data={"csrf_token": csrf, "active": "0"})
    assert response.status_code == 302
    with app.app_context():
        assert not db.get(Category, small_id).active and not db.get(Category, item_id).active
    api_codes = {c["code"] for c in api.get("/api/v1/categories", headers=headers).get_json()}
    assert not api_codes & {"0203", "020301"} and "0201" in api_codes
    services = {s["service_code"] for s in api.get("/open311/v2/services.json").get_json()}
    assert not services & {"0203", "020301"} and "0201" in services
    with app.app_context():
        for code in ("0203", "020301"):
            with pytest.raises(loop.TransitionError, match="事件类别不存在或已停用"):
                report(world, "gw0", code)
        db.rollback()

    # a category with cases is never deleted (nor its big class); one without is
    with app.app_context():
        case = report(world, "gw0", "0102")
        assert case.id
    html = client.get(PAGE).get_data(as_text=True)
    with app.app_context():
        used_id = db.scalars(select(Category.id).where(Category.code == "0102")).one()
    assert f"{PAGE}/{used_id}/delete" not in html and f"{PAGE}/{big_id}/delete" not in html
    assert f"{PAGE}/{small_id}/delete" in html
    response = client.post(f"{PAGE}/{big_id}/delete", data={"csrf_token": csrf}, follow_redirects=True)
    assert "已有 1 件案件，不能删除" in response.get_data(as_text=True)
    with app.app_context():
        assert db.get(Category, big_id) is not None
        with pytest.raises(ca.CategoryError, match="不能删除"):
            ca.delete(None, db.get(Category, used_id))
    response = client.post(f"{PAGE}/{small_id}/delete", data={"csrf_token": csrf})
    assert response.status_code == 302
    with app.app_context():
        assert db.get(Category, small_id) is None and db.get(Category, item_id) is None

        # every change has an audit row with who, what, before and after
        for action, object_id in (
            ("category.create", small_id),
            ("category.create", item_id),
            ("category.update", small_id),
            ("category.move", small_id),
            ("category.move", item_id),
            ("category.deactivate", small_id),
            ("category.deactivate", item_id),
            ("category.delete", small_id),
            ("category.delete", item_id),
        ):
            rows = [r for r in audit_rows(action) if r.object_id == str(object_id) and r.success]
            assert rows, (action, object_id)
            assert all(r.username == "city_admin" and "之前：" in r.detail and "之后：" in r.detail for r in rows)
        update = [r for r in audit_rows("category.update") if r.object_id == str(small_id)][0]
        assert "名称=共享单车乱放" in update.detail and "名称=共享单车违规停放" in update.detail
        assert "办理时限=2 工作日" in update.detail and "办理时限=3 工作日" in update.detail
        assert "类型" not in update.detail  # only what changed
        move = [r for r in audit_rows("category.move") if r.object_id == str(item_id)][0]
        assert "编码=010701" in move.detail and "编码=020301" in move.detail
        refused = [r for r in audit_rows("category.delete") if not r.success]
        assert refused and "不能删除" in refused[0].detail


def test_validation_messages_name_the_field(app, client, world):
    logged_in(client, "city_admin")
    csrf = csrf_from(client.get(PAGE).get_data(as_text=True))
    with app.app_context():
        big_id = db.scalars(select(Category.id).where(Category.code == "01")).one()
    response = client.post(
        f"{PAGE}/new?parent={big_id}",
        data={
            "csrf_token": csrf,
            "code": "0201",
            "name": "",
            "kind": "other",
            "handle_limit": "-1",
            "handle_unit": "weeks",
            "must_escalate": "1",
            "escalate_to": "grid",
            "transfer_limit_minutes": "2000",
            "warn_ratio": "1.5",
            "warn_before_minutes": "0",
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    for text in (
        "编码：小类编码须为上级编码 01 加 2 位数字",
        "名称：请填写名称",
        "类型：须为",
        "办理时限单位：须为",
        "办理时限：须为",
        "须流转至：须为网格以上的层级",
        "流转时限：勾选“须流转上级”时请填写流转时限",
        "转报时限（分钟）：须为 1–1440 之间的整数",
        "预警比例：须为大于 0、小于 1 的小数",
        "提前预警（分钟）：须为",
    ):
        assert text in html, text
    with app.app_context():
        assert not db.scalars(select(Category).where(Category.code == "0201", Category.parent_id == big_id)).first()
        big = db.get(Category, big_id)
        with pytest.raises(ca.CategoryError) as refused:
            ca.create(None, big, {"code": "0101", "name": "x" * 101, "handle_limit": 1, "handle_unit": "work_days"})
        assert refused.value.errors["code"] == "编码 0101 已被使用"
        assert refused.value.errors["name"] == "名称不能超过 100 个字"
        with pytest.raises(ca.CategoryError) as refused:
            ca.create(None, big, {"name": "暴露垃圾", "handle_limit": 1})
        assert "同一上级下已有名为「暴露垃圾」的类别" in refused.value.errors["name"]
        assert refused.value.errors["handle_unit"] == "填写了办理时限，请选择单位"
        with pytest.raises(ca.CategoryError, match="小类须设定办理时限"):
            ca.create(None, big, {"name": "无时限"})
        with pytest.raises(ca.CategoryError, match="大类编码须为 2 位数字"):
            ca.create(None, None, {"code": "1", "name": "新大类"})
        refusals = [r for r in audit_rows("category.create") if not r.success]
        assert refusals and "名称" in refusals[0].detail


# --- export and import -----------------------------------------------------------------------------------


def test_export_then_import_round_trip(app, runner, world, tmp_path):
    path = tmp_path / "categories.json"
    result = runner.invoke(args=["categories", "export", str(path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["format"] == "commandcenter.categories" and doc["version"] == 1
    by_code = {c["code"]: c for c in doc["categories"]}
    assert list(by_code["0401"]) == list(ca.EXPORT_FIELDS)
    assert by_code["0401"]["transfer_limit_minutes"] == 60 and by_code["040101"]["parent"] == "0401"
    with app.app_context():
        assert len(by_code) == count_categories()
        exported = ca.export_items()
        # change two, then import the export: both come back
        c = db.scalars(select(Category).where(Category.code == "0101")).one()
        c.name, c.handle_limit = "改过的名字", 9
        db.scalars(select(Category).where(Category.code == "1002")).one().active = False
        db.commit()
    result = runner.invoke(args=["categories", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "修改 2 个" in result.output and "新增 0 个" in result.output
    with app.app_context():
        assert ca.export_items() == exported
        rows = [r for r in audit_rows("category.import") if r.object_type == "category" and r.object_id]
        assert any("名称=改过的名字" in r.detail and "名称=暴露垃圾" in r.detail for r in rows)
        # into an empty table: the same tree
        db.execute(delete(Category))
        db.commit()
    result = runner.invoke(args=["categories", "import", str(path)])
    assert result.exit_code == 0 and f"新增 {len(by_code)} 个" in result.output, result.output
    with app.app_context():
        assert ca.export_items() == exported


def test_an_import_with_faults_is_refused_whole(app, runner, world, tmp_path):
    with app.app_context():
        before = ca.export_items()
    items = [dict(c) for c in before]
    by_code = {c["code"]: c for c in items}
    by_code["0101"]["name"] = "新名字"  # valid, but the file is refused as a whole
    by_code["0102"]["handle_unit"] = "weeks"
    by_code["0103"]["warn_ratio"] = 2
    items.append({"code": "7701", "name": "无上级", "handle_limit": 1, "handle_unit": "work_days"})
    lines = ",\n".join(json.dumps(c, ensure_ascii=False) for c in items)
    path = tmp_path / "bad.json"
    path.write_text('{"format": "commandcenter.categories", "version": 1, "categories": [\n' + lines + "\n]}\n")
    result = runner.invoke(args=["categories", "import", str(path)])
    assert result.exit_code == 1
    codes = [c["code"] for c in items]
    line_0102 = codes.index("0102") + 2
    assert f"第 {codes.index('0102') + 1} 项（编码 0102，第 {line_0102} 行）办理时限单位：须为" in result.output
    assert "（编码 0103，" in result.output and "预警比例：须为大于 0、小于 1 的小数" in result.output
    assert "（编码 7701，" in result.output and "上级：上级编码 77 不存在" in result.output
    assert "未导入（共 3 处错误）" in result.output
    with app.app_context():
        assert ca.export_items() == before
        refused = [r for r in audit_rows("category.import") if not r.success]
        assert refused and "0102" in refused[-1].detail


def test_the_page_exports_and_imports(app, client, world):
    logged_in(client, "city_admin")
    csrf = csrf_from(client.get(PAGE).get_data(as_text=True))
    response = client.get(f"{PAGE}/export")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    body = response.get_data()
    doc = json.loads(body)
    doc["categories"] = [c for c in doc["categories"] if c["code"].startswith("03")]
    doc["categories"][0]["name"] = "施工管理（改）"
    import io

    data = json.dumps(doc, ensure_ascii=False).encode()
    response = client.post(
        f"{PAGE}/import",
        data={"csrf_token": csrf, "file": (io.BytesIO(data), "categories.json")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    with app.app_context():
        assert db.scalars(select(Category).where(Category.code == "03")).one().name == "施工管理（改）"
        assert db.scalars(select(Category).where(Category.code == "0101")).one().name == "暴露垃圾"  # kept
        assert [r for r in audit_rows("category.export") if r.username == "city_admin"]
    doc["categories"][0]["kind"] = "nonsense"
    response = client.post(
        f"{PAGE}/import",
        data={"csrf_token": csrf, "file": (io.BytesIO(json.dumps(doc).encode()), "categories.json")},
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "第 1 项（编码 03，第 1 行）类型：须为" in html


# --- limits recorded on the case ---------------------------------------------------------------------------


def test_an_edit_applies_to_new_cases_and_open_cases_keep_their_limits(w):
    reported = datetime(2026, 11, 2, 1, 0)  # Monday 09:00 in Shanghai
    registered = datetime(2026, 11, 2, 2, 0)
    old = report(w, "gw0", "0502", reported)  # 路灯不亮: 3 work days
    assert old.limits["handle_limit"] == 3 and old.limits["handle_unit"] == "work_days"
    assert set(old.limits) == set(ca.VALUE_FIELDS) - {"name", "kind", "filing_condition", "closing_condition"}
    ca.update(w.a("city_admin"), w.cat("0502"), {"handle_limit": 1, "handle_unit": "days"})
    new = report(w, "gw0", "0502", reported)
    assert new.limits["handle_limit"] == 1 and new.limits["handle_unit"] == "days"
    loop.register(db.get(Case, old.id), w.a("town0_operator"), now=registered)
    loop.register(db.get(Case, new.id), w.a("town0_operator"), now=registered)
    db.expire_all()
    tz = current_tz()
    assert db.get(Case, old.id).handle_due == deadline_utc(registered, 3, "work_days", tz)
    assert db.get(Case, new.id).handle_due == deadline_utc(registered, 1, "days", tz)
    # a case from before the limits were recorded follows its category as it is now
    legacy = report(w, "gw0", "0502", reported)
    legacy.limits = None
    db.commit()
    loop.register(legacy, w.a("town0_operator"), now=registered)
    assert legacy.handle_due == deadline_utc(registered, 1, "days", tz)


def test_escalation_follows_the_limits_recorded_on_the_case(w):
    reported = datetime(2026, 11, 2, 1, 0)
    case = report(w, "gw0", "1002", reported)  # 燃气: must go to the town within 2 hours
    other = report(w, "gw0", "1002", reported)
    ca.update(w.a("city_admin"), w.cat("1002"), {"must_escalate": False})
    loop.register(db.get(Case, case.id), w.a("town0_operator"), now=reported)
    case = db.get(Case, case.id)
    assert case.escalate_due == deadline_utc(reported, 2, "hours", current_tz())
    assert case.escalate_warn_at is not None
    from commandcenter import alerts

    assert alerts.needs_escalation(case)
    with pytest.raises(loop.TransitionError, match="须流转上级"):
        loop.self_close(db.get(Case, other.id), w.a("gw0"), "已处理")
    assert not alerts.needs_escalation(report(w, "gw0", "1002", reported))  # a new case follows the edit


def test_every_intake_door_says_the_table_is_empty(app, world):
    """The app API, the 12345 form and Open311 give the same advice as the loop when no category exists."""
    import uuid

    from commandcenter.models import Open311Client
    from commandcenter.security import token_digest

    headers = token_for(app.test_client(), "gw0")
    with app.app_context():
        db.add(Open311Client(name="测试客户端", api_key_hash=token_digest("k-open311-empty"), active=True))
        db.execute(delete(Category))
        db.commit()
    lat, lon = world.grid_point(0)
    api = app.test_client().post(
        "/api/v1/cases",
        headers=headers,
        json={"client_key": uuid.uuid4().hex, "category_code": "0101", "description": "垃圾", "lat": lat, "lon": lon},
    )
    assert api.status_code == 422 and ca.EMPTY_MESSAGE in api.get_json()["error"]["message"]
    operator = logged_in(app.test_client(), "city_operator")
    form = operator.get("/hotline/new").get_data(as_text=True)
    hotline = operator.post(
        "/hotline/new",
        data={
            "csrf_token": csrf_from(form),
            "external_ref": "GD1",
            "caller_phone": "13812345678",
            "address": "东湖路 1 号",
            "grid_id": str(world.grids[0].id),
            "description": "垃圾",
        },
    )
    assert hotline.status_code == 400 and ca.EMPTY_MESSAGE in hotline.get_data(as_text=True)
    open311 = app.test_client().post(
        "/open311/v2/requests.json",
        data={"api_key": "k-open311-empty", "service_code": "0101", "lat": lat, "long": lon, "description": "垃圾"},
    )
    assert ca.EMPTY_MESSAGE in open311.get_data(as_text=True)
