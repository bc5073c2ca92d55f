"""Deadline warnings the duty officer must see *before* a limit passes.

Four kinds: a 乱停车 report close to its one hour (parking_due), a case that must go up and is
close to its escalation limit while still below the level it must reach (escalation_due), a report marked
自办自结 still open near the end of its day (self_handled_due), and a case past its handling limit (overdue). The warning time is known when the case is reported or
registered, so it is planned then (and scheduled for that moment by the workers); a periodic sweep
is the safety net. The unique (case, kind) constraint makes an alert rise once, however many sweeps,
retries or workers look at it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .categories import Limits, limits_of
from .db import db
from .models import Alert, Case, Category
from .vocabulary import OPEN_STATES

DEFAULT_PARKING_WARN_MINUTES = 15
# a self-handled report (自办自结) left open is due by the end of its local day: warned this long before
DEFAULT_SELF_HANDLED_WARN_MINUTES = 120
LEVEL_RANK = {"grid": 0, "village": 1, "town": 2, "city": 3}


def warn_time(start: datetime, due: datetime, category: Category | Limits) -> datetime:
    """`warn_before_minutes` before the limit when the category sets it, else when `warn_ratio` of it is used."""
    if category.warn_before_minutes:
        return max(start, due - timedelta(minutes=category.warn_before_minutes))
    return start + (due - start) * (category.warn_ratio or 0.8)


def parking_warn_time(discovered_at: datetime, transfer_due: datetime, category: Category | Limits) -> datetime:
    """`warn_before_minutes` (default 15) before the one-hour limit of a 乱停车 report."""
    minutes = category.warn_before_minutes or DEFAULT_PARKING_WARN_MINUTES
    return max(discovered_at, transfer_due - timedelta(minutes=minutes))


def plan_on_report(case: Case, category: Category | Limits) -> None:
    if case.transfer_due is not None:
        case.transfer_warn_at = parking_warn_time(case.discovered_at, case.transfer_due, category)


def self_handled_open(case: Case) -> bool:
    """A report marked 自办自结 that is still waiting for its closing step (it is due by the end of its day)."""
    return bool(case.self_handled and case.state == "reported" and case.handle_due is not None)


def self_handled_warn_time(case: Case) -> datetime:
    """`warn_before_minutes` of its category (default 120) before the end of the report's local day."""
    minutes = limits_of(case).warn_before_minutes or DEFAULT_SELF_HANDLED_WARN_MINUTES
    return max(case.reported_at, case.handle_due - timedelta(minutes=minutes))


def plan_on_register(case: Case, category: Category | Limits) -> None:
    if case.escalate_due is not None and case.registered_at is not None:
        case.escalate_warn_at = warn_time(case.registered_at, case.escalate_due, category)


def needs_escalation(case: Case) -> bool:
    limits = limits_of(case)  # recorded on the case at its report (else its category's)
    target = limits.escalate_to
    return bool(limits.must_escalate and target and LEVEL_RANK[case.level] < LEVEL_RANK[target])


def due_alerts(case: Case, now: datetime) -> list[tuple[str, datetime]]:
    """(kind, due_at) of every alert this case deserves at `now`."""
    if case.state not in OPEN_STATES:
        return []
    found = []
    if case.transfer_warn_at and case.transferred_at is None and case.transfer_warn_at <= now:
        found.append(("parking_due", case.transfer_due))
    if self_handled_open(case) and self_handled_warn_time(case) <= now:
        found.append(("self_handled_due", case.handle_due))
    if case.escalate_warn_at and case.escalate_due and case.escalate_warn_at <= now and needs_escalation(case):
        found.append(("escalation_due", case.escalate_due))
    if case.overdue and case.handle_due:
        found.append(("overdue", case.handle_due))
    return found


def raise_alert(case: Case, kind: str, due_at: datetime, now: datetime) -> Alert | None:
    """Insert the alert unless it exists already (then None: raised once, never twice)."""
    existing = db.execute(select(Alert).where(Alert.case_id == case.id, Alert.kind == kind)).scalar_one_or_none()
    if existing is not None:
        return None
    alert = Alert(case_id=case.id, kind=kind, town_id=case.town_id, due_at=due_at, raised_at=now)
    try:
        with db.begin_nested():
            db.add(alert)
    except IntegrityError:  # another worker raised it between our look and our insert
        return None
    return alert


def check_case(case_id: int, now: datetime, commit: bool = True) -> list[Alert]:
    """Raise what is due for one case (the job scheduled for its warning time). Commits, unless called
    inside a larger transaction (the outbox drain: a commit there would release the row locks of the rest
    of its batch, and a second worker could push the same changes again)."""
    case = db.get(Case, case_id)
    if case is None:
        return []
    raised = [a for kind, due in due_alerts(case, now) if (a := raise_alert(case, kind, due, now))]
    if commit:
        db.commit()
    else:
        db.flush()
    return raised


def sweep(now: datetime, limit: int = 2000) -> list[Alert]:
    """The safety net: every case whose warning time has come and that has no alert yet."""
    candidates = (
        db.execute(
            select(Case)
            .where(
                Case.state.in_(OPEN_STATES),
                (Case.transfer_warn_at <= now) & Case.transferred_at.is_(None)
                | (Case.escalate_warn_at <= now) & Case.escalate_due.is_not(None)
                | Case.overdue.is_(True)
                # self-handled reports due within a day: due_alerts judges the exact warning moment
                | Case.self_handled.is_(True)
                & (Case.state == "reported")
                & (Case.handle_due <= now + timedelta(days=1)),
            )
            .order_by(Case.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    raised = []
    for case in candidates:
        for kind, due in due_alerts(case, now):
            alert = raise_alert(case, kind, due, now)
            if alert is not None:
                raised.append(alert)
    db.commit()
    return raised


def clear_for_case(case: Case, now: datetime) -> list[Alert]:
    """Called by every step of the loop (inside its transaction): clear what no longer applies."""
    open_alerts = db.execute(select(Alert).where(Alert.case_id == case.id, Alert.cleared_at.is_(None))).scalars().all()
    cleared = []
    for alert in open_alerts:
        finished = case.state not in OPEN_STATES
        if (
            finished
            or alert.kind == "parking_due"
            and case.transferred_at is not None
            or alert.kind == "escalation_due"
            and not needs_escalation(case)
            or alert.kind == "self_handled_due"
            and not self_handled_open(case)
        ):
            alert.cleared_at = now
            cleared.append(alert)
    return cleared


def acknowledge(alert: Alert, account, now: datetime) -> Alert:
    if alert.acknowledged_at is None:
        alert.acknowledged_at = now
        alert.acknowledged_by_id = account.id
    db.commit()
    return alert


def open_alerts(town_id: int | None = None, limit: int = 100) -> list[Alert]:
    stmt = select(Alert).where(Alert.cleared_at.is_(None)).order_by(Alert.due_at).limit(limit)
    if town_id is not None:
        stmt = stmt.where(Alert.town_id == town_id)
    return list(db.execute(stmt).scalars())
