"""Issue 11 (outside security test), findings 5, 13, 15a and 15c: visits, patrols, /healthz, addresses.

5.   A visit to a person the account may not see answers exactly like a visit to no one (no oracle),
     and the rule "who may see which person" is the same for the person pages and the visits API.
13.  Patrols reported by the app: finite, existing coordinates; not back-dated beyond PATROL_MAX_AGE_DAYS
     (history comes by `flask import patrols`); a track that fits the claimed patrol; never NaN in JSON.
15a. /healthz tells anonymous callers only up/degraded; the detail is for ops.view.
15c. A person's address is masked (house and room numbers) and shown in full only by the audited unmask.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from commandcenter import create_app
from commandcenter.db import db
from commandcenter.models import Account, AuditLog, Patrol, Person, Visit
from commandcenter.security import mask_address
from tests.conftest import csrf_from, logged_in, make_settings

pytestmark = pytest.mark.postgres  # each finding's test is marked security; the import guard is not

ADDRESS = "人民路 8 号 2 幢 301 室"


def strict_json(response):
    """The body as RFC 8259 JSON: NaN and Infinity are not JSON and make this fail."""

    def refuse(token):
        raise AssertionError(f"not JSON: {token} in {response.get_data(as_text=True)[:200]}")

    return json.loads(response.get_data(as_text=True), parse_constant=refuse)


def token(app, username: str) -> dict:
    """A bearer token made by the domain (not through /tokens: its login rate limit is not under test)."""
    from commandcenter.auth.service import issue_api_token

    with app.app_context():
        value = issue_api_token(db.query(Account).filter_by(username=username).one(), "测试手机")
        db.remove()
    return {"Authorization": f"Bearer {value}"}


def add_person(
    app,
    world,
    *,
    grid: int = 0,
    person_type: str = "empty_nest_elderly",
    active: bool = True,
    name: str = "张三明",
    address: str | None = ADDRESS,
) -> int:
    with app.app_context():
        g = world.grids[grid]
        person = Person(
            name=name,
            id_number="320501199001011234",
            phone="13812345678",
            person_type=person_type,
            visit_frequency="monthly",
            address=address,
            grid_id=g.id,
            village_id=g.village_id,
            town_id=g.town_id,
            active=active,
        )
        db.add(person)
        db.commit()
        person_id = person.id
        db.remove()
        return person_id


def count(app, model, **where) -> int:
    with app.app_context():
        n = db.query(model).filter_by(**where).count()
        db.remove()
        return n


def visit(client, headers: dict, person_id: int, key: str):
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    return client.post(
        "/api/v1/visits",
        headers=headers,
        json={"client_key": key, "person_id": person_id, "at": at, "note": "上门走访，情况稳定"},
    )


# --- 5. visits: no oracle on hidden persons; one rule for pages and API ------------------------------


@pytest.mark.security
def test_visit_to_a_hidden_person_answers_like_a_missing_one_and_records_nothing(app, world, client):
    hidden = add_person(app, world, grid=0, person_type="drug_user")  # a special population: hidden from supervisors
    other_town = add_person(app, world, grid=4)
    visible = add_person(app, world, grid=0)
    headers = token(app, "town0_supervisor")
    assert client.get(f"/persons/{hidden}", headers=headers).status_code == 404  # the page hides the person

    answers = []
    for i, person_id in enumerate((hidden, other_town, 999999)):
        response = visit(client, headers, person_id, f"oracle-visit-{i}")
        body = strict_json(response)
        answers.append((response.status_code, body["error"]["message"], body["error"]["field"]))
    assert answers[0] == answers[1] == answers[2], answers
    assert answers[0][0] == 422 and answers[0][2] == "person_id"
    assert count(app, Visit) == 0  # nothing counted
    # the refused attempt on an existing person is on record, as a refused page view is
    with app.app_context():
        refused = db.query(AuditLog).filter_by(action="visit.record", success=False).all()
        assert {(r.username, r.object_id) for r in refused} == {
            ("town0_supervisor", str(hidden)),
            ("town0_supervisor", str(other_town)),
        }
        db.remove()

    # the same person is visited by the roles that handle special populations; a visible one by the supervisor
    assert visit(client, headers, visible, "oracle-visit-ok").status_code == 201
    assert visit(client, token(app, "town0_admin"), hidden, "oracle-visit-admin").status_code == 201
    assert count(app, Visit) == 2


@pytest.mark.security
def test_person_pages_and_visits_follow_one_rule(app, world, client):
    """For every account with person.view and every kind of person: the page is 200 exactly when the visit
    is taken, and every refusal of a visit is the answer given for a person that does not exist."""
    persons = {
        "elderly_grid0": add_person(app, world, grid=0),
        "drug_grid0": add_person(app, world, grid=0, person_type="drug_user"),
        "mental_grid1": add_person(app, world, grid=1, person_type="mental_risk"),
        "elderly_grid2": add_person(app, world, grid=2),
        "elderly_town1": add_person(app, world, grid=4),
        "inactive_grid0": add_person(app, world, grid=0, active=False),
    }
    accounts = (
        "gw0",
        "gw1",
        "village0_admin",
        "town0_admin",
        "town0_supervisor",
        "town1_admin",
        "city_supervisor",
        "city_center",
    )
    for username in accounts:
        headers = token(app, username)
        missing = visit(client, headers, 999999, f"rule-{username}-missing")
        assert missing.status_code == 422
        for label, person_id in persons.items():
            page = client.get(f"/persons/{person_id}", headers=headers).status_code
            answer = visit(client, headers, person_id, f"rule-{username}-{label}")
            assert page in (200, 404), (username, label, page)
            if page == 200:
                assert answer.status_code == 201, (username, label, answer.get_json())
            else:
                assert (answer.status_code, answer.get_json()) == (422, missing.get_json()), (username, label)
    # spot checks of the rule itself
    with app.app_context():
        from commandcenter.persons.visibility import visible_person

        def sees(username, label):
            return visible_person(db.query(Account).filter_by(username=username).one(), persons[label]) is not None

        assert sees("gw0", "drug_grid0") and not sees("gw0", "mental_grid1") and not sees("gw0", "elderly_grid2")
        assert sees("town0_supervisor", "elderly_grid2") and not sees("town0_supervisor", "drug_grid0")
        assert not sees("town1_admin", "elderly_grid0") and not sees("town0_admin", "inactive_grid0")
        db.remove()


# --- 13. patrols ---------------------------------------------------------------------------------------


def patrol_body(
    key: str,
    start: datetime,
    minutes: int = 60,
    step_minutes: int = 10,
    lon: float = 120.025,
    lat: float = 31.025,
    **overrides,
) -> dict:
    """A patrol with a point every `step_minutes` from start to end, walking east."""
    t0 = int(start.timestamp())
    track = [[lon + 0.0005 * i, lat, t0 + 60 * m] for i, m in enumerate(range(0, minutes + 1, step_minutes))]
    body = {
        "client_key": key,
        "started_at": start.isoformat(),
        "ended_at": (start + timedelta(minutes=minutes)).isoformat(),
        "track": track,
    }
    body.update(overrides)
    return body


def recent(hours: float = 3) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours)


def post_raw(client, headers, body: dict):
    """json.dumps writes NaN and Infinity as the bare words, as the outside test sent them."""
    return client.post("/api/v1/patrols", headers=headers, data=json.dumps(body), content_type="application/json")


@pytest.mark.security
def test_patrol_tracks_with_nan_infinite_or_impossible_coordinates_are_refused(app, world, client):
    headers = token(app, "gw0")
    start = recent()
    t0 = int(start.timestamp())
    cases = [
        ([[math.nan, math.nan, t0], [1e308, 1e308, t0 + 60]], "track[0]"),  # the outside test's track
        ([[120.02, 31.02, t0], [1e308, 1e308, t0 + 60]], "track[1]"),
        ([[120.02, 31.02, t0], [math.inf, 31.02, t0 + 60]], "track[1]"),
        ([[120.02, 31.02, t0], [120.02, 31.02, math.nan]], "track[1]"),
        ([[181.0, 31.02, t0]], "track[0]"),
        ([[120.02, -90.5, t0]], "track[0]"),
    ]
    for i, (track, field) in enumerate(cases):
        body = patrol_body(f"nan-patrol-{i:02d}", start, minutes=5, track=track)
        response = post_raw(client, headers, body)
        error = strict_json(response)["error"]
        assert response.status_code == 422 and error["field"] == field, (track, error)
        assert error["message"].startswith(f"{field}: "), error
    assert count(app, Patrol) == 0


@pytest.mark.security
def test_no_patrol_answer_contains_nan(app, world, client):
    """A row stored before the fix with distance NaN: its retry is answered with JSON, distance null."""
    with app.app_context():
        gw0 = db.query(Account).filter_by(username="gw0").one()
        start = recent(5).replace(tzinfo=None)
        db.add(
            Patrol(
                gridworker_id=gw0.id,
                grid_id=gw0.place_id,
                town_id=gw0.town_id,
                started_at=start,
                ended_at=start + timedelta(hours=1),
                track=[],
                distance_m=float("nan"),
                client_key="legacy-nan-patrol",
            )
        )
        db.commit()
        db.remove()
    headers = token(app, "gw0")
    retry = client.post("/api/v1/patrols", headers=headers, json=patrol_body("legacy-nan-patrol", recent(5)))
    assert retry.status_code == 200
    body = strict_json(retry)
    assert body["distance_m"] is None and body["minutes"] == 60.0
    fresh = client.post("/api/v1/patrols", headers=headers, json=patrol_body("fresh-patrol-1", recent()))
    assert fresh.status_code == 201
    body = strict_json(fresh)
    assert math.isfinite(body["distance_m"]) and body["distance_m"] > 0 and body["minutes"] == 60.0


@pytest.mark.security
def test_back_dated_patrols_are_refused_by_the_app(app, world, client):
    """Five days of 08:00–18:00 with an empty track turned 未达标 into 达标: none of it is taken now."""
    headers = token(app, "gw0")
    today = datetime.now(UTC).astimezone().replace(hour=8, minute=0, second=0, microsecond=0)
    for day in range(3, 8):
        start = today - timedelta(days=day)
        body = {
            "client_key": f"backdated-{day}",
            "started_at": start.isoformat(),
            "ended_at": (start + timedelta(hours=10)).isoformat(),
            "track": [],
        }
        response = client.post("/api/v1/patrols", headers=headers, json=body)
        assert response.status_code == 422, response.get_json()
        # with a perfect track too: the date alone refuses it
        dense = client.post(
            "/api/v1/patrols", headers=headers, json=patrol_body(f"backdated-dense-{day}", start, minutes=60)
        )
        error = strict_json(dense)["error"]
        assert dense.status_code == 422 and error["field"] == "started_at", error
        assert "导入" in error["message"]
    assert count(app, Patrol) == 0
    # inside the window it is taken
    ok = client.post("/api/v1/patrols", headers=headers, json=patrol_body("recent-dense", recent(30)))
    assert ok.status_code == 201, ok.get_json()


@pytest.mark.security
def test_patrol_max_age_is_a_setting(world, pg_url, tmp_path):
    wide = create_app(make_settings(tmp_path, pg_url, patrol_max_age_days=7))
    client = wide.test_client()
    headers = token(wide, "gw0")
    five_days = recent(24 * 5)
    assert (
        client.post("/api/v1/patrols", headers=headers, json=patrol_body("five-days-ago", five_days)).status_code == 201
    )
    eight_days = recent(24 * 8)
    response = client.post("/api/v1/patrols", headers=headers, json=patrol_body("eight-days-ago", eight_days))
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "started_at"


def test_history_still_comes_in_through_the_import(app, world, tmp_path):
    """A guard, not a finding: the age and track rules are the app's, `flask import patrols` keeps working."""
    from tests.test_import import write_csv

    old = (datetime.now() - timedelta(days=20)).replace(hour=9, minute=0)
    path = write_csv(
        tmp_path / "patrols.csv",
        "patrols",
        [
            {
                "id": "OLD1",
                "gridworker": "gw0",
                "started_at": old.strftime("%Y-%m-%d %H:%M"),
                "ended_at": (old + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M"),
                "distance_m": "3200",
            }
        ],
    )
    result = app.test_cli_runner().invoke(args=["import", "patrols", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert count(app, Patrol, client_key="import:OLD1") == 1


@pytest.mark.security
def test_a_patrol_track_must_fit_the_claimed_patrol(app, world, client):
    headers = token(app, "gw0")
    start = recent()
    t0 = int(start.timestamp())
    mid = t0 + 1800

    def refused(key, track, field, minutes=60):
        response = client.post(
            "/api/v1/patrols", headers=headers, json=patrol_body(key, start, minutes=minutes, track=track)
        )
        error = strict_json(response)["error"]
        assert response.status_code == 422 and error["field"] == field, (key, error)
        return error

    refused("hour-no-points", [], "track")
    refused("hour-one-point", [[120.02, 31.02, mid]], "track[0]")
    # a point every 15 minutes is not enough
    refused("hour-sparse", [[120.02, 31.02, t0 + 900 * k] for k in range(5)], "track[1]")
    # points outside [start, end]
    refused("hour-before", [[120.02, 31.02, t0 - 3600]] + [[120.02, 31.02, t0 + 600 * k] for k in range(7)], "track[0]")
    refused("hour-after", [[120.02, 31.02, t0 + 600 * k] for k in range(7)] + [[120.02, 31.02, t0 + 7200]], "track[7]")
    # out of time order
    shuffled = [[120.02, 31.02, t0 + 300 * k] for k in range(13)]
    shuffled[2], shuffled[3] = shuffled[3], shuffled[2]
    refused("hour-shuffled", shuffled, "track[3]")
    # the end of the patrol is not covered
    refused("hour-stops-early", [[120.02, 31.02, t0 + 600 * k] for k in range(4)], "track[3]")
    # a point without its time
    response = client.post(
        "/api/v1/patrols", headers=headers, json=patrol_body("hour-no-time", start, track=[[120.02, 31.02]])
    )
    assert response.status_code == 422 and response.get_json()["error"]["field"].startswith("track")
    assert count(app, Patrol) == 0
    # a point every 10 minutes, inside the window, in order: taken
    ok = client.post("/api/v1/patrols", headers=headers, json=patrol_body("hour-good", start))
    assert ok.status_code == 201 and strict_json(ok)["minutes"] == 60.0
    # a short patrol needs few points
    short = client.post(
        "/api/v1/patrols",
        headers=headers,
        json=patrol_body(
            "short-one-point", start + timedelta(hours=2), minutes=15, track=[[120.02, 31.02, t0 + 7200 + 450]]
        ),
    )
    assert short.status_code == 201, short.get_json()


# --- 15a. /healthz -------------------------------------------------------------------------------------


@pytest.mark.security
def test_healthz_tells_anonymous_callers_only_up_or_degraded(app, world, client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "up"}
    text = response.get_data(as_text=True)
    assert "postgresql" not in text and "mode" not in text and "server" not in text
    # a logged-in account without ops.view gets no more
    supervisor = logged_in(app.test_client(), "town0_supervisor")
    assert supervisor.get("/healthz").get_json() == {"status": "up"}
    assert client.get("/healthz", headers=token(app, "gw0")).get_json() == {"status": "up"}
    # ops.view (the system administrator) gets the detail
    admin = logged_in(app.test_client(), "city_admin")
    detail = admin.get("/healthz").get_json()
    assert detail["status"] == "up" and detail["database"] == "ok" and detail["database_backend"] == "postgresql"
    assert detail["mode"] == "server" and detail["redis"] == "not configured"


@pytest.mark.security
def test_healthz_degraded_and_database_down(pg_url, tmp_path):
    redis_down = create_app(make_settings(tmp_path / "r", pg_url, redis_url="redis://127.0.0.1:1/0"))
    response = redis_down.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "degraded"}
    db_down = create_app(make_settings(tmp_path / "d", "postgresql://postgres@127.0.0.1:1/nothing"))
    response = db_down.test_client().get("/healthz")
    assert response.status_code == 503 and response.get_json() == {"status": "degraded"}
    assert "OperationalError" not in response.get_data(as_text=True)


# --- 15c. addresses -------------------------------------------------------------------------------------


@pytest.mark.security
def test_mask_address_keeps_the_street_and_hides_the_numbers():
    assert mask_address("人民路 8 号 2 幢 301 室") == "人民路 * 号 * 幢 *** 室"
    assert mask_address("苏州市姑苏区人民路18号2幢301室") == "苏州市姑苏区人民路**号*幢***室"
    assert mask_address("张家村三组") == "张家村*组"
    assert mask_address("阳光小区１２栋") == "阳光小区**栋"
    assert mask_address("村东头老槐树旁") == "村东头****"  # no number at all: the tail is hidden
    assert mask_address(None) == "" and mask_address("") == ""


@pytest.mark.security
def test_person_address_is_masked_and_shown_only_by_the_audited_unmask(app, world):
    person_id = add_person(app, world, grid=0, person_type="drug_user")
    with app.app_context():
        db.query(Account).filter_by(username="town0_admin").one().can_unmask = True
        db.commit()
        db.remove()
    client = logged_in(app.test_client(), "town0_admin")
    listing = client.get("/persons/").get_data(as_text=True)
    assert ADDRESS not in listing and "人民路 * 号 * 幢 *** 室" in listing
    page = client.get(f"/persons/{person_id}").get_data(as_text=True)
    assert ADDRESS not in page and "人民路 * 号 * 幢 *** 室" in page and "吸毒" in page
    unmasked = client.post(
        f"/persons/{person_id}/unmask", data={"csrf_token": csrf_from(page), "reason": "核实住址后上门走访"}
    )
    assert unmasked.status_code == 200 and ADDRESS in unmasked.get_data(as_text=True)
    with app.app_context():
        rows = db.query(AuditLog).filter_by(action="person.unmask", success=True).all()
        assert [(r.username, r.object_id) for r in rows] == [("town0_admin", str(person_id))]
        assert "住址" in rows[0].detail and "核实住址后上门走访" in rows[0].detail
        db.remove()
    again = client.get(f"/persons/{person_id}").get_data(as_text=True)  # masked again on the next request
    assert ADDRESS not in again
