"""Housekeeping: the tables that would otherwise only grow, pruned by the hourly job `housekeeping`.

- **outbox**: a row is follow-up work (counters, alerts, pushes) recorded with its change; once processed
  nobody reads it again (the drain, the reconcile and the operations page read only pending rows). Processed
  rows older than OUTBOX_KEEP_DAYS (default 7, for diagnosis) are deleted. A city's day writes about one row
  per case step (≈ 5 per case: 33,000 reports make ≈ 165,000 rows), so the table holds about a week of them.
- **login_locks**: a counter of failed logins per account and address. One whose window has passed and that
  locks nothing any more counts nothing (the next failure starts a new window): deleted. A password-spraying
  botnet leaves one row per address; they go an hour later.
- **web_sessions**: browser sessions ended or idle for more than SESSION_KEEP_DAYS (180: the six months the
  Cybersecurity Law asks of network logs, although the login records, not the sessions, are the log).

Never touched: cases and their steps, audit rows, login records, heartbeats, patrols (they are the record).
Rows go in batches of BATCH, each its own short transaction, so a first run on a large table never holds a
long lock against the intake.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, delete, or_, select

from .db import db
from .models import LoginLock, Outbox, WebSession
from .timeutil import utcnow

SESSION_KEEP_DAYS = 180
BATCH = 5000


def _delete_in_batches(model, key, where) -> int:
    """Delete the rows of `model` matching `where`, BATCH of them per transaction; how many went."""
    total = 0
    while True:
        ids = db.execute(select(key).where(where).limit(BATCH)).scalars().all()
        if not ids:
            return total
        db.execute(delete(model).where(key.in_(ids)))
        db.commit()
        total += len(ids)
        if len(ids) < BATCH:
            return total


def prune(now: datetime | None = None) -> dict[str, int]:
    """One pass over the three tables; rows deleted per table."""
    now = now or utcnow()
    settings = current_app.config["SETTINGS"]
    window = timedelta(minutes=settings.login_lock_minutes)
    outbox = _delete_in_batches(
        Outbox,
        Outbox.id,
        and_(Outbox.processed_at.is_not(None), Outbox.processed_at < now - timedelta(days=settings.outbox_keep_days)),
    )
    # a lock row is a composite key: delete by its own condition, in one statement (there are few)
    spent = and_(
        or_(LoginLock.locked_until.is_(None), LoginLock.locked_until < now),
        or_(LoginLock.first_failure_at.is_(None), LoginLock.first_failure_at < now - window),
    )
    locks = db.execute(delete(LoginLock).where(spent)).rowcount or 0
    db.commit()
    cutoff = now - timedelta(days=SESSION_KEEP_DAYS)
    sessions = _delete_in_batches(
        WebSession,
        WebSession.id,
        or_(WebSession.last_seen_at < cutoff, and_(WebSession.ended_at.is_not(None), WebSession.ended_at < cutoff)),
    )
    return {"outbox": outbox, "login_locks": locks, "web_sessions": sessions}
