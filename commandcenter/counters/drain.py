"""The outbox drain of case events, and the leases that keep it apart from a reconcile."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from redis.exceptions import WatchError
from sqlalchemy import func, select, update

from ..models import Outbox
from ..timeutil import utcnow
from .base import (
    DRAIN_LEASE_S,
    DRAINERS_KEY,
    RECONCILE_KEY,
    RECONCILE_LEASE_S,
    TOPIC,
    _city_resolver,
    _increments,
    _s,
    _tz,
)
from .cases import _apply_batch

log = logging.getLogger(__name__)

# --- the drain -----------------------------------------------------------------------------------


def _register_drainer(r) -> str | None:
    token = uuid.uuid4().hex
    r.zadd(DRAINERS_KEY, {token: time.time() + DRAIN_LEASE_S})
    if r.exists(RECONCILE_KEY):  # a reconcile is rewriting the counters: leave the rows for the next round
        r.zrem(DRAINERS_KEY, token)
        return None
    return token


def drain_outbox(
    r,
    session,
    city_id: int | None = None,
    limit: int = 500,
    on_event: Callable[[Outbox], None] | None = None,
    tz: str | None = None,
    prepare: Callable[[list[Outbox]], object] | None = None,
) -> int:
    """Apply up to `limit` unprocessed case.changed outbox rows, in id order, then mark them processed.

    On PostgreSQL the rows are taken FOR UPDATE SKIP LOCKED, so concurrent drains share the work
    without taking the same rows. `on_event(row)` runs for each row after its counters are applied
    and before it is marked processed (alert scheduling, pushes), inside the drain's transaction; an
    Exception there is logged and does not hold the counters back, while a BaseException (e.g.
    KeyboardInterrupt) rolls the batch back to be taken again later. `prepare(rows)`, if given, runs once
    before the first on_event (loading what every event of the batch reads in one query); what it returns is
    held until the batch is done (the session's identity map keeps only what is referenced). If Redis fails, the session is
    rolled back and the error raised. Either way the rows stay unprocessed and the events already
    applied are not counted twice when they are taken again.
    Returns the number of rows taken (0 while a reconcile runs).
    """
    tz = _tz(tz)
    token = _register_drainer(r)
    if token is None:
        return 0
    try:
        stmt = (
            select(Outbox)
            .where(Outbox.topic == TOPIC, Outbox.processed_at.is_(None))
            .order_by(Outbox.id)
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = session.execute(stmt).scalars().all()
        items = []
        city_of = _city_resolver(session, city_id) if rows else None
        for row in rows:
            payload = row.payload or {}
            cid = city_of(payload.get("town_id"))
            try:
                items.append((row.id, _increments(payload, cid, tz)))
            except (KeyError, ValueError, TypeError, AttributeError):  # can never count: don't block the rest
                log.exception(
                    "outbox row %s has a malformed payload; skipped (reconcile counts from the steps)", row.id
                )
        if not _renew_drainer(r, token):
            # our lease ran out while the rows were read and a reconcile may be rewriting the counters: leave
            # the rows for the next round, as a drain that finds a reconcile running does
            log.warning(
                "drain %s outlived its lease (%d s); its %d rows are left for the next round",
                token,
                DRAIN_LEASE_S,
                len(rows),
            )
            session.rollback()
            token = None
            return 0
        _apply_batch(r, items)
        # the counters are applied and marked done: a reconcile may start now (what follows moves no counter)
        _forget_drainer(r, token)
        token = None
        held = prepare(rows) if prepare is not None and on_event is not None and rows else None
        for row in rows:
            if on_event is not None:
                try:
                    on_event(row)
                except Exception:
                    log.exception("on_event failed for outbox row %s", row.id)
        mark_processed(session, [row.id for row in rows])
        session.commit()
        del held
        return len(rows)
    except BaseException:
        session.rollback()
        raise
    finally:
        if token is not None:
            _forget_drainer(r, token)


def _renew_drainer(r, token: str) -> bool:
    """Extend this drain's lease if it is still registered (a reconcile removes the expired ones)."""
    with r.pipeline(transaction=True) as pipe:
        pipe.zadd(DRAINERS_KEY, {token: time.time() + DRAIN_LEASE_S}, xx=True)
        pipe.zscore(DRAINERS_KEY, token)
        _changed, score = pipe.execute()
    return score is not None


def mark_processed(session, ids: list[int]) -> None:
    """One UPDATE for a batch of outbox rows (not one per row, as the unit of work would write them)."""
    if ids:
        session.execute(
            update(Outbox)
            .where(Outbox.id.in_(ids))
            .values(processed_at=utcnow(), attempts=func.coalesce(Outbox.attempts, 0) + 1)
            .execution_options(synchronize_session=False)
        )


def _forget_drainer(r, token: str) -> None:
    try:
        r.zrem(DRAINERS_KEY, token)
    except Exception:  # Redis gone: the lease runs out by itself
        log.warning("could not unregister drain %s; its lease runs out in %d s", token, DRAIN_LEASE_S)


def _if_ours(r, key: str, token: str, act: Callable) -> bool:
    """Run `act(pipe)` in a MULTI only if `key` still holds our `token` (compare-and-act with WATCH, so
    no Lua is needed and fakeredis works). False when the key is gone, someone else's, or changed."""
    with r.pipeline() as pipe:
        try:
            pipe.watch(key)
            value = pipe.get(key)
            if value is None or _s(value) != token:
                pipe.reset()
                return False
            pipe.multi()
            act(pipe)
            pipe.execute()
            return True
        except WatchError:
            return False


def _release(r, key: str, token: str) -> None:
    _if_ours(r, key, token, lambda pipe: pipe.delete(key))


def _renew(r, key: str, token: str, lease_s: float) -> bool:
    """Extend the lease on `key` if it is still ours."""
    return _if_ours(r, key, token, lambda pipe: pipe.pexpire(key, int(lease_s * 1000)))


class _LeaseKeeper:
    """Renews a lease every third of its length from a daemon thread while a long job holds it."""

    def __init__(self, r, key: str, token: str, lease_s: float):
        import threading

        self.r, self.key, self.token, self.lease_s = r, key, token, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"lease {key}")

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not _renew(self.r, self.key, self.token, self.lease_s):
                    log.warning("lease %s was lost", self.key)
                    return
            except Exception as exc:  # Redis down: the job itself fails on its next call
                log.warning("could not renew lease %s (%s)", self.key, exc.__class__.__name__)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def _pause_drains(r, wait_s: float) -> str:
    """Take the reconcile flag and wait until the drains that were running have finished."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    while not r.set(RECONCILE_KEY, token, nx=True, px=int(RECONCILE_LEASE_S * 1000)):
        if time.monotonic() > deadline:
            raise TimeoutError("another reconcile is running")
        time.sleep(0.05)
    while True:
        r.zremrangebyscore(DRAINERS_KEY, "-inf", time.time())  # drains that died
        if not r.zcard(DRAINERS_KEY):
            return token
        if time.monotonic() > deadline:
            _release(r, RECONCILE_KEY, token)
            raise TimeoutError("drains did not finish in time")
        time.sleep(0.02)
