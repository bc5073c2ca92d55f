"""Pushes to browsers over Socket.IO, by hierarchy rooms, coalesced per room and tick (issue 15 §1).

A browser joins the room of its account's place (a wall: "place:12") and so receives its own place and
everything below it, nothing else; a gridworker's /g/ page joins his own room ("account:7").

Any process may publish (web or worker): `publish` and `push_to_account` append an item to one pending
list in Redis (`counters_redis()`: real Redis in server mode, the in-process fakeredis in embedded mode,
one code path). One flusher, held by one process at a time through a Redis lease, takes the whole list
every PUSH_TICK_SECONDS (a MULTI of LRANGE and DEL), groups it by room and emits ONE "batch" event per
room that had anything: its items (the "case", "alert", "g.case" and "g.visit_due" dicts of before), the
counter fields moved for the room's own place, and `seq`, numbered per room. So the fan-out costs
rooms × ticks through the message queue and clients × ticks on the sockets, whatever the report rate.
A client sees 1, 2, 3… for its own room whatever happens in the others, so a gap (or a reconnect) really
means it missed something, and only then does it re-read its whole snapshot. The flusher runs in each
web process that holds sockets (started on the first connect) and in the embedded runner; with REDIS_URL
set Flask-SocketIO relays its emits through the Redis message queue to whichever web process holds the
browser. The pending list is bounded (PENDING_MAX items, PENDING_MAX_AGE_S old): what is dropped makes a
gap in the rooms' numbering, so their clients resync. See docs/realtime.md.

Who may hold a socket (issue 11): the handshake must come from our own origin (or one configured in
SOCKET_ALLOWED_ORIGINS), on websocket and polling alike; and a socket lives no longer than the web session
that opened it. Each process remembers which session each of its sockets belongs to; logout, the idle
timeout, a password change and deactivation disconnect them (`disconnect_web_sessions`, through the
message queue for sockets held by another web process), and every SOCKET_CHECK_SECONDS each web process
checks its sockets' sessions in the database, which also catches a session that simply went idle.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, request, session
from sqlalchemy import select

from .access import has_permission
from .db import db
from .extensions import socketio
from .models import Account, WebSession
from .redis_conn import as_text
from .security import token_digest
from .timeutil import utcnow

log = logging.getLogger(__name__)
SEQ_KEY = "cc:push:seq:"  # + room name: one counter per room
PENDING_KEY = "cc:push:pending"  # the items published since the last flush (JSON, oldest first)
OVERFLOW_KEY = "cc:push:overflow"  # set when items were lost (trimmed, or Redis failed): every room skips a number
FLUSHER_KEY = "cc:push:flusher"  # the lease of the one flusher
PENDING_MAX = 10_000  # items kept at most (the newest) if no flusher runs: nothing grows
PENDING_MAX_AGE_S = 30.0  # older items are not sent any more (a gap instead: the client re-reads its snapshot)
PENDING_TTL_S = 300
NAMESPACE = "/live"
# + WebSession.id: the socket ids opened with that web session, whichever web process holds them
SOCKETS_KEY = "cc:live:session:"
_sockets: dict[str, str] = {}  # this process's sockets: sid → WebSession.id
_sockets_lock = threading.Lock()
_checker_started = False
REDIS_BACKOFF_SECONDS = 5.0  # after a failed registry call, leave Redis alone this long (no wait per socket)
_redis_down_until = 0.0


def message_queue_channel(redis_url: str | None) -> str:
    """The Socket.IO message queue's pub/sub channel: Flask-SocketIO's default for database 0, suffixed with
    the database number otherwise (pub/sub channels are shared by every database of a Redis server)."""
    if not redis_url:
        return "flask-socketio"
    from redis.connection import parse_url

    db_number = int(parse_url(redis_url).get("db") or 0)
    return "flask-socketio" if db_number == 0 else f"flask-socketio:{db_number}"


def room_of(place_id: int) -> str:
    return f"place:{place_id}"


def account_room(account_id: int) -> str:
    """A gridworker's own room: what concerns him alone (issue 14 §4) reaches only his open /g/ pages."""
    return f"account:{account_id}"


