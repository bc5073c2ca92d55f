"""Presence: online, attendance, logins and patrol minutes, and their reconciliation."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from ..models import Account, Heartbeat, LoginRecord, Patrol, SignIn
from ..timeutil import day_bounds_utc, local, month_bounds_utc
from .base import (
    DRIFT_LIMIT,
    LOGIN_TTL,
    ONLINE_KEEP_S,
    ONLINE_TTL,
    PRESENCE_TTL,
    _apply_once,
    _begin_snapshot,
    _day_str,
    _month_str,
    _s,
    _scan,
    _snapshot_conn,
    _ts,
    _tz,
)

log = logging.getLogger(__name__)

# --- presence: online, attendance, logins, patrol ------------------------------------------------


def _town(town_id) -> str:
    return "all" if town_id is None else str(town_id)


# The live heartbeats (issue 15 §2). A heartbeat is written to Redis only: the online sets above, the
# account's trail (its recent points, newest wins whatever the order they arrive in) and the "dirty" set of
# accounts with points not yet in the database. `commandcenter.heartbeats.persist` writes the newest point
# of each account and period (PRESENCE_PERSIST_SECONDS) as one Heartbeat row, in batches.
TRAIL_KEEP_S = ONLINE_KEEP_S  # points this much older than the newest one are trimmed
TRAIL_MAX = 120  # and never more than this many points an account
TRAIL_TTL = 2 * 86400  # a trail nobody writes to any more (the last position of the day) goes after 2 days
TRAIL_READ = 30  # newest points read back for a position (its window's points: is he on the move?)
DIRTY_KEY = "cc:hb:dirty"  # account → time of its oldest point not yet in the database
PERSISTING_KEY = "cc:hb:persisting"  # the accounts a persist run has taken (given back if it dies)


def trail_key(account_id: int) -> str:
    return f"cc:hb:trail:{account_id}"


def _point(ts: float, lat: float | None, lon: float | None) -> str:
    return f"{ts:.6f}|{'' if lat is None else repr(float(lat))}|{'' if lon is None else repr(float(lon))}"


def _unpoint(member) -> tuple[float, float | None, float | None]:
    ts, lat, lon = _s(member).split("|")
    return float(ts), (float(lat) if lat else None), (float(lon) if lon else None)


# One heartbeat in one command (issue 15): the pipeline it replaced sent 13 (MULTI, three per online set, four
# for the trail, the dirty mark, EXEC) and packing and parsing them was a quarter of a heartbeat's CPU. A script
# runs atomically, as the MULTI did. KEYS: the online sets (the town's, the city's: one key when they are the
# same), the trail, the dirty set. ARGV: account, score, online cutoff, online TTL, then (when there is a
# trail) point, trail cutoff, trail max, trail TTL, then "1" when dirty.
_HEARTBEAT_LUA = """
local n_online = tonumber(ARGV[1])
local account, ts = ARGV[2], ARGV[3]
for i = 1, n_online do
  redis.call('ZADD', KEYS[i], 'GT', ts, account)
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[4])
  redis.call('EXPIRE', KEYS[i], ARGV[5])
end
local trail = KEYS[n_online + 1]
if trail then
  redis.call('ZADD', trail, ts, ARGV[6])
  redis.call('ZREMRANGEBYSCORE', trail, '-inf', '(' .. ARGV[7])
  redis.call('ZREMRANGEBYRANK', trail, 0, -(tonumber(ARGV[8]) + 1))
  redis.call('EXPIRE', trail, ARGV[9])
  local dirty = KEYS[n_online + 2]
  if dirty then
    redis.call('ZADD', dirty, 'LT', ts, account)
  end
