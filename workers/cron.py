"""The configuration `rq cron workers/cron.py` loads: every job of workers/schedule.py, registered."""

from rq import cron

from workers.schedule import SCHEDULE

for func, queue, interval in SCHEDULE:
    cron.register(func, queue_name=queue, interval=interval)
