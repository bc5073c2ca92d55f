"""Pushes to browsers over Socket.IO, by hierarchy rooms, with a sequence number.

Any process may publish (web or worker): with REDIS_URL set, Flask-SocketIO relays through the Redis
message queue to whichever web process holds the browser. A browser joins the room of its account's
place and so receives its own place and everything below it, nothing else. Every push carries `seq`;
a client that sees a gap (or reconnects) re-reads its whole snapshot.
"""

from __future__ import annotations

import itertools
import logging
import threading

from flask import current_app, request, session

from .access import has_permission
from .db import db
from .extensions import socketio
from .models import Account, WebSession
from .security import token_digest
from .timeutil import utcnow

log = logging.getLogger(__name__)
_local_seq = itertools.count(1)
_local_lock = threading.Lock()
SEQ_KEY = "cc:push:seq"


def room_of(place_id: int) -> str:
    return f"place:{place_id}"


def next_seq() -> int:
    settings = current_app.config["SETTINGS"]
    if settings.redis_url:
        from .redis_conn import redis_client

        try:
            return int(redis_client().incr(SEQ_KEY))
        except Exception:  # Redis down: the push is best-effort anyway; clients resync on reconnect
            log.warning("no sequence number from Redis; pushing without one")
            return 0
    with _local_lock:
        return next(_local_seq)


def publish(event: str, data: dict, place_ids: list[int | None]) -> int:
    """Send `event` to the rooms of the given places (a case: its grid, village, town and city)."""
    seq = next_seq()
    payload = {**data, "seq": seq}
    for place_id in {p for p in place_ids if p}:
        try:
            socketio.emit(event, payload, to=room_of(place_id), namespace="/live")
        except Exception:  # a push must never break the write that caused it
            log.exception("push of %s failed", event)
    return seq


def _account_from_session() -> Account | None:
    token = session.get("sid")
    if not token:
        return None
    ws = db.get(WebSession, token_digest(token))
    if ws is None or ws.ended_at is not None:
        return None
    idle = current_app.config["SETTINGS"].session_idle_minutes * 60
    if (utcnow() - ws.last_seen_at).total_seconds() > idle:
        return None
    return db.get(Account, ws.account_id)


@socketio.on("connect", namespace="/live")
def on_connect(auth=None):
    """Only a logged-in account that may watch the wall or drill down; it joins its own place's room."""
    try:
        account = _account_from_session()
        if account is None or not (has_permission(account, "wall.view") or has_permission(account, "drill.view")
                                   or has_permission(account, "mobile.view")):
            return False
        from flask_socketio import join_room

        join_room(room_of(account.place_id))
        log.debug("socket %s joined place %s", request.sid, account.place_id)
        return True
    finally:
        db.remove()