# --- publishing: an item appended to the pending list --------------------------------------------------------

_gather = threading.local()  # the items of a drain pass, appended once its transaction is committed
_lost = False  # an append failed: the next one that works marks the loss (every room skips a number)


def push_to_account(event: str, data: dict, account_id: int) -> None:
    """Send `event` to one account's room, in that room's next batch."""
    _publish_item(event, data, [account_room(account_id)])


def publish(event: str, data: dict, place_ids: list[int | None], fields: Iterable[str] = ()) -> None:
    """Send `event` to the rooms of the given places (a case: its grid, village, town and city), in each
    room's next batch. `fields`: the counter fields this event moved today at each of these places (the
    batch tells each room the sum for its own place)."""
    rooms = sorted({room_of(p) for p in place_ids if p})
    if rooms:
        _publish_item(event, data, rooms, tuple(fields))


def _publish_item(event: str, data: dict, rooms: list[str], fields: tuple[str, ...] = ()) -> None:
    entry = {"t": time.time(), "rooms": rooms, "event": event, "data": data}
    if fields:
        entry["fields"] = list(fields)
    gathered = getattr(_gather, "items", None)
    if gathered is not None:
        gathered.append(entry)
    else:
        _append([entry])


@contextmanager
def pushes_after_block():
    """Gather the items published inside the block and append them in one round trip when it ends normally
    (the drain wraps each batch of rows: pushes leave only once the batch is committed, and a batch rolled
    back to be taken again pushes nothing twice)."""
    if getattr(_gather, "items", None) is not None:  # nested: the outer block appends
        yield
        return
    _gather.items = []
    try:
        yield
        items = _gather.items
    finally:
        _gather.items = None
    _append(items)


def _append(entries: list[dict]) -> None:
    """Append to the pending list, trimmed to PENDING_MAX. Never raises: a push must not break a write."""
    global _lost
    if not entries:
        return
    from .jobs import counters_redis

    try:
        r = counters_redis()
        with r.pipeline(transaction=False) as pipe:
            pipe.rpush(PENDING_KEY, *(json.dumps(e, ensure_ascii=False, default=str) for e in entries))
            pipe.ltrim(PENDING_KEY, -PENDING_MAX, -1)
            pipe.expire(PENDING_KEY, PENDING_TTL_S)
            length = pipe.execute()[0]
        if length > PENDING_MAX or _lost:  # items were dropped: make every room's clients resync
            r.set(OVERFLOW_KEY, 1, ex=PENDING_TTL_S)
            _lost = False
    except Exception:  # Redis down: the clients resync on reconnect, or on the gap once Redis is back
        _lost = True
        log.warning("push of %d item(s) not queued (Redis unavailable)", len(entries))


# --- the flusher: one batch per room per tick --------------------------------------------------------------


