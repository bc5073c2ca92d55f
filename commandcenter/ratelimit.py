"""The rate limits' Redis storage in one round trip per request (issue 15 §3).

flask-limiter's fixed window (the project's strategy) asks its storage three times for every limited
request: INCR with its expiry (a Lua script), then GET and TTL for the X-RateLimit-* headers. This storage
answers the first with one pipeline — INCRBY, EXPIRE … NX (the window starts with the first hit, as the
script did), TTL — and keeps the count and the reset moment it got for the GET and TTL that follow in the
same request, so a limited request costs one Redis round trip. The limits, keys, headers and messages are
flask-limiter's own, unchanged; the in-memory fallback when Redis is down too.

Selected by the storage URI `cc+redis://…` (create_app derives it from REDIS_URL).
"""

from __future__ import annotations

import time

from flask import g, has_request_context
from limits.storage import RedisStorage

PREFIX = "cc+"
MEMO = "_ratelimit_last"  # on flask.g: (prefixed key, count, reset at (unix s)) of this request's last hit


def _remember(value) -> None:
    if has_request_context():
        setattr(g, MEMO, value)


class OneTripRedisStorage(RedisStorage):
    """RedisStorage whose incr is one pipelined round trip and whose get/get_expiry right after it, in the
    same request and for the same key, are answered from that trip."""

    STORAGE_SCHEME = ["cc+redis", "cc+rediss", "cc+redis+unix"]

    def __init__(self, uri: str, *args, **kwargs) -> None:
        super().__init__(uri.removeprefix(PREFIX), *args, **kwargs)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        key = self.prefixed_key(key)
        pipe = self.get_connection().pipeline(transaction=False)
        pipe.incrby(key, amount)
        pipe.expire(key, int(expiry), nx=True)
        pipe.ttl(key)
        count, _set, ttl = pipe.execute()
        _remember((key, int(count), max(ttl, 0) + time.time()))
        return int(count)

    def _remembered(self, key: str):
        last = g.get(MEMO) if has_request_context() else None
        return last if last is not None and last[0] == self.prefixed_key(key) else None

    def get(self, key: str) -> int:
        last = self._remembered(key)
        return last[1] if last is not None else super().get(key)

    def get_expiry(self, key: str) -> float:
        last = self._remembered(key)
        return last[2] if last is not None else super().get_expiry(key)

    def clear(self, key: str) -> None:
        _remember(None)
        super().clear(key)

    def reset(self) -> int | None:
        _remember(None)
        return super().reset()


def storage_uri(redis_url: str | None) -> str:
    """flask-limiter's storage: this one over Redis in server mode, per-process memory otherwise."""
    if not redis_url:
        return "memory://"
    if redis_url.startswith(("redis://", "rediss://", "redis+unix://")):
        return PREFIX + redis_url
    return redis_url
