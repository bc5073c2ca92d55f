"""POSTs without a valid api_key: limited per client address, folded in the audit log.

A client's own budget (views._rate_key) is keyed by its api_key, so random wrong keys would each get
a fresh budget and each write an audit row (security test, issue 11: 40 rows in 0.6 s). Here:

- limit: every POST whose api_key is missing, unknown or disabled counts against its address
  (BAD_KEY_LIMIT, in the project's flask-limiter storage: Redis in server mode, memory otherwise);
  past it the address is answered 429 in the spec's error list, with Retry-After. A valid key never
  counts and is never held back here, so a flood of wrong keys from an address (a NAT, a shared
  proxy) does not lock out a legitimate client behind it: that client keeps its own budget.
- audit (append-only, so folding means not writing): at most one `open311.bad_key` row per address
  and FOLD_SECONDS. The first wrong key from an address opens a window and is written; the wrong
  keys after it inside the window are only counted; the row that opens the address's next window
  says how many attempts it stands for: itself plus those counted since the previous row. Attempts
  of the last window are thus written when the address next sends a wrong key.
  A missing key is limited but not audited (it never was: nothing was tried).
- if the limiter's storage fails, the same counting runs on a per-process memory store, as the
  project's limits do (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, RateLimiter

from ..audit import audit, client_address
from ..extensions import limiter
from .formats import Open311Error

log = logging.getLogger(__name__)

BAD_KEY_LIMIT = parse("10 per minute")  # wrong api_keys one address may send before it gets 429
FOLD_SECONDS = 60  # at most one audit row per address in this many seconds
PENDING_SECONDS = 7 * 24 * 3600  # how long a count of unwritten attempts waits for the next row
SCOPE = "open311-bad-key"

_fallback = FixedWindowRateLimiter(MemoryStorage())


@dataclass
class Count:
    allowed: bool  # still under BAD_KEY_LIMIT: 403; else 429
    retry_after: int  # seconds until the address's limit window resets
    write: bool  # this attempt opens a fold window: write an audit row
    folded: int  # attempts counted but not written since the previous row (only when write)


def _count(strategy: RateLimiter, address: str, audited: bool) -> Count:
    allowed = strategy.hit(BAD_KEY_LIMIT, SCOPE, address)
    reset_at = strategy.get_window_stats(BAD_KEY_LIMIT, SCOPE, address).reset_time
    retry_after = max(1, math.ceil(reset_at - time.time()))
    if not audited:
        return Count(allowed, retry_after, False, 0)
    storage = strategy.storage
    pending = f"{SCOPE}/pending/{address}"
    if storage.incr(f"{SCOPE}/window/{address}", FOLD_SECONDS) == 1:
        folded = storage.get(pending)
        if folded:  # subtract, not clear: an attempt counted meanwhile by another process is kept
            storage.incr(pending, PENDING_SECONDS, -folded)
        return Count(allowed, retry_after, True, folded)
    storage.incr(pending, PENDING_SECONDS)
    return Count(allowed, retry_after, False, 0)


def detail(count: Count) -> str:
    text = f"api_key 无效或已停用；本条代表 {1 + count.folded} 次尝试"
    if count.folded:
        text += f"（本次及上一条记录之后未逐条记录的 {count.folded} 次）"
    text += f"；同一地址 {FOLD_SECONDS} 秒内的后续无效尝试只计数，计入下一条记录"
    if not count.allowed:
        text += "；该地址已超过无效 api_key 频率限制，本次答复 429"
    return text


def refuse(message: str, *, audited: bool) -> Open311Error:
    """Count a POST without a valid api_key; the error to raise: 403 with `message`, or 429."""
    address = client_address() or "unknown"
    try:
        count = _count(limiter.limiter, address, audited)
    except Exception:  # the limiter's storage (Redis) is unreachable: count in this process
        log.warning("open311: rate limit storage unreachable, counting wrong api_keys in memory")
        count = _count(_fallback, address, audited)
    if count.write:
        audit("open311.bad_key", "open311_client", None, success=False, detail=detail(count), commit=True)
    if count.allowed:
        return Open311Error(403, message)
    return Open311Error(
        429,
        f"无效 api_key 的请求过于频繁，请 {count.retry_after} 秒后再试",
        headers={"Retry-After": str(count.retry_after)},
    )
