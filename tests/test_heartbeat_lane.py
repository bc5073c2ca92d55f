"""The heartbeat's lane (api/lane.py): a city's heartbeats answered before Flask's request machinery, with
the same rules and the same answers as the Flask view, which still answers everything else."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text

from commandcenter import counters, create_app, heartbeats, jobs, positions
from commandcenter.db import db
from commandcenter.models import Account, ApiToken
from commandcenter.settings import normalize_database_url
from commandcenter.timeutil import utcnow
from tests.conftest import TEST_REDIS_URL, _truncate_all, make_settings, token_for
from tests.test_case_screens import account

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# answer headers that differ between any two answers whatever path made them
VOLATILE = {"Date", "X-RateLimit-Reset", "X-RateLimit-Remaining", "Retry-After", "Content-Length"}


@pytest.fixture
def apps(pg_url, redis_conn, tmp_path):
    """Two processes of one installation on one database and one Redis: the lane on, and off."""
    heartbeats._paused_until.clear()
    on = create_app(make_settings(tmp_path / "on", pg_url, redis_url=TEST_REDIS_URL))
    off = create_app(make_settings(tmp_path / "off", pg_url, redis_url=TEST_REDIS_URL))
    off.config["HEARTBEAT_LANE"] = False
    with on.app_context():
        _truncate_all()
        from tests.world import build_world

        world = build_world()
        db.commit()
    db.remove()
    for app in (on, off):
        app.extra_calls = []  # the Flask view's calls: what the lane did not answer
        view = app.view_functions["api.heartbeat"]

        def counting(*args, _view=view, _calls=app.extra_calls, **kwargs):
            _calls.append(1)
            return _view(*args, **kwargs)

        app.view_functions["api.heartbeat"] = counting
    yield on, off, world
    db.remove()


def post(client, headers, body=None, *, raw: bytes | None = None, content_type="application/json", path=None):
    data = raw if raw is not None else json.dumps(body).encode()
    return client.post(path or "/api/v1/heartbeats", data=data, headers={**headers, "Content-Type": content_type})


def shape(response) -> tuple:
    """What a client sees of an answer, less what changes from one answer to the next."""
    names = sorted(k for k in response.headers.keys() if k not in VOLATILE)
    return response.status_code, response.get_data(as_text=True), names, response.headers.get("X-RateLimit-Limit")


def test_an_ordinary_heartbeat_is_answered_by_the_lane_and_lands_in_redis(apps):
    on, _off, world = apps
    client = on.test_client()
    headers = token_for(client, "gw0")
    lat, lon = world.grid_point(0)
    assert post(client, headers, {"lat": lat, "lon": lon}).status_code == 204  # token not cached yet: Flask
    assert len(on.extra_calls) == 1
    answer = post(client, headers, {"lat": lat, "lon": lon + 0.001})
    assert answer.status_code == 204 and answer.get_data() == b""
    assert len(on.extra_calls) == 1  # the lane answered
    assert answer.headers["Cache-Control"] == "no-store"
    assert (
        answer.headers["X-Frame-Options"] == "DENY"
        and "default-src 'self'" in answer.headers["Content-Security-Policy"]
    )
    assert int(answer.headers["X-RateLimit-Remaining"]) == int(answer.headers["X-RateLimit-Limit"]) - 2
    with on.app_context():
        gw0 = account("gw0")
        assert counters.online_count(jobs.counters_redis(), gw0.town_id, utcnow()) == 1
        (seen,) = positions.live_positions(account("town0_duty"))
        assert (seen.account_id, seen.lat, seen.lon) == (gw0.id, lat, lon + 0.001)  # the lane's point is the newest


def test_the_lane_and_flask_answer_alike(apps):
    """Each request twice, once to a process with the lane and once to one without: the same status, body and
    headers (the limit's count and reset apart) — the lane answers the 204s, Flask the rest in both."""
    on, off, world = apps
    lat, lon = world.grid_point(0)
    clients = {app: app.test_client() for app in (on, off)}
    tokens = {app: token_for(clients[app], "gw0") for app in (on, off)}
    for app in (on, off):  # cache each process's token
        assert post(clients[app], tokens[app], {"lat": lat, "lon": lon}).status_code == 204
    cases = [
        ({"lat": lat, "lon": lon}, {}),
        ({}, {}),
        ({"lat": None, "lon": None}, {}),
        ({"lat": 91, "lon": lon}, {}),
        ({"lat": lat, "lon": lon, "speed": 3}, {}),
        ({"lat": "北纬", "lon": lon}, {}),
        ([lat, lon], {}),
        (None, {"raw": b"{not json"}),
        (None, {"raw": b"NaN"}),
        (None, {"raw": b'{"lat": NaN}'}),
        ({"lat": lat, "lon": lon, "note": "长" * 2000}, {}),
        ({"lat": lat, "lon": lon}, {"content_type": "application/json; charset=utf-8"}),
        ({"lat": lat, "lon": lon}, {"content_type": "text/plain"}),
        ({"lat": lat, "lon": lon}, {"path": "/api/v1/heartbeats?x=1"}),
        (None, {"raw": b""}),
    ]
    for body, options in cases:
        answers = [post(clients[app], tokens[app], body, **options) for app in (on, off)]
        assert shape(answers[0]) == shape(answers[1]), (body, options)
    # a bad or missing token
    for headers in ({"Authorization": "Bearer nonsense"}, {}):
        answers = [post(clients[app], headers, {"lat": lat, "lon": lon}) for app in (on, off)]
        assert shape(answers[0]) == shape(answers[1])
        assert answers[0].status_code == 401 and answers[0].get_json()["error"]["field"] == "Authorization"
    sent = 1 + len(cases) + 2
    assert len(off.extra_calls) == sent  # without the lane, Flask answered everything
    assert sent - len(on.extra_calls) == 4  # with it, the four valid heartbeats of `cases` were the lane's


def test_a_token_revoked_in_this_process_is_refused_at_once(apps):
    on, _off, world = apps
    client = on.test_client()
    headers = token_for(client, "gw0")
    lat, lon = world.grid_point(0)
    assert post(client, headers, {"lat": lat, "lon": lon}).status_code == 204
    with on.app_context():
        token = db.execute(select(ApiToken)).scalar_one()
        token.revoked = True
        db.commit()
    answer = post(client, headers, {"lat": lat, "lon": lon})
    assert answer.status_code == 401


def test_a_token_that_expires_while_cached_is_refused(apps, pg_url):
    on, _off, world = apps
    client = on.test_client()
    headers = token_for(client, "gw0")
    lat, lon = world.grid_point(0)
    soon = utcnow() + timedelta(seconds=1.5)
    engine = create_engine(normalize_database_url(pg_url))  # as an administrator's shorter expiry would be
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_tokens SET expires_at = :at"), {"at": soon})
    engine.dispose()
    assert post(client, headers, {"lat": lat, "lon": lon}).status_code == 204  # read, cached with that expiry
    assert post(client, headers, {"lat": lat, "lon": lon}).status_code == 204  # the lane
    time.sleep(max(0.0, (soon - utcnow()).total_seconds()) + 0.1)
    answer = post(client, headers, {"lat": lat, "lon": lon})
    assert answer.status_code == 401 and answer.get_json()["error"]["field"] == "Authorization"


def test_a_password_to_change_and_a_role_without_the_right_go_to_flask(apps):
    on, _off, world = apps
    client = on.test_client()
    lat, lon = world.grid_point(0)
    headers = token_for(client, "gw0")
    assert post(client, headers, {"lat": lat, "lon": lon}).status_code == 204
    with on.app_context():
        gw0 = db.execute(select(Account).where(Account.username == "gw0")).scalar_one()
        gw0.must_change_password = True  # an ORM change of the account: this process forgets its token at once
        db.commit()
    answer = post(client, headers, {"lat": lat, "lon": lon})
    assert answer.status_code == 403 and answer.get_json()["error"]["field"] == "password"
    dept = token_for(client, "town0_duty")  # a duty officer may not report (case.report)
    post(client, dept, {"lat": lat, "lon": lon})
    assert post(client, dept, {"lat": lat, "lon": lon}).status_code == 403


def test_a_password_that_expires_while_the_token_is_cached_is_refused(apps, pg_url):
    """The account is cached with its password's date; the password's age limit is then lowered (as an
    administrator's setting would be): the lane's own check hands the request to Flask, which answers 403."""
    on, _off, world = apps
    on.config["SETTINGS"].password_max_age_days = 0  # no limit yet
    client = on.test_client()
    headers = token_for(client, "gw0")
    lat, lon = world.grid_point(0)
    engine = create_engine(normalize_database_url(pg_url))  # unseen by this process's cache hooks
    with engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET password_changed_at = :at"), {"at": utcnow() - timedelta(days=100)})
    engine.dispose()
    assert post(client, headers, {"lat": lat, "lon": lon}).status_code == 204  # read and cached
    assert post(client, headers, {"lat": lat, "lon": lon}).status_code == 204  # the lane
    calls = len(on.extra_calls)
    on.config["SETTINGS"].password_max_age_days = 90
    answer = post(client, headers, {"lat": lat, "lon": lon})
    assert answer.status_code == 403 and answer.get_json()["error"]["field"] == "password"
    assert len(on.extra_calls) == calls  # refused by the identify hook, before the view: the lane declined


def test_over_the_limit_the_answer_is_flasks_429_and_nothing_is_recorded(apps):
    on, _off, world = apps
    on.config["SETTINGS"].intake_rate_limit = "3 per minute"
    client = on.test_client()
    headers = token_for(client, "gw0")
    lat, lon = world.grid_point(0)
    for i in range(3):
        assert post(client, headers, {"lat": lat, "lon": lon + i / 1000}).status_code == 204
    calls = len(on.extra_calls)
    refused = post(client, headers, {"lat": lat + 0.01, "lon": lon})
    assert refused.status_code == 429 and "每分钟最多 3 次" in refused.get_json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["X-RateLimit-Remaining"] == "0"
    assert len(on.extra_calls) == calls + 1  # Flask's answer
    with on.app_context():  # counted once, by the lane (Flask took its count): 4 of 3, not 5
        from commandcenter.extensions import limiter  # noqa: F401  (the storage the intake shares)

        r = jobs.counters_redis()
        (limit_key,) = [k for k in r.scan_iter("LIMITS:LIMITER/account:*api.heartbeat*")]
        assert int(r.get(limit_key)) == 4
    with on.app_context():
        (seen,) = positions.live_positions(account("town0_duty"))
        assert seen.lat == lat  # the refused point is nowhere


def test_redis_down_the_heartbeat_goes_to_the_database_through_flask(apps, pg_url, tmp_path):
    _on, _off, world = apps
    heartbeats._paused_until.clear()
    down = create_app(make_settings(tmp_path / "down", pg_url, redis_url="redis://127.0.0.1:1/0"))
    client = down.test_client()
    headers = token_for(client, "gw0")
    lat, lon = world.grid_point(0)
    for _ in range(3):  # the first with its token not cached, then cached (the lane tries, and hands over)
        assert post(client, headers, {"lat": lat, "lon": lon}).status_code == 204
    with down.app_context():
        from commandcenter.models import Heartbeat

        assert len(db.execute(select(Heartbeat)).scalars().all()) == 3
    heartbeats._paused_until.clear()
    db.remove()
