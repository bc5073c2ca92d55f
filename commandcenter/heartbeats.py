"""Heartbeats off the database hot path (issue 15 §2).

An app check-in goes to Redis only (``counters.apply_heartbeat`` with ``trail`` and ``dirty``): the online
sets, the account's live trail (its recent points: the wall's positions read them) and the set of "dirty"
accounts, those with points not yet in the database. In embedded mode the same code runs against the
in-process stand-in (``jobs.counters_redis()``).

``persist`` (a periodic job: workers/schedule.py, every PERSIST_EVERY_S) writes the newest point of each
account and period as one Heartbeat row, and moves Account.last_seen_at forward, in bulk. Periods are
PRESENCE_PERSIST_SECONDS long and aligned on the clock (12:00:00–12:04:59, …); only ended periods are
written, so an account gets at most one row per period: at most accounts × 86 400 / period rows a day
(15 000 gridworkers, 300 s: 4.32 million at most, about 1.8 million on a 10-hour working day, against
21.6 million with a row per one-minute heartbeat). See docs/counters.md.

If Redis cannot be reached in server mode, a heartbeat takes the path it took before: a row, the account's
last_seen_at and an outbox row, all in one commit; the drain replays the outbox row into Redis when it is
back (online sets and trail, not dirty: its row exists). Nothing is lost either way.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from datetime import UTC, datetime

from flask import current_app
from redis.exceptions import RedisError, WatchError
from sqlalchemy import insert, select

from . import counters
from .counters.presence import _unpoint
from .db import db, move_forward
from .models import Account, Heartbeat, Outbox
from .redis_conn import as_text
from .timeutil import utcnow

log = logging.getLogger(__name__)

PERSIST_EVERY_S = 60  # the job runs this often: a period's rows are written at most this long after it ends
PERSIST_LEASE_KEY = "cc:hb:persist:lease"
PERSIST_LEASE_S = 300  # renewed every chunk: a run that died holds the next one back this long at most
PERSIST_CHUNK = 1000  # accounts written (and committed) at a time
FALLBACK_PAUSE_S = 5.0  # after Redis failed, heartbeats of this process go to the database this long
_paused_until: dict[str, float] = {}  # Redis URL → monotonic time


def _ts(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _naive(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def period_s() -> int:
    return max(1, int(current_app.config["SETTINGS"].presence_persist_seconds))


# --- the request path ------------------------------------------------------------------------------------


def record(account: Account, lat: float | None, lon: float | None, now: datetime | None = None) -> None:
    """A heartbeat of the app (lat/lon validated by the caller): to Redis, or to the database if Redis fails."""
    now = now or utcnow()
    if to_redis(account.id, account.town_id, lat, lon, now):
        return
    db.add(Heartbeat(account_id=account.id, at=now, lat=lat, lon=lon))
    account.last_seen_at = now
    db.add(
        Outbox(
            topic="presence.heartbeat",
            payload={
                "account_id": account.id,
                "town_id": account.town_id,
                "at": now.isoformat(),
                "lat": lat,
                "lon": lon,
            },
        )
    )
    db.commit()


def to_redis(account_id: int, town_id: int | None, lat: float | None, lon: float | None, now: datetime) -> bool:
    """The heartbeat into Redis; False when Redis cannot take it now (the caller writes it to the database).
    Needs an app context; `record` and the heartbeat's lane (api/lane.py) call it."""
    from .jobs import counters_redis

    url = current_app.config["SETTINGS"].redis_url
    if url and time.monotonic() < _paused_until.get(url, 0.0):
        return False  # Redis failed a moment ago: do not wait for its timeout on every heartbeat
    try:
        counters.apply_heartbeat(counters_redis(), account_id, town_id, now, lat, lon, trail=True, dirty=True)
    except (RedisError, OSError) as exc:
        if not url:
            raise  # embedded mode: the in-process stand-in does not fail
        _paused_until[url] = time.monotonic() + FALLBACK_PAUSE_S
        log.warning("heartbeat: Redis unreachable (%s); written to the database instead", exc.__class__.__name__)
        return False
    return True


# --- persisting in batches ---------------------------------------------------------------------------------


def persist(now: datetime | None = None, r=None) -> dict:
    """Write the newest point of each account and ended period as a Heartbeat row; move last_seen_at.

    The dirty accounts with a point in an ended period are *taken* atomically (moved to a processing set
    in one MULTI), so two runs never take the same account. They leave the processing set chunk by chunk,
    after their chunk is committed. A run that dies in between leaves them there: the next run gives them
    back to the dirty set first, and a period that already has a row of the account is skipped, so no point
    is lost and none is written twice. A lease keeps two runs from overlapping at all."""
    from .jobs import counters_redis

    r = r if r is not None else counters_redis()
    period = period_s()
    open_start = math.floor(_ts(now or utcnow()) / period) * period  # the period still running
    token = uuid.uuid4().hex
    if not r.set(PERSIST_LEASE_KEY, token, nx=True, ex=PERSIST_LEASE_S):
        return {"skipped": True, "accounts": 0, "rows": 0}
    try:
        return _persist(r, period, open_start)
    finally:
        _release(r, token)


