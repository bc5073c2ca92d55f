"""Live counters: the figures the wall display and the dashboards read, kept in Redis.

Redis holds a *cache*: everything here can be rebuilt from PostgreSQL (`reconcile`, `reconcile_presence`),
and nothing is stored only here. What each counter counts, the keys, how an event is counted exactly once
and how a reconcile runs beside live traffic are written down in docs/counters.md.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from redis.exceptions import WatchError
from sqlalchemy import case, func, literal_column, select

from . import hierarchy
from .models import Account, Case, CaseStep, Heartbeat, LoginRecord, Outbox, Patrol, SignIn
from .redis_conn import as_text
from .timeutil import current_tz, day_bounds_utc, local, month_bounds_utc, utcnow

log = logging.getLogger(__name__)

TOPIC = "case.changed"
DAY_TTL = 40 * 86400
MONTH_TTL = 400 * 86400
DONE_TTL = 7 * 86400
ONLINE_TTL = 86400  # an online set nobody writes to any more disappears after a day
ONLINE_KEEP_S = 3600  # heartbeats older than this are trimmed (the largest useful window)
PRESENCE_TTL = DAY_TTL  # attendance and patrol sets of a day
LOGIN_TTL = MONTH_TTL
DRAINERS_KEY = "cc:drainers"
RECONCILE_KEY = "cc:reconcile"
# A drain registers itself only for its short critical part (read rows, apply counters), so a drain
# that died is forgotten soon. A reconcile holds its flag with a lease it renews every third of it from
# a thread, so a reconcile that died (worker killed, Redis lost mid-way) holds the drains back for at
# most RECONCILE_LEASE_S, never for minutes.
DRAIN_LEASE_S = 30
RECONCILE_LEASE_S = 30
DRIFT_LIMIT = 50

KINDS = ("ordinary", "hazard", "dispute")
FIELDS = (
    "reported",
    "reported:ordinary",
    "reported:hazard",
    "reported:dispute",
    "registered",
    "dispatched",
    "reworked",
    "closed",
    "rejected",
    "duplicate",
    "overdue",
    "escalated:town",
    "escalated:city",
)
# action → fields (report and escalate depend on the kind / the level and are handled in fields_of)
ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "register": ("registered",),
    "dispatch": ("dispatched",),
    "rework": ("reworked",),
    "close": ("closed",),
    "self_close": ("closed",),
    "reject": ("rejected",),
    "auto_reject": ("rejected",),
    "duplicate": ("duplicate",),
    "overdue": ("overdue",),
}
COUNTED_ACTIONS = ("report", "escalate", *ACTION_FIELDS)
ESCALATION_FIELDS = {"town": "escalated:town", "city": "escalated:city"}


# --- small helpers -------------------------------------------------------------------------------


def _tz(tz: str | None) -> str:
    return tz or current_tz()


_s = as_text


def _day_str(day: date | str) -> str:
    if isinstance(day, datetime):
        raise TypeError("pass a local date, not a datetime")
    if isinstance(day, date):
        return day.strftime("%Y%m%d")
    text = str(day).replace("-", "")
    if not re.fullmatch(r"\d{8}", text):
        raise ValueError(f"not a day: {day!r}")
    return text


def _month_str(month: date | str) -> str:
    if isinstance(month, datetime):
        raise TypeError("pass a month as 'YYYYMM' or a local date, not a datetime")
    if isinstance(month, date):
        return month.strftime("%Y%m")
    text = str(month).replace("-", "")
    if not re.fullmatch(r"\d{6}", text):
        raise ValueError(f"not a month: {month!r}")
    return text


def _ts(at: datetime | float | int) -> float:
    if isinstance(at, datetime):
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return float(at)


def _parse_at(value) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def day_key(day: date | str, place_id: int | str) -> str:
    return f"cc:c:d:{_day_str(day)}:{place_id}"


def month_key(month: date | str, place_id: int | str) -> str:
    return f"cc:c:m:{_month_str(month)}:{place_id}"


def _place_ids(grid_id, village_id, town_id, city_id) -> list[int]:
    out: list[int] = []
    for pid in (grid_id, village_id, town_id, city_id):
        if pid is not None and pid not in out:
            out.append(pid)
    return out


def fields_of(action: str, kind: str | None, level: str | None) -> tuple[str, ...]:
    """The counter fields one step moves (see the table in the module docstring)."""
    if action == "report":
        return ("reported", f"reported:{kind}") if kind in KINDS else ("reported",)
    if action == "escalate":
        field = ESCALATION_FIELDS.get(level or "")
        return (field,) if field else ()
    return ACTION_FIELDS.get(action, ())


def _increments(payload: dict, city_id: int | None, tz: str) -> list[tuple[str, int, tuple[str, ...]]]:
    """(key, ttl, fields) to add 1 to, for one case.changed payload."""
    fields = fields_of(payload["action"], payload.get("kind"), payload.get("level"))
    if not fields:
        return []
    at_local = local(_parse_at(payload["at"]), tz)
    d, m = at_local.strftime("%Y%m%d"), at_local.strftime("%Y%m")
    out = []
    for pid in _place_ids(payload.get("grid_id"), payload.get("village_id"), payload.get("town_id"), city_id):
        out.append((f"cc:c:d:{d}:{pid}", DAY_TTL, fields))
        out.append((f"cc:c:m:{m}:{pid}", MONTH_TTL, fields))
    return out


def _apply_once(r, marker: str, queue: Callable) -> bool:
    """Run `queue(pipe)`'s commands in one MULTI together with SET marker, unless the marker exists."""
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(marker)
                if pipe.exists(marker):
                    pipe.reset()
                    return False
                pipe.multi()
                pipe.set(marker, 1, ex=DONE_TTL)
                queue(pipe)
                pipe.execute()
                return True
            except WatchError:  # someone applied it (or touched the marker) meanwhile: look again
                continue


