"""The periodic jobs, declared once: `rq cron workers/schedule.py` reads the register() calls below
in server mode; the embedded runner (commandcenter.serve) walks SCHEDULE in a thread."""

from __future__ import annotations

from workers import jobs

# (job function, queue, interval in seconds)
SCHEDULE = [
    (jobs.sweep_deadlines, "realtime", 60),
]


def _register_with_rq() -> None:
    from rq import cron

    for func, queue, interval in SCHEDULE:
        cron.register(func, queue_name=queue, interval=interval)


if __name__ != "__main__":
    try:
        import rq.cron  # noqa: F401  (rq cron imports this file as its configuration)

        _register_with_rq()
    except ImportError:  # pragma: no cover - rq is a hard dependency; kept for clarity
        pass
