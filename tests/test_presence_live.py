"""Heartbeats off the database hot path (issue 15 §2): a heartbeat goes to Redis only; a periodic job writes
one row per account and period (PRESENCE_PERSIST_SECONDS); the figures and positions read the live state
before that; Redis down → the old path (row, last_seen_at, outbox), nothing lost; a persist run repeated,
concurrent or killed half-way writes each sample once."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from commandcenter import counters, create_app, fieldwork, heartbeats, jobs, positions
from commandcenter.db import db
from commandcenter.models import Account, Heartbeat, Outbox
from commandcenter.timeutil import local_today, utcnow
from tests.conftest import TEST_REDIS_URL, make_settings, token_for
from tests.test_case_screens import account

pytestmark = pytest.mark.postgres

P = 300  # settings.presence_persist_seconds (the default)


def closed_period(periods_ago: int = 1) -> datetime:
    """The start of an ended persist period (naive UTC), `periods_ago` periods before the running one."""
    now = utcnow().replace(tzinfo=UTC).timestamp()
    start = (math.floor(now / P) - periods_ago) * P
    return datetime.fromtimestamp(start, UTC).replace(tzinfo=None)


def rows(account_id: int | None = None) -> list[Heartbeat]:
    stmt = select(Heartbeat).order_by(Heartbeat.account_id, Heartbeat.at)
    if account_id is not None:
        stmt = stmt.where(Heartbeat.account_id == account_id)
    return list(db.execute(stmt).scalars())


def heartbeat_outbox() -> int:
    return db.execute(select(func.count()).select_from(Outbox).where(Outbox.topic == "presence.heartbeat")).scalar()


@pytest.fixture
def server(world, pg_url, redis_conn, tmp_path):
    """The app in server mode (real Redis) on the world's database."""
    heartbeats._paused_until.clear()
    application = create_app(make_settings(tmp_path / "server", pg_url, redis_url=TEST_REDIS_URL))
    with application.app_context():
        yield application
        db.remove()


def hundred_beats(worker: Account) -> tuple[datetime, float, float]:
    """100 heartbeats of `worker` inside one ended period, walking east; the newest one's time and place."""
    start = closed_period()
    lat, lon = 31.02, 120.02
    at = start
    for i in range(100):
        at = start + timedelta(seconds=i * 2.9)  # 100 in 287 s: all inside the period
        fieldwork.heartbeat(worker, lat, lon + i / 100_000, now=at)
    return at, lat, lon + 99 / 100_000


def check_hundred_beats_make_one_row() -> None:
    worker = account("gw0")
    newest, lat, lon = hundred_beats(worker)
    r = jobs.counters_redis()
    # nothing in the database yet: no row, no outbox row, last_seen_at unmoved
    assert rows() == [] and heartbeat_outbox() == 0
    db.expire_all()
    assert account("gw0").last_seen_at is None
    # the figures and the position answer already
    assert counters.online_count(r, worker.town_id, newest + timedelta(seconds=10)) == 1
    assert counters.online_accounts(r, None, newest + timedelta(seconds=10)) == [worker.id]
    trail = counters.live_trails(r, [worker.id], newest - timedelta(minutes=10))[worker.id]
    assert trail[0][0] == pytest.approx(newest.replace(tzinfo=UTC).timestamp())
    report = heartbeats.persist()
    assert report["accounts"] == 1 and report["rows"] == 1
    (row,) = rows()
    assert (row.account_id, row.at, row.lat, row.lon) == (worker.id, newest, lat, pytest.approx(lon))
    db.expire_all()
    assert account("gw0").last_seen_at == newest
    assert heartbeats.persist()["rows"] == 0  # a second run: nothing more
    assert len(rows()) == 1 and heartbeat_outbox() == 0


def test_a_hundred_heartbeats_in_a_period_make_one_row_embedded(ctx, world):
    check_hundred_beats_make_one_row()


@pytest.mark.redis
def test_a_hundred_heartbeats_in_a_period_make_one_row_with_redis(server):
    check_hundred_beats_make_one_row()


