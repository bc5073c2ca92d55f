"""Issue 11, the live sockets (items 2 and 3), tested on live servers with a real Socket.IO client.

2. A handshake from a foreign origin is refused on both transports, websocket and polling; the page's own
   origin and a configured SOCKET_ALLOWED_ORIGINS one are accepted.
3. A socket lives no longer than the web session that opened it: logout, `end_sessions` (password change,
   deactivation), the idle timeout disconnect it, in whichever web process holds it; the sockets of other
   sessions stay connected and keep receiving pushes.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
import requests

from commandcenter import create_app
from commandcenter.db import db
from commandcenter.models import Account, WebSession
from commandcenter.timeutil import utcnow
from tests.conftest import (
    ARTIFACTS,
    PASSWORD,
    TEST_REDIS_URL,
    LiveServer,
    csrf_from,
    free_port,
    login_session,
    make_settings,
    pushed,
    wait_for,
)

pytestmark = [pytest.mark.live, pytest.mark.security]

CONFIGURED_ORIGINS = ["https://zhzx.example.gov.cn", "https://other.example.gov.cn:8443"]
FOREIGN_ORIGINS = ["http://evil.example", "null", "http://127.0.0.1.evil.example"]


@pytest.fixture
def start_server(app, pg_url, tmp_path):
    """Start `flask serve` processes on the test database; with redis=True in server mode on the test Redis
    (they then share the Socket.IO message queue). Keyword arguments become environment variables."""
    servers: list[LiveServer] = []

    def start(*, redis: bool = False, **env_extra: str) -> LiveServer:
        env = {
            **os.environ,
            "DATABASE_URL": pg_url,
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": "live-test",
            "SECURE_COOKIES": "0",
            "LOGIN_RATE_LIMIT": "1000 per minute",
            **env_extra,
        }
        env.pop("REDIS_URL", None)
        if redis:
            env["REDIS_URL"] = TEST_REDIS_URL
        ARTIFACTS.mkdir(exist_ok=True)
        server = LiveServer(env, free_port(), ARTIFACTS / f"socket-security-{len(servers)}.log").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def cookie_of(session: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


def connect(base_url: str, cookie: str, *, transport: str = "websocket", origin: str | None = None):
    """A real Socket.IO client on /live with this cookie, sending `origin` as a browser would (on websocket
    websocket-client writes the handshake's Origin itself; on polling it is a header of every request)."""
    import socketio

    events: list[tuple[str, dict]] = []
    client = socketio.Client(reconnection=False, websocket_extra_options={"origin": origin} if origin else {})
    client.on("*", lambda event, data: events.append((event, data)), namespace="/live")
    headers = {"Cookie": cookie}
    if origin and transport == "polling":
        headers["Origin"] = origin
    client.connect(base_url, headers=headers, namespaces=["/live"], transports=[transport], wait_timeout=10)
    return client, events


def refused(base_url: str, cookie: str, **kwargs) -> bool:
    import socketio

    try:
        client, _ = connect(base_url, cookie, **kwargs)
    except socketio.exceptions.ConnectionError:
        return True
    client.disconnect()
    return False


def logout(base_url: str, session: requests.Session) -> None:
    page = session.get(base_url + "/", timeout=10)
    response = session.post(
        base_url + "/logout", data={"csrf_token": csrf_from(page.text)}, timeout=10, allow_redirects=False
    )
    assert response.status_code == 302, response.text[:300]


def still_connected(client, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not client.connected:
            return False
        time.sleep(0.1)
    return client.connected


def publish_from_here(pg_url: str, tmp_path, usernames: list[str], number: str) -> None:
    """Publish a `case` item to the rooms of these accounts' places from this process (another process than
    the web server's), as a worker does: it waits in Redis, and the web server's flusher sends it in its
    rooms' next "batch" through the Redis message queue."""
    from commandcenter import realtime

    writer = create_app(make_settings(tmp_path / "writer", pg_url, redis_url=TEST_REDIS_URL))
    with writer.app_context():
        places = [db.query(Account).filter_by(username=u).one().place_id for u in usernames]
        realtime.publish("case", {"number": number, "action": "report"}, places)
        db.remove()


def got(events, number: str) -> bool:
    return any(e == "case" and d.get("number") == number for e, d in pushed(events))


def web_session_of(username: str) -> WebSession:
    rows = (
        db.query(WebSession)
        .join(Account, Account.id == WebSession.account_id)
        .filter(Account.username == username, WebSession.ended_at.is_(None))
        .all()
    )
    assert len(rows) == 1, f"{username} has {len(rows)} open web sessions"
    return rows[0]


# --- item 2: the origin check -----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_foreign_origin_refused_own_and_configured_origins_accepted(world, start_server, transport):
    # as an operator would write it: spaces, a trailing slash
    server = start_server(SOCKET_ALLOWED_ORIGINS=f" {CONFIGURED_ORIGINS[0]}/ , {CONFIGURED_ORIGINS[1]}")
    cookie = cookie_of(login_session(server.url, "town0_duty"))
    for origin in FOREIGN_ORIGINS:
        assert refused(server.url, cookie, transport=transport, origin=origin), (
            f"{transport} handshake from {origin} with the duty officer's cookie was accepted"
        )
    for origin in (server.url, *CONFIGURED_ORIGINS):
        client, _ = connect(server.url, cookie, transport=transport, origin=origin)
        try:
            assert client.connected, origin
        finally:
            client.disconnect()


def test_foreign_origin_refused_at_the_handshake_on_both_transports(world, start_server):
    """The refusal is the origin check's (400 at the Engine.IO handshake), not a side effect of the login."""
    import websocket

    server = start_server()
    cookie = cookie_of(login_session(server.url, "town0_duty"))
    handshake = server.url + "/socket.io/?EIO=4&transport=polling"
    response = requests.get(handshake, headers={"Cookie": cookie, "Origin": "http://evil.example"}, timeout=10)
    assert response.status_code == 400 and "Not an accepted origin" in response.text, response.text[:200]
    assert "Access-Control-Allow-Origin" not in response.headers
    own = requests.get(handshake, headers={"Cookie": cookie, "Origin": server.url}, timeout=10)
    assert own.status_code == 200 and own.headers.get("Access-Control-Allow-Origin") == server.url

    ws_url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    with pytest.raises(websocket.WebSocketBadStatusException) as bad:
        websocket.create_connection(ws_url, origin="http://evil.example", cookie=cookie, timeout=10)
    assert bad.value.status_code == 400
    ws = websocket.create_connection(ws_url, origin=server.url, cookie=cookie, timeout=10)
    try:
        assert ws.recv().startswith("0{")  # the Engine.IO open packet
    finally:
        ws.close()


# --- item 3: sockets end with their session ------------------------------------------------------------------


@pytest.mark.parametrize("redis", [False, pytest.param(True, marks=pytest.mark.redis)], ids=["no-redis", "redis"])
def test_logout_disconnects_the_sessions_socket(world, start_server, request, redis, pg_url, tmp_path):
    if redis:
        request.getfixturevalue("redis_conn")  # flushes the test Redis db
    server = start_server(redis=redis, SOCKET_CHECK_SECONDS="3600")  # the periodic check cannot be what does it
    duty = login_session(server.url, "town0_duty")
    cookie = cookie_of(duty)
    client, events = connect(server.url, cookie)
    bystander, bystander_events = connect(server.url, cookie_of(login_session(server.url, "city_duty_officer")))
    try:
        logout(server.url, duty)
        assert wait_for(lambda: not client.connected, 10), "the socket outlived the logout"
        assert refused(server.url, cookie), "the ended session's cookie opened a new socket"
        if redis:  # a push after the logout reaches the bystander, not the logged-out socket
            publish_from_here(pg_url, tmp_path, ["town0_duty", "city_duty_officer"], "AFTER-LOGOUT")
            assert wait_for(lambda: got(bystander_events, "AFTER-LOGOUT"), 10), bystander_events
            assert not got(events, "AFTER-LOGOUT")
        assert still_connected(bystander, 1.0), "another account's socket was disconnected"
    finally:
        client.disconnect()
        bystander.disconnect()


@pytest.mark.redis
def test_end_sessions_disconnects_sockets_held_by_another_process(world, start_server, redis_conn, pg_url, tmp_path):
    """Password change and deactivation call `end_sessions`; called here, in another process than the web
    process that holds the sockets, it disconnects them through the message queue."""
    from commandcenter.auth.service import end_sessions

    server = start_server(redis=True, SOCKET_CHECK_SECONDS="3600")
    cookie = cookie_of(login_session(server.url, "town0_duty"))
    client, events = connect(server.url, cookie)
    second_tab, _ = connect(server.url, cookie)
    bystander, bystander_events = connect(server.url, cookie_of(login_session(server.url, "city_duty_officer")))
    try:
        writer = create_app(make_settings(tmp_path / "admin", pg_url, redis_url=TEST_REDIS_URL))
        with writer.app_context():
            account = db.query(Account).filter_by(username="town0_duty").one()
            assert end_sessions(account, reason="停用账号") == 1
            db.commit()
            db.remove()
        assert wait_for(lambda: not client.connected and not second_tab.connected, 10), (
            "end_sessions left the account's sockets connected"
        )
        publish_from_here(pg_url, tmp_path, ["town0_duty", "city_duty_officer"], "AFTER-END")
        assert wait_for(lambda: got(bystander_events, "AFTER-END"), 10)
        assert not got(events, "AFTER-END")
        assert bystander.connected
    finally:
        for c in (client, second_tab, bystander):
            c.disconnect()


def test_password_change_disconnects_the_other_sessions_sockets(world, start_server):
    server = start_server(SOCKET_CHECK_SECONDS="3600")
    wall = login_session(server.url, "town0_duty")  # the wall, logged in with the same account
    desk = login_session(server.url, "town0_duty")  # where the password is changed
    wall_client, _ = connect(server.url, cookie_of(wall))
    desk_client, _ = connect(server.url, cookie_of(desk))
    try:
        page = desk.get(server.url + "/password", timeout=10)
        response = desk.post(
            server.url + "/password",
            data={
                "old_password": PASSWORD,
                "new_password": "Changed#2026pw",
                "new_password_again": "Changed#2026pw",
                "csrf_token": csrf_from(page.text),
            },
            timeout=10,
            allow_redirects=False,
        )
        assert response.status_code == 302, response.text[:300]
        assert wait_for(lambda: not wall_client.connected, 10), "the other session's socket survived the change"
        assert still_connected(desk_client, 1.0), "the session that changed the password lost its socket"
    finally:
        wall_client.disconnect()
        desk_client.disconnect()


def test_idle_or_ended_session_socket_disconnected_without_any_request(world, start_server, app):
    """No request needed: each web process checks its sockets' sessions every SOCKET_CHECK_SECONDS. A wall
    that keeps refreshing its panels (every minute) keeps its session alive, and so its socket."""
    server = start_server(SOCKET_CHECK_SECONDS="1")
    idle_cookie = cookie_of(login_session(server.url, "town0_duty"))
    ended_cookie = cookie_of(login_session(server.url, "town1_duty"))
    wall = login_session(server.url, "city_duty_officer")
    idle_client, _ = connect(server.url, idle_cookie)
    ended_client, _ = connect(server.url, ended_cookie)
    wall_client, _ = connect(server.url, cookie_of(wall))
    idle = timedelta(minutes=app.config["SETTINGS"].session_idle_minutes)
    try:
        with app.app_context():
            now = utcnow()
            web_session_of("town0_duty").last_seen_at = now - idle - timedelta(minutes=1)
            # ended by another web process, without Redis to tell this one
            web_session_of("town1_duty").ended_at = now
            # 6 s from idle: only the wall's next refresh keeps it
            web_session_of("city_duty_officer").last_seen_at = now - idle + timedelta(seconds=6)
            db.commit()
            db.remove()
        panel = wall.get(server.url + "/wall/panel/logins", timeout=10)  # the wall's minutely refresh
        assert panel.status_code == 200 and panel.headers.get("X-Wall-Panel") == "logins"
        assert wait_for(lambda: not idle_client.connected, 10), "the idle session's socket stayed connected"
        assert wait_for(lambda: not ended_client.connected, 10), "the ended session's socket stayed connected"
        assert still_connected(wall_client, 9.0), "a wall that keeps refreshing lost its socket"
        assert refused(server.url, idle_cookie)
        with app.app_context():
            assert utcnow() - web_session_of("city_duty_officer").last_seen_at < timedelta(minutes=1)
            db.remove()
    finally:
        for c in (idle_client, ended_client, wall_client):
            c.disconnect()


@pytest.mark.redis
@pytest.mark.slow
def test_logout_on_one_web_process_disconnects_the_socket_held_by_another(
    world, start_server, redis_conn, pg_url, tmp_path
):
    web_a = start_server(redis=True, SOCKET_CHECK_SECONDS="3600")
    web_b = start_server(redis=True, SOCKET_CHECK_SECONDS="3600")
    duty = login_session(web_a.url, "town0_duty")  # the same cookie works on both (one database, one key)
    client, events = connect(web_b.url, cookie_of(duty))
    bystander, bystander_events = connect(web_b.url, cookie_of(login_session(web_b.url, "city_duty_officer")))
    try:
        logout(web_a.url, duty)
        assert wait_for(lambda: not client.connected, 10), "process B kept the socket of a session ended on A"
        publish_from_here(pg_url, tmp_path, ["town0_duty", "city_duty_officer"], "AFTER-LOGOUT-A")
        assert wait_for(lambda: got(bystander_events, "AFTER-LOGOUT-A"), 10)
        assert not got(events, "AFTER-LOGOUT-A")
        assert bystander.connected
    finally:
        client.disconnect()
        bystander.disconnect()


@pytest.mark.browser
def test_the_wall_in_a_browser_goes_to_the_login_page_when_its_session_ends(world, start_server, page):
    """Chromium's own handshake (Origin = the page) is accepted; a logout elsewhere with the wall's cookie
    disconnects the wall's socket, and the wall, told so by the server, shows the login page at once (it
    would otherwise wait for its next minutely panel refresh)."""
    from tests.test_browser_wall import open_wall

    server = start_server(SOCKET_CHECK_SECONDS="3600")
    open_wall(page, server.url, "town0_duty")
    other = requests.Session()
    for c in page.context.cookies(server.url):
        other.cookies.set(c["name"], c["value"])
    logout(server.url, other)
    page.wait_for_url("**/login**", timeout=15000)
