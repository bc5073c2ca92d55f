"""One engine per application (kept on the app, sized by the settings) and one scoped session per thread;
the web removes the session after each request. A process holds one application, whose engine the
session is bound to; tests that build several apps on one database share its engine."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, scoped_session, sessionmaker


class Base(DeclarativeBase):
    pass


session_factory = sessionmaker(expire_on_commit=False)
db = scoped_session(session_factory)
_engine: Engine | None = None
_engine_pool: object = None  # the pool arguments _engine was made with


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


# A pooled connection is pinged before use only if it has lain unused this long (SQLAlchemy's pool_pre_ping
# pings on every checkout: a SELECT 1 round trip on every request, a fifth of the CPU of a light API call).
# One used a moment ago is alive; if the server went away within that second, the request fails once with a
# 503, SQLAlchemy sees the disconnect and drops every pooled connection, and the next request reconnects.
PING_IF_IDLE_S = 1.0


def _note_idle(_dbapi_conn, record, *_args) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(engine: Engine) -> None:
    def checkout(dbapi_conn, record, _proxy) -> None:
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since < PING_IF_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(str(exc)) from exc  # the pool replaces the connection (three tries)
        if not alive:
            raise DisconnectionError("ping failed")

    event.listen(engine, "checkout", checkout)


def init_engine(url: str, *, pool_size: int = 20, max_overflow: int = 30, pool_timeout: float = 10) -> Engine:
    """The engine of `url` (made once per URL and pool size), bound to the session factory."""
    global _engine, _engine_pool
    from .settings import normalize_database_url

    url = normalize_database_url(url)
    pool = (pool_size, max_overflow, pool_timeout)
    if (
        _engine is not None
        and _engine.url.render_as_string(hide_password=False) == url
        and _engine_pool in (pool, "sqlite")
    ):
        return _engine
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        pool = "sqlite"
    else:
        # the threads of a web process mostly wait on websockets; those that query wait at most
        # pool_timeout for a connection (then 503), so PostgreSQL's max_connections is never exceeded
        engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
        event.listen(engine, "connect", _note_idle)
        event.listen(engine, "checkin", _note_idle)
        _ping_if_idle(engine)
    if _engine is not None and _engine is not engine:
        _engine.dispose()
    db.remove()
    session_factory.configure(bind=engine)
    _engine, _engine_pool = engine, pool
    return engine


def get_engine() -> Engine:
    """The current application's engine (the process's one outside an application)."""
    from flask import current_app, has_app_context

    if has_app_context() and "commandcenter.engine" in current_app.extensions:
        return current_app.extensions["commandcenter.engine"]
    if _engine is None:
        raise RuntimeError("database engine not initialised: call create_app() first")
    return _engine


def move_forward(table, column: str, rows: list[tuple[int, object]]) -> None:
    """`column` of each row of `table` (by id) set to its new time, never moved back (NULL or older only).
    PostgreSQL: one UPDATE … FROM (VALUES …) for all of them; elsewhere an executemany. A plain statement on
    the session's connection (not a change of ORM rows: the caches' hooks do not see it); the caller commits.
    Used for bookkeeping times written in bulk: tokens' last use, accounts' last heartbeat."""
    from sqlalchemy import DateTime, Integer, bindparam, or_, update, values
    from sqlalchemy import column as col

    if not rows:
        return
    target = table.c[column]
    conn = db.connection()
    if conn.dialect.name == "postgresql":
        new = values(col("id", Integer), col("at", DateTime), name="moved").data(rows)
        conn.execute(
            update(table)
            .where(table.c.id == new.c.id, or_(target.is_(None), target < new.c.at))
            .values({column: new.c.at})
        )
        return
    conn.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"), or_(target.is_(None), target < bindparam("b_at")))
        .values({column: bindparam("b_at")}),
        [{"b_id": i, "b_at": at} for i, at in rows],
    )
