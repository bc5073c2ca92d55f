"""Keys, fields and small helpers shared by the live counters (see docs/counters.md)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime

from redis.exceptions import WatchError

from .. import hierarchy
from ..redis_conn import as_text
from ..timeutil import current_tz, local

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
# that died is forgotten soon: DRAIN_LEASE_S after it registered (a drain cut short by Redis's own stop
# leaves its entry in the append-only file; the first wall after the outage, whose priming reconcile waits
# for it, waited 30 s when this was 30). A drain whose lease ran out while it read its rows (a database
# slower than DRAIN_LEASE_S) does not apply them: it renews the lease just before, and gives up when a
# reconcile already removed it (drain.drain_outbox). A reconcile holds its flag with a lease it renews every third of it from
# a thread, so a reconcile that died (worker killed, Redis lost mid-way) holds the drains back for at
# most RECONCILE_LEASE_S, never for minutes.
DRAIN_LEASE_S = 8
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


def _increments(payload: dict, city_id: int | None, tz: str) -> list[tuple]:
    """(key, ttl, fields) to add 1 to, for one case.changed payload; a relocation gives
    (key, ttl, fields, n) with n = -1 or +1 (see `delta`)."""
    if payload["action"] == "relocate":
        return _relocation_increments(payload, city_id, tz)
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


def delta(increment: tuple) -> int:
    """How much an increment of `_increments` adds to each of its fields: 1, or its 4th item."""
    return increment[3] if len(increment) > 3 else 1


def _relocation_increments(payload: dict, city_id: int | None, tz: str) -> list[tuple]:
    """重新定位 (cases/relocate.py): the counts of the steps counted so far (payload "moved": action, kind,
    level, at of each) leave the old places (payload "from") and arrive at the new ones. Places the case
    keeps (the same town, the city) do not move. One outbox row: applied exactly once like any other."""
    old = payload.get("from") or {}
    old_ids = _place_ids(
        old.get("grid_id"), old.get("village_id"), old.get("town_id"), city_id if old.get("town_id") else None
    )
    new_ids = _place_ids(payload.get("grid_id"), payload.get("village_id"), payload.get("town_id"), city_id)
    moves = [(pid, -1) for pid in old_ids if pid not in new_ids] + [(pid, 1) for pid in new_ids if pid not in old_ids]
    out: list[tuple] = []
    for step in payload.get("moved") or []:
        fields = fields_of(step["action"], step.get("kind"), step.get("level"))
        if not fields:
            continue
        at_local = local(_parse_at(step["at"]), tz)
        d, m = at_local.strftime("%Y%m%d"), at_local.strftime("%Y%m")
        for pid, n in moves:
            out.append((f"cc:c:d:{d}:{pid}", DAY_TTL, fields, n))
            out.append((f"cc:c:m:{m}:{pid}", MONTH_TTL, fields, n))
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


def _scan(r, pattern: str) -> list[str]:
    return [_s(k) for k in r.scan_iter(match=pattern, count=1000)]


def _chunks(items: list, n: int = 1000):
    for i in range(0, len(items), n):
        yield items[i : i + n]
