"""Centers and departments (issue 13, section 3): the places a department serves decide where dispatch offers
it (case page and API alike), centers per place, grids linked to police beats (警网关联率), the 12345 link;
every change audited with before and after, every refusal naming its field."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from commandcenter import org_admin as org
from commandcenter.cases import loop
from commandcenter.cases.queries import departments_for
from commandcenter.db import db
from commandcenter.models import AuditLog, Case, Center, Department, DepartmentPlace, Place, PoliceBeat, SettingValue
from tests.conftest import csrf_from, logged_in, token_for
from tests.test_case_screens import account, new_case

pytestmark = pytest.mark.postgres


def html(response) -> str:
    return response.get_data(as_text=True)


def post(client, path: str, data: dict, page: str | None = None):
    token = csrf_from(html(client.get(page or path)))
    return client.post(path, data={"csrf_token": token, **data})


def audits(action: str) -> list[AuditLog]:
    return db.execute(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)).scalars().all()


def offered(case_id: int) -> set[str]:
    return {d.code for d in departments_for(db.get(Case, case_id))}


def test_department_serving_town0_is_offered_there_only_through_both_doors(app, world, client):
    east = new_case(app, world, grid=0, state="registered")  # town 0
    west = new_case(app, world, grid=4, reporter="gw4", state="registered")  # town 1
    logged_in(client, "city_admin")
    created = post(client, "/admin/departments", {"code": "WB01", "name": "水务局", "places": [str(world.towns[0].id)]})
    assert created.status_code == 302, html(created)
    with app.app_context():
        dept = db.execute(select(Department).where(Department.code == "WB01")).scalar_one()
        assert dept.place_id == world.towns[0].id  # its home: the broadest place it serves
        assert "WB01" in offered(east.id) and "WB01" not in offered(west.id)
        # the world's own: 城管局 serves the city (both), 东湖派出所 serves town 0 only
        assert offered(east.id) == {"D01", "D02", "WB01"} and offered(west.id) == {"D01"}
        dept_id = dept.id

    # the API's dispatch follows the same rule (cases.actions.perform)
    headers = token_for(app.test_client(), "city_operator")
    api = app.test_client()
    refused = api.post(f"/api/v1/cases/{west.id}/actions/dispatch", json={"department_id": dept_id}, headers=headers)
    assert refused.status_code >= 400 and refused.get_json()["error"]["field"] == "department_id"
    assert "不服务该案件所在地" in refused.get_json()["error"]["message"]
    done = api.post(f"/api/v1/cases/{east.id}/actions/dispatch", json={"department_id": dept_id}, headers=headers)
    assert done.status_code == 200, done.get_json()
    with app.app_context():
        assert db.get(Case, east.id).department_id == dept_id and db.get(Case, west.id).state == "registered"

    # the case page offers it for the town-0 case only
    page = app.test_client()
    logged_in(page, "city_operator")
    assert "水务局" not in html(page.get(f"/cases/{west.id}"))


def test_editing_the_served_places_changes_the_offer_and_is_audited(app, world, client):
    east = new_case(app, world, grid=0, state="registered")
    west = new_case(app, world, grid=4, reporter="gw4", state="registered")
    with app.app_context():
        dept = org.save_department(
            account("city_admin"), None, code="MS01", name="市场监管所", place_ids=[world.towns[0].id]
        )
        db.commit()
        dept_id = dept.id
    logged_in(client, "city_admin")
    # now it serves village 2 (town 1) instead of town 0
    path = f"/admin/departments/{dept_id}"
    assert f'value="{world.towns[0].id}" selected' in html(client.get(path))
    saved = post(client, path, {"code": "MS01", "name": "市场监管所（西）", "places": [str(world.villages[2].id)]})
    assert saved.status_code == 302, html(saved)
    with app.app_context():
        assert "MS01" not in offered(east.id) and "MS01" in offered(west.id)
        west_other = new_case(app, world, grid=6, reporter="gw6", state="registered")  # town 1, village 3
        assert "MS01" not in offered(west_other.id)
        create, edit = audits("org.department_create"), audits("org.department_edit")
        assert len(create) == 1 and len(edit) == 1
        before_after = json.loads(edit[0].detail)
        assert before_after["before"]["places"] == [world.towns[0].code]
        assert before_after["after"]["places"] == [world.villages[2].code]
        assert before_after["before"]["name"] == "市场监管所" and before_after["after"]["name"] == "市场监管所（西）"
        assert json.loads(create[0].detail)["before"] is None
        assert (edit[0].username, edit[0].object_type, edit[0].object_id) == ("city_admin", "department", str(dept_id))
        # no places at all: it serves nothing, and says so on the list
    assert post(client, path, {"code": "MS01", "name": "市场监管所"}).status_code == 302
    with app.app_context():
        assert "MS01" not in offered(west.id) and "MS01" not in offered(east.id)
        assert db.execute(select(DepartmentPlace).where(DepartmentPlace.department_id == dept_id)).first() is None
    assert "未设服务区域" in html(client.get("/admin/departments"))


def test_a_department_without_rows_serves_nothing_whatever_its_home(app, world):
    case = new_case(app, world, grid=0, state="registered")
    with app.app_context():
        db.execute(DepartmentPlace.__table__.delete().where(DepartmentPlace.department_id == world.departments[0].id))
        db.commit()
        assert db.get(Department, world.departments[0].id).place_id == world.city.id  # the home stays
        assert offered(case.id) == {"D02"}
        with pytest.raises(loop.TransitionError, match="不服务该案件所在地"):
            from commandcenter.cases.actions import ActionInput, perform

            perform(
                account("town0_operator"),
                db.get(Case, case.id),
                "dispatch",
                ActionInput(department_id=world.departments[0].id),
            )
        db.rollback()


def test_validation_messages_name_the_fields_and_refusals_are_audited(app, world, client):
    logged_in(client, "city_admin")
    empty = post(client, "/admin/departments", {"code": "", "name": ""})
    assert empty.status_code == 400
    text = html(empty)
    assert "部门代码（code）不能为空" in text and "部门名称（name）不能为空" in text
    grid = post(client, "/admin/departments", {"code": "D01", "name": "x", "places": [str(world.grids[0].id)]})
    text = html(grid)
    assert grid.status_code == 400 and "（code）“D01”已被其他部门使用" in text and "服务区域（places）" in text
    bad_code = post(client, "/admin/departments", {"code": "水 务", "name": "水务局"})
    assert bad_code.status_code == 400 and "部门代码（code）只能由" in html(bad_code)
    center = post(client, "/admin/centers", {"place_id": str(world.grids[0].id), "name": "网格中心"})
    assert center.status_code == 400 and "所在区划（place_id）" in html(center)
    dup = post(client, "/admin/centers", {"place_id": str(world.towns[0].id), "name": world.centers["town0"].name})
    assert dup.status_code == 400 and "中心名称（name）" in html(dup)
    beat = post(client, "/admin/police-beats", {"code": "", "name": "一警格", "town_id": str(world.villages[0].id)})
    assert beat.status_code == 400 and "警格代码（code）" in html(beat) and "所属镇街（town_id）" in html(beat)
    hotline = post(client, "/admin/hotline", {"platform_name": "市热线", "work_order_url": "https://x.gov.cn/o"})
    assert hotline.status_code == 400 and "工单地址模板（work_order_url）须包含 {no}" in html(hotline)
    with app.app_context():
        refused = db.execute(select(AuditLog).where(AuditLog.success.is_(False))).scalars().all()
        assert {a.action for a in refused} >= {
            "org.department_create",
            "org.center_create",
            "org.beat_create",
            "org.hotline",
        }
        assert db.execute(select(Department).where(Department.code == "水 务")).first() is None
        assert db.get(SettingValue, "hotline") is None


def test_centers_per_place_create_and_rename(app, world, client):
    logged_in(client, "city_admin")
    page = html(client.get("/admin/centers"))
    assert world.centers["town0"].name in page and world.towns[0].name in page
    made = post(client, "/admin/centers", {"place_id": str(world.villages[0].id), "name": "第二联动站"})
    assert made.status_code == 302, html(made)
    with app.app_context():
        center = db.execute(select(Center).where(Center.name == "第二联动站")).scalar_one()
        assert (center.place_id, center.level) == (world.villages[0].id, "village")
        center_id = center.id
    renamed = post(client, f"/admin/centers/{center_id}/rename", {"name": "南村联动站"}, page="/admin/centers")
    assert renamed.status_code == 302
    with app.app_context():
        assert db.get(Center, center_id).name == "南村联动站"
        rename = audits("org.center_rename")[-1]
        assert json.loads(rename.detail)["before"]["name"] == "第二联动站"
        assert json.loads(rename.detail)["after"]["name"] == "南村联动站"
        assert audits("org.center_create")[-1].object_id == str(center_id)


def test_a_grid_linked_to_a_beat_shows_in_the_rate(app, world, client):
    logged_in(client, "city_admin")
    page = html(client.get("/admin/police-beats"))
    assert "0.00%" in page and "（已关联警格的网格 0 / 网格 8）" in page
    made = post(
        client, "/admin/police-beats", {"code": "JG01", "name": "东湖一警格", "town_id": str(world.towns[0].id)}
    )
    assert made.status_code == 302, html(made)
    with app.app_context():
        beat_id = db.execute(select(PoliceBeat.id).where(PoliceBeat.code == "JG01")).scalar_one()
    link = post(
        client,
        "/admin/police-beats/link",
        {"grid_id": str(world.grids[0].id), "beat_id": str(beat_id)},
        page="/admin/police-beats",
    )
    assert link.status_code == 302
    page = html(client.get(f"/admin/police-beats?town_id={world.towns[0].id}"))
    assert '<strong id="link-rate">12.50%</strong>' in page and "（已关联警格的网格 1 / 网格 8）" in page
    assert "25.00%" in page  # town 0: 1 of its 4 grids
    # a beat of town 0 cannot take a grid of town 1
    wrong = post(
        client,
        "/admin/police-beats/link",
        {"grid_id": str(world.grids[4].id), "beat_id": str(beat_id)},
        page="/admin/police-beats",
    )
    assert wrong.status_code == 302
    with app.app_context():
        assert db.get(Place, world.grids[4].id).police_beat_id is None
        total, by_town = org.link_rates()
        assert (total.linked, total.grids, total.percent) == (1, 8, 12.5)
        assert by_town[world.towns[1].id].percent == 0.0
        linked = audits("org.grid_beat")
        assert [a.success for a in linked] == [True, False]
        assert json.loads(linked[0].detail) == {
            "before": {"grid": world.grids[0].code, "police_beat_id": None},
            "after": {"grid": world.grids[0].code, "police_beat_id": beat_id},
        }
        assert "另一个镇街" in linked[1].detail
    unlink = post(
        client,
        "/admin/police-beats/link",
        {"grid_id": str(world.grids[0].id), "beat_id": ""},
        page="/admin/police-beats",
    )
    assert unlink.status_code == 302
    with app.app_context():
        assert org.link_rates()[0].linked == 0


def test_hotline_link_settings(app, world, client):
    logged_in(client, "city_admin")
    page = html(client.get("/admin/hotline"))
    assert "/api/v1/hotline/work-orders" in page
    saved = post(
        client,
        "/admin/hotline",
        {
            "platform_name": "测湖市12345平台",
            "work_order_url": "https://12345.example.gov.cn/o/{no}",
            "api_intake": "1",
        },
    )
    assert saved.status_code == 302, html(saved)
    with app.app_context():
        value = db.get(SettingValue, "hotline").value
        assert value == {
            "platform_name": "测湖市12345平台",
            "work_order_url": "https://12345.example.gov.cn/o/{no}",
            "api_intake": True,
        }
        assert org.work_order_link("GD 2026/1") == "https://12345.example.gov.cn/o/GD%202026%2F1"
        row = audits("org.hotline")[-1]
        assert json.loads(row.detail)["before"]["platform_name"] == ""
        assert json.loads(row.detail)["after"]["api_intake"] is True

    # the case page of a hotline case links its work order on the platform; an app report has no link
    hotline_case = new_case(app, world, source="hotline", reporter=None, external_ref="GD2026/77")
    app_case = new_case(app, world)
    logged_in(client, "city_operator")
    page = html(client.get(f"/cases/{hotline_case.id}"))
    assert 'href="https://12345.example.gov.cn/o/GD2026%2F77"' in page
    assert "在测湖市12345平台查看此工单" in page
    assert "12345.example.gov.cn" not in html(client.get(f"/cases/{app_case.id}"))


def test_only_the_system_administrator_edits_the_organisation(app, world, client):
    logged_in(client, "city_operator")
    for path in ("/admin/departments", "/admin/centers", "/admin/police-beats", "/admin/hotline"):
        assert client.get(path).status_code == 403, path
    admin = app.test_client()
    logged_in(admin, "city_admin")
    assert "部门与中心" in html(admin.get("/"))
