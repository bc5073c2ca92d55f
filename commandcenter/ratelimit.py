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
        count, reset = self.incr_window(key, expiry, amount)
        _remember((self.prefixed_key(key), count, reset))
        return count

    def incr_window(self, key: str, expiry: int, amount: int = 1) -> tuple[int, float]:
        """The window's count after this hit and when it resets (unix s), in one round trip."""
        key = self.prefixed_key(key)
        pipe = self.get_connection().pipeline(transaction=False)
        pipe.incrby(key, amount)
        pipe.expire(key, int(expiry), nx=True)
        pipe.ttl(key)
        count, _set, ttl = pipe.execute()
        return int(count), max(ttl, 0) + time.time()

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


# --- the intake's own limit (issue 15 §3) -------------------------------------------------------------------
#
# flask-limiter evaluates its whole machinery (exemption scopes, blueprint and meta limits, the request
# context) twice for a decorated route — before the request and again in the decorator — and once more for
# the headers: measured, a third of a heartbeat's CPU. The intake endpoints (a report, a heartbeat, a
# sign-in, a patrol, a visit, a hotline work order by the API or the operators' page, a photo, an Open311
# request) are the volume, so they are
# limited here instead, with the same library underneath (`limits`' fixed window), the same storage (one
# pipelined round trip), the same keys ("LIMITER/<account or address>/<endpoint>/…": a rolling restart keeps
# the counts), the same X-RateLimit-* headers and a 429 with Retry-After; flask-limiter skips them.

INTAKE_STATE = "_intake_limit"  # on flask.g: (limit item, remaining, reset at) of this request's tightest limit
# in the WSGI environ: (key, endpoint, state) of a request the heartbeat's lane counted and then left to Flask
# (api/lane.py); the check below takes that count instead of counting the request twice
COUNTED = "commandcenter.intake_counted"
REDIS_PAUSE_S = 5.0  # after a storage failure, count in this process's memory for this long before retrying
_intake_endpoints: set[str] = set()  # filled as views are registered (the filter flask-limiter consults)
_parsed: dict[str, list] = {}
_units = {"second": "秒", "minute": "分钟", "hour": "小时", "day": "天", "month": "月", "year": "年"}


def intake_limited(key_func, methods: tuple[str, ...] | None = None):
    """Decorate an intake view (below its route and its `require`): INTAKE_RATE_LIMIT per `key_func()` (the
    account, an Open311 client's key, else the address), per endpoint, for the requests of `methods` (all when
    None: a form's GET is not counted). Over it: 429 naming the limit, with Retry-After, and nothing done."""
    from functools import wraps

    from flask import request

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if methods is None or request.method in methods:
                check_intake_limit(key_func())
            return view(*args, **kwargs)

        wrapped.intake_limited = True
        return wrapped

    return decorator


def describe(item) -> str:
    """A limit in the user's words: 每分钟最多 60 次."""
    unit = _units.get(item.GRANULARITY.name, item.GRANULARITY.name)
    every = unit if item.multiples == 1 else f" {item.multiples} {unit}"
    return f"每{every}最多 {item.amount} 次"


