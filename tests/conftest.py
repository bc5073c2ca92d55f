"""Fixtures in the style of flaskr's conftest: app, client, runner, auth — on the real services.

PostgreSQL: one database per test session, migrated by Alembic once, tables emptied per test.
Redis: a dedicated db number, flushed per test. With CI=true a missing service fails the run;
on a developer's machine it skips the tests that need it, saying why.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from commandcenter import create_app
from commandcenter.db import db, get_engine
from commandcenter.settings import ROOT, Settings
from tests.world import PASSWORD, WorldView

CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
ARTIFACTS = ROOT / "test-artifacts"


def missing(what: str, why: str):
    message = f"{what} is not available: {why}"
    if CI:
        pytest.fail(message + " (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(message)


# --- services --------------------------------------------------------------------------------------


def create_database(prefix: str) -> str:
    """A new, empty PostgreSQL database (no tables); its URL. Missing PostgreSQL fails under CI=true."""
    import psycopg2

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=3)
    except Exception as exc:
        missing("PostgreSQL", str(exc).strip())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    conn.close()


@pytest.fixture(scope="session")
def pg_url():
    url = create_database("cc_test")
    from commandcenter.migrate import upgrade

    upgrade(url)
    yield url
    from commandcenter import db as dbmod

    if dbmod._engine is not None:
        dbmod._engine.dispose()
    drop_database(url)


@pytest.fixture(scope="session")
def redis_url():
    from redis import Redis

    try:
        Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        missing("Redis", str(exc))
    return TEST_REDIS_URL


@pytest.fixture
def redis_conn(redis_url):
    from redis import Redis

    conn = Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()


def _truncate_all() -> None:
    engine = get_engine()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            tables = [
                r[0]
                for r in conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'")
                )
            ]
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))


def make_settings(tmp_path: Path, database_url: str, **overrides) -> Settings:
    return Settings.from_env(
        database_url=database_url,
        redis_url=overrides.pop("redis_url", None),
        instance_path=tmp_path,
        upload_dir=tmp_path / "uploads",
        testing=True,
        **overrides,
    )


# --- the app -------------------------------------------------------------------------------------


@pytest.fixture
def app(pg_url, tmp_path):
    """The application on PostgreSQL, with empty tables.

    No app context stays pushed during the test (each request pushes its own, as in production);
    test code uses the scoped `db` session directly, or the `ctx` fixture for domain calls.
    """
    application = create_app(make_settings(tmp_path, pg_url))
    with application.app_context():
        _truncate_all()
    from commandcenter.workcalendar import reset_held_years

    reset_held_years()  # the calendar tables were emptied: forget what this process read of them
    from commandcenter import jobs

    jobs._fake_redis = None  # nor the in-process Redis of embedded mode (live heartbeats: issue 15 §2)
    yield application
    db.remove()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert match, "page has no CSRF token"
    return match.group(1)


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, username: str, password: str = PASSWORD):
        page = self._client.get("/login")
        return self._client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": csrf_from(page.get_data(as_text=True))},
        )

    def logout(self):
        page = self._client.get("/")
        return self._client.post("/logout", data={"csrf_token": csrf_from(page.get_data(as_text=True))})


def logged_in(client, username: str, password: str = PASSWORD):
    """The test client after a successful login through the real form (asserted)."""
    response = AuthActions(client).login(username, password)
    assert response.status_code == 302, (username, response.get_data(as_text=True)[:300])
    return client


def token_for(client, username: str, device_name: str = "测试手机") -> dict:
    """Authorization header of an API token from POST /api/v1/tokens (asserted)."""
    response = client.post(
        "/api/v1/tokens", json={"username": username, "password": PASSWORD, "device_name": device_name}
    )
    assert response.status_code == 201, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def shanghai(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """A wall-clock time in Asia/Shanghai (UTC+8, no daylight saving) → naive UTC, as the database holds it."""
    return datetime(y, mo, d, h, mi) - timedelta(hours=8)


def report(
    v,
    who: str | None = "gw0",
    code: str = "0502",
    at: datetime | None = None,
    *,
    grid: int = 0,
    latlon: tuple[float, float] | None = None,
    by_grid_id: bool = False,
    key: str | None = None,
    source: str = "app",
    description: str = "测试事件",
    reporter_center_id: int | None = None,
    **extra,
):
    """A case reported through the loop (loop.report_case) in grid `grid` of the test world, as the app would:
    located by the grid's middle (or `latlon`, or the grid id itself). `v`: a WorldView or a World."""
    from commandcenter.cases import loop

    v = v if isinstance(v, WorldView) else WorldView(v)
    where = {"grid_id": v.grid(grid)} if by_grid_id else dict(zip(("lat", "lon"), latlon or v.point(grid), strict=True))
    case, created = loop.report_case(
        loop.ReportInput(category_id=v.cat(code).id, description=description, **where, **extra),
        actor=v.a(who) if who else None,
        source=source,
        client_key=key,
        now=at,
        reporter_center_id=reporter_center_id,
    )
    assert created or key is not None
    return case


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def w(ctx, world):
    """The test world by index and name, inside an application context."""
    return WorldView(world)