def flush_pushes(r=None) -> int:
    """Take everything pending and emit one "batch" per room that has items. Returns the batches emitted.

    The take is atomic (MULTI: LRANGE, DEL), so two flushers never send the same item; but one flusher runs
    at a time anyway (the lease), so that a room's batches go out in the order of their numbers."""
    if r is None:
        from .jobs import counters_redis

        r = counters_redis()
    with r.pipeline(transaction=True) as pipe:
        pipe.lrange(PENDING_KEY, 0, -1)
        pipe.delete(PENDING_KEY)
        pipe.get(OVERFLOW_KEY)
        pipe.delete(OVERFLOW_KEY)
        raw, _, overflow, _ = pipe.execute()
    if not raw and not overflow:
        return 0
    tick_at = time.time()
    batches: dict[str, dict] = {}
    skipped: set[str] = set()  # rooms whose items were too old to send: they skip a number
    for blob in raw:
        try:
            entry = json.loads(blob)
            rooms, item = entry["rooms"], {"event": entry["event"], "data": entry["data"]}
        except (ValueError, KeyError, TypeError):
            log.warning("malformed pending push skipped")
            continue
        if tick_at - float(entry.get("t") or tick_at) > PENDING_MAX_AGE_S:
            skipped.update(rooms)
            continue
        fields = entry.get("fields") or ()
        for room in rooms:
            batch = batches.setdefault(room, {"items": [], "deltas": {}})
            batch["items"].append(item)
            if fields and room.startswith("place:"):
                moved = batch["deltas"].setdefault(room.split(":", 1)[1], {})
                for field in fields:
                    moved[field] = moved.get(field, 0) + 1
    seqs = _take_seqs(r, sorted(batches), skipped, bool(overflow))
    for room in sorted(batches):
        batch = batches[room]
        try:
            socketio.emit(
                "batch",
                {
                    "seq": seqs[room],
                    "room": room,
                    "tick_at": tick_at,
                    "items": batch["items"],
                    "deltas": batch["deltas"],
                },
                to=room,
                namespace=NAMESPACE,
            )
        except Exception:
            log.exception("push of the batch of %s failed", room)
    return len(batches)


def _take_seqs(r, rooms: list[str], skipped: set[str], overflow: bool) -> dict[str, int]:
    """One number per room (one round trip), after skipping one in the rooms that lost items (every known
    room after an overflow): their clients see the gap and re-read their snapshot. 0 where none could be had."""
    try:
        if overflow:
            skipped = skipped | {as_text(k)[len(SEQ_KEY) :] for k in r.scan_iter(match=SEQ_KEY + "*", count=1000)}
        with r.pipeline(transaction=False) as pipe:
            for room in sorted(skipped):
                pipe.incr(SEQ_KEY + room)
            for room in rooms:
                pipe.incr(SEQ_KEY + room)
            numbers = pipe.execute()[len(skipped) :]
        return {room: int(n) for room, n in zip(rooms, numbers, strict=True)}
    except Exception:  # Redis down: the push is best-effort anyway; 0 makes the clients resync
        log.warning("no sequence number from Redis; pushing without one")
        return dict.fromkeys(rooms, 0)


_flushers: set[str] = set()  # per process: one flusher thread per Redis (the fakeredis of embedded mode: "")
_flushers_lock = threading.Lock()


def start_flusher(app) -> bool:
    """Start this process's flusher thread unless it runs already (web processes on their first socket, and
    the embedded runner). Only the holder of the lease flushes; the others wait to take over. Returns
    whether a thread was started."""
    key = app.config["SETTINGS"].redis_url or ""
    with _flushers_lock:
        if key in _flushers:
            return False
        _flushers.add(key)
    socketio.start_background_task(_flush_forever, app)
    return True


def _lease_s(tick: float) -> float:
    return max(5.0, 5 * tick)


def _flush_forever(app) -> None:
    """Every tick: hold (or try to take) the lease, and if held flush what is pending. The holder looks every
    tenth of a tick and flushes as soon as something is pending and a whole tick has passed since its last
    batch: a lone report goes out at once, a stream of them once per tick."""
    from .counters.drain import _renew

    token = uuid.uuid4().hex
    held, last_batch, next_lease = False, 0.0, 0.0
    while True:
        tick = max(0.05, float(app.config["SETTINGS"].push_tick_seconds))
        try:
            with app.app_context():
                from .jobs import counters_redis

                r = counters_redis()
                now = time.monotonic()
                if now >= next_lease:
                    lease_ms = int(_lease_s(tick) * 1000)
                    if held:
                        held = _renew(r, FLUSHER_KEY, token, _lease_s(tick))
                    if not held:
                        held = bool(r.set(FLUSHER_KEY, token, nx=True, px=lease_ms))
                        if held:
                            log.info("this process flushes the live pushes")
                    next_lease = now + tick
                if held and now - last_batch >= tick and flush_pushes(r):
                    last_batch = now
        except Exception:  # Redis down for a moment: try again at the next turn (the lease may go elsewhere)
            log.warning("live push flush failed", exc_info=True)
            held, next_lease = False, time.monotonic() + tick
        socketio.sleep(tick / 10 if held else tick)


