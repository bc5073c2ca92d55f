"""RQ job functions: thin, each opens an app context (or uses the caller's) and calls domain code."""

from __future__ import annotations

import logging
from contextlib import contextmanager

from flask import Flask, has_app_context

log = logging.getLogger(__name__)
_app: Flask | None = None


def app() -> Flask:
    global _app
    if _app is None:
        from commandcenter import create_app

        _app = create_app()
    return _app


@contextmanager
def context():
    """A worker process builds its app once; the embedded runner calls us inside its own."""
    if has_app_context():
        yield
        return
    with app().app_context():
        try:
            yield
        finally:
            from commandcenter.db import db

            db.remove()


def process_outbox() -> int:
    """Counters, alert scheduling and pushes for committed changes."""
    from commandcenter import jobs

    with context():
        return jobs.process_outbox()


def check_case_alerts(case_id: int) -> int:
    """Runs at a case's warning moment (enqueue_at)."""
    from commandcenter import jobs

    with context():
        return jobs.check_case_alerts(case_id)


def sweep_alerts() -> int:
    """The safety net behind the scheduled warnings."""
    from commandcenter import jobs

    with context(), jobs.recorded("sweep_alerts"):
        return jobs.sweep_alerts()


def sweep_deadlines() -> dict[str, int]:
    """Mark overdue cases, void late parking reports."""
    from commandcenter import jobs
    from commandcenter.cases.loop import sweep_deadlines as sweep

    with context(), jobs.recorded("sweep_deadlines"):
        counts = sweep()
        if any(counts.values()):
            log.info("deadline sweep: %s", counts)
        return counts


def drain_outbox_catch_up() -> int:
    """Periodic drain: catches up whatever was committed while Redis was unreachable."""
    from commandcenter import jobs

    with context(), jobs.recorded("drain_outbox_catch_up"):
        return jobs.process_outbox()


def persist_heartbeats() -> dict:
    """The heartbeats held in Redis, written to the database: one row per account and ended period of
    PRESENCE_PERSIST_SECONDS, and Account.last_seen_at (commandcenter/heartbeats.py)."""
    from commandcenter import heartbeats, jobs

    with context(), jobs.recorded("persist_heartbeats"):
        return heartbeats.persist()


def housekeeping() -> dict:
    """Hourly: processed outbox rows past OUTBOX_KEEP_DAYS, spent login locks and long-dead browser sessions
    deleted in batches (commandcenter/housekeeping.py)."""
    from commandcenter import housekeeping as chores
    from commandcenter import jobs

    with context(), jobs.recorded("housekeeping"):
        pruned = chores.prune()
        if any(pruned.values()):
            log.info("housekeeping: %s", pruned)
        return pruned


RECONCILE_HOUR = 3  # local time: the quiet hour of the night


def reconcile_counters() -> dict | None:
    """Nightly after 03:00 local time: recompute the live counters from PostgreSQL and report the drift
    corrected. Checked every quarter of an hour; does nothing if it already ran since 03:00."""
    from datetime import timedelta

    from commandcenter import counters, jobs
    from commandcenter.db import db
    from commandcenter.timeutil import local_today

    with context():
        if not jobs.nightly_due("reconcile_counters", RECONCILE_HOUR):
            return None
        with jobs.recorded("reconcile_counters"):
            today = local_today()
            report = counters.reconcile(jobs.counters_redis(), db, today - timedelta(days=31), today, jobs.city_id())
            log.info("reconcile: %s keys checked, %s fixed", report.get("keys_checked"), report.get("keys_fixed"))
            return report


def send_notification(delivery_id: int) -> str:
    """One message outside the browser (notify.py); after a failed attempt, re-enqueued at its next time."""
    from commandcenter import notify

    with context():
        retry_at = notify.send_delivery(delivery_id)
        if retry_at is not None:
            notify.schedule([delivery_id], at=retry_at)
            return f"retry at {retry_at:%H:%M:%S}"
        return "done"


def send_due_notifications() -> int:
    """Server mode's safety net: deliveries whose job was lost (Redis down at the enqueue). Embedded mode has
    its own sender thread (notify.run_sender)."""
    from commandcenter import notify

    with context():
        from flask import current_app

        if not current_app.config["SETTINGS"].redis_url:
            return 0
        return notify.send_due(grace_s=60)


VISITS_DUE_HOUR = 8  # local time: the gridworkers' open /g/ pages are told of the visits falling due


def push_visits_due() -> int | None:
    """Each morning after 08:00 local time, once: tell every gridworker's open /g/ page of his visits falling
    due (issue 14 §4; a page opened later is told when it connects). Checked every quarter of an hour."""
    from commandcenter import jobs, realtime

    with context():
        if not jobs.nightly_due("push_visits_due", VISITS_DUE_HOUR):
            return None
        with jobs.recorded("push_visits_due"):
            return realtime.push_visits_due()


def build_bulletin(bulletin_id: int) -> str:
    """月度通报: figures, tables, rankings, stories and the .docx, with progress on the Bulletin row."""
    from commandcenter.bulletin import jobs

    with context():
        return jobs.run_build(bulletin_id)