# --- case counters: writing ----------------------------------------------------------------------

# Keys this process has given a TTL: a hint that saves an EXPIRE per write. It is only trusted while
# cc:epoch keeps the value this process last saw, so a FLUSHALL or a restarted Redis resets it.
EPOCH_KEY = "cc:epoch"
_ttl_given: dict = {"epoch": None, "keys": set()}
_TTL_KEYS_MAX = 100_000


def _apply_batch(r, items: list[tuple[int, list[tuple[str, int, tuple[str, ...]]]]]) -> list[bool]:
    """Apply (outbox_id, increments) pairs exactly once each, in one WATCH/MULTI/EXEC.

    Increments of the batch are summed per (key, field), so a batch costs three round trips whatever
    its size. Each key gets its TTL in the same MULTI the first time this process writes it (the
    process remembers which keys it has given one); `reconcile` gives a TTL back to any key found
    without one (e.g. recreated after a FLUSHALL). Events that move no counter (accept, feedback...)
    need no marker and cost nothing."""
    items = [(oid, incs) for oid, incs in items if incs]
    if not items:
        return []
    markers = list(dict.fromkeys(f"cc:done:{oid}" for oid, _ in items))
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(*markers)
                *values, epoch = pipe.mget([*markers, EPOCH_KEY])
                epoch = None if epoch is None else _s(epoch)
                new_epoch = uuid.uuid4().hex if epoch is None else None
                if epoch != _ttl_given["epoch"] or len(_ttl_given["keys"]) > _TTL_KEYS_MAX:
                    _ttl_given["keys"] = set()
                done = {m for m, v in zip(markers, values, strict=True) if v is not None}
                flags, totals, ttls = [], defaultdict(int), {}
                for oid, incs in items:
                    marker = f"cc:done:{oid}"
                    if marker in done:
                        flags.append(False)
                        continue
                    done.add(marker)
                    flags.append(True)
                    for key, ttl, fields in incs:
                        ttls[key] = ttl
                        for field in fields:
                            totals[(key, field)] += 1
                if not totals:
                    pipe.reset()
                    return flags
                pipe.multi()
                if new_epoch:
                    pipe.set(EPOCH_KEY, new_epoch, nx=True)
                for (oid, _), new in zip(items, flags, strict=True):
                    if new:
                        pipe.set(f"cc:done:{oid}", 1, ex=DONE_TTL)
                for (key, field), n in totals.items():
                    pipe.hincrby(key, field, n)
                known = _ttl_given["keys"]
                fresh_keys = [key for key in ttls if key not in known]
                for key in fresh_keys:
                    pipe.expire(key, ttls[key])
                results = pipe.execute()
                break
            except WatchError:  # one of the markers was touched meanwhile: read them again
                continue
    if new_epoch:
        # ours if our SET NX won; else another process set one first and we trust nothing until we read it
        _ttl_given["epoch"] = new_epoch if results[0] else None
        _ttl_given["keys"] = set()
    else:
        _ttl_given["epoch"] = epoch
    if _ttl_given["epoch"] is not None:
        _ttl_given["keys"].update(fresh_keys)
    return flags