def _release(r, token: str) -> None:
    with r.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(PERSIST_LEASE_KEY)
            held = pipe.get(PERSIST_LEASE_KEY)
            if held is not None and as_text(held) == token:
                pipe.multi()
                pipe.delete(PERSIST_LEASE_KEY)
                pipe.execute()
        except WatchError:
            pass


def _persist(r, period: int, open_start: float) -> dict:
    dirty, taking = counters.DIRTY_KEY, counters.PERSISTING_KEY
    if r.exists(taking):  # a run died after taking its accounts: give them back (oldest point kept)
        with r.pipeline(transaction=True) as pipe:
            pipe.zunionstore(dirty, [dirty, taking], aggregate="MIN")
            pipe.delete(taking)
            pipe.execute()
    with r.pipeline(transaction=True) as pipe:  # take: one MULTI, so a concurrent heartbeat is before or after
        pipe.zrangestore(taking, dirty, "-inf", f"({open_start}", byscore=True)
        pipe.zremrangebyscore(dirty, "-inf", f"({open_start}")
        pipe.execute()
    taken = [(int(as_text(m)), float(s)) for m, s in r.zrange(taking, 0, -1, withscores=True)]
    accounts = rows = 0
    for start in range(0, len(taken), PERSIST_CHUNK):
        chunk = taken[start : start + PERSIST_CHUNK]
        r.expire(PERSIST_LEASE_KEY, PERSIST_LEASE_S)
        rows += _persist_chunk(r, chunk, period, open_start)
        accounts += len(chunk)
    if taken:
        log.info("heartbeats persisted: %s accounts, %s rows", accounts, rows)
    return {"skipped": False, "accounts": accounts, "rows": rows}


def _persist_chunk(r, chunk: list[tuple[int, float]], period: int, open_start: float) -> int:
    with r.pipeline(transaction=False) as pipe:
        for account_id, since in chunk:
            key = counters.trail_key(account_id)
            pipe.zrangebyscore(key, since, f"({open_start}")
            pipe.zrangebyscore(key, open_start, "+inf", start=0, num=1, withscores=True)
        values = pipe.execute()
    newest: dict[tuple[int, int], tuple[float, float | None, float | None]] = {}  # (account, period) → point
    later: dict[str, float] = {}  # account → its first point in the running period (it stays dirty)
    for i, (account_id, _since) in enumerate(chunk):
        for member in values[2 * i]:
            point = _unpoint(member)
            slot = (account_id, math.floor(point[0] / period))
            if slot not in newest or point[0] > newest[slot][0]:
                newest[slot] = point
        if values[2 * i + 1]:
            later[str(account_id)] = float(values[2 * i + 1][0][1])
    written = 0
    if newest:
        ids = sorted({a for a, _ in newest})
        lowest = min(p for _, p in newest) * period
        # periods that have a row already: a run that died after its commit, or a heartbeat written to the
        # database while Redis failed
        have = {
            (a, math.floor(_ts(at) / period))
            for a, at in db.execute(
                select(Heartbeat.account_id, Heartbeat.at).where(
                    Heartbeat.account_id.in_(ids), Heartbeat.at >= _naive(lowest), Heartbeat.at < _naive(open_start)
                )
            )
        }
        new_rows = [
            {"account_id": a, "at": _naive(ts), "lat": lat, "lon": lon}
            for (a, p), (ts, lat, lon) in sorted(newest.items())
            if (a, p) not in have
        ]
        if new_rows:
            db.execute(insert(Heartbeat.__table__), new_rows)
            written = len(new_rows)
        seen: dict[int, float] = {}
        for (a, _p), (ts, _lat, _lon) in newest.items():
            seen[a] = max(seen.get(a, 0.0), ts)
        # Account.last_seen_at forward to each account's newest persisted point, one statement per chunk
        move_forward(Account.__table__, "last_seen_at", [(a, _naive(ts)) for a, ts in sorted(seen.items())])
        db.commit()
    with r.pipeline(transaction=True) as pipe:
        if later:
            pipe.zadd(counters.DIRTY_KEY, later, lt=True)
        pipe.zrem(counters.PERSISTING_KEY, *[str(a) for a, _ in chunk])
        pipe.execute()
    return written
