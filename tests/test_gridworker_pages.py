"""/g/: the gridworker's phone pages, server side: who may open them, what they list, and that the phone's writes
(the JSON API with the page's session and CSRF token) keep the API's idempotency and name the field at fault."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest

from commandcenter import create_app
from commandcenter.cases import actions, loop
from commandcenter.db import db
from commandcenter.gridworker.service import my_persons, period_bounds
from commandcenter.models import Account, Case, Person, Visit
from commandcenter.timeutil import current_tz, local_today, utcnow
from tests.conftest import (
    TEST_REDIS_URL,
    csrf_from,
    logged_in,
    login_session,
    make_settings,
    report,
    socket_client,
    wait_for,
)
from tests.conftest import pushed as items_of

pytestmark = pytest.mark.postgres

PAGES = ("/g/", "/g/report", "/g/cases", "/g/visits")


def html(response) -> str:
    return response.get_data(as_text=True)


def phone(client, username: str = "gw0") -> tuple:
    """The test client logged in as a gridworker, with the CSRF token of his /g/ page."""
    logged_in(client, username)
    page = client.get("/g/")
    assert page.status_code == 200
    return client, {"X-CSRFToken": csrf_from(html(page))}


def add_person(world, *, grid: int = 0, assigned: str | None = None, frequency: str = "monthly", **extra) -> int:
    g = world.grids[grid]
    person = Person(
        name=extra.pop("name", "张三明"),
        person_type=extra.pop("person_type", "empty_nest_elderly"),
        visit_frequency=frequency,
        phone="13812345678",
        grid_id=g.id,
        village_id=g.village_id,
        town_id=g.town_id,
        assigned_to_id=world.accounts[assigned].id if assigned else None,
        **extra,
    )
    db.add(person)
    db.commit()
    return person.id


def test_pages_open_for_a_gridworker_only(client, world):
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
    logged_in(client, "town0_operator")
    for path in PAGES:
        assert client.get(path).status_code == 403, path
    client.post("/logout", data={"csrf_token": csrf_from(html(client.get("/")))})
    logged_in(client, "gw0")
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        body = html(response)
        assert 'name="csrf-token"' in body and "待发送" in body and "gw0" in body
        # these pages may ask for the phone's location and camera; every other page keeps both off
        assert "geolocation=(self)" in response.headers["Permissions-Policy"]
    assert "geolocation=()" in client.get("/").headers["Permissions-Policy"]


def test_the_pwa_manifest_and_service_worker(client, world):
    manifest = client.get("/g/manifest.webmanifest")
    assert manifest.status_code == 200 and manifest.mimetype == "application/manifest+json"
    data = manifest.get_json(force=True)
    assert data["start_url"] == "/g/" and data["scope"] == "/g/" and data["display"] == "standalone"
    assert data["name"] == "网格员工作台"
    for icon in data["icons"]:
        assert client.get(icon["src"]).status_code == 200
    sw = client.get("/g/sw.js")
    assert sw.status_code == 200 and sw.mimetype == "text/javascript"
    assert sw.headers["Service-Worker-Allowed"] == "/g/"
    assert "caches.open" in html(sw)
    logged_in(client, "gw0")
    assert 'rel="manifest" href="/g/manifest.webmanifest"' in html(client.get("/g/"))


def test_a_repeated_client_key_makes_one_case(client, world):
    client, headers = phone(client)
    lat, lon = world.grid_point(0)
    body = {
        "client_key": "3f1c0a9e-phone-1",
        "category_code": "0502",
        "description": "井盖缺失",
        "lat": lat,
        "lon": lon,
    }
    first = client.post("/api/v1/cases", json=body, headers=headers)
    again = client.post("/api/v1/cases", json=body, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert first.get_json()["id"] == again.get_json()["id"]
    with client.application.app_context():
        assert db.query(Case).filter_by(client_key="3f1c0a9e-phone-1").count() == 1
    # the same write without the page's token is refused: a foreign site cannot report in his name
    refused = client.post("/api/v1/cases", json={**body, "client_key": "3f1c0a9e-phone-2"})
    assert refused.status_code == 403 and refused.get_json()["error"]["field"] == "X-CSRFToken"


def test_validation_errors_name_the_field(client, world):
    client, headers = phone(client)
    lat, lon = world.grid_point(0)
    base = {"client_key": "k-validate-0001", "category_code": "0502", "description": "井盖缺失", "lat": lat, "lon": lon}
    no_text = client.post("/api/v1/cases", json={**base, "description": ""}, headers=headers)
    assert no_text.status_code == 422 and no_text.get_json()["error"]["field"] == "description"
    big_class = client.post("/api/v1/cases", json={**base, "category_code": "05"}, headers=headers)
    assert big_class.status_code == 422 and big_class.get_json()["error"]["field"] == "category_code"
    nowhere = client.post("/api/v1/cases", json={**base, "lat": 10.0, "lon": 10.0}, headers=headers)
    assert nowhere.status_code == 422 and "不在任何网格内" in nowhere.get_json()["error"]["message"]
    with client.application.app_context():
        assert db.query(Case).count() == 0


def test_report_form_offers_leaf_categories_and_the_grid_map(client, world):
    client, _ = phone(client)
    body = html(client.get("/g/report"))
    assert 'data-code="0502"' in body and 'data-code="05"' not in body  # no big class to pick
    assert 'capture="environment"' in body and 'id="self_handled"' in body
    assert 'id="grid-map"' in body and 'class="map-grid" d="M' in body


def test_my_cases_rework_tasks_and_awaiting_check(app, client, world):
    with app.app_context():
        v_operator = db.get(Account, world.accounts["town0_operator"].id)
        gw0 = db.get(Account, world.accounts["gw0"].id)
        returned = report(world, "gw1", description="路灯不亮")
        returned = db.get(Case, returned.id)
        for step, data in (
            ("register", actions.ActionInput()),
            ("dispatch", actions.ActionInput(assignee_id=gw0.id)),
        ):
            actions.perform(v_operator, returned, step, data)
        actions.perform(gw0, returned, "accept", actions.ActionInput())
        actions.perform(gw0, returned, "feedback", actions.ActionInput(note="已更换灯泡"))
        actions.perform(v_operator, returned, "rework", actions.ActionInput(note="灯仍不亮，请复查"))
        task = db.get(Case, report(world, "gw1", description="垃圾堆放").id)
        actions.perform(v_operator, task, "register", actions.ActionInput())
        actions.perform(v_operator, task, "dispatch", actions.ActionInput(assignee_id=gw0.id))
        mine = db.get(Case, report(world, "gw0", description="占道经营").id)
        actions.perform(v_operator, mine, "register", actions.ActionInput())
        actions.perform(v_operator, mine, "dispatch", actions.ActionInput(department_id=world.departments[1].id))
        dept = db.get(Account, world.accounts["dept1"].id)
        actions.perform(dept, mine, "accept", actions.ActionInput())
        actions.perform(dept, mine, "feedback", actions.ActionInput(note="已清理"))
        numbers = {c: db.get(Case, i).number for c, i in (("r", returned.id), ("t", task.id), ("m", mine.id))}
    client, _ = phone(client)
    body = html(client.get("/g/cases"))
    rework = body.split('id="rework"')[1].split('id="tasks"')[0]
    tasks = body.split('id="tasks"')[1].split('id="check"')[0]
    check = body.split('id="check"')[1].split('id="mine"')[0]
    assert numbers["r"] in rework and numbers["t"] not in rework
    assert numbers["t"] in tasks and numbers["r"] not in tasks and 'data-action="accept"' in tasks
    assert numbers["m"] in check and numbers["r"] not in check
    # the fragment htmx swaps in on a push is the same lists
    fragment = client.get("/g/cases", headers={"HX-Request": "true"})
    assert "<html" not in html(fragment) and numbers["r"] in html(fragment)
    home = html(client.get("/g/"))
    assert "返工案件 <b>1</b>" in home and "派给我的任务 <b>1</b>" in home
    work = html(client.get("/g/?part=work", headers={"HX-Request": "true"}))  # what a push re-reads
    assert work.startswith('<div id="work">') and "返工案件 <b>1</b>" in work


def test_period_bounds():
    assert period_bounds("weekly", date(2026, 12, 3)) == (date(2026, 11, 30), date(2026, 12, 6))
    assert period_bounds("monthly", date(2026, 12, 3)) == (date(2026, 12, 1), date(2026, 12, 31))
    assert period_bounds("monthly", date(2026, 2, 10)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert period_bounds("quarterly", date(2026, 11, 3)) == (date(2026, 10, 1), date(2026, 12, 31))
    assert period_bounds("quarterly", date(2026, 1, 1)) == (date(2026, 1, 1), date(2026, 3, 31))


def test_persons_to_visit_with_due_dates_and_a_visit_recorded(app, client, world):
    with app.app_context():
        weekly = add_person(world, assigned="gw0", frequency="weekly", name="李四海")
        monthly = add_person(world, frequency="monthly", name="王五田", person_type="drug_user")
        add_person(world, grid=1, frequency="monthly", name="赵六河")  # another grid: not his
        today = local_today(current_tz())
        rows = {v.person.id: v for v in my_persons(db.get(Account, world.accounts["gw0"].id), today)}
        assert set(rows) == {weekly, monthly}
        assert rows[weekly].due == period_bounds("weekly", today)[1] and not rows[weekly].done
    client, headers = phone(client)
    body = html(client.get("/g/visits"))
    assert "李*海" in body and "王*田" in body and "李四海" not in body and "赵*河" not in body
    assert period_bounds("weekly", today)[1].isoformat() in body
    visit = {
        "client_key": "visit-key-00001",
        "person_id": weekly,
        "at": utcnow().isoformat() + "Z",
        "note": "老人身体好",
    }
    assert client.post("/api/v1/visits", json=visit, headers=headers).status_code == 201
    assert client.post("/api/v1/visits", json=visit, headers=headers).status_code == 200  # a resend: one visit
    with app.app_context():
        assert db.query(Visit).filter_by(person_id=weekly).count() == 1
        row = {v.person.id: v for v in my_persons(db.get(Account, world.accounts["gw0"].id), today)}[weekly]
        assert row.done and row.due == period_bounds("weekly", period_bounds("weekly", today)[1] + timedelta(1))[1]
    assert "本期已走访" in html(client.get("/g/visits"))


@pytest.mark.live
@pytest.mark.redis
def test_pushes_reach_only_the_gridworkers_own_room(world, live_stack, pg_url, tmp_path):
    """A case dispatched to gw0, then returned to him for rework, reaches gw0's /g/ socket, not gw1's."""
    web, _worker = live_stack
    writer = create_app(make_settings(tmp_path / "writer", pg_url, redis_url=TEST_REDIS_URL))
    gw0, gw0_events = socket_client(web.url, login_session(web.url, "gw0"))
    gw1, gw1_events = socket_client(web.url, login_session(web.url, "gw1"))
    try:
        with writer.app_context():
            operator = db.query(Account).filter_by(username="town0_operator").one()
            me = db.query(Account).filter_by(username="gw0").one()
            case = db.get(Case, report(world, "gw1", description="路灯不亮").id)
            actions.perform(operator, case, "register", actions.ActionInput())
            actions.perform(operator, case, "dispatch", actions.ActionInput(assignee_id=me.id))
            number = case.number
        pushed = wait_for(lambda: [d for e, d in items_of(gw0_events) if e == "g.case"])
        assert pushed and pushed[0]["number"] == number and pushed[0]["action"] == "dispatch"
        with writer.app_context():
            case = db.query(Case).filter_by(number=number).one()
            me = db.query(Account).filter_by(username="gw0").one()
            gw0_id = me.id
            operator = db.query(Account).filter_by(username="town0_operator").one()
            loop.accept(case, me)
            loop.feedback(case, me, "已处理")
            actions.perform(operator, case, "rework", actions.ActionInput(note="未修好"))
        pushed = wait_for(lambda: [d for e, d in items_of(gw0_events) if e == "g.case" and d["action"] == "rework"])
        assert pushed and pushed[0]["seq"] > 1  # his room's own sequence: 1 for the dispatch, then 2
        assert {d["room"] for _, d in items_of(gw0_events)} == {f"account:{gw0_id}"}
        time.sleep(0.5)
        assert not items_of(gw1_events), "gw1 must not receive gw0's pushes"
        assert not [e for e, _ in items_of(gw0_events) if e == "case"], (
            "a gridworker's socket is not in the place rooms"
        )
    finally:
        gw0.disconnect()
        gw1.disconnect()


def test_visits_falling_due_are_told_when_the_page_connects(app, world, monkeypatch, pg_url, tmp_path):
    """In-process Socket.IO (the same connect handler as a browser's), with the window widened so that the test
    does not depend on the day of the week."""
    from commandcenter.extensions import socketio
    from commandcenter.gridworker import service

    with app.app_context():
        add_person(world, assigned="gw0", frequency="monthly", name="李四海")
        add_person(world, grid=1, frequency="monthly", name="赵六河")
    monkeypatch.setattr(service, "DUE_SOON_DAYS", 400)
    # Flask-SocketIO's test client needs a server without a message queue: an earlier server-mode app in this
    # process left its Redis manager in the shared extension's options
    monkeypatch.delitem(socketio.server_options, "client_manager", raising=False)
    embedded = create_app(make_settings(tmp_path / "sio", pg_url))
    client = logged_in(embedded.test_client(), "gw0")
    sio = socketio.test_client(embedded, namespace="/live", flask_test_client=client)
    try:
        assert sio.is_connected("/live")
        received = sio.get_received("/live")
        due = [m["args"][0] for m in received if m["name"] == "g.visit_due"]
        assert due == [{"count": 1, "names": ["李*海"], "due": due[0]["due"]}]
        with app.app_context():
            assert due[0]["due"] == period_bounds("monthly", local_today(current_tz()))[1].isoformat()
        # and every morning the open page is told again, in his own room only (workers/jobs.push_visits_due)
        from commandcenter import realtime

        with embedded.app_context():
            assert realtime.push_visits_due() == 2  # gw0 and the gridworker of grid 1
            gw0_id = db.query(Account).filter_by(username="gw0").one().id
            realtime.flush_pushes()  # what the flusher thread does every tick (it may have taken them already)
        received = wait_for(lambda: [m for m in sio.get_received("/live") if m["name"] == "batch"], 5)
        morning = [i["data"] for m in received or [] for i in m["args"][0]["items"] if i["event"] == "g.visit_due"]
        assert [(m["count"], m["names"]) for m in morning] == [(1, ["李*海"])]
        assert {m["args"][0]["room"] for m in received} == {f"account:{gw0_id}"}
    finally:
        sio.disconnect("/live")


def add_site(world, *, grid: int = 0, assigned: str | None = None, frequency: str = "monthly", **extra) -> int:
    from commandcenter.models import Site

    g = world.grids[grid]
    site = Site(
        name=extra.pop("name", "东湖路18号群租房"),
        site_type=extra.pop("site_type", "group_rental"),
        visit_frequency=frequency,
        grid_id=g.id,
        village_id=g.village_id,
        town_id=g.town_id,
        assigned_to_id=world.accounts[assigned].id if assigned else None,
        **extra,
    )
    db.add(site)
    db.commit()
    return site.id


def test_sites_to_visit_with_due_dates_and_a_site_visit_recorded(app, client, world):
    from commandcenter.gridworker.service import my_sites, sites_falling_due

    with app.app_context():
        quarterly = add_site(world, frequency="quarterly", site_type="rental_house", name="南街7号出租屋")
        weekly = add_site(world, assigned="gw0", frequency="weekly", site_type="key_place", name="星光网吧")
        add_site(world, grid=1, name="北街群租房")  # another grid: not his
        add_site(world, name="已拆除的群租房", active=False)
        today = local_today(current_tz())
        gw0 = db.get(Account, world.accounts["gw0"].id)
        rows = {v.site.id: v for v in my_sites(gw0, today)}
        assert set(rows) == {quarterly, weekly}
        assert rows[weekly].due == period_bounds("weekly", today)[1] and not rows[weekly].done
        assert rows[quarterly].due == period_bounds("quarterly", today)[1]
        sunday = period_bounds("weekly", today)[1]  # the last day of the week: the weekly site falls due
        assert weekly in {v.site.id for v in sites_falling_due(gw0, sunday)}
        assert quarterly not in {v.site.id for v in sites_falling_due(gw0, period_bounds("quarterly", today)[0])}
    client, headers = phone(client)
    body = html(client.get("/g/visits"))
    assert "星光网吧" in body and "南街7号出租屋" in body and "北街群租房" not in body and "已拆除" not in body
    assert f'data-site="{weekly}"' in body and "重点场所" in body and "出租屋" in body
    assert period_bounds("weekly", today)[1].isoformat() in body
    # the home page links a site falling due to its form on the visits page
    with app.app_context():
        if sites_falling_due(db.get(Account, world.accounts["gw0"].id), today):
            assert f"/g/visits?site={weekly}" in html(client.get("/g/"))
    assert '<details class="visit-form" open>' in html(client.get(f"/g/visits?site={weekly}"))
    visit = {
        "client_key": "site-visit-0001",
        "site_id": weekly,
        "at": utcnow().isoformat() + "Z",
        "note": "消防通道畅通",
    }
    assert client.post("/api/v1/visits", json=visit, headers=headers).status_code == 201
    assert client.post("/api/v1/visits", json=visit, headers=headers).status_code == 200  # a resend: one visit
    with app.app_context():
        assert db.query(Visit).filter_by(site_id=weekly).count() == 1
        row = {v.site.id: v for v in my_sites(db.get(Account, world.accounts["gw0"].id), today)}[weekly]
        assert row.done and row.due == period_bounds("weekly", period_bounds("weekly", today)[1] + timedelta(1))[1]
    # a site of another grid is refused like one that does not exist
    with app.app_context():
        other = add_site(world, grid=1, name="西街群租房")
    refused = client.post(
        "/api/v1/visits", json={**visit, "client_key": "site-visit-0002", "site_id": other}, headers=headers
    )
    assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "site_id"


def dispatched_to_gw0(app, world, description: str = "路灯不亮") -> int:
    with app.app_context():
        operator = db.get(Account, world.accounts["town0_operator"].id)
        gw0 = db.get(Account, world.accounts["gw0"].id)
        case = db.get(Case, report(world, "gw1", description=description).id)
        actions.perform(operator, case, "register", actions.ActionInput())
        actions.perform(operator, case, "dispatch", actions.ActionInput(assignee_id=gw0.id))
        return case.id


def test_accept_and_feedback_resent_with_their_key_return_the_step_already_taken(app, client, world):
    from commandcenter.models import CaseStep

    case_id = dispatched_to_gw0(app, world)
    client, headers = phone(client)
    url = f"/api/v1/cases/{case_id}/actions/"
    accept = {"client_key": "step-accept-0001"}
    first = client.post(url + "accept", json=accept, headers=headers)
    assert first.status_code == 200 and first.get_json()["state"] == "handling"
    step = first.get_json()["step"]
    assert step["action"] == "accept" and step["to_state"] == "handling"
    again = client.post(url + "accept", json=accept, headers=headers)  # the answer was lost: sent again
    assert again.status_code == 200 and again.get_json()["step"] == step
    feedback = {"client_key": "step-feedback-0001", "note": "已更换灯泡"}
    fed = client.post(url + "feedback", json=feedback, headers=headers)
    assert fed.status_code == 200 and fed.get_json()["state"] == "feedback"
    # resends after the case moved on: the same steps, no error, nothing more
    assert client.post(url + "accept", json=accept, headers=headers).get_json()["step"] == step
    refed = client.post(url + "feedback", json=feedback, headers=headers)
    assert refed.status_code == 200 and refed.get_json()["step"] == fed.get_json()["step"]
    # without a key, the state still decides
    assert client.post(url + "accept", json={}, headers=headers).status_code == 409
    with app.app_context():
        steps = db.query(CaseStep).filter_by(case_id=case_id).all()
        assert [s.action for s in steps].count("accept") == 1 and [s.action for s in steps].count("feedback") == 1
        assert {s.client_key for s in steps if s.action in ("accept", "feedback")} == {
            "step-accept-0001",
            "step-feedback-0001",
        }
    # the key of another step, or of another case, is refused naming the field
    wrong = client.post(url + "feedback", json={**feedback, "client_key": "step-accept-0001"}, headers=headers)
    assert wrong.status_code == 422 and wrong.get_json()["error"]["field"] == "client_key"
    other_case = dispatched_to_gw0(app, world, "井盖缺失")
    wrong = client.post(f"/api/v1/cases/{other_case}/actions/accept", json=accept, headers=headers)
    assert wrong.status_code == 422 and wrong.get_json()["error"]["field"] == "client_key"
    # a step that takes no key refuses one
    logged_in(client, "town0_operator")
    op_headers = {"X-CSRFToken": csrf_from(html(client.get("/")))}
    refused = client.post(
        f"/api/v1/cases/{other_case}/actions/pause",
        json={"note": "等待", "client_key": "step-pause-0001"},
        headers=op_headers,
    )
    assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "client_key"


def test_a_step_key_of_another_account_is_refused(app, world):
    from commandcenter.models import CaseStep

    case_id = dispatched_to_gw0(app, world)
    with app.app_context():
        gw0 = db.get(Account, world.accounts["gw0"].id)
        case = db.get(Case, case_id)
        actions.perform(gw0, case, "accept", actions.ActionInput(client_key="shared-key-0001"))
        # an operator may act for his handlers: the same key from him is not his step
        operator = db.get(Account, world.accounts["town0_operator"].id)
        with pytest.raises(loop.TransitionError) as refused:
            actions.perform(
                operator, case, "feedback", actions.ActionInput(note="已修复", client_key="shared-key-0001")
            )
        assert refused.value.field == "client_key"
        assert db.query(CaseStep).filter_by(case_id=case_id, action="feedback").count() == 0


def test_a_sign_in_sent_later_carries_the_time_it_was_taken(app, client, world):
    from datetime import UTC, datetime

    from commandcenter.models import SignIn
    from commandcenter.timeutil import local

    client, headers = phone(client)
    now = datetime.now(UTC).replace(microsecond=0)
    for at, why in (
        ((now + timedelta(minutes=30)).isoformat(), "in the future"),
        ((now - timedelta(hours=13)).isoformat(), "older than 12 hours"),
        (int((now - timedelta(hours=13)).timestamp()), "older than 12 hours, in unix seconds"),
    ):
        refused = client.post("/api/v1/sign-ins", json={"at": at}, headers=headers)
        assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "at", why
    naive = client.post("/api/v1/sign-ins", json={"at": "2026-12-03T08:00:00"}, headers=headers)
    assert naive.status_code == 422 and naive.get_json()["error"]["field"] == "at"
    taken = now - timedelta(hours=2)
    signed = client.post("/api/v1/sign-ins", json={"at": int(taken.timestamp()), "lat": 31.02}, headers=headers)
    assert signed.status_code == 201
    with app.app_context():
        row = db.query(SignIn).one()
        assert row.at == taken.replace(tzinfo=None)  # the time taken on the phone, not the arrival
        assert row.day == local(row.at, current_tz()).date()  # the local day of `at`
        assert signed.get_json()["day"] == row.day.isoformat()
    # the same sign-in sent again (ISO 8601 with an offset this time): the day's sign-in is kept
    again = client.post("/api/v1/sign-ins", json={"at": taken.isoformat()}, headers=headers)
    assert again.status_code == 200 and again.get_json()["created"] is False
    # without `at`, the arrival is the time (another gridworker)
    logged_in(client, "gw1")
    gw1 = {"X-CSRFToken": csrf_from(html(client.get("/g/")))}
    assert client.post("/api/v1/sign-ins", json={}, headers=gw1).status_code == 201
    with app.app_context():
        row = db.query(SignIn).filter_by(account_id=world.accounts["gw1"].id).one()
        assert abs((row.at - utcnow()).total_seconds()) < 60
