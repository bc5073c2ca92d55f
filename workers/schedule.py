"""The periodic jobs, declared once: `rq cron workers/cron.py` registers them in server mode;
the embedded runner (commandcenter.jobs.run_in_process) walks SCHEDULE in a thread of the web process."""

from __future__ import annotations

from commandcenter.vocabulary import QUEUE_DEFAULT, QUEUE_REALTIME
from workers import jobs

# (job function, queue, interval in seconds)
SCHEDULE = [
    (jobs.drain_outbox_catch_up, QUEUE_REALTIME, 10),
    (jobs.sweep_alerts, QUEUE_REALTIME, 15),
    (jobs.sweep_deadlines, QUEUE_REALTIME, 60),
    (jobs.send_due_notifications, QUEUE_REALTIME, 60),  # lost notification jobs (server mode only)
    (jobs.persist_heartbeats, QUEUE_DEFAULT, 60),  # heartbeats from Redis to the database, in batches
    (jobs.housekeeping, QUEUE_DEFAULT, 60 * 60),  # rows nobody reads again: see commandcenter/housekeeping.py
    (jobs.reconcile_counters, QUEUE_DEFAULT, 15 * 60),  # runs once a night: see the job
    (jobs.push_visits_due, QUEUE_DEFAULT, 15 * 60),  # once each morning after 08:00: see the job
]
