"""Reconciliation of the case counters with the database, beside live traffic."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, literal_column, select

from ..models import Case, CaseStep, Outbox
from ..timeutil import local, month_bounds_utc
from .base import (
    COUNTED_ACTIONS,
    DAY_TTL,
    DRIFT_LIMIT,
    MONTH_TTL,
    RECONCILE_KEY,
    RECONCILE_LEASE_S,
    TOPIC,
    _begin_snapshot,
    _chunks,
    _city_resolver,
    _increments,
    _place_ids,
    _s,
    _scan,
    _snapshot_conn,
    _tz,
    delta,
    fields_of,
)
from .cases import EPOCH_KEY
from .drain import _LeaseKeeper, _pause_drains, _release

log = logging.getLogger(__name__)


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

    def in_range(key: str) -> bool:
        parts = key.split(":")
        return len(parts) == 5 and (parts[3] in in_range_days if parts[2] == "d" else parts[3] in in_range_months)

    for inc in pending:  # not applied yet: the drain will add them after us
        key, fields = inc[0], inc[2]
        # a pending relocation also takes counts from keys the truth no longer has (the old places)
        if key in truth or in_range(key):
            for field in fields:
                truth[key][field] -= delta(inc)

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
