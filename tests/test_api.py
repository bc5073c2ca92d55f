"""The JSON API as the gridworker app and the hotline system use it, on PostgreSQL."""

from __future__ import annotations

import io
import uuid

import pytest

from commandcenter.db import db
from commandcenter.models import Case, CasePhoto, CaseStep
from tests.conftest import token_for

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def report_body(world, grid: int = 0, **overrides) -> dict:
    lat, lon = world.grid_point(grid)
    body = {
        "client_key": uuid.uuid4().hex,
        "category_code": "0101",
        "description": "路边暴露垃圾一堆",
        "lat": lat,
        "lon": lon,
        "address": "东湖路 1 号",
        "discovered_at": "2026-11-23T09:00:00+08:00",
    }
    body.update(overrides)
    return body


def test_token_login_and_errors(world, client):
    assert client.post("/api/v1/tokens", json={"username": "gw0", "password": "bad"}).status_code == 401
    missing = client.post("/api/v1/tokens", json={"username": "gw0"})
    assert missing.status_code == 422 and missing.get_json()["error"]["field"] == "password"
    headers = token_for(client, "gw0")
    me = client.get("/api/v1/me", headers=headers).get_json()
    assert me["username"] == "gw0" and me["role"] == "gridworker"
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401


def test_report_creates_case_with_history(world, client):
    headers = token_for(client, "gw0")
    response = client.post("/api/v1/cases", json=report_body(world), headers=headers)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["state"] == "reported" and body["state_label"] == "待立案"
    assert body["grid_code"] == world.grids[0].code
    assert body["discovered_at"] == "2026-11-23T09:00:00+08:00"
    detail = client.get(f"/api/v1/cases/{body['id']}", headers=headers).get_json()
    assert [s["action"] for s in detail["steps"]] == ["report"]


def test_same_client_key_twice_makes_one_case(world, client):
    headers = token_for(client, "gw0")
    body = report_body(world)
    first = client.post("/api/v1/cases", json=body, headers=headers)
    second = client.post("/api/v1/cases", json=body, headers=headers)
    assert first.status_code == 201 and second.status_code == 200
    assert first.get_json()["id"] == second.get_json()["id"]
    assert db.query(Case).count() == 1
    assert db.query(CaseStep).count() == 1


def test_client_key_of_another_account_is_refused(world, client):
    body = report_body(world)
    assert client.post("/api/v1/cases", json=body, headers=token_for(client, "gw0")).status_code == 201
    other = client.post("/api/v1/cases", json=body, headers=token_for(client, "gw1"))
    assert other.status_code == 422 and other.get_json()["error"]["field"] == "client_key"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"category_code": "9"}, "category_code"),
        ({"category_code": "8888"}, "category_code"),
        ({"description": ""}, "description"),
        ({"description": "长" * 2001}, "description"),
        ({"lat": 91}, "lat"),
        ({"lat": "north"}, "lat"),
        ({"client_key": "短"}, "client_key"),
        ({"discovered_at": "yesterday"}, "discovered_at"),
        ({"discovered_at": "2026-11-23T09:00:00"}, "discovered_at"),
        ({"discovered_at": "2099-01-01T00:00:00+08:00"}, "discovered_at"),
        ({"surprise": 1}, "surprise"),
        ({"lat": 10.0, "lon": 10.0}, "lat"),
        ({"grid_code": "999999999"}, "grid_code"),
        ({"category_code": "1002", "self_handled": True}, "self_handled"),
    ],
)
def test_bad_report_names_the_field_and_stores_nothing(world, client, change, field):
    response = client.post("/api/v1/cases", json=report_body(world, **change), headers=token_for(client, "gw0"))
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["field"] == field and error["message"]
    assert db.query(Case).count() == 0


def test_missing_field_and_wrong_body(world, client):
    headers = token_for(client, "gw0")
    body = report_body(world)
    del body["description"]
    response = client.post("/api/v1/cases", json=body, headers=headers)
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "description"
    broken = client.post("/api/v1/cases", data="{not json", headers={**headers, "Content-Type": "application/json"})
    assert broken.status_code == 400
    form = client.post("/api/v1/cases", data={"a": "b"}, headers=headers)
    assert form.status_code == 415
    array = client.post("/api/v1/cases", json=[1, 2], headers=headers)
    assert array.status_code == 422


