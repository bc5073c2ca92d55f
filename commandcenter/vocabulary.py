"""The shared words of the code, defined once: which case states are open, final or running a limit, and
the names of the RQ queues. Chinese labels for them are in labels.py; the hierarchy's queries in
hierarchy.py."""

from __future__ import annotations

from .models import CASE_STATES

# 在办: a case still in the loop (reported … waiting for verification)
OPEN_STATES = ("reported", "registered", "dispatched", "handling", "feedback")
# a case that left the loop: 结案, 无效, 重复
FINAL_STATES = ("closed", "rejected", "duplicate")
# the states in which a handling limit runs (the deadline sweep marks these overdue)
RUNNING_STATES = ("registered", "dispatched", "handling", "feedback")
assert set(OPEN_STATES) | set(FINAL_STATES) == set(CASE_STATES)

# RQ queues: pushes, counters and alert checks (short, many) / nightly work / bulletins and imports (long)
QUEUE_REALTIME = "realtime"
QUEUE_DEFAULT = "default"
QUEUE_REPORTS = "reports"
QUEUES = (QUEUE_REALTIME, QUEUE_DEFAULT, QUEUE_REPORTS)
