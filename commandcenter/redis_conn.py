"""One Redis connection pool per process, with short timeouts so an outage is noticed, not waited on."""

from __future__ import annotations

from functools import lru_cache

from flask import current_app
from redis import Redis


@lru_cache(maxsize=4)
def _client(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, health_check_interval=30)


def as_text(value) -> str:
    """A value read from Redis (bytes from redis-py, str from a decoding client or fakeredis) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_client(url: str | None = None) -> Redis:
    url = url or current_app.config["SETTINGS"].redis_url
    if not url:
        raise RuntimeError("REDIS_URL is not set (embedded mode has no Redis)")
    return _client(url)