def test_other_town_cannot_read_or_act_by_api(world, client):
    created = client.post("/api/v1/cases", json=report_body(world, grid=0), headers=token_for(client, "gw0")).get_json()
    outsider = token_for(client, "town1_operator")
    assert client.get(f"/api/v1/cases/{created['id']}", headers=outsider).status_code == 404
    act = client.post(f"/api/v1/cases/{created['id']}/actions/register", json={}, headers=outsider)
    assert act.status_code == 404
    listed = client.get("/api/v1/cases", headers=outsider).get_json()
    assert listed["items"] == []
    insider = token_for(client, "town0_operator")
    assert [c["id"] for c in client.get("/api/v1/cases", headers=insider).get_json()["items"]] == [created["id"]]


def test_full_loop_through_the_api(world, client):
    case = client.post("/api/v1/cases", json=report_body(world), headers=token_for(client, "gw0")).get_json()
    operator = token_for(client, "town0_operator")
    center = token_for(client, "town0_admin")
    dept = token_for(client, "dept0")
    url = f"/api/v1/cases/{case['id']}/actions/"
    assert client.post(url + "register", json={"note": "属实"}, headers=operator).status_code == 200
    wrong = client.post(url + "close", json={}, headers=operator)
    assert wrong.status_code == 409 and "不能执行" in wrong.get_json()["error"]["message"]
    assert client.post(url + "dispatch", json={}, headers=center).get_json()["error"]["field"] == "department_id"
    dispatched = client.post(url + "dispatch", json={"department_id": world.departments[0].id}, headers=center)
    assert dispatched.status_code == 200, dispatched.get_json()
    assert client.post(url + "accept", json={}, headers=dept).status_code == 200
    assert client.post(url + "feedback", json={"note": "已清运"}, headers=dept).status_code == 200
    closed = client.post(url + "close", json={}, headers=operator).get_json()
    assert closed["state"] == "closed"
    assert [s["action"] for s in closed["steps"]] == ["report", "register", "dispatch", "accept", "feedback", "close"]
    # a gridworker may not register
    other = client.post("/api/v1/cases", json=report_body(world), headers=token_for(client, "gw0")).get_json()
    refused = client.post(f"/api/v1/cases/{other['id']}/actions/register", json={}, headers=token_for(client, "gw0"))
    assert refused.status_code == 403


