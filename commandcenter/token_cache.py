"""API bearer tokens and their accounts, cached per process (issue 15 §3).

Every report and heartbeat through the API used to read its token and account from the database. A process
now keeps what it read for TOKEN_CACHE_SECONDS (settings.token_cache_seconds, default 300; 0 turns the cache
off). A city's phones send a heartbeat a minute each, so a window shorter than that never hits.

- a token revoked, or an account deactivated, changed in role or place, *in another process* (another web
  process, a worker, the CLI) through the application: that process's commit increments the Redis key
  GENERATION_KEY, and every process compares it at most every REMOTE_CHECK_S seconds and drops its whole
  cache when it moved: refused here within about a second;
- a change that bypasses the application (SQL typed into psql), or made while Redis is unreachable: within
  TOKEN_CACHE_SECONDS at the latest;
- a change made in *this* process (revoking a token, deactivating an account, any ORM update or delete of an
  ApiToken or Account row; an UPDATE/DELETE statement on them, as end_sessions runs, drops the whole cache)
  drops the entries concerned at once (after its flush and again after its commit), so it is refused on the
  next request;
- the expiry of a token is checked on every request (from the cached expires_at).

What is cached is the token's id, its expiry and last use, and a detached copy of the account's columns; a
request gets its own session copy of that account (Session.merge(load=False): no query).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import event, inspect

from .proc_cache import RemoteGeneration, detached_copy

MAX_ENTRIES = 50_000  # beyond this, the oldest half is dropped (a bound, not a working size)
GENERATION_KEY = "cc:tokens:generation"  # moved by every committed token/account change, in any process
REMOTE_CHECK_S = 1.0
# Each entry lives a random share of TOKEN_CACHE_SECONDS, between LIFE_MIN and all of it: the phones of a
# city fill the cache within a minute of a restart (one heartbeat a minute each), and with one lifetime for
# all they would all be read again within the same minute five minutes later (at a city's peak, 250 token
# reads a second on top of the load, on a machine 75 % busy). Spread, the refills settle to a steady rate of
# about accounts / (TOKEN_CACHE_SECONDS × 0.875) a second: 14 % more reads than one lifetime for all (each
# read of a token costs about 2 ms of CPU), none of them in a burst.
LIFE_MIN = 0.75
REMOTE_PAUSE_S = 30.0  # after Redis failed to answer, leave it alone this long (no socket timeout per request)


@dataclass
class Entry:
    token_id: int
    account_id: int
    expires_at: datetime
    last_used_at: datetime | None
    account: object  # a detached Account holding only its column values
    cached_at: float  # time.monotonic()
    life: float = 1.0  # the share of max_age this entry is kept: spread, so that refills do not come at once


class TokenColumns(NamedTuple):
    """What `store` reads of a token (an ApiToken row, or these columns of it)."""

    id: int
    expires_at: datetime
    last_used_at: datetime | None


_lock = threading.Lock()
_entries: dict[tuple[int, str], Entry] = {}  # (id of the engine, token digest) → entry
_generation = 0  # bumped by every forget: a read that raced a revocation is not stored


def generation() -> int:
    return _generation


def _clear_all() -> None:
    clear()


remote = RemoteGeneration(GENERATION_KEY, _clear_all, check_s=REMOTE_CHECK_S, pause_s=REMOTE_PAUSE_S)


def lookup(engine_key: int, digest: str, max_age: float) -> Entry | None:
    remote.check()
    entry = _entries.get((engine_key, digest))
    if entry is None:
        return None
    if time.monotonic() - entry.cached_at >= max_age * entry.life:
        with _lock:
            if _entries.get((engine_key, digest)) is entry:
                del _entries[(engine_key, digest)]
        return None
    return entry


def store(engine_key: int, digest: str, token, account, read_at_generation: int) -> None:
    """Keep a valid token and a detached copy of its (active) account, unless something was forgotten since
    it was read (a revocation committed meanwhile in this process)."""
    entry = Entry(
        token.id,
        account.id,
        token.expires_at,
        token.last_used_at,
        detached_copy(account),
        time.monotonic(),
        random.uniform(LIFE_MIN, 1.0),
    )
    with _lock:
        if _generation != read_at_generation:
            return
        if len(_entries) >= MAX_ENTRIES:
            for key in sorted(_entries, key=lambda k: _entries[k].cached_at)[: MAX_ENTRIES // 2]:
                del _entries[key]
        _entries[(engine_key, digest)] = entry


def forget(*, token_ids=(), account_ids=()) -> None:
    global _generation
    token_ids, account_ids = set(token_ids), set(account_ids)
    if not token_ids and not account_ids:
        return
    with _lock:
        _generation += 1
        for key in [k for k, e in _entries.items() if e.token_id in token_ids or e.account_id in account_ids]:
            del _entries[key]


def clear() -> None:
    global _generation
    with _lock:
        _generation += 1
        _entries.clear()


# --- changes made in this process: drop the entries at once ------------------------------------------------

PENDING = "token_cache_forget"  # on Session.info: (token ids, account ids) changed in this transaction


ANNOUNCE = "token_cache_announce"  # on Session.info: a change the other processes must hear of
# the account columns that decide what a token may do: a change of another column (last_seen_at, a login's
# bookkeeping, the display name) is not announced, or every morning's logins would empty every cache
ACCOUNT_COLUMNS = ("active", "role", "place_id", "town_id", "village_id", "center_id", "department_id", "password_hash")


def _changed(kind: str, target) -> None:
    from sqlalchemy.orm import object_session

    ident = target.id
    forget(token_ids=[ident] if kind == "token" else (), account_ids=[ident] if kind == "account" else ())
    session = object_session(target)
    if session is not None:
        tokens, accounts = session.info.setdefault(PENDING, (set(), set()))
        (tokens if kind == "token" else accounts).add(ident)
        state = inspect(target)
        if (
            kind == "token"
            or state.deleted
            or state.was_deleted
            or any(state.attrs[c].history.has_changes() for c in ACCOUNT_COLUMNS if c in state.attrs)
        ):
            session.info[ANNOUNCE] = True


def _after_commit(session) -> None:
    pending = session.info.pop(PENDING, None)
    if pending:
        forget(token_ids=pending[0], account_ids=pending[1])
    everything = session.info.pop(PENDING_ALL, False)
    if everything:
        clear()
    if session.info.pop(ANNOUNCE, False) or everything:
        remote.announce()


PENDING_ALL = "token_cache_clear"


def _bulk_change(orm_execute_state) -> None:
    """An UPDATE or DELETE statement on accounts or tokens (end_sessions revoking every token of an account,
    a grid merge moving accounts): the whole cache goes, now and again after the commit."""
    if not (orm_execute_state.is_update or orm_execute_state.is_delete):
        return
    from .models import Account, ApiToken

    if any(m.class_ in (Account, ApiToken) for m in orm_execute_state.all_mappers):
        clear()
        orm_execute_state.session.info[PENDING_ALL] = True


def install_hooks(session_factory) -> None:
    from .models import Account, ApiToken

    if event.contains(Account, "after_update", _account_changed):
        return
    for name in ("after_update", "after_delete"):
        event.listen(Account, name, _account_changed)
        event.listen(ApiToken, name, _token_changed)
    event.listen(session_factory, "after_commit", _after_commit)
    event.listen(session_factory, "after_soft_rollback", _after_rollback)
    event.listen(session_factory, "do_orm_execute", _bulk_change)


def _after_rollback(session, _transaction) -> None:
    session.info.pop(PENDING, None)
    session.info.pop(ANNOUNCE, None)
    session.info.pop(PENDING_ALL, None)


def _account_changed(_mapper, _connection, target) -> None:
    _changed("account", target)


def _token_changed(_mapper, _connection, target) -> None:
    _changed("token", target)