# --- the origin check (issue 11 item 2) -------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str | None) -> str | None:
    """`scheme://host[:port]` as a browser writes it in the Origin header (lower case, no default port), or
    None if the value is not an http(s) origin (e.g. "null", a path, a typo)."""
    try:
        parts = urlsplit((value or "").strip())
        port = parts.port
        host = parts.hostname
    except ValueError:
        return None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not host
        or parts.username
        or parts.password
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def origin_check(configured: Iterable[str]) -> Callable[..., bool]:
    """The `cors_allowed_origins` of the Socket.IO server: a callable that python-engineio asks about every
    request that carries an Origin header (websocket handshakes and every polling request), refusing the
    request with 400 when it says no. (`[]` would switch the check off, and `None`, engineio's own same-origin
    check, believes X-Forwarded-Host and -Proto from anyone.)

    Allowed: the configured origins, and the page's own origin, i.e. the scheme and Host the app sees — after
    ProxyFix, which create_app wraps around the Socket.IO middleware when TRUSTED_PROXIES is set — plus the
    https origin of that same Host (the proxy terminated TLS and did not say so: the browser's page was https
    on the very same host). A request without Origin is not a browser's cross-site request (browsers send
    Origin on every websocket handshake and every cross-origin fetch), and engineio lets it through.
    """
    allowed = set()
    for value in configured:
        origin = normalize_origin(value)
        if origin is None:
            raise RuntimeError(
                f"setting SOCKET_ALLOWED_ORIGINS: {value!r} is not an origin such as "
                "https://zhzx.example.gov.cn or http://10.1.2.3:8080"
            )
        allowed.add(origin)
    warned: set[str] = set()

    def check(origin: str | None, environ: dict | None = None) -> bool:
        try:
            seen = normalize_origin(origin)
            if seen is None:
                return False
            if seen in allowed:
                return True
            host = (environ or {}).get("HTTP_HOST")
            if not host:
                return False
            scheme = environ.get("wsgi.url_scheme", "http")
            if seen in (normalize_origin(f"{scheme}://{host}"), normalize_origin(f"https://{host}")):
                return True
            if seen not in warned and len(warned) < 100:  # once per origin: a flood must not fill the log
                warned.add(seen)
                log.warning(
                    "live socket refused: origin %s is neither %s://%s nor in SOCKET_ALLOWED_ORIGINS",
                    seen[:200],
                    scheme,
                    host[:200],
                )
            return False
        except Exception:  # never let the check itself fail open or break the server
            log.exception("origin check failed")
            return False

    return check


# --- sockets live no longer than their web session (issue 11 item 3) ----------------------------------------


def _session_and_account() -> tuple[WebSession, Account] | None:
    """The web session of the handshake's cookie and its account, if the session is still valid."""
    token = session.get("sid")
    if not token:
        return None
    ws = db.get(WebSession, token_digest(token))
    if ws is None or ws.ended_at is not None:
        return None
    idle = current_app.config["SETTINGS"].session_idle_minutes * 60
    if (utcnow() - ws.last_seen_at).total_seconds() > idle:
        return None
    account = db.get(Account, ws.account_id)
    if account is None or not account.active:
        return None
    return ws, account