end
return 1
"""
_heartbeat_script = None  # redis-py's Script: EVALSHA on the client given, SCRIPT LOAD and again on NOSCRIPT


def apply_heartbeat(
    r,
    account_id: int,
    town_id: int | None,
    at: datetime | float,
    lat: float | None = None,
    lon: float | None = None,
    *,
    trail: bool = False,
    dirty: bool = False,
) -> None:
    """An app check-in: the account is online from `at` (naive UTC) for the next window. With `trail`, the
    point joins the account's live trail (its position); with `dirty`, it is still to be written to the
    database (a heartbeat that came straight to Redis; one replayed from the outbox has its row already).
    One round trip, atomic (a Lua script)."""
    ts = _ts(at)
    online = list(dict.fromkeys([f"cc:online:{_town(town_id)}", "cc:online:all"]))
    keys = [*online]
    args: list = [len(online), str(account_id), repr(ts), repr(ts - ONLINE_KEEP_S), ONLINE_TTL]
    if trail or dirty:
        keys.append(trail_key(account_id))
        args += [_point(ts, lat, lon), repr(ts - TRAIL_KEEP_S), TRAIL_MAX, TRAIL_TTL]
        if dirty:
            keys.append(DIRTY_KEY)
    global _heartbeat_script
    if _heartbeat_script is None:
        _heartbeat_script = r.register_script(_HEARTBEAT_LUA)
    _heartbeat_script(keys=keys, args=args, client=r)


def live_trails(
    r, account_ids: Iterable[int], since: datetime | float, limit: int = TRAIL_READ
) -> dict[int, list[tuple[float, float | None, float | None]]]:
    """The newest `limit` live points (ts, lat, lon) of each account since `since`, newest first; accounts
    without any are left out."""
    ids = list(account_ids)
    with r.pipeline(transaction=False) as pipe:
        for account_id in ids:
            pipe.zrevrangebyscore(trail_key(account_id), "+inf", _ts(since), start=0, num=limit)
        values = pipe.execute()
    return {a: [_unpoint(m) for m in v] for a, v in zip(ids, values, strict=True) if v}


def live_newest(r) -> dict[int, float]:
    """account → time of its newest live point, for every account with a trail (the reconcile's merge)."""
    keys = _scan(r, "cc:hb:trail:*")
    out: dict[int, float] = {}
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        with r.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.zrevrange(key, 0, 0, withscores=True)
            for key, value in zip(chunk, pipe.execute(), strict=True):
                if value:
                    out[int(key.rsplit(":", 1)[1])] = float(value[0][1])
    return out


def online_count(r, town_id: int | None, now: datetime | float, window_s: int = 300) -> int:
    """Accounts of the town (None = all) with a heartbeat in the last `window_s` seconds (≤ 3600)."""
    ts, key = _ts(now), f"cc:online:{_town(town_id)}"
    with r.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(key, "-inf", f"({ts - ONLINE_KEEP_S}")
        pipe.zcount(key, ts - window_s, "+inf")
        return int(pipe.execute()[1])


def online_accounts(r, town_id: int | None, now: datetime | float, window_s: int = 300) -> list[int]:
    return sorted(int(_s(m)) for m in r.zrangebyscore(f"cc:online:{_town(town_id)}", _ts(now) - window_s, "+inf"))


def apply_sign_in(r, account_id: int, town_id: int | None, day: date) -> bool:
    """签到 on a local day. True if it is the account's first sign-in of that day."""
    d = _day_str(day)
    with r.pipeline(transaction=True) as pipe:
        for key in dict.fromkeys((f"cc:att:{d}:{_town(town_id)}", f"cc:att:{d}:all")):
            pipe.sadd(key, str(account_id))
            pipe.expire(key, PRESENCE_TTL)
        return bool(pipe.execute()[0])


def attendance_count(r, day: date, town_id: int | None = None) -> int:
    return int(r.scard(f"cc:att:{_day_str(day)}:{_town(town_id)}"))


def apply_login(r, account_id: int, town_id: int | None, month: str | date, is_center_admin: bool) -> bool:
    """A successful login. Only center_admin accounts are measured (domain §3); others are ignored."""
    if not is_center_admin:
        return False
    m = _month_str(month)
    with r.pipeline(transaction=True) as pipe:
        for key in dict.fromkeys((f"cc:login:{m}:{_town(town_id)}", f"cc:login:{m}:all")):
            pipe.sadd(key, str(account_id))
            pipe.expire(key, LOGIN_TTL)
        return bool(pipe.execute()[0])


def logged_in_count(r, month: str | date, town_id: int | None = None) -> int:
    return int(r.scard(f"cc:login:{_month_str(month)}:{_town(town_id)}"))


def login_rate(r, month: str | date, town_id: int | None, admin_total: int) -> float | None:
    """Admin accounts of the town that logged in during the month / `admin_total` (a ratio: 0.5 = 50%).
    None when the town has no admin account."""
    if not admin_total:
        return None
    return logged_in_count(r, month, town_id) / admin_total


def _patrol_pieces(started_at: datetime, ended_at: datetime, tz: str) -> list[tuple[str, float]]:
    """Minutes of a patrol on each local day it touches, rounded to 0.01."""
    pieces, t = [], started_at
    while t < ended_at:
        day = local(t, tz).date()
        _, day_end = day_bounds_utc(day, tz)
        end = min(ended_at, day_end)
        pieces.append((day.strftime("%Y%m%d"), round((end - t).total_seconds() / 60, 2)))
        t = end
    return pieces


def apply_patrol(
    r,
    account_id: int,
    town_id: int | None,
    started_at: datetime,
    ended_at: datetime,
    patrol_id: int | None = None,
    tz: str | None = None,
) -> bool:
    """Add a finished patrol's minutes to the days it covers. With `patrol_id`, counted once only."""
    pieces = _patrol_pieces(started_at, ended_at, _tz(tz)) if ended_at and ended_at > started_at else []

    def queue(pipe) -> None:
        for d, minutes in pieces:
            for key in {f"cc:patrol:{d}:{_town(town_id)}", f"cc:patrol:{d}:all"}:
                pipe.hincrbyfloat(key, str(account_id), minutes)
                pipe.expire(key, PRESENCE_TTL)

    if patrol_id is not None:
        return _apply_once(r, f"cc:done:patrol:{patrol_id}", queue)
    with r.pipeline(transaction=True) as pipe:
        queue(pipe)
        pipe.execute()
    return True


def patrol_minutes(r, day: date, town_id: int | None = None) -> dict[int, float]:
    raw = r.hgetall(f"cc:patrol:{_day_str(day)}:{_town(town_id)}")
    return {int(_s(k)): float(_s(v)) for k, v in raw.items()}


def patrol_compliance(
    r, town_id: int | None, worker_ids: Iterable[int], workdays: Iterable[date], min_minutes: float = 60
) -> dict:
    """Gridworkers who patrolled ≥ `min_minutes` on every one of `workdays` (e.g. the month's workdays
    so far, from workcalendar.workdays_in_month) → {"compliant", "total", "rate"}."""
    workers = [str(w) for w in worker_ids]
    days = list(workdays)
    if not workers:
        return {"compliant": 0, "total": 0, "rate": None}
    ok = set(workers)
    if days:
        with r.pipeline(transaction=False) as pipe:
            for d in days:
                pipe.hmget(f"cc:patrol:{_day_str(d)}:{_town(town_id)}", workers)
            for values in pipe.execute():
                for w, v in zip(workers, values, strict=True):
                    if v is None or float(_s(v)) < min_minutes - 1e-9:
                        ok.discard(w)
    return {"compliant": len(ok), "total": len(workers), "rate": len(ok) / len(workers)}


def presence_many(
    r, town_ids: Iterable[int | None], now: datetime, day: date, month: str | date, window_s: int = 300
) -> dict[int | None, dict[str, int]]:
    """Online, signed-in and logged-in (admin) counts of many towns (None = all) in one round trip."""
    ids, ts, d, m = list(town_ids), _ts(now), _day_str(day), _month_str(month)
    with r.pipeline(transaction=False) as pipe:
        for t in ids:
            pipe.zcount(f"cc:online:{_town(t)}", ts - window_s, "+inf")
            pipe.scard(f"cc:att:{d}:{_town(t)}")
            pipe.scard(f"cc:login:{m}:{_town(t)}")
        values = pipe.execute()
    return {
        t: {"online": int(values[3 * i]), "attended": int(values[3 * i + 1]), "logged_in": int(values[3 * i + 2])}
        for i, t in enumerate(ids)
    }


# --- reconciliation: presence --------------------------------------------------------------------


def reconcile_presence(
    r, session, day: date, month: str | date, now: datetime, tz: str | None = None, window_s: int = 300
) -> dict:
    """Rebuild online (heartbeats in the last `window_s` s before `now`: the rows merged with the live
    trails, see below), attendance (sign-ins of `day`),
    admin logins (successful center_admin logins of `month`) and patrol minutes of `day` from the
    database; overwrite what differs and report it like `reconcile`. Set keys report
    (key, "members", cached count, true count); patrol keys (key, account_id, cached, true)."""
    tz = _tz(tz)
    d, m = _day_str(day), _month_str(month)
    now_ts = _ts(now)
    online: dict[str, dict[str, float]] = defaultdict(dict)
    attendance: dict[str, set[str]] = defaultdict(set)
    logins: dict[str, set[str]] = defaultdict(set)
    patrol: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with _snapshot_conn(session) as conn, conn.begin():
        _begin_snapshot(conn)
        for account_id, town_id, last in conn.execute(
            select(Heartbeat.account_id, Account.town_id, func.max(Heartbeat.at))
            .join(Account, Account.id == Heartbeat.account_id)
            .where(Heartbeat.at >= now - timedelta(seconds=window_s), Heartbeat.at <= now)
            .group_by(Heartbeat.account_id, Account.town_id)
        ):
            for t in {_town(town_id), "all"}:
                online[f"cc:online:{t}"][str(account_id)] = _ts(last)
        # Heartbeats reach the database in batches, one row per account and PRESENCE_PERSIST_SECONDS: the
        # rows of the window miss the newest heartbeats. Those are in the live trails (written in the same
        # transaction as the online sets), so the truth is the rows merged with the trails, newest wins.
        live = {a: ts for a, ts in live_newest(r).items() if now_ts - window_s <= ts <= now_ts}
        ids = sorted(live)
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            for account_id, town_id in conn.execute(select(Account.id, Account.town_id).where(Account.id.in_(chunk))):
                for t in {_town(town_id), "all"}:
                    member = online[f"cc:online:{t}"]
                    member[str(account_id)] = max(member.get(str(account_id), 0.0), live[account_id])
        for account_id, town_id in conn.execute(select(SignIn.account_id, SignIn.town_id).where(SignIn.day == day)):
            for t in {_town(town_id), "all"}:
                attendance[f"cc:att:{d}:{t}"].add(str(account_id))
        m_start, m_end = month_bounds_utc(int(m[:4]), int(m[4:]), tz)
        for account_id, town_id in conn.execute(
            select(LoginRecord.account_id, Account.town_id)
            .distinct()
            .join(Account, Account.id == LoginRecord.account_id)
            .where(
                LoginRecord.success.is_(True),
                Account.role == "center_admin",
                LoginRecord.at >= m_start,
                LoginRecord.at < m_end,
            )
        ):
            for t in {_town(town_id), "all"}:
                logins[f"cc:login:{m}:{t}"].add(str(account_id))
        d_start, d_end = day_bounds_utc(day, tz)
        for account_id, town_id, started, ended in conn.execute(
            select(Patrol.gridworker_id, Patrol.town_id, Patrol.started_at, Patrol.ended_at)
            .where(Patrol.ended_at.is_not(None), Patrol.started_at < d_end, Patrol.ended_at > d_start)
            .order_by(Patrol.id)
        ):
            for pd, minutes in _patrol_pieces(started, ended, tz):
                if pd == d:
                    for t in {_town(town_id), "all"}:
                        patrol[f"cc:patrol:{d}:{t}"][str(account_id)] += minutes

    drift: list[tuple] = []
    checked = fixed = 0

    def note(items) -> None:
        drift.extend(items[: max(0, DRIFT_LIMIT - len(drift))])

    online_keys = sorted(set(online) | set(_scan(r, "cc:online:*")))
    att_keys = sorted(set(attendance) | set(_scan(r, f"cc:att:{d}:*")))
    login_keys = sorted(set(logins) | set(_scan(r, f"cc:login:{m}:*")))
    patrol_keys = sorted(set(patrol) | set(_scan(r, f"cc:patrol:{d}:*")))
    with r.pipeline(transaction=False) as pipe:
        for key in online_keys:
            pipe.zrangebyscore(key, now_ts - window_s, "+inf", withscores=True)
        for key in att_keys + login_keys:
            pipe.smembers(key)
        for key in patrol_keys:
            pipe.hgetall(key)
        cached = iter(pipe.execute())
    with r.pipeline(transaction=True) as pipe:
        for key in online_keys:
            # members whose heartbeat came after `now` are left alone: they arrived while we read (a
            # delete-and-rewrite here used to drop them until their next heartbeat)
            have = {_s(x): float(score) for x, score in next(cached) if float(score) <= now_ts}
            want = online.get(key, {})
            checked += 1
            if set(have) != set(want):
                fixed += 1
                note([(key, "members", len(have), len(want))])
                stale = [m for m in have if m not in want]
                if stale:
                    pipe.zrem(key, *stale)
                if want:
                    pipe.zadd(key, want, gt=True)
                    pipe.expire(key, ONLINE_TTL)
        for keys, truth, ttl in ((att_keys, attendance, PRESENCE_TTL), (login_keys, logins, LOGIN_TTL)):
            for key in keys:
                have, want = {_s(x) for x in next(cached)}, truth.get(key, set())
                checked += 1
                if have != want:
                    fixed += 1
                    note([(key, "members", len(have), len(want))])
                    if have - want:  # only the wrong members: a sign-in arriving meanwhile stays
                        pipe.srem(key, *sorted(have - want))
                    if want:
                        pipe.sadd(key, *sorted(want))
                        pipe.expire(key, ttl)
        for key in patrol_keys:
            have = {_s(k): float(_s(v)) for k, v in next(cached).items()}
            want = {a: round(v, 2) for a, v in patrol.get(key, {}).items()}
            checked += 1
            diffs = [
                (key, a, have.get(a, 0.0), want.get(a, 0.0))
                for a in sorted(set(have) | set(want))
                if abs(have.get(a, 0.0) - want.get(a, 0.0)) > 0.005
            ]
            if diffs:
                fixed += 1
                note(diffs)
                pipe.delete(key)
                if want:
                    pipe.hset(key, mapping=want)
                    pipe.expire(key, PRESENCE_TTL)
        pipe.execute()
    return {"keys_checked": checked, "keys_fixed": fixed, "drift": drift}
