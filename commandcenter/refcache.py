"""Categories and places, read on every report and every outbox event, cached per process (issue 15 §3).

A report used to read its category (by code, then by id) and its grid from the database, and the drain read
them again for each event it pushed. They change a few times a year, through the category and place
administration, the importer or the CLI. A process now keeps a detached copy of each row it read (columns
only; a place without its boundary) and attaches it to the request's session without a query
(`proc_cache.attach`).

- A change committed through the application in this process (an ORM insert, update or delete of a Category
  or Place, or an UPDATE/DELETE statement on them) empties the cache after its flush and again after its
  commit; the commit also increments the Redis key GENERATION_KEY, and every process compares it at most
  every second and empties its cache when it moved: the change is seen everywhere within about a second.
- A change that bypasses the application (SQL typed into psql) is seen within MAX_AGE_S at the latest, and
  at once by a process that starts.
- A row that does not exist (an unknown code) is never cached: it is looked up each time.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import event
from sqlalchemy.orm import defer

from .db import db
from .proc_cache import RemoteGeneration, attach, detached_copy

GENERATION_KEY = "cc:ref:generation"
MAX_AGE_S = 300.0  # a change made behind the application's back is seen within this
MAX_ENTRIES = 100_000

_lock = threading.Lock()
_rows: dict[tuple, tuple[object, float]] = {}  # (engine, model name, id) → (detached copy, cached at)
_codes: dict[tuple, int] = {}  # (engine, "Category", code) → id
_generation = 0  # moved by every clear: a read that raced a change is not stored


def clear() -> None:
    global _generation
    with _lock:
        _generation += 1
        _rows.clear()
        _codes.clear()


remote = RemoteGeneration(GENERATION_KEY, clear)


def _engine_key() -> int:
    return id(db.get_bind())


def _fresh(key: tuple):
    hit = _rows.get(key)
    if hit is None:
        return None
    copy, cached_at = hit
    if time.monotonic() - cached_at >= MAX_AGE_S:
        return None
    return copy


def _store(key: tuple, obj, read_at: int, code_key: tuple | None = None) -> None:
    copy = detached_copy(obj, exclude=("geometry",))  # a boundary is read where it is drawn, not here
    with _lock:
        if _generation != read_at:
            return
        if len(_rows) >= MAX_ENTRIES:
            _rows.clear()
            _codes.clear()
        _rows[key] = (copy, time.monotonic())
        if code_key is not None:
            _codes[code_key] = obj.id


def _get(model, ident: int, options=()):
    remote.check()
    key = (_engine_key(), model.__name__, ident)
    copy = _fresh(key)
    if copy is not None:
        return attach(db(), copy)
    read_at = _generation
    obj = db.get(model, ident, options=list(options))
    if obj is not None:
        _store(key, obj, read_at)
    return obj


def category(category_id: int | None):
    """The Category with this id in the current session (active or not), or None."""
    from .models import Category

    if category_id is None:
        return None
    return _get(Category, category_id)


def category_by_code(code: str):
    """The Category with this code in the current session (active or not), or None."""
    from .models import Category

    remote.check()
    engine = _engine_key()
    ident = _codes.get((engine, "Category", code))
    if ident is not None:
        found = category(ident)
        if found is not None and found.code == code:
            return found
    read_at = _generation
    obj = db.query(Category).filter_by(code=code).one_or_none()
    if obj is not None:
        _store((engine, "Category", obj.id), obj, read_at, code_key=(engine, "Category", code))
    return obj


def place(place_id: int | None):
    """The Place with this id in the current session, its boundary not loaded (read if touched), or None."""
    from .models import Place

    if place_id is None:
        return None
    return _get(Place, place_id, options=[defer(Place.geometry)])


# --- changes made through the application --------------------------------------------------------------

PENDING = "refcache_changed"  # on Session.info: a Category or Place changed in this transaction


def _changed(_mapper, _connection, target) -> None:
    clear()
    from sqlalchemy.orm import object_session

    session = object_session(target)
    if session is not None:
        session.info[PENDING] = True


def _bulk_change(orm_execute_state) -> None:
    if not (orm_execute_state.is_update or orm_execute_state.is_delete):
        return
    from .models import Category, Place

    if any(m.class_ in (Category, Place) for m in orm_execute_state.all_mappers):
        clear()
        orm_execute_state.session.info[PENDING] = True


def _after_commit(session) -> None:
    if session.info.pop(PENDING, False):
        clear()
        remote.announce()


def _after_rollback(session, _transaction) -> None:
    if session.info.pop(PENDING, False):
        clear()  # what was read inside the rolled-back transaction may have been its uncommitted rows


def install_hooks(session_factory) -> None:
    from .models import Category, Place

    if event.contains(Category, "after_update", _changed):
        return
    for model in (Category, Place):
        for name in ("after_insert", "after_update", "after_delete"):
            event.listen(model, name, _changed)
    event.listen(session_factory, "after_commit", _after_commit)
    event.listen(session_factory, "after_soft_rollback", _after_rollback)
    event.listen(session_factory, "do_orm_execute", _bulk_change)
