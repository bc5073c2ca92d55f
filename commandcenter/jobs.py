"""Follow-up work after a committed change: counters, alert scheduling, pushes.

The change and its Outbox row are committed together; only then is the outbox drained. In server mode
a commit that wrote outbox rows enqueues one `process_outbox` job on RQ, unless one is already queued or
running (the kick flag `cc:outbox:kick`, set with a 10 s expiry and kept while the job drains); if
Redis is down at that moment nothing is lost: the rows wait, and the periodic job drains them when
Redis is back. In embedded mode a thread in the web process drains them at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app, has_app_context
from sqlalchemy import event, select

from . import alerts, hierarchy, labels, refcache
from .db import db, session_factory
from .models import Alert, Case, JobRun, Outbox
from .timeutil import from_local, local, utcnow
from .vocabulary import QUEUE_REALTIME

log = logging.getLogger(__name__)
KICK_KEY = "cc:outbox:kick"
KICK_PAUSE_S = 5.0  # after a failed kick, this process leaves that Redis alone this long (the catch-up drains)
_kick_paused_until: dict[str, float] = {}  # Redis URL → monotonic time
_wake = threading.Event()
_fake_redis = None
_fake_lock = threading.Lock()


# --- where the counters live ------------------------------------------------------------------------


def counters_redis():
    """Real Redis in server mode; an in-process stand-in (fakeredis) in embedded mode: one code path."""
    global _fake_redis
    settings = current_app.config["SETTINGS"]
    if settings.redis_url:
        from .redis_conn import redis_client

        return redis_client()
    with _fake_lock:
        if _fake_redis is None:
            import fakeredis

            _fake_redis = fakeredis.FakeRedis()
        return _fake_redis


def city_id() -> int | None:
    return hierarchy.city_id()


# --- kicking the drain after a commit ---------------------------------------------------------------


def _note_outbox(session, _flush_context) -> None:
    if any(isinstance(obj, Outbox) for obj in session.new):
        session.info["outbox_written"] = True


def _after_commit(session) -> None:
    if session.info.pop("outbox_written", False):
        kick_outbox()


def _after_rollback(session) -> None:
    session.info.pop("outbox_written", None)


def install_hooks() -> None:
    if not event.contains(session_factory, "after_flush", _note_outbox):
        event.listen(session_factory, "after_flush", _note_outbox)
        event.listen(session_factory, "after_commit", _after_commit)
        event.listen(session_factory, "after_soft_rollback", lambda s, _t: _after_rollback(s))
    from . import notify

    notify.install_hooks()  # deliveries committed → sent (RQ job, or the embedded sender)


def kick_outbox() -> None:
    if not has_app_context():
        _wake.set()
        return
    settings = current_app.config["SETTINGS"]
    if not settings.redis_url:
        _wake.set()
        return
    if time.monotonic() < _kick_paused_until.get(settings.redis_url, 0.0):
        # Redis failed a moment ago: a frozen Redis (a partition) would make every report wait for the
        # socket timeout. The rows wait in the outbox and the periodic catch-up drains them.
        return
    try:
        from .redis_conn import redis_client

        r = redis_client()
        # one drain queued or running at a time: the flag is given back when a drain finds nothing left
        # (see process_outbox); the expiry only guards against a drain that never ran
        if r.set(KICK_KEY, "1", nx=True, px=10_000):
            from rq import Queue

            Queue(QUEUE_REALTIME, connection=r).enqueue("workers.jobs.process_outbox", job_timeout=120, retry=_retry())
    except Exception as exc:  # Redis down: the outbox keeps the work; the periodic drain catches up
        _kick_paused_until[settings.redis_url] = time.monotonic() + KICK_PAUSE_S
        log.warning(
            "could not enqueue outbox drain (%s); it will be caught up, no kick for %.0f s",
            exc.__class__.__name__,
            KICK_PAUSE_S,
        )


def _retry():
    from rq import Retry

    return Retry(max=5, interval=[1, 2, 5, 10, 30])


def schedule_alert_check(case_id: int, when: datetime) -> None:
    """At the warning moment, check the case (server mode; embedded mode sweeps every few seconds)."""
    settings = current_app.config["SETTINGS"]
    if not settings.redis_url:
        return
    from datetime import UTC

    from rq import Queue

    from .redis_conn import redis_client

    # RQ keeps whole seconds (it truncates): round up, or the check could run before its moment
    at = when if when.microsecond == 0 else when.replace(microsecond=0) + timedelta(seconds=1)
    Queue(QUEUE_REALTIME, connection=redis_client()).enqueue_at(
        at.replace(tzinfo=UTC), "workers.jobs.check_case_alerts", case_id, job_timeout=60, retry=_retry()
    )


# --- the work itself (called by RQ jobs and by the in-process loop) ---------------------------------

DRAIN_JOB_MAX_S = 20  # one drain job hands over to a fresh one after this long (its RQ timeout is 120 s)
DRAIN_GATHER_S = 0.05  # after a pass that found work, let the next reports gather this long: one pass for all


def process_outbox(limit: int = 500) -> int:
    """Apply counters, plan alert checks and push each committed change. Safe to run concurrently.

    In server mode the kick flag stays set while this runs, so commits made meanwhile queue no further
    job: their rows are taken by this one's next pass, DRAIN_GATHER_S later. Only when a pass finds
    nothing is the flag given back, and one more pass takes what was committed just before that. So one
    job drains many reports a pass (a pass costs about 7 ms of worker CPU and each report in it about
    4 ms more, against one job and one pass for every report before), for at most 50 ms more latency."""
    r = counters_redis()
    server = bool(current_app.config["SETTINGS"].redis_url)
    cid = city_id()
    total, started = 0, time.monotonic()
    while True:
        done = _drain_pass(r, cid, limit)
        total += done
        if done == 0 or not server:
            break
        if time.monotonic() - started > DRAIN_JOB_MAX_S:  # hand over: a fresh job, well inside the timeout
            r.delete(KICK_KEY)
            kick_outbox()
            return total
        r.pexpire(KICK_KEY, 10_000)
        time.sleep(DRAIN_GATHER_S)
    if server:
        r.delete(KICK_KEY)  # commits from now on queue a new drain; those made before are taken here
        total += _drain_pass(r, cid, limit)
    return total


def _drain_pass(r, cid: int | None, limit: int) -> int:
    from . import counters
    from .realtime import pushes_after_block

    total = drain_presence(r, limit)
    while True:
        with pushes_after_block():  # the batch's pushes are queued once it is committed, in one round trip
            done = counters.drain_outbox(r, db, cid, limit=limit, on_event=_on_case_event, prepare=_load_cases)
        total += done
        if done < limit:
            return total


PRESENCE_TOPICS = ("presence.heartbeat", "presence.sign_in", "presence.login", "patrol")


def drain_presence(r, limit: int = 2000) -> int:
    """Online, attendance, login and patrol figures. Each apply is idempotent (set members, a newest
    timestamp, or a once-only marker), so a drain run twice changes nothing."""
    from datetime import date as date_type

    from . import counters

    stmt = (
        select(Outbox)
        .where(Outbox.topic.in_(PRESENCE_TOPICS), Outbox.processed_at.is_(None))
        .order_by(Outbox.id)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = db.execute(stmt).scalars().all()
    tz = current_app.config["SETTINGS"].timezone
    for row in rows:
        p = row.payload
        try:
            if row.topic == "presence.heartbeat":  # written while Redis failed: its Heartbeat row exists
                at = datetime.fromisoformat(p["at"])
                if "lat" in p:  # the live trail too (positions), not dirty: nothing left to persist
                    counters.apply_heartbeat(r, p["account_id"], p["town_id"], at, p["lat"], p["lon"], trail=True)
                else:
                    counters.apply_heartbeat(r, p["account_id"], p["town_id"], at)
            elif row.topic == "presence.sign_in":
                counters.apply_sign_in(r, p["account_id"], p["town_id"], date_type.fromisoformat(p["day"]))
            elif row.topic == "presence.login":
                at = local(datetime.fromisoformat(p["at"]), tz)
                counters.apply_login(r, p["account_id"], p["town_id"], at.date(), p["is_center_admin"])
            elif row.topic == "patrol":
                counters.apply_patrol(
                    r,
                    p["account_id"],
                    p["town_id"],
                    datetime.fromisoformat(p["started_at"]),
                    datetime.fromisoformat(p["ended_at"]),
                    patrol_id=row.id,
                    tz=tz,
                )
        except (KeyError, ValueError, TypeError):
            log.exception("outbox row %s has a malformed payload; skipped", row.id)
    if rows:
        counters.mark_processed(db, [row.id for row in rows])
        db.commit()
    return len(rows)


def rebuild_counters(days: int = 31) -> dict:
    """Recompute every live figure from the database (embedded start-up; `flask counters rebuild`)."""
    from . import counters

    r = counters_redis()
    tz = current_app.config["SETTINGS"].timezone
    today = local(utcnow(), tz).date()
    report = counters.reconcile(r, db, today - timedelta(days=days), today, city_id())
    counters.reconcile_presence(r, db, today, today, utcnow())
    return report


def _load_cases(rows: list[Outbox]) -> list[Case]:
    """The cases of a drain batch in one query (each event then finds its case in the identity map)."""
    ids = {row.payload.get("case_id") for row in rows if isinstance(row.payload, dict)}
    ids.discard(None)
    return list(db.scalars(select(Case).where(Case.id.in_(ids)))) if ids else []


def _on_case_event(row: Outbox) -> None:
    payload = row.payload
    case = db.get(Case, payload["case_id"])
    if case is None:
        return
    if payload["action"] in ("dispatch", "rework"):  # messages outside the browser (notify.py), never raising
        from . import notify

        notify.on_case_event(row.id, payload["action"], case)
    if payload["action"] in ("report", "register"):
        now = utcnow()
        for when in (case.transfer_warn_at, case.escalate_warn_at):
            if when is None:
                continue
            if when <= now:  # reported late: the warning is due already (raised in the drain's transaction)
                check_case_alerts(case.id, now, commit=False)
                continue
            try:
                schedule_alert_check(case.id, when)
            except Exception:  # the sweep is the safety net
                log.warning("could not schedule the alert check of case %s", case.id)
    from . import counters
    from .counters import base as counters_base
    from .realtime import publish, push_to_account

    category = refcache.category(case.category_id)
    category_name = category.name if category else ""
    if payload["action"] in ("dispatch", "rework") and case.assignee_id:
        # to the assigned gridworker's open /g/ pages: a task dispatched to him, a case returned for rework
        push_to_account(
            "g.case",
            {"id": case.id, "number": case.number, "action": payload["action"], "category": category_name},
            case.assignee_id,
        )
    at = counters_base._parse_at(payload["at"]) if payload.get("at") else utcnow()
    tz = current_app.config["SETTINGS"].timezone
    # the fields the drain just counted at each of the case's places, if they count for today
    fields = counters.fields_of(payload["action"], payload.get("kind"), payload.get("level"))
    if local(at, tz).date() != local(utcnow(), tz).date():
        fields = ()
    publish(
        "case",
        {
            "id": case.id,
            "number": case.number,
            "action": payload["action"],
            "state": case.state,
            "kind": case.kind,
            "level": case.level,
            "lat": case.lat,
            "lon": case.lon,
            "grid_id": case.grid_id,
            "town_id": case.town_id,
            "overdue": case.overdue,
            "category": category_name,
            "at_ms": int(at.replace(tzinfo=UTC).timestamp() * 1000),  # the step's time: commit → screen
        },
        # 重新定位: the rooms of the places the case left learn it too (its marker leaves their map)
        [case.grid_id, case.village_id, case.town_id, cid_of(case), *(payload.get("from") or {}).values()],
        fields,
    )


def cid_of(case: Case) -> int | None:
    if case.town_id is None:
        return None
    town = refcache.place(case.town_id)
    return town.city_id if town else None


def push_alerts(raised: list[Alert]) -> None:
    from .realtime import publish

    for alert in raised:
        case = db.get(Case, alert.case_id)
        publish("alert", alert_payload(alert, case), [case.grid_id, case.village_id, case.town_id, cid_of(case)])


def alert_payload(alert: Alert, case: Case) -> dict:
    return {
        "id": alert.id,
        "case_id": case.id,
        "number": case.number,
        "kind": alert.kind,
        "kind_label": labels.ALERT_KIND[alert.kind],
        "due_at": alert.due_at.isoformat() + "Z",
        "raised_at": alert.raised_at.isoformat() + "Z",
        "town_id": case.town_id,
        "category": case.category.name,
        "address": case.address,
    }


def check_case_alerts(case_id: int, now: datetime | None = None, commit: bool = True) -> int:
    from . import notify

    raised = alerts.check_case(case_id, now or utcnow(), commit=commit)
    push_alerts(raised)
    notify.on_alerts(raised, commit=commit)
    return len(raised)


def sweep_alerts(now: datetime | None = None) -> int:
    from . import notify

    raised = alerts.sweep(now or utcnow())
    push_alerts(raised)
    notify.on_alerts(raised, commit=True)
    return len(raised)


@contextmanager
def recorded(name: str):
    """Keep the last run of a periodic job visible to the administrator."""
    run = db.get(JobRun, name) or JobRun(name=name, runs=0)
    run.last_started_at = utcnow()
    db.add(run)
    db.commit()
    try:
        yield
    except Exception as exc:
        db.rollback()
        run = db.get(JobRun, name)
        run.last_status, run.last_detail = "failed", f"{exc.__class__.__name__}: {exc}"[:500]
        run.last_finished_at, run.runs = utcnow(), run.runs + 1
        db.commit()
        raise
    run = db.get(JobRun, name)
    run.last_status, run.last_finished_at, run.runs = "ok", utcnow(), run.runs + 1
    db.commit()


def nightly_due(name: str, hour: int, now: datetime | None = None) -> bool:
    """Whether a nightly job has not run successfully since the last `hour`:00 local time.

    Periodic jobs are checked every few minutes; this keeps a restart of `rq cron` (which runs every
    interval job at once) from running a heavy nightly job again in the middle of the day."""
    now = now or utcnow()
    local_now = local(now)
    start = local_now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if local_now < start:
        start -= timedelta(days=1)
    run = db.get(JobRun, name)
    return not (
        run is not None
        and run.last_status == "ok"
        and run.last_started_at is not None
        and run.last_started_at >= from_local(start)
    )


# --- embedded mode: the same work in threads ------------------------------------------------------


def run_in_process(app: Flask, stop: threading.Event, schedule: list[tuple[Callable, str, int]]) -> None:
    """Drain the outbox as soon as a commit wakes us, and run the periodic schedule."""
    last_run: dict[str, float] = {}
    from . import notify
    from .realtime import start_flusher

    start_flusher(app)  # the live pushes: one batch per room per tick (the same flusher as a web process's)
    # notifications go out from their own thread: a slow SMS gateway never holds up the drain
    threading.Thread(target=notify.run_sender, args=(app, stop), daemon=True, name="notify").start()
    with app.app_context():
        try:
            report = rebuild_counters()
            log.info("live counters rebuilt from the database: %s keys", report.get("keys_checked"))
        except Exception:
            log.exception("could not rebuild the live counters")
        finally:
            db.remove()
    while not stop.is_set():
        _wake.wait(1.0)
        _wake.clear()
        with app.app_context():
            try:
                process_outbox()
            except Exception:
                log.exception("outbox drain failed")
            finally:
                db.remove()
            now = time.monotonic()
            for func, _queue, interval in schedule:
                if now - last_run.get(func.__name__, 0) >= interval:
                    last_run[func.__name__] = now
                    try:
                        func()
                    except Exception:
                        log.exception("scheduled job %s failed", func.__name__)
                    finally:
                        db.remove()
