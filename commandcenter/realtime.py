"""Pushes to browsers over Socket.IO, by hierarchy rooms, with a sequence number.

Any process may publish (web or worker): with REDIS_URL set, Flask-SocketIO relays through the Redis
message queue to whichever web process holds the browser. A browser joins the room of its account's
place and so receives its own place and everything below it, nothing else. Every push carries `seq`,
numbered per room: a client sees 1, 2, 3… for its own room whatever happens in the others, so a gap
(or a reconnect) really means it missed something, and only then does it re-read its whole snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from flask import current_app, request, session

from .access import has_permission
from .db import db
from .extensions import socketio
from .models import Account, WebSession
from .security import token_digest
from .timeutil import utcnow

log = logging.getLogger(__name__)
_local_seq: defaultdict[str, int] = defaultdict(int)
_local_lock = threading.Lock()
SEQ_KEY = "cc:push:seq:"  # + room name: one counter per room


def room_of(place_id: int) -> str:
    return f"place:{place_id}"


def next_seqs(rooms: list[str]) -> dict[str, int]:
    """The next sequence number of each room (one Redis round trip); 0 where none could be had."""
    settings = current_app.config["SETTINGS"]
    if settings.redis_url:
        from .redis_conn import redis_client

        try:
            with redis_client().pipeline(transaction=False) as pipe:
                for room in rooms:
                    pipe.incr(SEQ_KEY + room)
                return {room: int(n) for room, n in zip(rooms, pipe.execute(), strict=True)}
        except Exception:  # Redis down: the push is best-effort anyway; clients resync on reconnect
            log.warning("no sequence number from Redis; pushing without one")
            return dict.fromkeys(rooms, 0)
    with _local_lock:
        for room in rooms:
            _local_seq[room] += 1
        return {room: _local_seq[room] for room in rooms}


def publish(event: str, data: dict, place_ids: list[int | None]) -> dict[str, int]:
    """Send `event` to the rooms of the given places (a case: its grid, village, town and city), each
    with the next number of that room's sequence. Returns the numbers given."""
    rooms = sorted({room_of(p) for p in place_ids if p})
    seqs = next_seqs(rooms)
    for room in rooms:
        try:
            socketio.emit(event, {**data, "seq": seqs[room]}, to=room, namespace="/live")
        except Exception:  # a push must never break the write that caused it
            log.exception("push of %s failed", event)
    return seqs


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
