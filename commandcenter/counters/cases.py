"""Case counters: applying a case.changed event exactly once, and reading the counts."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import date

from redis.exceptions import WatchError

from ..timeutil import local, utcnow
from .base import DONE_TTL, FIELDS, _increments, _s, _tz, day_key, delta, month_key

log = logging.getLogger(__name__)

# --- case counters: writing ----------------------------------------------------------------------

# Keys this process has given a TTL: a hint that saves an EXPIRE per write. It is only trusted while
# cc:epoch keeps the value this process last saw, so a FLUSHALL or a restarted Redis resets it.
EPOCH_KEY = "cc:epoch"
_ttl_given: dict = {"epoch": None, "keys": set()}
_TTL_KEYS_MAX = 100_000


def _apply_batch(r, items: list[tuple[int, list[tuple[str, int, tuple[str, ...]]]]]) -> list[bool]:
    """Apply (outbox_id, increments) pairs exactly once each, in one WATCH/MULTI/EXEC.

    Increments of the batch are summed per (key, field), so a batch costs three round trips whatever
    its size. Each key gets its TTL in the same MULTI the first time this process writes it (the
    process remembers which keys it has given one); `reconcile` gives a TTL back to any key found
    without one (e.g. recreated after a FLUSHALL). Events that move no counter (accept, feedback...)
    need no marker and cost nothing."""
    items = [(oid, incs) for oid, incs in items if incs]
    if not items:
        return []
    markers = list(dict.fromkeys(f"cc:done:{oid}" for oid, _ in items))
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(*markers)
                *values, epoch = pipe.mget([*markers, EPOCH_KEY])
                epoch = None if epoch is None else _s(epoch)
                new_epoch = uuid.uuid4().hex if epoch is None else None
                if epoch != _ttl_given["epoch"] or len(_ttl_given["keys"]) > _TTL_KEYS_MAX:
                    _ttl_given["keys"] = set()
                done = {m for m, v in zip(markers, values, strict=True) if v is not None}
                flags, totals, ttls = [], defaultdict(int), {}
                for oid, incs in items:
                    marker = f"cc:done:{oid}"
                    if marker in done:
                        flags.append(False)
                        continue
                    done.add(marker)
                    flags.append(True)
                    for inc in incs:
                        key, ttl, fields = inc[:3]
                        ttls[key] = ttl
                        for field in fields:
                            totals[(key, field)] += delta(inc)
                if not totals:
                    pipe.reset()
                    return flags
                pipe.multi()
                if new_epoch:
                    pipe.set(EPOCH_KEY, new_epoch, nx=True)
                for (oid, _), new in zip(items, flags, strict=True):
                    if new:
                        pipe.set(f"cc:done:{oid}", 1, ex=DONE_TTL)
                for (key, field), n in totals.items():
                    if n:  # a relocation within one batch may cancel out
                        pipe.hincrby(key, field, n)
                known = _ttl_given["keys"]
                fresh_keys = [key for key in ttls if key not in known]
                for key in fresh_keys:
                    pipe.expire(key, ttls[key])
                results = pipe.execute()
                break
            except WatchError:  # one of the markers was touched meanwhile: read them again
                continue
    if new_epoch:
        # ours if our SET NX won; else another process set one first and we trust nothing until we read it
        _ttl_given["epoch"] = new_epoch if results[0] else None
        _ttl_given["keys"] = set()
    else:
        _ttl_given["epoch"] = epoch
    if _ttl_given["epoch"] is not None:
        _ttl_given["keys"].update(fresh_keys)
    return flags


def apply_case_event(r, outbox_id: int, payload: dict, city_id: int | None, tz: str | None = None) -> bool:
    """Count one case.changed outbox row. False if it had been counted before (its done marker exists),
    True otherwise; an event that moves no counter (accept, feedback...) is True and touches nothing."""
    flags = _apply_batch(r, [(outbox_id, _increments(payload, city_id, _tz(tz)))])
    return flags[0] if flags else True


def apply_case_events(r, events: Iterable[tuple[int, dict]], city_id: int | None, tz: str | None = None) -> list[bool]:
    """apply_case_event for many (outbox_id, payload) pairs in one transaction (what the drain uses).
    Each event still counts exactly once; the flags say which were applied now (see apply_case_event)."""
    tz = _tz(tz)
    items = [(oid, _increments(payload, city_id, tz)) for oid, payload in events]
    flags = iter(_apply_batch(r, items))
    return [next(flags) if incs else True for _oid, incs in items]


# --- case counters: reading ----------------------------------------------------------------------


def _counts_key(place_id, day, month, tz) -> str:
    if day is not None and month is not None:
        raise ValueError("give a day or a month, not both")
    if month is not None:
        return month_key(month, place_id)
    return day_key(day if day is not None else local(utcnow(), _tz(tz)).date(), place_id)


def _as_counts(raw: dict) -> dict[str, int]:
    counts = dict.fromkeys(FIELDS, 0)
    for field, value in raw.items():
        counts[_s(field)] = int(_s(value))
    return counts


def case_counts(
    r, place_id: int, day: date | None = None, month: str | date | None = None, tz: str | None = None
) -> dict[str, int]:
    """Every field of one place for a local day (default: today) or a month ("YYYYMM"); missing = 0."""
    return _as_counts(r.hgetall(_counts_key(place_id, day, month, tz)))


def case_counts_many(
    r, place_ids: Iterable[int], day: date | None = None, month: str | date | None = None, tz: str | None = None
) -> dict[int, dict[str, int]]:
    """case_counts of many places in one round trip (the wall reads all towns at once)."""
    ids = list(place_ids)
    with r.pipeline(transaction=False) as pipe:
        for pid in ids:
            pipe.hgetall(_counts_key(pid, day, month, tz))
        raws = pipe.execute()
    return {pid: _as_counts(raw) for pid, raw in zip(ids, raws, strict=True)}
