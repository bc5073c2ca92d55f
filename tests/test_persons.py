"""Person pages: masked by default, unmasking is a separate grant, every view and unmasking is audited."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from commandcenter.db import db
from commandcenter.models import Account, AuditLog, Person, Visit
from tests.conftest import csrf_from, logged_in

pytestmark = pytest.mark.postgres

ID_NUMBER = "320501199001011234"
PHONE = "13812345678"


def html(response) -> str:
    return response.get_data(as_text=True)


def add_person(
    app,
    world,
    *,
    grid: int = 0,
    name: str = "张三明",
    person_type: str = "key_petitioner",
    id_number: str | None = ID_NUMBER,
    phone: str | None = PHONE,
    visits: int = 0,
    active: bool = True,
    assigned: str | None = None,
) -> int:
    with app.app_context():
        g = world.grids[grid]
        person = Person(
            name=name,
            id_number=id_number,
            phone=phone,
            person_type=person_type,
            visit_frequency="monthly",
            address="人民路 8 号 2 幢",
            grid_id=g.id,
            village_id=g.village_id,
            town_id=g.town_id,
            active=active,
            assigned_to_id=world.accounts[assigned].id if assigned else None,
        )
        db.add(person)
        db.flush()
        for i in range(visits):
            db.add(
                Visit(
                    gridworker_id=world.accounts[f"gw{grid}"].id,
                    person_id=person.id,
                    town_id=g.town_id,
                    at=datetime(2026, 11, 2 + i, 2, 30),
                    note=f"第{i + 1}次走访，情况稳定",
                )
            )
        db.commit()
        person_id = person.id
        db.remove()
        return person_id


def grant_unmask(app, username: str) -> None:
    with app.app_context():
        db.query(Account).filter_by(username=username).one().can_unmask = True
        db.commit()
        db.remove()


def audit_rows(app, action: str) -> list[AuditLog]:
    with app.app_context():
        rows = db.query(AuditLog).filter_by(action=action).order_by(AuditLog.id).all()
        db.remove()
        return rows


def unmask(client, person_id: int, reason: str = "核实身份后上门走访"):
    token = csrf_from(html(client.get(f"/persons/{person_id}")))
    return client.post(f"/persons/{person_id}/unmask", data={"csrf_token": token, "reason": reason})


# --- masking by default ----------------------------------------------------------------------------


def test_list_masks_names_id_numbers_and_phones(app, world):
    add_person(app, world, grid=0, visits=2, assigned="gw0")
    client = logged_in(app.test_client(), "town0_admin")
    response = client.get("/persons/")
    page = html(response)
    assert response.status_code == 200
    assert "3205**********1234" in page and "138****5678" in page and "张*明" in page
    assert ID_NUMBER not in page and PHONE not in page and "张三明" not in page
    assert "共 <strong>1</strong> 人" in page
    assert "2026-11-03 10:30" in page  # the last visit, in Beijing time
    listed = audit_rows(app, "person.list")
    assert len(listed) == 1 and listed[0].username == "town0_admin" and "显示1人" in listed[0].detail


def test_person_page_is_masked_shows_visits_and_every_view_is_logged(app, world):
    person_id = add_person(app, world, grid=0, visits=3, assigned="gw0")
    client = logged_in(app.test_client(), "gw0")
    for _ in range(2):
        response = client.get(f"/persons/{person_id}")
        page = html(response)
        assert response.status_code == 200
        assert "3205**********1234" in page and "138****5678" in page
        assert ID_NUMBER not in page and PHONE not in page
    assert "共 3 次" in page and "第3次走访，情况稳定" in page and "2026-11-02 10:30" in page
    assert response.headers["Cache-Control"] == "no-store"
    assert "本角色只能查看脱敏信息" in page  # a gridworker has no unmask button
    views = audit_rows(app, "person.view")
    assert [(v.username, v.object_id, v.success) for v in views] == [("gw0", str(person_id), True)] * 2
    assert views[0].address == "127.0.0.1"


# --- filters and pages -------------------------------------------------------------------------------


def test_filters_by_type_and_grid_and_pages(app, world):
    for i in range(55):
        add_person(app, world, grid=0, name=f"王{i:02d}华", person_type="empty_nest_elderly", id_number=None)
    add_person(app, world, grid=1, name="李四光", person_type="drug_user")
    client = logged_in(app.test_client(), "town0_admin")
    first = html(client.get("/persons/"))
    assert "共 <strong>56</strong> 人" in first and "第 1 / 2 页" in first
    assert len(re.findall(r'href="/persons/\d+"', first)) == 50
    second = html(client.get("/persons/?page=2"))
    assert len(re.findall(r'href="/persons/\d+"', second)) == 6
    only_drug = html(client.get("/persons/?type=drug_user"))
    assert "共 <strong>1</strong> 人" in only_drug and "李*光" in only_drug
    grid1 = html(client.get(f"/persons/?grid={world.grids[1].id}"))
    assert "共 <strong>1</strong> 人" in grid1


def test_bad_filters_answer_400_naming_the_field(app, world):
    client = logged_in(app.test_client(), "town0_admin")
    response = client.get("/persons/?type=alien")
    assert response.status_code == 400 and 'data-field="type"' in html(response)
    response = client.get(f"/persons/?grid={world.grids[4].id}")  # a grid of the other town
    assert response.status_code == 400 and "不在本辖区内" in html(response)
    response = client.get("/persons/?page=abc")
    assert response.status_code == 400 and "页码" in html(response)


# --- jurisdiction and roles ------------------------------------------------------------------------------


def test_outside_the_jurisdiction_is_404_and_the_attempt_is_logged(app, world):
    other_town = add_person(app, world, grid=4, name="赵六")
    other_grid = add_person(app, world, grid=1, name="钱七")
    mine = add_person(app, world, grid=0, name="孙八")
    admin = logged_in(app.test_client(), "town0_admin")
    assert admin.get(f"/persons/{other_town}").status_code == 404
    assert admin.get(f"/persons/{other_grid}").status_code == 200
    assert admin.get("/persons/999999").status_code == 404
    gw0 = logged_in(app.test_client(), "gw0")
    assert gw0.get(f"/persons/{other_grid}").status_code == 404
    listing = html(gw0.get("/persons/"))
    assert "孙*" in listing and "钱*" not in listing and "赵*" not in listing
    assert gw0.get(f"/persons/{mine}").status_code == 200
    grant_unmask(app, "town0_admin")
    assert unmask(admin, other_grid).status_code == 200
    token = csrf_from(html(admin.get(f"/persons/{other_grid}")))
    response = admin.post(f"/persons/{other_town}/unmask", data={"csrf_token": token, "reason": "核实身份信息"})
    assert response.status_code == 404 and ID_NUMBER not in html(response)
    refused = [(r.username, r.object_id) for r in audit_rows(app, "person.view") if not r.success]
    assert refused == [("town0_admin", str(other_town)), ("gw0", str(other_grid))]
    refused_unmask = [r.object_id for r in audit_rows(app, "person.unmask") if not r.success]
    assert refused_unmask == [str(other_town)]


def test_roles_without_person_view_are_refused(app, world):
    person_id = add_person(app, world, grid=0)
    for username in (
        "city_duty_officer",
        "city_leader",
        "city_operator",
        "dept0",
        "city_auditor",
        "city_admin",
        "city_security_admin",
        "volunteer0",
    ):
        client = logged_in(app.test_client(), username)
        assert client.get("/persons/").status_code == 403, username
        assert client.get(f"/persons/{person_id}").status_code == 403, username
        token = csrf_from(html(client.get("/")))
        response = client.post(f"/persons/{person_id}/unmask", data={"csrf_token": token, "reason": "想看看完整信息"})
        assert response.status_code == 403 and ID_NUMBER not in html(response), username
    assert audit_rows(app, "person.view") == []
    refused = audit_rows(app, "person.unmask")  # each attempt to unmask is on record, refused
    assert [(r.username, r.success, r.object_id) for r in refused] == [
        (name, False, str(person_id))
        for name in (
            "city_duty_officer",
            "city_leader",
            "city_operator",
            "dept0",
            "city_auditor",
            "city_admin",
            "city_security_admin",
            "volunteer0",
        )
    ]


def test_anonymous_is_sent_to_login(app, world):
    person_id = add_person(app, world)
    response = app.test_client().get(f"/persons/{person_id}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_special_populations_are_hidden_from_supervisors(app, world):
    """Sensitive personal information (PIPL): only gridworkers and center administrators see it."""
    drug = add_person(app, world, grid=0, name="周九", person_type="drug_user")
    add_person(app, world, grid=0, name="吴十", person_type="mental_risk")
    elderly = add_person(app, world, grid=0, name="郑十一", person_type="empty_nest_elderly")
    supervisor = logged_in(app.test_client(), "town0_supervisor")
    listing = html(supervisor.get("/persons/"))
    assert "共 <strong>1</strong> 人" in listing and "郑*一" in listing and "周*" not in listing
    assert "另有 2 名特殊人群人员" in listing
    assert 'value="drug_user"' not in listing and 'value="empty_nest_elderly"' in listing
    assert supervisor.get("/persons/?type=drug_user").status_code == 400
    assert supervisor.get(f"/persons/{drug}").status_code == 404
    assert supervisor.get(f"/persons/{elderly}").status_code == 200
    for username in ("gw0", "town0_admin", "village0_admin"):
        client = logged_in(app.test_client(), username)
        assert client.get(f"/persons/{drug}").status_code == 200, username
        assert "另有" not in html(client.get("/persons/"))


# --- unmasking ------------------------------------------------------------------------------------------


def test_unmask_without_the_grant_is_refused_and_logged(app, world):
    person_id = add_person(app, world, grid=0)
    client = logged_in(app.test_client(), "town0_admin")  # the role may unmask, but the account holds no grant
    page = html(client.get(f"/persons/{person_id}"))
    assert "尚未获得查看完整个人信息的授权" in page and 'action="/persons/' not in page.split("显示完整信息</h2>")[1]
    response = unmask(client, person_id)
    assert response.status_code == 403
    assert ID_NUMBER not in html(response) and PHONE not in html(response)
    assert "未获授权" in html(response)
    gridworker = logged_in(app.test_client(), "gw0")  # the role has no unmask permission at all
    assert unmask(gridworker, person_id).status_code == 403
    rows = audit_rows(app, "person.unmask")
    assert [(r.username, r.success, r.object_id) for r in rows] == [
        ("town0_admin", False, str(person_id)),
        ("gw0", False, str(person_id)),
    ]
    assert "can_unmask" in rows[0].detail and "角色" in rows[1].detail


def test_unmask_with_the_grant_shows_the_full_number_once_and_is_audited(app, world):
    person_id = add_person(app, world, grid=0, visits=1)
    grant_unmask(app, "town0_admin")
    client = logged_in(app.test_client(), "town0_admin")
    response = unmask(client, person_id, reason="核实身份后上门走访")
    page = html(response)
    assert response.status_code == 200
    assert ID_NUMBER in page and PHONE in page and "张三明" in page
    assert "仅在本次页面中显示" in page and response.headers["Cache-Control"] == "no-store"
    again = html(client.get(f"/persons/{person_id}"))  # the next request is masked again
    assert ID_NUMBER not in again and "3205**********1234" in again
    rows = [r for r in audit_rows(app, "person.unmask") if r.success]
    assert len(rows) == 1
    row = rows[0]
    assert (row.username, row.object_type, row.object_id, row.address) == (
        "town0_admin",
        "person",
        str(person_id),
        "127.0.0.1",
    )
    assert "核实身份后上门走访" in row.detail and row.at is not None


def test_unmask_needs_a_reason_and_a_csrf_token(app, world):
    person_id = add_person(app, world, grid=0)
    grant_unmask(app, "town0_supervisor")
    client = logged_in(app.test_client(), "town0_supervisor")
    response = unmask(client, person_id, reason="  ")
    assert response.status_code == 400
    assert 'data-field="reason"' in html(response) and ID_NUMBER not in html(response)
    response = client.post(f"/persons/{person_id}/unmask", data={"reason": "核实身份后上门走访"})
    assert response.status_code == 400 and ID_NUMBER not in html(response)
    assert [r.success for r in audit_rows(app, "person.unmask")] == [False]


def test_inactive_persons_are_not_listed(app, world):
    gone = add_person(app, world, grid=0, name="冯十二", active=False)
    client = logged_in(app.test_client(), "town0_admin")
    assert "共 <strong>0</strong> 人" in html(client.get("/persons/"))
    assert client.get(f"/persons/{gone}").status_code == 404
