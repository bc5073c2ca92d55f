"""What the per-process caches share (token_cache.py, refcache.py): a Redis generation that carries a change
committed in one process to every other within a second, and detached copies of ORM rows that a request
attaches to its own session without a query.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import inspect
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key


def _redis():
    from flask import current_app, has_app_context

    if not has_app_context() or not current_app.config["SETTINGS"].redis_url:
        return None
    from .redis_conn import redis_client

    return redis_client()


class RemoteGeneration:
    """A Redis counter (`key`) that a process increments after committing a change to what the caches hold
    (`announce`), and that every process reads at most every `check_s` seconds (`check`), calling `on_change`
    when it moved. After Redis failed to answer, it is left alone for `pause_s` seconds: a frozen Redis must
    not cost every request a socket timeout (the caches' own windows bound the staleness meanwhile)."""

    def __init__(self, key: str, on_change: Callable[[], None], check_s: float = 1.0, pause_s: float = 30.0):
        self.key, self.on_change, self.check_s, self.pause_s = key, on_change, check_s, pause_s
        self.seen: bytes | None = None
        self.checked_at = float("-inf")
        self.paused_until = float("-inf")

    def check(self) -> None:
        now = time.monotonic()
        if now - self.checked_at < self.check_s or now < self.paused_until:
            return
        self.checked_at = now
        try:
            r = _redis()
            if r is None:
                return
            seen = r.get(self.key)
        except Exception:  # unreachable or frozen
            self.paused_until = time.monotonic() + self.pause_s
            return
        if seen != self.seen:  # (the first look too: what was cached before it may be older than the change)
            self.on_change()
            self.seen = seen

    def announce(self) -> None:
        if time.monotonic() < self.paused_until:
            return  # Redis failed a moment ago: the other processes fall back on their windows
        try:
            r = _redis()
            if r is not None:
                r.incr(self.key)
        except Exception:
            self.paused_until = time.monotonic() + self.pause_s

    def reset(self) -> None:
        """Forget the last value seen and any pause (a new app, a test's fresh Redis)."""
        self.seen, self.checked_at, self.paused_until = None, float("-inf"), float("-inf")


def detached_copy(obj, exclude: tuple[str, ...] = ()):
    """A new detached instance of obj's class holding only the column values obj has loaded (no
    relationship, no deferred column, none of `exclude`): safe to keep across requests and threads, never
    modified."""
    state = inspect(obj)
    mapper = state.mapper
    copy = mapper.class_manager.new_instance()
    for prop in mapper.column_attrs:
        if prop.key in state.dict and prop.key not in exclude:
            set_committed_value(copy, prop.key, state.dict[prop.key])
    make_transient_to_detached(copy)
    return copy


def attach(session, copy):
    """The session's instance for this copy's row: the one already in its identity map (which may carry
    changes of this transaction), else a new one merged from the copy without a query."""
    state = inspect(copy)
    present = session.identity_map.get(identity_key(state.mapper.class_, state.identity))
    if present is not None:
        return present
    return session.merge(copy, load=False)