def test_the_api_heartbeat_writes_nothing_and_the_wall_sees_it_at_once(app, world, client):
    headers = token_for(client, "gw0")
    lat, lon = world.grid_point(0)
    assert client.post("/api/v1/heartbeats", json={"lat": lat, "lon": lon}, headers=headers).status_code == 204
    bad = client.post("/api/v1/heartbeats", json={"lat": 91, "lon": lon}, headers=headers)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "lat"  # validated as before
    with app.app_context():
        assert rows() == [] and heartbeat_outbox() == 0
        gw0 = account("gw0")
        assert counters.online_count(jobs.counters_redis(), gw0.town_id, utcnow()) == 1
        (seen,) = positions.live_positions(account("town0_duty"))
        assert (seen.account_id, seen.state, seen.lat, seen.lon) == (gw0.id, "online", lat, lon)
        # a nearest-dispatch read gets it too, before any row exists
        assert positions._positions(account("town0_duty").place, town_id=gw0.town_id, now=utcnow())[0].lat == lat


def test_reconcile_keeps_online_those_whose_heartbeats_are_not_persisted_yet(ctx, world):
    """reconcile_presence rebuilds the online sets from the rows of the window merged with the live trails:
    rows come one per account and period, so the rows alone would drop people who are online."""
    r = jobs.counters_redis()
    now = utcnow()
    gw0, gw4 = account("gw0"), account("gw4")
    fieldwork.heartbeat(gw0, 31.02, 120.02, now=now - timedelta(minutes=1))
    fieldwork.heartbeat(gw4, None, None, now=now - timedelta(minutes=2))
    db.add(Heartbeat(account_id=account("gw1").id, at=now - timedelta(minutes=3)))  # a row only (history)
    db.add(Heartbeat(account_id=account("gw2").id, at=now - timedelta(minutes=30)))  # offline
    db.commit()
    r.delete(f"cc:online:{gw0.town_id}", "cc:online:all")  # drift: the sets lost
    report = counters.reconcile_presence(r, db, local_today(), local_today(), now)
    assert report["keys_fixed"] >= 1
    assert counters.online_accounts(r, gw0.town_id, now) == sorted([gw0.id, account("gw1").id])
    assert counters.online_accounts(r, gw4.town_id, now) == [gw4.id]
    assert counters.online_count(r, None, now) == 3
    again = counters.reconcile_presence(r, db, local_today(), local_today(), now)
    assert not [d for d in again["drift"] if d[0].startswith("cc:online:")]


def test_a_reconcile_keeps_heartbeats_that_arrive_while_it_reads(ctx, world, monkeypatch):
    """The first wall request on an empty Redis rebuilds the presence sets while heartbeats keep coming: what
    arrives after the reconcile's moment stays (it used to delete and rewrite each set, dropping them until
    their next heartbeat), and only members the database disproves are removed."""
    r = jobs.counters_redis()
    now = utcnow()
    gw0, gw1 = account("gw0"), account("gw1")
    counters.apply_heartbeat(r, 999_999, gw0.town_id, now - timedelta(minutes=1))  # nobody: disproved
    real_read = counters.presence.live_newest

    def read_then_beat(redis):  # gw1's heartbeat lands after the truth is read, before the sets are fixed
        seen = real_read(redis)
        fieldwork.heartbeat(gw1, 31.02, 120.02, now=now + timedelta(seconds=2))
        return seen

    monkeypatch.setattr(counters.presence, "live_newest", read_then_beat)
    counters.reconcile_presence(r, db, local_today(), local_today(), now)
    later = now + timedelta(seconds=3)
    assert gw1.id in counters.online_accounts(r, gw1.town_id, later)
    assert 999_999 not in counters.online_accounts(r, gw0.town_id, later)