def apply_case_event(r, outbox_id: int, payload: dict, city_id: int | None, tz: str | None = None) -> bool:
    """Count one case.changed outbox row. False if it had been counted before (its done marker exists),
    True otherwise; an event that moves no counter (accept, feedback...) is True and touches nothing."""
    flags = _apply_batch(r, [(outbox_id, _increments(payload, city_id, _tz(tz)))])
    return flags[0] if flags else True


def apply_case_events(r, events: Iterable[tuple[int, dict]], city_id: int | None, tz: str | None = None) -> list[bool]:
    """apply_case_event for many (outbox_id, payload) pairs in one transaction (what the drain uses).
    Each event still counts exactly once; the flags say which were applied now (see apply_case_event)."""
    tz = _tz(tz)
    items = [(oid, _increments(payload, city_id, tz)) for oid, payload in events]
    flags = iter(_apply_batch(r, items))
    return [next(flags) if incs else True for _oid, incs in items]


# --- case counters: reading ----------------------------------------------------------------------


def _counts_key(place_id, day, month, tz) -> str:
    if day is not None and month is not None:
        raise ValueError("give a day or a month, not both")
    if month is not None:
        return month_key(month, place_id)
    return day_key(day if day is not None else local(utcnow(), _tz(tz)).date(), place_id)


def _as_counts(raw: dict) -> dict[str, int]:
    counts = dict.fromkeys(FIELDS, 0)
    for field, value in raw.items():
        counts[_s(field)] = int(_s(value))
    return counts


def case_counts(
    r, place_id: int, day: date | None = None, month: str | date | None = None, tz: str | None = None
) -> dict[str, int]:
    """Every field of one place for a local day (default: today) or a month ("YYYYMM"); missing = 0."""
    return _as_counts(r.hgetall(_counts_key(place_id, day, month, tz)))


def case_counts_many(
    r, place_ids: Iterable[int], day: date | None = None, month: str | date | None = None, tz: str | None = None
) -> dict[int, dict[str, int]]:
    """case_counts of many places in one round trip (the wall reads all towns at once)."""
    ids = list(place_ids)
    with r.pipeline(transaction=False) as pipe:
        for pid in ids:
            pipe.hgetall(_counts_key(pid, day, month, tz))
        raws = pipe.execute()
    return {pid: _as_counts(raw) for pid, raw in zip(ids, raws, strict=True)}


# --- the drain -----------------------------------------------------------------------------------


def _register_drainer(r) -> str | None:
    token = uuid.uuid4().hex
    r.zadd(DRAINERS_KEY, {token: time.time() + DRAIN_LEASE_S})
    if r.exists(RECONCILE_KEY):  # a reconcile is rewriting the counters: leave the rows for the next round
        r.zrem(DRAINERS_KEY, token)
        return None
    return token