@socketio.on("connect", namespace=NAMESPACE)
def on_connect(auth=None):
    """Only a logged-in account that may watch the wall or drill down; it joins its own place's room, and
    the socket is remembered as belonging to its web session."""
    try:
        found = _session_and_account()
        if found is None:
            return False
        ws, account = found
        from flask_socketio import join_room

        if has_permission(account, "fieldwork.app"):
            # a gridworker's /g/ page: his own room only, and the visits falling due told at once (on page load)
            join_room(account_room(account.id))
            _visits_due_on_connect(account)
        elif not (
            has_permission(account, "wall.view")
            or has_permission(account, "drill.view")
            or has_permission(account, "mobile.view")
        ):
            return False
        else:
            join_room(room_of(account.place_id))
        _remember(request.sid, ws.id)
        app = current_app._get_current_object()
        _start_checker(app)
        start_flusher(app)  # this process now holds sockets: it may have to flush the pushes
        log.debug("socket %s joined place %s", request.sid, account.place_id)
        return True
    finally:
        db.remove()


def visit_due_payload(due: list) -> dict:
    """What a /g/ page is told of the visits falling due (names masked)."""
    from .security import mask_name

    return {"count": len(due), "names": [mask_name(v.person.name) for v in due[:5]], "due": due[0].due.isoformat()}


def push_visits_due(today=None) -> int:
    """Every morning: each gridworker with visits falling due is told on his open /g/ pages (those opened later
    are told when they connect). Returns the accounts told."""
    from .gridworker.service import visits_falling_due

    told = 0
    for account in db.execute(select(Account).where(Account.role == "gridworker", Account.active.is_(True))).scalars():
        due = visits_falling_due(account, today)
        if due:
            push_to_account("g.visit_due", visit_due_payload(due), account.id)
            told += 1
    return told


def _visits_due_on_connect(account: Account) -> None:
    from .gridworker.service import visits_falling_due

    due = visits_falling_due(account)
    if due:
        socketio.emit("g.visit_due", visit_due_payload(due), to=request.sid, namespace=NAMESPACE)


@socketio.on("disconnect", namespace=NAMESPACE)
def on_disconnect(reason=None):
    _forget(request.sid)


def _redis():
    """The Redis client for the socket registry in server mode; None in embedded mode, and for a few seconds
    after a failure (a wall reconnecting during an outage must not wait for a timeout each time)."""
    if not current_app.config["SETTINGS"].redis_url or time.monotonic() < _redis_down_until:
        return None
    from .redis_conn import redis_client

    return redis_client()


def _redis_failed() -> None:
    global _redis_down_until
    _redis_down_until = time.monotonic() + REDIS_BACKOFF_SECONDS


def _registry_ttl() -> int:
    """Each web process renews its entries at every check: this outlives a few missed checks."""
    return max(600, 10 * current_app.config["SETTINGS"].socket_check_seconds)


def _remember(sid: str, session_id: str) -> None:
    with _sockets_lock:
        _sockets[sid] = session_id
    r = _redis()
    if r is not None:
        try:
            with r.pipeline(transaction=False) as pipe:
                pipe.sadd(SOCKETS_KEY + session_id, sid)
                pipe.expire(SOCKETS_KEY + session_id, _registry_ttl())
                pipe.execute()
        except Exception:  # Redis down: the periodic check still ends this socket with its session
            _redis_failed()
            log.warning("socket %s not registered in Redis", sid)


def _forget(sid: str) -> None:
    with _sockets_lock:
        session_id = _sockets.pop(sid, None)
    r = _redis() if session_id else None
    if r is not None:
        try:
            r.srem(SOCKETS_KEY + session_id, sid)
        except Exception:  # the entry expires by itself
            _redis_failed()
            log.debug("socket %s not unregistered from Redis", sid)


def _disconnect_here(sid: str) -> None:
    """Disconnect a socket of this process (its disconnect handler forgets it)."""
    try:
        socketio.server.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)
    except Exception:
        log.exception("could not disconnect socket %s", sid)
    with _sockets_lock:
        _sockets.pop(sid, None)


