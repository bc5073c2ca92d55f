"""The lean intake path (issue 15 §3): tokens cached per process, the rate limit in one Redis round trip,
the report's rows written as plain INSERTs — with the same answers as before."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from commandcenter import create_app, refcache, token_cache
from commandcenter.db import db
from commandcenter.models import ApiToken, Case, CaseStep, Dispute, Outbox
from tests.conftest import make_settings, token_for
from tests.test_api import report_body


def _post(client, world, headers, **overrides):
    return client.post("/api/v1/cases", json=report_body(world, **overrides), headers=headers)


def _revoke_elsewhere(pg_url: str, token_id: int) -> None:
    """As another process would: a plain UPDATE on its own connection, unseen by this process's hooks."""
    from commandcenter.settings import normalize_database_url

    engine = create_engine(normalize_database_url(pg_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_tokens SET revoked = true WHERE id = :id"), {"id": token_id})
    engine.dispose()


def test_a_token_revoked_elsewhere_stops_within_the_cache_window(pg_url, tmp_path):
    app = create_app(make_settings(tmp_path, pg_url, token_cache_seconds=1))
    from tests.conftest import _truncate_all

    with app.app_context():
        _truncate_all()
        from tests.world import build_world

        world = build_world()
    client = app.test_client()
    headers = token_for(client, "gw0")
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # now cached
    token_id = db.query(ApiToken.id).scalar()
    db.remove()
    _revoke_elsewhere(pg_url, token_id)
    # within the window this process still knows the token (documented: TOKEN_CACHE_SECONDS)…
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    time.sleep(1.1)
    # … and after it, it is refused
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert _post(client, world, headers).status_code == 401
    db.remove()


def test_no_cache_with_zero_seconds(pg_url, tmp_path):
    app = create_app(make_settings(tmp_path, pg_url, token_cache_seconds=0))
    from tests.conftest import _truncate_all

    with app.app_context():
        _truncate_all()
        from tests.world import build_world

        build_world()
    client = app.test_client()
    headers = token_for(client, "gw0")
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    token_id = db.query(ApiToken.id).scalar()
    db.remove()
    _revoke_elsewhere(pg_url, token_id)
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    db.remove()


def test_a_token_revoked_in_this_process_stops_at_once(world, client):
    headers = token_for(client, "gw0")
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # cached (5 s by default)
    token_id = client.get("/api/v1/tokens", headers=headers).get_json()["items"][0]["id"]
    other = token_for(client, "gw0", "另一部手机")
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=other).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert client.get("/api/v1/me", headers=other).status_code == 200


def test_the_last_uses_of_many_tokens_are_written_together(world, client, app, monkeypatch):
    """A token's last use (its list shows it) is written for all the tokens due in one UPDATE, at most every
    TOKEN_TOUCH_FLUSH_SECONDS: 15,000 phones' first heartbeats of the morning are not 15,000 commits."""
    from commandcenter import web

    headers = [token_for(client, name) for name in ("gw0", "gw1", "gw2")]
    monkeypatch.setattr(web, "TOKEN_TOUCH_FLUSH_SECONDS", 3600)
    web._touch_state["flushed_at"] = time.monotonic()  # as if a flush had just been made
    with app.app_context():
        db.execute(text("UPDATE api_tokens SET last_used_at = NULL"))
        db.commit()
    for h in headers:
        assert client.get("/api/v1/me", headers=h).status_code == 200
    with app.app_context():
        assert db.query(ApiToken).filter(ApiToken.last_used_at.isnot(None)).count() == 0  # gathered, not written
        statements: list[str] = []
        engine = db.get_bind()
        note = lambda _c, _cur, statement, *_a: statements.append(statement)  # noqa: E731
        from sqlalchemy import event

        event.listen(engine, "before_cursor_execute", note)
        try:
            web.flush_token_touches()
        finally:
            event.remove(engine, "before_cursor_execute", note)
        assert len(statements) == 1 and statements[0].lstrip().upper().startswith("UPDATE")
        assert db.query(ApiToken).filter(ApiToken.last_used_at.isnot(None)).count() == 3
        db.remove()
    listed = client.get("/api/v1/tokens", headers=headers[0]).get_json()["items"]
    assert listed[0]["last_used_at"] is not None


def test_an_account_deactivated_in_this_process_stops_at_once(world, client, app):
    headers = token_for(client, "gw0")
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    with app.app_context():
        from commandcenter.accounts import set_account_active
        from commandcenter.models import Account

        admin = db.query(Account).filter_by(username="city_admin").one()
        gw0 = db.query(Account).filter_by(username="gw0").one()
        assert set_account_active(admin, gw0, False)
        db.commit()
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_a_role_changed_in_this_process_applies_at_once(world, client, app):
    headers = token_for(client, "gw0")
    assert _post(client, world, headers).status_code == 201
    with app.app_context():
        from commandcenter.models import Account

        gw0 = db.query(Account).filter_by(username="gw0").one()
        gw0.role = "supervisor"  # may not report (case.report)
        db.commit()
    assert _post(client, world, headers).status_code == 403


def test_report_writes_case_step_and_outbox_once_and_a_retry_gets_the_same(world, client):
    headers = token_for(client, "gw0")
    body = report_body(world)
    first = client.post("/api/v1/cases", json=body, headers=headers)
    assert first.status_code == 201, first.get_json()
    again = client.post("/api/v1/cases", json=body, headers=headers)
    assert again.status_code == 200 and again.get_json() == first.get_json()
    case_id = first.get_json()["id"]
    assert db.query(Case).count() == 1
    assert [s.action for s in db.query(CaseStep).filter_by(case_id=case_id)] == ["report"]
    outbox = [o.payload for o in db.query(Outbox).filter_by(topic="case.changed")]
    assert [(p["case_id"], p["action"]) for p in outbox] == [(case_id, "report")]
    case = db.get(Case, case_id)
    assert case.version == 1 and case.overdue is False and case.state == "reported"
    assert case.number.endswith(f"{case_id:07d}") and case.limits


def test_a_retry_is_answered_even_if_the_report_would_now_be_refused(w):
    """The key is found by the INSERT on PostgreSQL: a retry refused by a check (the time has moved, the
    category was deactivated) still gets the case it created."""
    from commandcenter.cases import loop

    category = w.cat("0101")
    lat, lon = w.point(0)
    key = uuid.uuid4().hex
    data = loop.ReportInput(category_id=category.id, description="重试", lat=lat, lon=lon)
    case, created = loop.report_case(data, actor=w.a("gw0"), source="app", client_key=key)
    assert created
    category.active = False
    db.commit()
    again, created = loop.report_case(data, actor=w.a("gw0"), source="app", client_key=key)
    assert not created and again.id == case.id
    assert db.query(Case).count() == 1


def test_a_dispute_report_gets_its_record(w):
    from commandcenter.cases import loop
    from commandcenter.models import Category

    dispute = db.query(Category).filter(Category.kind == "dispute", Category.depth >= 2).first()
    lat, lon = w.point(1)
    case, created = loop.report_case(
        loop.ReportInput(category_id=dispute.id, description="邻里纠纷", lat=lat, lon=lon),
        actor=w.a("gw0"),
        source="app",
        client_key=None,
    )
    assert created and case.kind == "dispute"
    assert db.query(Dispute).filter_by(case_id=case.id).count() == 1


def test_the_rate_limit_costs_one_round_trip_and_keeps_its_headers(pg_url, redis_conn, redis_url, tmp_path):
    import redis as redis_lib

    app = create_app(make_settings(tmp_path, pg_url, redis_url=redis_url, intake_rate_limit="3 per minute"))
    from tests.conftest import _truncate_all

    with app.app_context():
        _truncate_all()
        from tests.world import build_world

        world = build_world()
    client = app.test_client()
    headers = token_for(client, "gw0")
    calls = []
    single, pipelined = redis_lib.Redis.execute_command, redis_lib.client.Pipeline.execute

    here = threading.current_thread()  # the requests' thread: not a flusher another test left running

    def count_single(self, *args, **kwargs):
        # the caches' looks at the other processes' changes (a GET at most once a second) are not the limit's
        generations = (token_cache.GENERATION_KEY, refcache.GENERATION_KEY)
        if threading.current_thread() is here:
            calls.append("GENERATION" if args[0] == "GET" and args[1] in generations else args[0])
        return single(self, *args, **kwargs)

    def count_pipeline(self, *args, **kwargs):
        if threading.current_thread() is here:
            calls.append("PIPELINE")
        return pipelined(self, *args, **kwargs)

    redis_lib.Redis.execute_command = count_single
    redis_lib.client.Pipeline.execute = count_pipeline
    try:
        answers = [_post(client, world, headers) for _ in range(4)]
    finally:
        redis_lib.Redis.execute_command = single
        redis_lib.client.Pipeline.execute = pipelined
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert all(a.headers["X-RateLimit-Limit"] == "3" for a in answers)
    assert 0 < int(answers[3].headers["Retry-After"]) <= 60
    assert answers[3].get_json()["error"]["message"]
    # per request: the limit's one pipeline (the outbox kick after a commit is the push's, not the limit's)
    assert calls.count("PIPELINE") == 4
    assert "EVALSHA" not in calls and "GET" not in calls and "TTL" not in calls
    assert db.query(Case).count() == 3
    db.remove()  # (an app of its own: no fixture ends this thread's session)


def _limited_app(tmp_path, pg_url, **overrides):
    app = create_app(make_settings(tmp_path, pg_url, intake_rate_limit="2 per minute", **overrides))
    from tests.conftest import _truncate_all

    with app.app_context():
        _truncate_all()
        from tests.world import build_world

        world = build_world()
    return app, world


def test_a_heartbeat_over_the_limit_is_refused_and_changes_nothing(pg_url, redis_conn, redis_url, tmp_path):
    """Each intake endpoint counts on its own (two reports leave the heartbeats' budget whole); past the
    limit the answer is 429 naming the limit in words, with Retry-After, and the heartbeat is not applied."""
    from commandcenter.counters import presence

    app, world = _limited_app(tmp_path, pg_url, redis_url=redis_url)
    client = app.test_client()
    headers = token_for(client, "gw0")
    assert [_post(client, world, headers).status_code for _ in range(2)] == [201, 201]
    lat, lon = world.grid_point(0)
    beats = [client.post("/api/v1/heartbeats", json={"lat": lat, "lon": lon}, headers=headers) for _ in range(3)]
    assert [b.status_code for b in beats] == [204, 204, 429]
    assert [b.headers["X-RateLimit-Remaining"] for b in beats] == ["1", "0", "0"]
    assert "Retry-After" not in beats[0].headers and 0 < int(beats[2].headers["Retry-After"]) <= 60
    assert beats[2].get_json()["error"]["message"] == "请求过于频繁，请稍后再试（每分钟最多 2 次）"
    gw0 = world.accounts["gw0"].id
    trail_before = redis_conn.zcard(presence.trail_key(gw0))
    assert trail_before == 2  # the two accepted heartbeats, not the refused one
    # the key is flask-limiter's own (a rolling restart keeps the counts): LIMITER/<account>/<endpoint>/…
    keys = sorted(k.decode() for k in redis_conn.keys("LIMITS:LIMITER/account:*"))
    assert keys == [
        f"LIMITS:LIMITER/account:{gw0}/api.heartbeat/2/1/minute",
        f"LIMITS:LIMITER/account:{gw0}/api.report/2/1/minute",
    ]
    db.remove()


def test_the_intake_limit_holds_per_process_while_redis_is_down(pg_url, tmp_path, caplog):
    """Redis unreachable: reports are still taken (the case is in PostgreSQL) and still limited, counted in
    this process's memory, with their headers."""
    app, world = _limited_app(tmp_path, pg_url, redis_url="redis://127.0.0.1:1/0")
    client = app.test_client()
    headers = token_for(client, "gw0")
    answers = [_post(client, world, headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[1].headers["X-RateLimit-Remaining"] == "0"
    assert "counting in memory" in caplog.text
    assert db.query(Case).count() == 2
    db.remove()


def test_a_heartbeat_costs_two_redis_commands(pg_url, redis_conn, redis_url, tmp_path):
    """The city's volume (issue 15): its limit (one pipeline) and the heartbeat itself (one script: online
    sets, trail, dirty mark), and the same effect as before."""
    import redis as redis_lib

    from commandcenter.counters import presence

    app, world = _limited_app(tmp_path, pg_url, redis_url=redis_url)
    client = app.test_client()
    headers = token_for(client, "gw0")
    calls, here = [], threading.current_thread()
    single, pipelined = redis_lib.Redis.execute_command, redis_lib.client.Pipeline.execute

    def count_single(self, *args, **kwargs):
        if threading.current_thread() is here and args[1] not in (token_cache.GENERATION_KEY, refcache.GENERATION_KEY):
            calls.append(args[0])
        return single(self, *args, **kwargs)

    def count_pipeline(self, *args, **kwargs):
        if threading.current_thread() is here:
            calls.append("PIPELINE")
        return pipelined(self, *args, **kwargs)

    lat, lon = world.grid_point(0)
    client.post("/api/v1/heartbeats", json={"lat": lat, "lon": lon}, headers=headers)  # loads the script
    redis_lib.Redis.execute_command = count_single
    redis_lib.client.Pipeline.execute = count_pipeline
    try:
        answer = client.post("/api/v1/heartbeats", json={"lat": lat + 0.0001, "lon": lon}, headers=headers)
    finally:
        redis_lib.Redis.execute_command = single
        redis_lib.client.Pipeline.execute = pipelined
    assert answer.status_code == 204
    assert calls == ["PIPELINE", "EVALSHA"]
    gw0, town = world.accounts["gw0"].id, world.accounts["gw0"].town_id
    assert redis_conn.zscore(f"cc:online:{town}", str(gw0)) and redis_conn.zscore("cc:online:all", str(gw0))
    assert redis_conn.zcard(presence.trail_key(gw0)) == 2
    assert redis_conn.zscore(presence.DIRTY_KEY, str(gw0))  # still to be written to the database
    db.remove()


def test_two_reports_with_one_key_at_the_same_moment_make_one_case(world, app):
    """A retry racing its original, for real: two threads, two sessions, one key."""
    import threading

    from commandcenter.cases import loop
    from commandcenter.models import Account, Category

    key, barrier, results = uuid.uuid4().hex, threading.Barrier(2), []
    lat, lon = world.grid_point(0)

    def send() -> None:
        with app.app_context():
            try:
                actor = db.query(Account).filter_by(username="gw0").one()
                category = db.query(Category).filter_by(code="0101").one()
                data = loop.ReportInput(category_id=category.id, description="并发重试", lat=lat, lon=lon)
                barrier.wait(timeout=10)
                case, created = loop.report_case(data, actor=actor, source="app", client_key=key)
                results.append((case.id, created))
            finally:
                db.remove()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2 and results[0][0] == results[1][0]
    assert sorted(created for _, created in results) == [False, True]
    with app.app_context():
        assert db.query(Case).filter_by(client_key=key).count() == 1
        assert db.query(CaseStep).filter_by(case_id=results[0][0]).count() == 1
        db.remove()


@pytest.mark.redis
def test_a_change_announced_by_another_process_empties_this_cache_within_a_second(pg_url, redis_conn, tmp_path):
    """With the default window (minutes), a revocation made through the app elsewhere still stops the token
    at once: the other process's commit moves a Redis generation that every process checks each second."""
    from tests.conftest import TEST_REDIS_URL, _truncate_all

    token_cache.remote.paused_until = float("-inf")  # an earlier test's Redis outage is not this one's
    app = create_app(make_settings(tmp_path, pg_url, redis_url=TEST_REDIS_URL))
    assert app.config["SETTINGS"].token_cache_seconds >= 60
    with app.app_context():
        _truncate_all()
        from tests.world import build_world

        build_world()
    client = app.test_client()
    headers = token_for(client, "gw0")
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # now cached
    token_id = db.query(ApiToken.id).scalar()
    db.remove()
    _revoke_elsewhere(pg_url, token_id)  # the row, as the other process wrote it…
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # (cached: this process can't know)
    redis_conn.incr(token_cache.GENERATION_KEY)  # … and its commit's announcement
    time.sleep(token_cache.REMOTE_CHECK_S + 0.1)
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    db.remove()


@pytest.mark.redis
def test_only_changes_that_decide_a_token_are_announced(world, pg_url, redis_conn, tmp_path):
    from commandcenter.models import Account
    from tests.conftest import TEST_REDIS_URL

    token_cache.remote.paused_until = float("-inf")
    app = create_app(make_settings(tmp_path, pg_url, redis_url=TEST_REDIS_URL))
    with app.app_context():
        account = db.query(Account).filter_by(username="gw0").one()
        account.display_name = "改个名字"  # bookkeeping: the other processes need not drop their caches
        db.commit()
        assert redis_conn.get(token_cache.GENERATION_KEY) is None
        account.active = False
        db.commit()
        assert int(redis_conn.get(token_cache.GENERATION_KEY)) == 1
        db.remove()


def test_cached_tokens_are_read_again_spread_over_the_window_not_all_at_once(monkeypatch):
    """A city's phones fill the cache within a minute of a restart; their entries must not all run out in the
    same minute five minutes later (250 token reads a second at a city's peak): each lives between three
    quarters of the window and all of it, never longer."""
    from types import SimpleNamespace

    from commandcenter import token_cache

    clock = {"now": 1000.0}
    monkeypatch.setattr(token_cache.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(token_cache, "detached_copy", lambda account: account)
    monkeypatch.setattr(token_cache.remote, "check", lambda: None)
    engine_key, max_age = -1, 300.0
    digests = [f"spread-{i}" for i in range(400)]
    try:
        for i, digest in enumerate(digests):
            token = SimpleNamespace(id=i, expires_at=None, last_used_at=None)
            token_cache.store(engine_key, digest, token, SimpleNamespace(id=i), token_cache.generation())

        def alive() -> int:
            return sum(token_cache.lookup(engine_key, d, max_age) is not None for d in digests)

        clock["now"] += max_age * 0.74
        assert alive() == 400  # none before three quarters of the window
        clock["now"] += max_age * 0.135
        assert 100 < alive() < 300  # about half of them by seven eighths
        clock["now"] += max_age * 0.126
        assert alive() == 0  # and none kept past the window
    finally:
        token_cache.clear()