def drain_outbox(
    r,
    session,
    city_id: int | None = None,
    limit: int = 500,
    on_event: Callable[[Outbox], None] | None = None,
    tz: str | None = None,
) -> int:
    """Apply up to `limit` unprocessed case.changed outbox rows, in id order, then mark them processed.

    On PostgreSQL the rows are taken FOR UPDATE SKIP LOCKED, so concurrent drains share the work
    without taking the same rows. `on_event(row)` runs for each row after its counters are applied
    and before it is marked processed (alert scheduling, pushes), inside the drain's transaction; an
    Exception there is logged and does not hold the counters back, while a BaseException (e.g.
    KeyboardInterrupt) rolls the batch back to be taken again later. If Redis fails, the session is
    rolled back and the error raised. Either way the rows stay unprocessed and the events already
    applied are not counted twice when they are taken again.
    Returns the number of rows taken (0 while a reconcile runs).
    """
    tz = _tz(tz)
    token = _register_drainer(r)
    if token is None:
        return 0
    try:
        stmt = (
            select(Outbox)
            .where(Outbox.topic == TOPIC, Outbox.processed_at.is_(None))
            .order_by(Outbox.id)
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = session.execute(stmt).scalars().all()
        items = []
        city_of = _city_resolver(session, city_id) if rows else None
        for row in rows:
            payload = row.payload or {}
            cid = city_of(payload.get("town_id"))
            try:
                items.append((row.id, _increments(payload, cid, tz)))
            except (KeyError, ValueError, TypeError, AttributeError):  # can never count: don't block the rest
                log.exception(
                    "outbox row %s has a malformed payload; skipped (reconcile counts from the steps)", row.id
                )
        _apply_batch(r, items)
        # the counters are applied and marked done: a reconcile may start now (what follows moves no counter)
        _forget_drainer(r, token)
        token = None
        for row in rows:
            if on_event is not None:
                try:
                    on_event(row)
                except Exception:
                    log.exception("on_event failed for outbox row %s", row.id)
            row.processed_at = utcnow()
            row.attempts = (row.attempts or 0) + 1
        session.commit()
        return len(rows)
    except BaseException:
        session.rollback()
        raise
    finally:
        if token is not None:
            _forget_drainer(r, token)


def _forget_drainer(r, token: str) -> None:
    try:
        r.zrem(DRAINERS_KEY, token)
    except Exception:  # Redis gone: the lease runs out by itself
        log.warning("could not unregister drain %s; its lease runs out in %d s", token, DRAIN_LEASE_S)


# --- reconciliation: case counters ---------------------------------------------------------------


def _if_ours(r, key: str, token: str, act: Callable) -> bool:
    """Run `act(pipe)` in a MULTI only if `key` still holds our `token` (compare-and-act with WATCH, so
    no Lua is needed and fakeredis works). False when the key is gone, someone else's, or changed."""
    with r.pipeline() as pipe:
        try:
            pipe.watch(key)
            value = pipe.get(key)
            if value is None or _s(value) != token:
                pipe.reset()
                return False
            pipe.multi()
            act(pipe)
            pipe.execute()
            return True
        except WatchError:
            return False


def _release(r, key: str, token: str) -> None:
    _if_ours(r, key, token, lambda pipe: pipe.delete(key))


def _renew(r, key: str, token: str, lease_s: float) -> bool:
    """Extend the lease on `key` if it is still ours."""
    return _if_ours(r, key, token, lambda pipe: pipe.pexpire(key, int(lease_s * 1000)))


class _LeaseKeeper:
    """Renews a lease every third of its length from a daemon thread while a long job holds it."""

    def __init__(self, r, key: str, token: str, lease_s: float):
        import threading

        self.r, self.key, self.token, self.lease_s = r, key, token, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"lease {key}")

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not _renew(self.r, self.key, self.token, self.lease_s):
                    log.warning("lease %s was lost", self.key)
                    return
            except Exception as exc:  # Redis down: the job itself fails on its next call
                log.warning("could not renew lease %s (%s)", self.key, exc.__class__.__name__)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def _pause_drains(r, wait_s: float) -> str:
    """Take the reconcile flag and wait until the drains that were running have finished."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    while not r.set(RECONCILE_KEY, token, nx=True, px=int(RECONCILE_LEASE_S * 1000)):
        if time.monotonic() > deadline:
            raise TimeoutError("another reconcile is running")
        time.sleep(0.05)
    while True:
        r.zremrangebyscore(DRAINERS_KEY, "-inf", time.time())  # drains that died
        if not r.zcard(DRAINERS_KEY):
            return token
        if time.monotonic() > deadline:
            _release(r, RECONCILE_KEY, token)
            raise TimeoutError("drains did not finish in time")
        time.sleep(0.02)


def _utc_offset_constant(tz: str, start: datetime, end: datetime) -> timedelta | None:
    """The zone's offset if it is the same all through [start, end) (checked every 6 hours)."""
    zone, offsets, t = ZoneInfo(tz), set(), start
    while t <= end:
        offsets.add(t.replace(tzinfo=UTC).astimezone(zone).utcoffset())
        t += timedelta(hours=6)
    return offsets.pop() if len(offsets) == 1 else None