def disconnect_web_sessions(session_ids: Iterable[str]) -> None:
    """Disconnect every live socket opened with one of these web sessions (WebSession.id), in any process.

    Sockets of this process are disconnected at once. In server mode the socket ids registered in Redis by
    the other web processes are disconnected through the Socket.IO message queue (python-socketio's
    PubSubManager relays `server.disconnect(sid)` to the process that holds the socket). Whatever this misses
    (Redis down, a socket registering at this very moment) the periodic check of its own process ends
    within SOCKET_CHECK_SECONDS, since the session is ended in the database.
    """
    ids = {i for i in session_ids if i}
    if not ids:
        return
    with _sockets_lock:
        here = [sid for sid, ws_id in _sockets.items() if ws_id in ids]
    for sid in here:
        _disconnect_here(sid)
    r = _redis()
    if r is None:
        return
    keys = [SOCKETS_KEY + i for i in sorted(ids)]
    try:
        with r.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.smembers(key)
            pipe.delete(*keys)
            registered = pipe.execute()[:-1]
    except Exception:
        _redis_failed()
        log.warning("sockets of %d ended session(s) not looked up in Redis; the periodic check ends them", len(ids))
        return
    for members in registered:
        for raw in members:
            sid = as_text(raw)
            if sid in here:
                continue
            try:
                socketio.server.disconnect(sid, namespace=NAMESPACE)  # relayed to the process that holds it
            except Exception:
                log.exception("could not ask for the disconnection of socket %s", sid)


def check_sockets() -> int:
    """Disconnect this process's sockets whose web session has ended, has been idle longer than
    SESSION_IDLE_MINUTES (by the same `last_seen_at` the web requests use: a wall that keeps refreshing its
    panels keeps its session, and so its socket) or whose account was disabled; renew the Redis registry of
    the others. Returns how many sockets were disconnected."""
    with _sockets_lock:
        mine = dict(_sockets)
    if not mine:
        return 0
    settings = current_app.config["SETTINGS"]
    now = utcnow()
    idle = timedelta(minutes=settings.session_idle_minutes)
    try:
        rows = (
            db.query(WebSession.id, WebSession.ended_at, WebSession.last_seen_at, Account.active)
            .join(Account, Account.id == WebSession.account_id)
            .filter(WebSession.id.in_(set(mine.values())))
            .all()
        )
    finally:
        db.remove()
    valid = {row.id for row in rows if row.ended_at is None and row.active and now - row.last_seen_at <= idle}
    gone = [sid for sid, ws_id in mine.items() if ws_id not in valid]
    for sid in gone:
        _disconnect_here(sid)
    if gone:
        log.info("disconnected %d live socket(s) whose session ended or went idle", len(gone))
    r = _redis()
    if r is not None:
        by_session: dict[str, list[str]] = defaultdict(list)
        for sid, ws_id in mine.items():
            if ws_id in valid:
                by_session[ws_id].append(sid)
        try:
            with r.pipeline(transaction=False) as pipe:
                for ws_id, sids in by_session.items():
                    pipe.sadd(SOCKETS_KEY + ws_id, *sids)
                    pipe.expire(SOCKETS_KEY + ws_id, _registry_ttl())
                pipe.execute()
        except Exception:
            log.warning("live socket registry not renewed in Redis")
    return len(gone)


def _start_checker(app) -> None:
    """Start the periodic check once per process, when the first socket connects (workers never do)."""
    global _checker_started
    with _sockets_lock:
        if _checker_started:
            return
        _checker_started = True
    socketio.start_background_task(_check_forever, app)


def _check_forever(app) -> None:
    while True:
        socketio.sleep(app.config["SETTINGS"].socket_check_seconds)
        try:
            with app.app_context():
                check_sockets()
        except Exception:  # the database may be down for a moment: try again at the next turn
            log.warning("live socket check failed", exc_info=True)