@pytest.fixture
def world(app):
    """A small city: 2 towns × 2 villages × 2 grids, the default categories, one account per role."""
    from tests.world import build_world

    with app.app_context():
        return build_world()


# --- live server and browser ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, log=None) -> None:
    """Terminate politely, then kill; close its log."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if log is not None:
        log.close()


class LiveServer:
    def __init__(self, env: dict, port: int, log_path: Path, extra_args: tuple[str, ...] = ()):
        self.port, self.env, self.log_path, self.extra_args = port, env, log_path, extra_args
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> LiveServer:
        import requests

        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--port", str(self.port), *self.extra_args],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"live server exited: see {self.log_path}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"live server did not answer in {timeout}s: see {self.log_path}")

    def stop(self) -> None:
        stop_process(self.proc, getattr(self, "_log", None))


@pytest.fixture
def live_server(app, pg_url, tmp_path):
    """`flask serve` in a separate process on the test database (the app fixture has emptied it)."""
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "live-test",
        "SECURE_COOKIES": "0",
        "LOGIN_RATE_LIMIT": "1000 per minute",
    }
    env.pop("REDIS_URL", None)
    ARTIFACTS.mkdir(exist_ok=True)
    server = LiveServer(env, free_port(), ARTIFACTS / "live-server.log").start()
    yield server
    server.stop()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        missing("Chromium", f"{CHROMIUM} not found (install Debian's chromium package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing("Playwright", str(exc))
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context that records every request leaving 127.0.0.1 (none may)."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    pg = context.new_page()
    pg.outside_requests = []

    def watch(request):
        if not re.match(
            r"^(https?|wss?)://(127\.0\.0\.1|localhost)(:\d+)?/", request.url
        ) and not request.url.startswith(("data:", "blob:", "about:")):
            pg.outside_requests.append(request.url)

    pg.on("request", watch)
    yield pg
    context.close()


class WorkerProcess:
    """`rq worker --with-scheduler` on the test Redis, as a separate process on the test database."""

    def __init__(self, env: dict, log_path: Path, queues: tuple[str, ...] = ("realtime", "default", "reports")):
        self.env, self.log_path, self.queues = env, log_path, queues
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "ab")
        rq = str(Path(sys.executable).parent / "rq")
        self.proc = subprocess.Popen(
            [
                rq,
                "worker",
                "-w",
                "rq.worker.SimpleWorker",
                "--with-scheduler",
                "-u",
                self.env["REDIS_URL"],
                *self.queues,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc, getattr(self, "_log", None))


@pytest.fixture
def server_env(pg_url, redis_conn, tmp_path):
    """Environment of a server-mode process: the test PostgreSQL database and the test Redis."""
    return {
        **os.environ,
        "DATABASE_URL": pg_url,
        "REDIS_URL": TEST_REDIS_URL,
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "live-test",
        "SECURE_COOKIES": "0",
        "LOGIN_RATE_LIMIT": "1000 per minute",
    }


@pytest.fixture
def live_stack(app, server_env):
    """A web process and a separate RQ worker process, joined only through PostgreSQL and Redis."""
    ARTIFACTS.mkdir(exist_ok=True)
    web = LiveServer(server_env, free_port(), ARTIFACTS / "stack-web.log").start()
    worker = WorkerProcess(server_env, ARTIFACTS / "stack-worker.log").start()
    yield web, worker
    worker.stop()
    web.stop()


def wait_for(predicate, timeout: float = 20.0, step: float = 0.1):
    """Poll `predicate` until it returns something true (returned) or `timeout` seconds pass (None)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def login_session(base_url: str, username: str, password: str = PASSWORD):
    """A requests.Session logged in through the real login form."""
    import requests

    s = requests.Session()
    page = s.get(base_url + "/login", timeout=10)
    response = s.post(
        base_url + "/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(page.text)},
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:500]
    return s


def socket_client(base_url: str, session) -> tuple:
    """A real Socket.IO client on /live carrying the browser session's cookie; returns (client, events)."""
    import socketio

    events: list[tuple[str, dict]] = []
    client = socketio.Client(reconnection=False)
    client.on("*", lambda event, data: events.append((event, {**data, "_t": time.time()})), namespace="/live")
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    client.connect(
        base_url, headers={"Cookie": cookie}, namespaces=["/live"], transports=["websocket"], wait_timeout=10
    )
    return client, events


def pushed(events: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The items of the "batch" pushes received (issue 15 §1: one batch per room per tick), in order, as
    (event, data) with the batch's `seq` and `room` added to each item's data; direct events as they came."""
    out = []
    for name, data in list(events):
        if name != "batch":
            out.append((name, data))
            continue
        for item in data.get("items", []):
            out.append((item["event"], {**item["data"], "seq": data["seq"], "room": data["room"]}))
    return out