def test_hotline_work_order_is_idempotent_and_masks_nothing_it_should_not_store(world, client):
    headers = token_for(client, "city_operator")
    lat, lon = world.grid_point(3)
    body = {
        "work_order_no": "GD20261123001",
        "caller_name": "王女士",
        "caller_phone": "13912345678",
        "category_code": "2001",
        "description": "楼上漏水引发邻里纠纷",
        "lat": lat,
        "lon": lon,
        "received_at": "2026-11-23T10:00:00+08:00",
    }
    first = client.post("/api/v1/hotline/work-orders", json=body, headers=headers)
    again = client.post("/api/v1/hotline/work-orders", json=body, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert first.get_json()["id"] == again.get_json()["id"]
    case = db.get(Case, first.get_json()["id"])
    assert case.source == "hotline" and case.external_ref == "GD20261123001" and case.kind == "dispute"
    assert "13912345678" not in first.get_data(as_text=True)  # the API never echoes the caller's phone
    bad = client.post("/api/v1/hotline/work-orders", json={**body, "caller_phone": "12"}, headers=headers)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "caller_phone"
    assert client.post("/api/v1/hotline/work-orders", json=body, headers=token_for(client, "gw0")).status_code == 403


def test_photo_upload_checks_type_size_and_ignores_client_path(world, client, app):
    headers = token_for(client, "gw0")
    case = client.post("/api/v1/cases", json=report_body(world), headers=headers).get_json()
    url = f"/api/v1/cases/{case['id']}/photos"
    ok = client.post(url, data={"file": (io.BytesIO(PNG), "../../etc/passwd.png")}, headers=headers)
    assert ok.status_code == 201, ok.get_json()
    again = client.post(url, data={"file": (io.BytesIO(PNG), "x.png")}, headers=headers)
    assert again.status_code == 200 and again.get_json()["id"] == ok.get_json()["id"]
    assert client.post(url, data={"file": (io.BytesIO(JPEG), "y.jpg")}, headers=headers).status_code == 201
    html = client.post(url, data={"file": (io.BytesIO(b"<script>alert(1)</script>"), "a.png")}, headers=headers)
    assert html.status_code == 415 and html.get_json()["error"]["field"] == "file"
    big = PNG + b"\x00" * (app.config["SETTINGS"].upload_max_bytes + 1)
    assert client.post(url, data={"file": (io.BytesIO(big), "big.png")}, headers=headers).status_code == 413
    assert client.post(url, data={}, headers=headers).status_code == 422
    photos = db.query(CasePhoto).all()
    assert len(photos) == 2
    upload_dir = app.config["SETTINGS"].upload_dir
    assert all((upload_dir / p.stored_name).exists() and "/" not in p.stored_name for p in photos)
    assert (
        client.post(url, data={"file": (io.BytesIO(PNG), "x.png")}, headers=token_for(client, "gw7")).status_code == 404
    )


def test_openapi_document_is_served(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/v1/cases", "/api/v1/tokens", "/api/v1/hotline/work-orders"} <= set(doc["paths"])
    assert "CaseReport" in doc["components"]["schemas"]


def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.get_json()["error"]["message"]


def test_nul_characters_are_refused_not_crashed_on(world, client):
    headers = token_for(client, "gw0")
    response = client.post("/api/v1/cases", json=report_body(world, description="垃圾\x00堆"), headers=headers)
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "description"
    login = client.post("/api/v1/tokens", json={"username": "gw\x000", "password": "x"})
    assert login.status_code == 422
    page = client.get("/login?next=%00")
    assert page.status_code == 400


def test_fieldwork_heartbeat_sign_in_patrol(app, world, client):
    from datetime import timedelta as _td

    from commandcenter import heartbeats
    from commandcenter.models import Account, Heartbeat, Outbox, Patrol, SignIn
    from commandcenter.timeutil import utcnow

    headers = token_for(client, "gw0")
    lat, lon = world.grid_point(0)
    assert client.post("/api/v1/heartbeats", json={"lat": lat, "lon": lon}, headers=headers).status_code == 204
    assert db.query(Heartbeat).count() == 0  # to Redis only; the database gets it in the next batch (issue 15)
    with app.app_context():
        heartbeats.persist(now=utcnow() + _td(seconds=app.config["SETTINGS"].presence_persist_seconds))
    assert db.query(Heartbeat).count() == 1
    assert db.query(Account).filter_by(username="gw0").one().last_seen_at is not None
    first = client.post("/api/v1/sign-ins", json={"lat": lat, "lon": lon}, headers=headers)
    again = client.post("/api/v1/sign-ins", json={}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200 and db.query(SignIn).count() == 1
    # a recent patrol (the app takes PATROL_MAX_AGE_DAYS) with a point every 10 minutes (fieldwork.check_track)
    from datetime import UTC, datetime, timedelta

    start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    t0 = int(start.timestamp())
    track = [[lon, lat, t0], [lon + 0.001, lat, t0 + 600]] + [
        [lon + 0.001, lat + 0.001, t0 + 600 * k] for k in range(2, 8)
    ]
    patrol = {
        "client_key": "patrol-0001-abc",
        "started_at": start.isoformat(),
        "ended_at": (start + timedelta(minutes=70)).isoformat(),
        "track": track,
    }
    created = client.post("/api/v1/patrols", json=patrol, headers=headers)
    assert created.status_code == 201 and created.get_json()["minutes"] == 70.0
    assert 150 < created.get_json()["distance_m"] < 250
    assert client.post("/api/v1/patrols", json=patrol, headers=headers).status_code == 200
    assert db.query(Patrol).count() == 1
    backwards = client.post(
        "/api/v1/patrols",
        json={**patrol, "client_key": "patrol-0002-abc", "ended_at": (start - timedelta(hours=1)).isoformat()},
        headers=headers,
    )
    assert backwards.status_code == 422 and backwards.get_json()["error"]["field"] == "ended_at"
    topics = sorted(row.topic for row in db.query(Outbox).all())
    assert topics.count("presence.heartbeat") == 0 and topics.count("presence.sign_in") == 1
    assert topics.count("patrol") == 1 and topics.count("presence.login") == 1