@pytest.mark.redis
def test_redis_down_falls_back_to_the_row_and_the_drain_replays_it(world, pg_url, redis_conn, tmp_path):
    heartbeats._paused_until.clear()
    down = create_app(make_settings(tmp_path / "down", pg_url, redis_url="redis://127.0.0.1:1/0"))
    client = down.test_client()
    headers = token_for(client, "gw0")
    lat, lon = world.grid_point(0)
    assert client.post("/api/v1/heartbeats", json={"lat": lat, "lon": lon}, headers=headers).status_code == 204
    assert client.post("/api/v1/heartbeats", json={"lat": lat, "lon": lon}, headers=headers).status_code == 204
    with down.app_context():
        assert len(rows()) == 2 and heartbeat_outbox() == 2  # the second one did not even try Redis (paused)
        assert account("gw0").last_seen_at is not None
        payload = db.execute(select(Outbox.payload).where(Outbox.topic == "presence.heartbeat")).scalars().first()
        assert (payload["lat"], payload["lon"]) == (lat, lon)
        (seen,) = positions.live_positions(account("town0_duty"))  # the wall reads the rows meanwhile
        assert (seen.lat, seen.lon, seen.state) == (lat, lon, "online")
    db.remove()
    heartbeats._paused_until.clear()
    back = create_app(make_settings(tmp_path / "back", pg_url, redis_url=TEST_REDIS_URL))
    with back.app_context():
        jobs.process_outbox()
        r = jobs.counters_redis()
        gw0 = account("gw0")
        assert counters.online_count(r, gw0.town_id, utcnow()) == 1
        assert counters.live_trails(r, [gw0.id], utcnow() - timedelta(minutes=5))[gw0.id][0][1:] == (lat, lon)
        assert r.zcard(counters.DIRTY_KEY) == 0  # its rows exist: nothing to persist
        heartbeats.persist(now=utcnow() + timedelta(seconds=2 * P))
        assert len(rows()) == 2
        (seen,) = positions.live_positions(account("town0_duty"))
        assert (seen.lat, seen.lon, seen.state) == (lat, lon, "online")


@pytest.mark.redis
def test_persist_run_twice_concurrently_or_killed_writes_each_sample_once(server, monkeypatch):
    r = jobs.counters_redis()
    names = ("gw0", "gw1", "gw4")
    workers = [account(n) for n in names]
    earlier, previous, running = closed_period(2), closed_period(1), closed_period(0)
    for worker in workers:
        for base in (earlier, previous, running):
            for k in range(3):
                fieldwork.heartbeat(worker, 31.0 + k / 1000, 120.0, now=base + timedelta(seconds=60 * k + 1))

    # killed before its commit: nothing written, the accounts wait in the processing set and are given back
    real_commit = db.commit
    monkeypatch.setattr(db, "commit", lambda: (_ for _ in ()).throw(RuntimeError("worker killed")))
    now = running + timedelta(seconds=5)  # inside the running period, whatever the clock says meanwhile
    with pytest.raises(RuntimeError):
        heartbeats.persist(now=now)
    monkeypatch.setattr(db, "commit", real_commit)
    db.rollback()
    assert rows() == [] and r.zcard(counters.PERSISTING_KEY) == 3 and r.exists(heartbeats.PERSIST_LEASE_KEY) == 0

    # two runs at once: the lease lets one through; each ended period of each account gets one row
    results: list[dict] = []

    def run() -> None:
        with server.app_context():
            try:
                results.append(heartbeats.persist(now=now))
            finally:
                db.remove()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(x["rows"] for x in results) == 6
    assert heartbeats.persist(now=now)["rows"] == 0  # and once more: nothing
    for worker in workers:
        got = [(row.at, row.lat) for row in rows(worker.id)]
        newest = timedelta(seconds=121)
        assert got == [(earlier + newest, 31.002), (previous + newest, 31.002)]  # the newest of each period
    # the running period is still to be written: its accounts stay dirty, with their first point in it
    assert r.zcard(counters.DIRTY_KEY) == 3
    assert r.zscore(counters.DIRTY_KEY, str(workers[0].id)) == pytest.approx(
        (running + timedelta(seconds=1)).replace(tzinfo=UTC).timestamp()
    )

    # killed after its commit, before it cleaned up: the next run takes them again and writes nothing twice
    for worker in workers:
        r.zadd(counters.PERSISTING_KEY, {str(worker.id): earlier.replace(tzinfo=UTC).timestamp()})
    later = heartbeats.persist(now=running + timedelta(seconds=P + 1))
    assert later["rows"] == 3  # the period that was running, nothing else
    assert all(len(rows(w.id)) == 3 for w in workers)
    assert r.zcard(counters.DIRTY_KEY) == 0 and r.zcard(counters.PERSISTING_KEY) == 0
    db.expire_all()
    assert account("gw0").last_seen_at == running + timedelta(seconds=121)


def test_the_persist_job_is_scheduled_in_both_modes():
    from workers.schedule import SCHEDULE

    assert [(f.__name__, q) for f, q, i in SCHEDULE if f.__name__ == "persist_heartbeats"] == [
        ("persist_heartbeats", "default")
    ]