def _quoted(value: str):
    if not re.fullmatch(r"[A-Za-z0-9_/+\-%: ]+", value):
        raise ValueError(f"unexpected literal {value!r}")
    return literal_column(f"'{value}'")


def _local_day_expr(dialect: str, tz: str, start: datetime, end: datetime):
    """(SQL expression, converter to 'YYYYMMDD') for the local day of CaseStep.at.

    Literals, not bound parameters, so that GROUP BY repeats exactly the selected expression."""
    ZoneInfo(tz)  # refuse unknown zones before they reach SQL
    if dialect == "postgresql":
        expr = func.to_char(func.timezone(_quoted(tz), func.timezone(_quoted("UTC"), CaseStep.at)), _quoted("YYYYMMDD"))
        return expr, str
    offset = _utc_offset_constant(tz, start, end)
    if dialect == "sqlite" and offset is not None:
        minutes = int(offset.total_seconds() // 60)
        return func.strftime(_quoted("%Y%m%d"), CaseStep.at, _quoted(f"{minutes:+d} minutes")), str
    if dialect == "sqlite":  # offset changes inside the range: group by UTC minute, convert here
        return (
            func.strftime(_quoted("%Y-%m-%d %H:%M"), CaseStep.at),
            lambda v: local(datetime.strptime(v, "%Y-%m-%d %H:%M"), tz).strftime("%Y%m%d"),
        )
    raise NotImplementedError(f"reconcile supports PostgreSQL and SQLite, not {dialect}")


def _days(day_from: date, day_to: date) -> list[date]:
    return [day_from + timedelta(days=i) for i in range((day_to - day_from).days + 1)]


def _begin_snapshot(conn) -> None:
    """pysqlite opens a transaction only before a write: start one so that both reads share a snapshot."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")


def _snapshot_conn(session):
    """A connection of its own reading one snapshot (REPEATABLE READ on PostgreSQL)."""
    bind = session.get_bind()
    engine = getattr(bind, "engine", bind)
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def _city_resolver(conn, city_id: int | None) -> Callable[[int | None], int | None]:
    """The city counted for a case of a town: `city_id` when given, else the installation's one city
    (hierarchy.city_id). A case with no town (no grid) counts at no city."""
    if city_id is not None:
        return lambda _town_id: city_id
    city = hierarchy.city_id(conn)
    return lambda town_id: city if town_id is not None else None


def true_case_counts(
    conn, day_from: date, day_to: date, city_id: int | None, tz: str
) -> tuple[dict[str, dict[str, int]], list[str], list[str]]:
    """What the counters of [day_from, day_to] (days) and of the whole months they touch should hold,
    from the committed history steps. Returns (key → field → count, day strings, month strings)."""
    days = [d.strftime("%Y%m%d") for d in _days(day_from, day_to)]
    months = sorted({d[:6] for d in days})
    start, _ = month_bounds_utc(int(months[0][:4]), int(months[0][4:]), tz)
    _, end = month_bounds_utc(int(months[-1][:4]), int(months[-1][4:]), tz)
    day_expr, to_day = _local_day_expr(conn.dialect.name, tz, start, end)
    escalate = _quoted("escalate")
    report = _quoted("report")
    level = case((CaseStep.action == escalate, CaseStep.to_level), else_=None)
    kind = case((CaseStep.action == report, Case.kind), else_=None)
    stmt = (
        select(Case.grid_id, Case.village_id, Case.town_id, kind, CaseStep.action, level, day_expr, func.count())
        .select_from(CaseStep)
        .join(Case, Case.id == CaseStep.case_id)
        .where(CaseStep.at >= start, CaseStep.at < end, CaseStep.action.in_(COUNTED_ACTIONS))
        .group_by(Case.grid_id, Case.village_id, Case.town_id, kind, CaseStep.action, level, day_expr)
    )
    wanted_days = set(days)
    city_of = _city_resolver(conn, city_id)
    truth: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for grid_id, village_id, town_id, k, action, lvl, d, n in conn.execute(stmt):
        fields = fields_of(action, k, lvl)
        if not fields:
            continue
        d = to_day(d)
        for pid in _place_ids(grid_id, village_id, town_id, city_of(town_id)):
            targets = [truth[f"cc:c:m:{d[:6]}:{pid}"]]
            if d in wanted_days:
                targets.append(truth[f"cc:c:d:{d}:{pid}"])
            for target in targets:
                for field in fields:
                    target[field] += n
    return truth, days, months


def _pending_increments(r, conn, city_id, tz) -> tuple[list[tuple[str, int, tuple[str, ...]]], int]:
    """Increments of committed outbox rows that no drain has applied yet (no done marker), and how
    many such rows there are."""
    rows = conn.execute(
        select(Outbox.id, Outbox.payload)
        .where(Outbox.topic == TOPIC, Outbox.processed_at.is_(None))
        .order_by(Outbox.id)
    ).all()
    if not rows:
        return [], 0
    with r.pipeline(transaction=False) as pipe:
        for oid, _ in rows:
            pipe.exists(f"cc:done:{oid}")
        applied = pipe.execute()
    out, n = [], 0
    city_of = _city_resolver(conn, city_id)
    for (_oid, payload), done in zip(rows, applied, strict=True):
        if not done:
            n += 1
            try:
                out.extend(_increments(payload or {}, city_of((payload or {}).get("town_id")), tz))
            except (KeyError, ValueError, TypeError, AttributeError):
                pass  # the drain skips it too
    return out, n


def _scan(r, pattern: str) -> list[str]:
    return [_s(k) for k in r.scan_iter(match=pattern, count=1000)]


def _chunks(items: list, n: int = 1000):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def reconcile(
    r, session, day_from: date, day_to: date, city_id: int | None, tz: str | None = None, wait_s: float = 60.0
) -> dict:
    """Recompute the case counters of the local days [day_from, day_to] and of the whole months they
    touch from PostgreSQL (or SQLite), overwrite the keys that differ, and report the drift.

    Returns {"keys_checked", "keys_fixed", "drift": [(key, field, cached, true), ... ≤ 50],
    "days", "months", "pending", "ttl_fixed"}; `pending` counts committed events not applied yet (left
    to the drain, not written here); `ttl_fixed` counts right keys that had lost their TTL. Drains pause
    while it runs (it waits up to `wait_s` for running ones, else raises TimeoutError).
    """
    tz = _tz(tz)
    if day_to < day_from:
        raise ValueError("day_to is before day_from")
    token = _pause_drains(r, wait_s)
    try:
        with _LeaseKeeper(r, RECONCILE_KEY, token, RECONCILE_LEASE_S):
            return _reconcile_paused(r, session, day_from, day_to, city_id, tz)
    finally:
        _release(r, RECONCILE_KEY, token)


def _reconcile_paused(r, session, day_from: date, day_to: date, city_id: int | None, tz: str) -> dict:
    """The body of `reconcile`, run while the drains are paused."""
    with _snapshot_conn(session) as conn, conn.begin():
        _begin_snapshot(conn)
        truth, days, months = true_case_counts(conn, day_from, day_to, city_id, tz)
        pending, n_pending = _pending_increments(r, conn, city_id, tz)
    in_range_days, in_range_months = set(days), set(months)
    for key, _ttl, fields in pending:  # not applied yet: the drain will add them after us
        if key in truth:
            for field in fields:
                truth[key][field] -= 1

    def in_range(key: str) -> bool:
        parts = key.split(":")
        return len(parts) == 5 and (parts[3] in in_range_days if parts[2] == "d" else parts[3] in in_range_months)

    keys = sorted(set(truth) | {k for k in _scan(r, "cc:c:*") if in_range(k)})
    drift, fixed, ttl_fixed = [], 0, 0
    for chunk in _chunks(keys):
        with r.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.hgetall(key)
                pipe.ttl(key)
            replies = pipe.execute()
        with r.pipeline(transaction=True) as pipe:
            for key, raw, ttl in zip(chunk, replies[0::2], replies[1::2], strict=True):
                key_ttl = DAY_TTL if key.startswith("cc:c:d:") else MONTH_TTL
                want = {f: n for f, n in truth.get(key, {}).items() if n}
                have: dict[str, int | str] = {}
                for f, v in raw.items():
                    try:
                        have[_s(f)] = int(_s(v))
                    except ValueError:
                        have[_s(f)] = _s(v)
                diffs = [
                    (f, have.get(f, 0), want.get(f, 0))
                    for f in sorted(set(want) | set(have))
                    if have.get(f, 0) != want.get(f, 0)
                ]
                if not diffs:
                    if raw and int(ttl) == -1:  # a key left without a TTL: give it one
                        pipe.expire(key, key_ttl)
                        ttl_fixed += 1
                    continue
                fixed += 1
                drift.extend((key, f, c, t) for f, c, t in diffs[: max(0, DRIFT_LIMIT - len(drift))])
                pipe.delete(key)
                if want:
                    pipe.hset(key, mapping=want)
                    pipe.expire(key, key_ttl)
                else:  # gone: writers must give it a TTL again when they recreate it
                    pipe.delete(EPOCH_KEY)
            pipe.execute()
    report = {
        "keys_checked": len(keys),
        "keys_fixed": fixed,
        "drift": drift,
        "days": len(days),
        "months": months,
        "pending": n_pending,
        "ttl_fixed": ttl_fixed,
    }
    if fixed:
        log.warning("counters reconciled: %d of %d keys fixed, e.g. %s", fixed, len(keys), drift[:5])
    return report


# --- presence: online, attendance, logins, patrol ------------------------------------------------


def _town(town_id) -> str:
    return "all" if town_id is None else str(town_id)


def apply_heartbeat(r, account_id: int, town_id: int | None, at: datetime | float) -> None:
    """An app check-in: the account is online from `at` (naive UTC) for the next window."""
    ts = _ts(at)
    with r.pipeline(transaction=True) as pipe:
        for key in {f"cc:online:{_town(town_id)}", "cc:online:all"}:
            pipe.zadd(key, {str(account_id): ts}, gt=True)  # a late, older heartbeat never moves it back
            pipe.zremrangebyscore(key, "-inf", f"({ts - ONLINE_KEEP_S}")
            pipe.expire(key, ONLINE_TTL)
        pipe.execute()


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
    """Rebuild online (heartbeats in the last `window_s` s before `now`), attendance (sign-ins of `day`),
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
            pipe.zrangebyscore(key, now_ts - window_s, "+inf")
        for key in att_keys + login_keys:
            pipe.smembers(key)
        for key in patrol_keys:
            pipe.hgetall(key)
        cached = iter(pipe.execute())
    with r.pipeline(transaction=True) as pipe:
        for key in online_keys:
            have, want = {_s(x) for x in next(cached)}, online.get(key, {})
            checked += 1
            if have != set(want):
                fixed += 1
                note([(key, "members", len(have), len(want))])
                pipe.delete(key)
                if want:
                    pipe.zadd(key, want)
                    pipe.expire(key, ONLINE_TTL)
        for keys, truth, ttl in ((att_keys, attendance, PRESENCE_TTL), (login_keys, logins, LOGIN_TTL)):
            for key in keys:
                have, want = {_s(x) for x in next(cached)}, truth.get(key, set())
                checked += 1
                if have != want:
                    fixed += 1
                    note([(key, "members", len(have), len(want))])
                    pipe.delete(key)
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


__all__ = [
    "FIELDS",
    "apply_case_event",
    "apply_heartbeat",
    "apply_login",
    "apply_patrol",
    "apply_sign_in",
    "attendance_count",
    "case_counts",
    "case_counts_many",
    "day_key",
    "drain_outbox",
    "fields_of",
    "logged_in_count",
    "login_rate",
    "month_key",
    "online_accounts",
    "online_count",
    "patrol_compliance",
    "patrol_minutes",
    "presence_many",
    "reconcile",
    "reconcile_presence",
    "true_case_counts",
]
