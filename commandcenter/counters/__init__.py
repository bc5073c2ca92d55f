"""Live counters: the figures the wall display and the dashboards read, kept in Redis.

Redis holds a *cache*: everything here can be rebuilt from PostgreSQL (`reconcile`, `reconcile_presence`),
and nothing is stored only here, except the newest heartbeats (the live trails), which reach the database in
batches (commandcenter/heartbeats.py). What each counter counts, the keys, how an event is counted exactly once
and how a reconcile runs beside live traffic are written down in docs/counters.md.

One module per concern (issue 15 §4):
- `base`: keys, fields, TTLs and the small helpers they share;
- `cases`: a case.changed event counted exactly once, and the counts read back;
- `drain`: the outbox drain and the leases that keep it apart from a reconcile;
- `reconcile_cases`: the case counters recomputed from the database beside live traffic;
- `presence`: online, attendance, logins and patrol minutes, and their reconciliation.
This package re-exports what the rest of the code uses, so callers write `counters.case_counts(...)`.
"""

from .base import (
    DAY_TTL,
    DONE_TTL,
    DRAINERS_KEY,
    DRIFT_LIMIT,
    FIELDS,
    MONTH_TTL,
    RECONCILE_KEY,
    TOPIC,
    day_key,
    fields_of,
    month_key,
)
from .cases import apply_case_event, apply_case_events, case_counts, case_counts_many
from .drain import _pause_drains, drain_outbox, mark_processed
from .presence import (
    DIRTY_KEY,
    PERSISTING_KEY,
    apply_heartbeat,
    apply_login,
    apply_patrol,
    apply_sign_in,
    attendance_count,
    live_newest,
    live_trails,
    logged_in_count,
    login_rate,
    online_accounts,
    online_count,
    patrol_compliance,
    patrol_minutes,
    presence_many,
    reconcile_presence,
    trail_key,
)
from .reconcile_cases import reconcile, true_case_counts

__all__ = [
    "DAY_TTL",
    "DIRTY_KEY",
    "DONE_TTL",
    "DRAINERS_KEY",
    "DRIFT_LIMIT",
    "FIELDS",
    "MONTH_TTL",
    "PERSISTING_KEY",
    "RECONCILE_KEY",
    "TOPIC",
    "_pause_drains",
    "apply_case_event",
    "apply_case_events",
    "apply_heartbeat",
    "apply_login",
    "apply_patrol",
    "apply_sign_in",
    "attendance_count",
    "case_counts",
    "case_counts_many",
    "day_key",
    "drain_outbox",
    "mark_processed",
    "fields_of",
    "live_newest",
    "live_trails",
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
    "trail_key",
    "true_case_counts",
]