class _IntakeLimiter:
    """One per app: the strategy over the app's limit storage, and a memory fallback while that fails."""

    def __init__(self, app) -> None:
        from limits.storage import MemoryStorage, storage_from_string
        from limits.strategies import FixedWindowRateLimiter

        self.enabled = app.config.get("RATELIMIT_ENABLED", True)
        options = app.config.get("RATELIMIT_STORAGE_OPTIONS", {})
        uri = app.config.get("RATELIMIT_STORAGE_URI", "memory://")
        storage = storage_from_string(uri, **(options if uri != "memory://" else {}))
        self.remote = FixedWindowRateLimiter(storage)
        self.local = FixedWindowRateLimiter(MemoryStorage())
        self.is_memory = isinstance(storage, MemoryStorage)
        self.paused_until = float("-inf")

    def check(self, limit_text: str, identifiers: tuple[str, ...]):
        """(item, remaining, reset at, allowed) of the tightest of the limits in `limit_text`."""
        import logging

        from limits import parse_many

        items = _parsed.get(limit_text)
        if items is None:
            items = _parsed[limit_text] = parse_many(limit_text)
        strategy = self.remote
        if not self.is_memory and time.monotonic() < self.paused_until:
            strategy = self.local
        tightest = None
        for item in items:
            try:
                allowed, reset, remaining = _hit(strategy, item, identifiers)
            except Exception as exc:  # the storage is down: the intake goes on, limited per process
                if strategy is self.local:
                    raise
                logging.getLogger(__name__).warning(
                    "rate-limit storage unreachable (%s); counting in memory for %.0f s",
                    exc.__class__.__name__,
                    REDIS_PAUSE_S,
                )
                self.paused_until = time.monotonic() + REDIS_PAUSE_S
                strategy = self.local
                allowed, reset, remaining = _hit(strategy, item, identifiers)
            state = (item, remaining, reset, allowed)
            if tightest is None or not allowed or (tightest[3] and remaining < tightest[1]):
                tightest = state
            if not allowed:
                break
        return tightest


def _hit(strategy, item, identifiers: tuple[str, ...]) -> tuple[bool, float, int]:
    """(allowed, reset at, remaining) after one hit: one round trip on our Redis storage, with or without a
    request (the heartbeat's lane has none), the library's own hit and stats otherwise."""
    storage = strategy.storage
    if isinstance(storage, OneTripRedisStorage):
        count, reset = storage.incr_window(item.key_for(*identifiers), item.get_expiry())
        return count <= item.amount, reset, max(0, item.amount - count)
    allowed = strategy.hit(item, *identifiers)
    reset, remaining = strategy.get_window_stats(item, *identifiers)
    return allowed, reset, remaining


def intake_limit_state(key: str, endpoint: str):
    """Count one intake request of `key` at `endpoint`: (item, remaining, reset at, allowed) of the tightest
    limit, None when limits are off. Needs an app context (not a request: the heartbeat's lane calls it)."""
    from flask import current_app

    own = current_app.extensions["commandcenter.intake_limiter"]
    if not own.enabled:
        return None
    return own.check(current_app.config["SETTINGS"].intake_rate_limit, (key, endpoint))


def check_intake_limit(key: str) -> None:
    from flask import request
    from werkzeug.exceptions import TooManyRequests

    endpoint = request.endpoint or ""
    counted = request.environ.pop(COUNTED, None)
    if counted is not None and counted[:2] == (key, endpoint):
        state = counted[2]
    else:
        state = intake_limit_state(key, endpoint)
    if state is None:
        return
    item, remaining, reset, allowed = state
    setattr(g, INTAKE_STATE, (item, remaining, reset))
    if not allowed:
        raise TooManyRequests(description=f"请求过于频繁，请稍后再试（{describe(item)}）")


def limit_headers(item, remaining: int, reset: float, status: int) -> list[tuple[str, str]]:
    """The X-RateLimit-* headers of an intake answer (and Retry-After on a 429)."""
    out = [
        ("X-RateLimit-Limit", str(item.amount)),
        ("X-RateLimit-Remaining", str(remaining)),
        ("X-RateLimit-Reset", str(int(reset))),
    ]
    if status == 429:
        out.append(("Retry-After", str(max(1, int(reset - time.time())))))
    return out


def _inject_headers(response):
    state = g.get(INTAKE_STATE)
    if state is None:
        return response
    for name, value in limit_headers(*state, response.status_code):
        response.headers[name] = value
    return response


def init_intake_limiter(app, limiter) -> None:
    """Bind the intake's limiter to the app (after its blueprints are registered): flask-limiter leaves the
    intake endpoints alone, their headers come from here."""
    app.extensions["commandcenter.intake_limiter"] = _IntakeLimiter(app)
    endpoints = {name for name, view in app.view_functions.items() if getattr(view, "intake_limited", False)}
    _intake_endpoints.update(endpoints)
    if not getattr(limiter, "_cc_intake_filter", False):
        from flask import request

        limiter.request_filter(lambda: request.endpoint in _intake_endpoints)
        limiter._cc_intake_filter = True
    app.after_request(_inject_headers)
