"""Priming the live counters after a restart, before the wall reads them.

In embedded mode the counters live in an in-process fakeredis and are empty after every restart; a Redis
that was flushed is in the same state. ``ensure_counters`` runs before every wall request: the first one
on a Redis that has not been primed (no ``cc:wall:primed`` key), or on a day whose counters look empty
although the database holds history steps of that day, rebuilds the counters with
``counters.reconcile`` (the days of the current month) and ``counters.reconcile_presence`` (today), once,
under a lock, then marks the Redis as primed. The startup reconcile makes this a no-op check.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import date, datetime

from sqlalchemy import select

from .. import counters
from ..db import db
from ..models import CaseStep
from ..redis_conn import as_text
from ..timeutil import day_bounds_utc, local, utcnow

log = logging.getLogger(__name__)

PRIMED_KEY = "cc:wall:primed"
PRIMING_KEY = "cc:wall:priming"
PRIMING_LEASE_S = 300
PROBE_EVERY_S = 300
_prime_lock = threading.Lock()
_last_probe: dict[str, float] = {}


def ensure_counters(r, city_id: int | None, tz: str, now: datetime | None = None, wait_s: float = 20.0) -> dict | None:
    """Rebuild the counters once when they cannot be trusted (see the module docstring).

    Returns the reconcile reports when it rebuilt them, None when nothing was needed (or another
    process is doing it and did not finish within `wait_s`)."""
    if city_id is None:
        return None
    now = now or utcnow()
    today = local(now, tz).date()
    with r.pipeline(transaction=False) as pipe:
        pipe.exists(PRIMED_KEY)
        pipe.exists(counters.day_key(today, city_id))
        primed, today_present = (bool(x) for x in pipe.execute())
    if primed and today_present:
        return None
    if primed:  # primed, but nothing counted today: fine early in the morning, suspicious otherwise
        probe_key = f"{id(r)}:{today}"
        if time.monotonic() - _last_probe.get(probe_key, -PROBE_EVERY_S) < PROBE_EVERY_S:
            return None
        _last_probe.clear()
        _last_probe[probe_key] = time.monotonic()
        start, _ = day_bounds_utc(today, tz)
        if db.execute(select(CaseStep.id).where(CaseStep.at >= start).limit(1)).first() is None:
            return None
        log.warning("wall: today's counters are empty but the database has steps today; rebuilding them")
    return _prime(r, city_id, tz, now, today, wait_s, force=primed)


def _prime(r, city_id: int, tz: str, now: datetime, today: date, wait_s: float, force: bool) -> dict | None:
    with _prime_lock:
        if not force and r.exists(PRIMED_KEY):  # another request of this process did it meanwhile
            return None
        token = f"{os.getpid()}:{threading.get_ident()}:{time.time()}"
        if not r.set(PRIMING_KEY, token, nx=True, ex=PRIMING_LEASE_S):
            deadline = time.monotonic() + wait_s  # another process primes: wait for it, briefly
            while time.monotonic() < deadline and not r.exists(PRIMED_KEY):
                time.sleep(0.1)
            return None
        try:
            started = time.monotonic()
            cases = counters.reconcile(r, db, today.replace(day=1), today, city_id, tz)
            presence = counters.reconcile_presence(r, db, today, today, now, tz)
            r.set(PRIMED_KEY, now.isoformat())
            log.info(
                "wall: counters primed in %.2fs (%s case keys fixed, %s presence keys fixed)",
                time.monotonic() - started,
                cases.get("keys_fixed"),
                presence.get("keys_fixed"),
            )
            return {"cases": cases, "presence": presence}
        except Exception:
            log.exception("wall: priming the counters failed; the panels show what Redis holds")
            return None
        finally:
            if r.get(PRIMING_KEY) is not None and as_text(r.get(PRIMING_KEY)) == token:
                r.delete(PRIMING_KEY)
