"""Every step of the case loop through both doors — the case page's form and the JSON API — with the same
account and the same input, on twin cases: the outcome (done, forbidden, not found, or refused with the
same message) and the case afterwards must be the same. The rules live in cases.actions.perform; a check
added to one door only would make this test fail."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from commandcenter.cases import forms, loop
from commandcenter.db import db
from commandcenter.models import Case, CaseStep
from tests.conftest import csrf_from, token_for
from tests.test_case_screens import account, new_case

pytestmark = [pytest.mark.postgres, pytest.mark.security]


@dataclass
class Scenario:
    action: str
    actor: str
    state: str = "reported"
    input: dict = field(default_factory=dict)  # the domain's names: note, department_id, to_level, ...
    grid: int = 0
    code: str = "9901"
    reporter: str = "gw0"
    paused: bool = False
    pending_extension: bool = False  # a department's 延期 waits for the center's decision
    level: str | None = None  # escalated to this level first (by the town center)
    expect: str = "ok"  # what both doors must answer: ok / forbidden / not_found / refused


def dept(world, i: int) -> int:
    return world.departments[i].id


def scenarios(world) -> list[Scenario]:
    return [
        # every action, done by an account that may take it
        Scenario("register", "town0_operator", input={"note": "核实属实，予以立案"}),
        Scenario("reject", "town0_operator", input={"note": "现场无此问题"}),
        Scenario("duplicate", "town0_operator", input={"original_number": "ORIGINAL", "note": "同一处垃圾"}),
        Scenario("dispatch", "town0_operator", "registered", {"department_id": dept(world, 1), "note": "请处理"}),
        Scenario("accept", "dept0", "dispatched"),
        Scenario("feedback", "dept0", "handling", {"note": "已清理完毕"}),
        Scenario("close", "town0_operator", "feedback", {"note": "核查属实"}),
        Scenario("rework", "town0_operator", "feedback", {"note": "现场仍有垃圾"}),
        Scenario("escalate", "gw0", input={"to_level": "village", "note": "网格无法处置"}),
        Scenario("self_close", "gw0", input={"note": "已当场劝离"}),
        Scenario("transfer", "town0_operator", code="0401"),
        Scenario("pause", "town0_operator", "registered", {"note": "等待产权单位答复"}),
        Scenario("resume", "town0_operator", "registered", paused=True),
        Scenario("outstanding", "town0_supervisor", "closed", {"note": "网格员及时发现并协调处置"}),
        Scenario("return", "dept0", "handling", {"note": "不属于本部门职责"}),
        Scenario("extend", "dept0", "handling", {"days": 3, "note": "需协调产权单位"}),
        Scenario("extend_approve", "town0_operator", "handling", {"note": "同意"}, pending_extension=True),
        Scenario("extend_refuse", "town0_operator", "handling", {"note": "理由不充分"}, pending_extension=True),
        # 重新定位: a point of grid 3 (town 0, the other village)
        Scenario("relocate", "town0_operator", input={"lat": 31.075, "lon": 120.075, "note": "上报位置有误"}),
        Scenario("relocate", "city_operator", "registered", {"lat": 31.025, "lon": 120.125, "address": "西湖路 2 号"}),
        # a role without the step's permission
        *[
            Scenario(a, "city_leader", s, i, expect="forbidden")
            for a, s, i in (
                ("register", "reported", {}),
                ("dispatch", "registered", {"department_id": dept(world, 0)}),
                ("close", "feedback", {}),
                ("outstanding", "closed", {"note": "事迹"}),
                ("pause", "registered", {"note": "理由"}),
                ("return", "handling", {"note": "理由"}),
                ("extend_approve", "handling", {}),
                ("relocate", "reported", {"lat": 31.075, "lon": 120.075}),
            )
        ],
        Scenario("relocate", "town0_duty", input={"lat": 31.075, "lon": 120.075}, expect="forbidden"),
        Scenario("return", "town0_operator", "handling", {"note": "理由"}, expect="forbidden"),
        Scenario("extend", "town0_operator", "handling", {"days": 2, "note": "理由"}, expect="forbidden"),
        # outside the jurisdiction: another town's case is not even there
        Scenario("register", "town1_operator", expect="not_found"),
        Scenario("accept", "dept1", "dispatched", expect="not_found"),
        Scenario("relocate", "town1_operator", input={"lat": 31.025, "lon": 120.125}, expect="not_found"),
        # inside the place but above its level: a village center and a case escalated to the town
        Scenario("relocate", "village0_admin", input={"lat": 31.025, "lon": 120.025}, level="town", expect="forbidden"),
        # the step is not legal from the case's state
        *[
            Scenario(a, actor, s, i, expect="refused")
            for a, actor, s, i in (
                ("register", "town0_operator", "registered", {}),
                ("dispatch", "town0_operator", "reported", {"department_id": dept(world, 0)}),
                ("close", "town0_operator", "handling", {}),
                ("feedback", "dept0", "dispatched", {"note": "好了"}),
                ("resume", "town0_operator", "registered", {}),
                ("transfer", "town0_operator", "reported", {}),
                ("relocate", "town0_operator", "dispatched", {"lat": 31.075, "lon": 120.075}),
            )
        ],
        # field values the domain refuses
        Scenario("reject", "town0_operator", input={"note": "  "}, expect="refused"),
        Scenario("dispatch", "town0_operator", "registered", {}, expect="refused"),
        Scenario("dispatch", "town0_operator", "registered", {"department_id": 999999}, expect="refused"),
        # the hole of the outside test: a town-0 police station for a case in town 1
        Scenario(
            "dispatch", "city_operator", "registered", {"department_id": dept(world, 1)}, grid=4, expect="refused"
        ),
        # 就近派遣 across villages: the dispatcher's own jurisdiction must hold the gridworker (village 1's gw2)
        Scenario(
            "dispatch", "village0_admin", "registered", {"assignee_id": world.accounts["gw2"].id}, expect="refused"
        ),
        Scenario("duplicate", "town0_operator", input={"original_number": "SJ0000000000"}, expect="refused"),
        Scenario("duplicate", "town0_operator", input={"original_number": "HIDDEN"}, expect="refused"),
        Scenario("escalate", "gw0", input={"to_level": "village", "note": ""}, expect="refused"),
        Scenario("feedback", "dept0", "handling", {"note": "x" * 2001}, expect="refused"),
        Scenario("pause", "town0_operator", "registered", {"note": "理" * 201}, expect="refused"),
        Scenario("outstanding", "town0_supervisor", "closed", {"note": ""}, expect="refused"),
        Scenario("close", "town0_operator", "feedback", {"public": True}, expect="refused"),
        Scenario("self_close", "gw0", input={"note": "已处理"}, reporter="gw1", expect="forbidden"),
        Scenario("return", "dept0", "handling", {"note": " "}, expect="refused"),
        Scenario("return", "dept0", "feedback", {"note": "理由"}, expect="refused"),
        Scenario("extend", "dept0", "handling", {"days": 31, "note": "理由"}, expect="refused"),
        Scenario("extend", "dept0", "handling", {"note": "理由"}, expect="refused"),
        Scenario("extend", "dept0", "handling", {"days": 2, "note": "理由"}, pending_extension=True, expect="refused"),
        Scenario("extend_approve", "town0_operator", "handling", {}, expect="refused"),
        Scenario("extend_refuse", "town0_operator", "handling", {"note": ""}, pending_extension=True, expect="refused"),
        # 重新定位: the new point in no grid, or in a grid outside the actor's jurisdiction (town 1), or none
        Scenario("relocate", "town0_operator", input={"lat": 30.5, "lon": 120.05}, expect="refused"),
        Scenario("relocate", "town0_operator", input={"lat": 31.025, "lon": 120.125}, expect="refused"),
        Scenario("relocate", "town0_operator", input={"note": "没选位置"}, expect="refused"),
        Scenario("relocate", "town0_operator", input={"address_id": 999999}, expect="refused"),
    ]


def make_case(app, world, sc: Scenario) -> Case:
    state = "feedback" if sc.state == "closed" else sc.state
    case = new_case(app, world, grid=sc.grid, code=sc.code, reporter=sc.reporter, state=state)
    with app.app_context():
        case = db.get(Case, case.id)
        if sc.state == "closed":
            loop.close(case, account("town0_operator"))
        if sc.paused:
            loop.pause(case, account("town0_operator"), reason="等待答复")
        if sc.level:
            loop.escalate(case, account("town0_operator"), to_level=sc.level, note="需镇街协调")
        if sc.pending_extension:
            loop.request_extension(case, account("dept0"), days=2, reason="需要更多时间")
        return db.get(Case, case.id)


def resolve(app, world, sc: Scenario, originals: dict) -> dict:
    data = dict(sc.input)
    if data.get("original_number") == "ORIGINAL":
        data["original_number"] = originals["mine"]
    elif data.get("original_number") == "HIDDEN":
        data["original_number"] = originals["hidden"]
    return data


def through_page(client, case_id: int, action: str, data: dict):
    page = client.get(f"/cases/{case_id}")
    token = (
        csrf_from(page.get_data(as_text=True))
        if page.status_code == 200
        else csrf_from(client.get("/cases/").get_data(as_text=True))
    )
    form = {"csrf_token": token}
    for key, value in data.items():
        if key == "note":
            form[forms.text_field_of(action) or "note"] = value
        elif key == "public":
            form["public"] = "1" if value else ""
        else:
            form[key] = str(value)
    response = client.post(f"/cases/{case_id}/actions/{action}", data=form)
    if response.status_code == 302:
        return ("ok", None)
    if response.status_code in (403, 404):
        return ({403: "forbidden", 404: "not_found"}[response.status_code], None)
    html = response.get_data(as_text=True)
    match = re.search(r'class="field-error"[^>]*>(?:「[^」]+」未执行：)?([^<]+)<', html)
    assert response.status_code == 400 and match, (response.status_code, html[:300])
    return ("refused", match.group(1))


def through_api(client, headers: dict, case_id: int, action: str, data: dict):
    response = client.post(f"/api/v1/cases/{case_id}/actions/{action}", json=data, headers=headers)
    if response.status_code == 200:
        return ("ok", None)
    if response.status_code in (403, 404):
        return ({403: "forbidden", 404: "not_found"}[response.status_code], None)
    assert response.status_code in (409, 422), (response.status_code, response.get_json())
    message = response.get_json()["error"]["message"]
    return ("refused", re.sub(r"^[a-z_]+: ", "", message))


def after(case_id: int) -> tuple:
    db.expire_all()
    case = db.get(Case, case_id)
    steps = db.query(CaseStep).filter_by(case_id=case_id).order_by(CaseStep.id).all()
    return (
        case.state,
        case.level,
        case.department_id,
        case.paused_at is None,
        case.outstanding,
        (case.grid_id, case.village_id, case.town_id, case.address),  # 重新定位
        [(s.action, s.to_state, s.note, s.public) for s in steps[-1:]],
        len(steps),
    )


def test_every_action_has_the_same_outcome_through_the_page_and_the_api(app, world, auth):
    from flask.testing import FlaskClient

    all_scenarios = scenarios(world)
    assert {sc.action for sc in all_scenarios if sc.expect == "ok"} == set(loop.ALLOWED_FROM)
    originals = {
        "mine": new_case(app, world, grid=0, reporter="gw1").number,
        "hidden": new_case(app, world, grid=4, reporter="gw4").number,
    }
    doors: dict[str, tuple[FlaskClient, dict]] = {}  # one login per account (logins are rate-limited)

    def door(username: str) -> tuple[FlaskClient, dict]:
        if username not in doors:
            browser = app.test_client()
            assert type(auth)(browser).login(username).status_code == 302
            doors[username] = (browser, token_for(app.test_client(), username))
        return doors[username]

    failures = []
    for sc in all_scenarios:
        page_case, api_case = make_case(app, world, sc), make_case(app, world, sc)
        data = resolve(app, world, sc, originals)
        browser, headers = door(sc.actor)
        by_page = through_page(browser, page_case.id, sc.action, data)
        by_api = through_api(app.test_client(), headers, api_case.id, sc.action, data)
        state_page, state_api = after(page_case.id), after(api_case.id)
        # the two cases differ only in their numbers, which notes of duplicates do not mention here
        if by_page != by_api or by_page[0] != sc.expect or state_page != state_api:
            failures.append((sc.action, sc.actor, sc.expect, by_page, by_api, state_page, state_api))
    assert failures == []


def test_a_public_reply_is_marked_on_its_step_through_either_door(app, world, auth):
    case = new_case(app, world, grid=0, state="feedback")
    auth_client = app.test_client()
    type(auth)(auth_client).login("town0_operator")
    outcome = through_page(auth_client, case.id, "close", {"note": "垃圾已清运，感谢您的反映", "public": True})
    assert outcome == ("ok", None)
    assert after(case.id)[6] == [("close", "closed", "垃圾已清运，感谢您的反映", True)]
    other = new_case(app, world, grid=0)
    headers = token_for(app.test_client(), "town0_operator")
    assert through_api(app.test_client(), headers, other.id, "register", {"note": "已受理"}) == ("ok", None)
    assert after(other.id)[6] == [("register", "registered", "已受理", False)]  # internal unless marked


def test_a_department_account_without_a_department_sees_nothing_through_either_door(app, world, auth):
    """The API's list had its own copy of the visibility query, without the guard the pages have."""
    from commandcenter.accounts import create_account
    from commandcenter.models import Account, Place
    from commandcenter.security import hash_password
    from tests.conftest import PASSWORD

    new_case(app, world, grid=0)
    new_case(app, world, grid=4, state="registered")
    with app.app_context():
        create_account(
            username="dept_none",
            display_name="未分配部门",
            password="",
            role="department",
            place=db.get(Place, world.city.id),
            password_hash=hash_password(PASSWORD),
        )
        db.commit()
        assert db.query(Account).filter_by(username="dept_none").one().department_id is None
    headers = token_for(app.test_client(), "dept_none")
    assert app.test_client().get("/api/v1/cases", headers=headers).get_json()["items"] == []
    browser = app.test_client()
    type(auth)(browser).login("dept_none")
    assert re.search(r"SJ\d{8}", browser.get("/cases/").get_data(as_text=True)) is None
