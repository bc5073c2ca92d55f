"""Faults with real processes on loopback, bounded in time: nothing committed is lost or counted twice.

(a) An RQ worker killed with SIGKILL in the middle of a drain — after the counters were written to Redis
    and before the outbox rows were marked processed in PostgreSQL, the worst moment — loses nothing:
    once a new worker and `rq cron` run, every committed case is counted exactly once, and no alert is
    raised twice.
(b) PostgreSQL stopped under a running web process: pages and API answer 503 with a Chinese message and
    Retry-After within a few seconds; when the database is back the same process serves again by itself.
    A throwaway PostgreSQL cluster on a free port is stopped and started, never the shared server.
(c) five simultaneous retries of one report make one case; (d) a web process killed with SIGKILL and
    started again keeps every session; (e) Redis stopped while gridworkers report: every report is
    accepted, the wall says its figures are unavailable, and the counters catch up exactly once when a
    throwaway Redis server (never the shared one) comes back; a frozen Redis (a partition) only slows
    reports down; (f) a phone's wrong clock is tolerated a little and never trusted for the report time.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from commandcenter import counters, create_app
from commandcenter.db import db
from commandcenter.models import Account, Alert, Case, Outbox
from commandcenter.settings import ROOT
from commandcenter.timeutil import local_today, utcnow
from tests.conftest import (
    ARTIFACTS,
    TEST_REDIS_URL,
    LiveServer,
    free_port,
    login_session,
    make_settings,
    missing,
    stop_process,
    token_for,
    wait_for,
)

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.faults]


# --- (a) a worker killed mid-drain -------------------------------------------------------------------

# A worker whose per-event follow-up (alert check, push) is slowed down, so that the test can kill it
# after the batch's counters are in Redis and before the batch is committed in PostgreSQL.
SLOW_WORKER = """
import os, sys, time
sys.path.insert(0, os.getcwd())
import commandcenter.jobs as jobs
_original = jobs._on_case_event
def _slow(row):
    time.sleep(float(os.environ["CC_TEST_EVENT_DELAY"]))
    _original(row)
jobs._on_case_event = _slow
from rq.cli import main
main(args=sys.argv[1:], prog_name="rq")
"""


class RqProcess:
    def __init__(self, args: list[str], env: dict, log_path: Path):
        self.args, self.env, self.log_path = args, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> RqProcess:
        self._log = open(self.log_path, "ab")
        # a process group of its own: `--with-scheduler` forks a scheduler child that must go with it
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def _kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a pulled plug would: the worker and its scheduler child."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._kill_group()

    def stop(self) -> None:
        stop_process(self.proc, getattr(self, "_log", None))
        self._kill_group()  # no child may outlive the test


class Supervised(RqProcess):
    """An RqProcess started again a second after it exits, as systemd's Restart=always does in production.

    `rq worker` quits when Redis disappears in the middle of a job, and `rq cron` quits at once: a
    deployment must restart them (see docs/reliability.md). The test does what the supervisor does."""

    def start(self) -> Supervised:
        import threading

        super().start()
        self.restarts, self._stopping = 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            if self.proc.poll() is not None and not self._stopping.is_set():
                self._log.close()
                time.sleep(1)
                self.restarts += 1
                RqProcess.start(self)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        super().stop()


def rq_worker_args(env: dict, script: Path | None = None) -> list[str]:
    worker = [
        "worker",
        "-w",
        "rq.worker.SimpleWorker",
        "--with-scheduler",
        "-u",
        env["REDIS_URL"],
        "realtime",
        "default",
    ]
    if script is not None:
        return [sys.executable, str(script), *worker]
    return [str(Path(sys.executable).parent / "rq"), *worker]


@pytest.mark.redis
def test_worker_killed_mid_drain_loses_nothing_and_counts_nothing_twice(
    world, server_env, redis_conn, pg_url, tmp_path
):
    ARTIFACTS.mkdir(exist_ok=True)
    writer = create_app(make_settings(tmp_path / "writer", pg_url, redis_url=TEST_REDIS_URL))
    n_plain, n_parking = 60, 20
    with writer.app_context():
        from commandcenter.cases import loop

        gw = {i: db.query(Account).filter_by(username=f"gw{i}").one() for i in range(4)}
        now = utcnow()
        plain, parking = world.category("0101").id, world.category("0401").id
        for i in range(n_plain + n_parking):
            grid = i % 4  # grids 0–3: all in town 0
            lat, lon = world.grid_point(grid)
            is_parking = i >= n_plain
            data = loop.ReportInput(
                category_id=parking if is_parking else plain,
                lat=lat,
                lon=lon,
                description="车辆占用消防通道" if is_parking else "路边暴露垃圾一堆",
                # parking found 50 minutes ago: its one-hour warning is due at once
                discovered_at=now - timedelta(minutes=50) if is_parking else None,
            )
            loop.report_case(data, actor=gw[grid], source="app", client_key=f"fault-a-{i}", now=now)
        db.remove()
    total = n_plain + n_parking
    town = world.towns[0].id
    today = local_today()

    def reported() -> int:
        return counters.case_counts(redis_conn, town, day=today).get("reported", 0)

    def unprocessed() -> int:
        with writer.app_context():
            count = db.query(Outbox).filter(Outbox.topic == "case.changed", Outbox.processed_at.is_(None)).count()
            db.remove()
            return count

    assert unprocessed() == total and reported() == 0  # committed, follow-up waiting (one drain job queued)

    script = tmp_path / "slow_worker.py"
    script.write_text(SLOW_WORKER)
    slow_env = {**server_env, "CC_TEST_EVENT_DELAY": "0.08"}  # 80 events ≈ 6 s in the follow-up loop
    slow = RqProcess(rq_worker_args(slow_env, script), slow_env, ARTIFACTS / "faults-slow-worker.log").start()
    worker = cron = None
    try:
        # the batch's counters are in Redis (one MULTI/EXEC) while its rows are not yet committed as processed
        assert wait_for(lambda: reported() == total, 30, step=0.05), f"the drain never started: see {slow.log_path}"
        assert unprocessed() > 0
        slow.kill()
        assert slow.proc.returncode == -signal.SIGKILL
        left = unprocessed()
        assert left > 0, "the kill came too late to test anything"

        # a fresh worker and the periodic catch-up (as `honcho start` runs them) finish the work
        worker = RqProcess(rq_worker_args(server_env), server_env, ARTIFACTS / "faults-worker.log").start()
        cron = RqProcess(
            [str(Path(sys.executable).parent / "rq"), "cron", "-u", server_env["REDIS_URL"], "workers/cron.py"],
            server_env,
            ARTIFACTS / "faults-cron.log",
        ).start()
        assert wait_for(lambda: unprocessed() == 0, 40, step=0.25), (
            f"{unprocessed()} rows still waiting: see {worker.log_path} and {cron.log_path}"
        )
    finally:
        for proc in (slow, worker, cron):
            if proc is not None:
                proc.stop()

    # exactly once: the rows taken again after the kill were not counted again
    counts = counters.case_counts(redis_conn, town, day=today)
    assert counts.get("reported", 0) == total
    city = counters.case_counts(redis_conn, world.city.id, day=today)
    assert city.get("reported", 0) == total
    assert counters.case_counts(redis_conn, world.towns[1].id, day=today).get("reported", 0) == 0
    with writer.app_context():
        assert db.query(Case).count() == total
        # the alert of each late parking report was raised once, not once per attempt
        alerts = db.query(Alert).filter(Alert.kind == "parking_due").all()
        assert len(alerts) == n_parking
        assert len({a.case_id for a in alerts}) == n_parking
        db.remove()


# --- (b) PostgreSQL down and back ----------------------------------------------------------------------


def pg_bin() -> Path | None:
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(directory, "initdb").exists() and Path(directory, "pg_ctl").exists():
            return Path(directory)
    return None


class ThrowawayCluster:
    """A PostgreSQL cluster of our own in a temporary directory, on a free loopback port."""

    def __init__(self):
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="cc-faults-pg-"))
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/cc_faults"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def init(self) -> ThrowawayCluster:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"
        )
        return self

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "30",
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        """Like a crash: connections are cut at once."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster():
    if pg_bin() is None:
        missing("initdb/pg_ctl", "not found under /usr/lib/postgresql/*/bin")
    import psycopg2

    c = ThrowawayCluster().init()
    c.start()
    conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:{c.port}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE cc_faults")
    conn.close()
    from commandcenter.migrate import upgrade

    upgrade(c.url)
    yield c
    from commandcenter import db as dbmod

    if dbmod._engine is not None and dbmod._engine.url.port == c.port:
        dbmod._engine.dispose()
        dbmod._engine = None
    c.destroy()


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@pytest.mark.redis
def test_database_down_answers_503_and_recovers_by_itself(cluster, redis_conn, tmp_path):
    """The web process and a worker both outlive the outage and serve again without a restart."""
    from rq import Queue
    from rq.job import JobStatus

    from tests.world import build_world

    builder = create_app(make_settings(tmp_path / "builder", cluster.url))
    with builder.app_context():
        world = build_world()
        lat, lon = world.grid_point(0)
        db.remove()
    env = {
        **os.environ,
        "DATABASE_URL": cluster.url,
        "REDIS_URL": TEST_REDIS_URL,
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "faults-test",
        "SECURE_COOKIES": "0",
        "LOGIN_RATE_LIMIT": "1000 per minute",
    }
    ARTIFACTS.mkdir(exist_ok=True)
    web = LiveServer(env, free_port(), ARTIFACTS / "faults-web.log").start()
    worker = RqProcess(rq_worker_args(env), env, ARTIFACTS / "faults-db-worker.log").start()
    town, today = world.towns[0].id, local_today()

    def reported() -> int:
        return counters.case_counts(redis_conn, town, day=today).get("reported", 0)

    try:
        browser = login_session(web.url, "town0_admin")
        token = requests.post(
            web.url + "/api/v1/tokens", json={"username": "gw0", "password": "Test@2026pw"}, timeout=10
        ).json()["token"]
        api = {"Authorization": f"Bearer {token}"}

        def report(key: str):
            return requests.post(
                web.url + "/api/v1/cases",
                headers=api,
                timeout=10,
                json={
                    "client_key": key,
                    "category_code": "0101",
                    "description": "路边暴露垃圾一堆",
                    "lat": lat,
                    "lon": lon,
                },
            )

        assert browser.get(web.url + "/cases/", timeout=10).status_code == 200
        assert report("faults-b-before").status_code == 201
        assert wait_for(lambda: reported() == 1, 30, step=0.2), f"not counted: see {worker.log_path}"

        cluster.stop()
        page, seconds = timed(lambda: browser.get(web.url + "/cases/", timeout=10))
        assert page.status_code == 503 and seconds < 5
        assert "数据库暂时不可用" in page.text and page.headers["Content-Type"].startswith("text/html")
        assert page.headers["Retry-After"].isdigit()
        answer, seconds = timed(lambda: report("faults-b-during"))
        assert answer.status_code == 503 and seconds < 5
        assert answer.json()["error"]["message"] == "数据库暂时不可用，请稍后重试"
        assert answer.headers["Retry-After"].isdigit()
        health = requests.get(web.url + "/healthz", timeout=10)
        assert health.status_code == 503 and health.json() == {"status": "degraded"}
        # the login form still renders; the login itself needs the database: 503, not 500
        stranger = requests.Session()
        form = stranger.get(web.url + "/login", timeout=10)
        assert form.status_code == 200
        match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        attempt = stranger.post(
            web.url + "/login",
            timeout=10,
            data={"username": "town0_supervisor", "password": "Test@2026pw", "csrf_token": match.group(1)},
        )
        assert attempt.status_code == 503 and "数据库暂时不可用" in attempt.text
        # the worker's periodic drain fails meanwhile (and is retried by RQ); the worker itself stays up
        job = Queue("realtime", connection=redis_conn).enqueue("workers.jobs.drain_outbox_catch_up")
        assert wait_for(
            lambda: job.get_status(refresh=True) in (JobStatus.FAILED, JobStatus.SCHEDULED), 30, step=0.2
        ), f"the drain did not fail: see {worker.log_path}"

        cluster.start()
        assert wait_for(lambda: requests.get(web.url + "/healthz", timeout=5).status_code == 200, 20, step=0.2)
        assert web.proc.poll() is None, "the web process must not have been restarted"
        again = browser.get(web.url + "/cases/", timeout=10)
        assert again.status_code == 200 and "事件列表" in again.text  # the same session, still logged in
        retried = report("faults-b-during")  # the client's retry of the report refused meanwhile
        assert retried.status_code == 201
        assert report("faults-b-during").status_code == 200  # and once more: the same case
        assert wait_for(lambda: reported() == 2, 30, step=0.2), f"counted {reported()}: see {worker.log_path}"
        assert worker.proc.poll() is None, "the worker must outlive the outage"
        logged_in = login_session(web.url, "town0_supervisor")  # and a new login works again
        assert logged_in.get(web.url + "/cases/", timeout=10).status_code == 200
    finally:
        worker.stop()
        web.stop()
    with builder.app_context():
        assert db.query(Case).filter(Case.client_key.like("faults-b-%")).count() == 2
        db.remove()


# --- (c) a client retrying one report, all at once --------------------------------------------------


@pytest.mark.redis
def test_five_simultaneous_retries_of_one_report_make_one_case(world, live_stack):
    """A phone on a bad network sends the same report five times at once: one case, one answer for all."""
    from concurrent.futures import ThreadPoolExecutor

    web, _worker = live_stack
    token = requests.post(
        web.url + "/api/v1/tokens", json={"username": "gw0", "password": "Test@2026pw"}, timeout=10
    ).json()["token"]
    lat, lon = world.grid_point(0)
    results = []
    for attempt in range(3):
        body = {
            "client_key": f"retry-storm-{attempt}",
            "category_code": "0101",
            "description": "路灯不亮",
            "lat": lat,
            "lon": lon,
        }

        def send(_i, body=body):
            return requests.post(
                web.url + "/api/v1/cases", json=body, timeout=15, headers={"Authorization": f"Bearer {token}"}
            )

        with ThreadPoolExecutor(max_workers=5) as pool:
            answers = list(pool.map(send, range(5)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 200, 200, 200, 201], [a.text[:200] for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        results.append(answers[0].json()["id"])
    assert db.query(Case).filter(Case.client_key.like("retry-storm-%")).count() == 3
    db.remove()


# --- (d) the web process killed and started again ------------------------------------------------------


def test_web_process_killed_and_restarted_keeps_sessions_and_data(world, live_server):
    """Sessions live in PostgreSQL (server side) and the key in the instance: a crash logs nobody out."""
    browser = login_session(live_server.url, "town0_admin")
    assert browser.get(live_server.url + "/cases/", timeout=10).status_code == 200
    live_server.proc.send_signal(signal.SIGKILL)
    live_server.proc.wait(10)
    with pytest.raises(requests.ConnectionError):
        browser.get(live_server.url + "/cases/", timeout=5)
    live_server.stop()
    live_server.start()
    again = browser.get(live_server.url + "/cases/", timeout=10, allow_redirects=False)
    assert again.status_code == 200 and "事件列表" in again.text


# --- (e) Redis stopped while cases are reported ----------------------------------------------------------

REDIS_DOWN_SECONDS = float(os.environ.get("CC_FAULT_REDIS_DOWN_S", "10"))  # the 30 s: set it to 30


class ThrowawayRedis:
    """redis-server of our own on a free port, with an append-only file so a restart keeps its data."""

    def __init__(self, directory: Path):
        self.dir, self.port = directory, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> ThrowawayRedis:
        from redis import Redis

        self._log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        client = Redis.from_url(self.url, socket_connect_timeout=1)
        assert wait_for(lambda: self._ping(client), 10, step=0.05), "redis-server did not start"
        return self

    @staticmethod
    def _ping(client) -> bool:
        try:
            return client.ping()
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen server cannot hear SIGTERM
        stop_process(self.proc, getattr(self, "_log", None))

    def freeze(self) -> None:
        """A network partition: connections are accepted by the kernel and never answered."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


@pytest.mark.redis
def test_redis_down_reports_accepted_wall_degraded_counters_catch_up_once(world, app, pg_url, server_env, tmp_path):
    if shutil.which("redis-server") is None:
        missing("redis-server", "not installed (Debian package redis-server)")
    from redis import Redis

    redis = ThrowawayRedis(tmp_path / "redis").start()
    env = {**server_env, "REDIS_URL": redis.url}
    ARTIFACTS.mkdir(exist_ok=True)
    rq = str(Path(sys.executable).parent / "rq")
    web = worker = cron = None
    r = Redis.from_url(redis.url, socket_connect_timeout=1, socket_timeout=2)
    town, today = world.towns[0].id, local_today()

    def reported() -> int:
        try:
            return counters.case_counts(r, town, day=today).get("reported", 0)
        except Exception:
            return -1

    try:
        web = LiveServer(env, free_port(), ARTIFACTS / "faults-redis-web.log").start()
        worker = Supervised(rq_worker_args(env), env, ARTIFACTS / "faults-redis-worker.log").start()
        cron = Supervised(
            [rq, "cron", "-u", env["REDIS_URL"], "workers/cron.py"], env, ARTIFACTS / "faults-redis-cron.log"
        ).start()
        token = requests.post(
            web.url + "/api/v1/tokens", json={"username": "gw0", "password": "Test@2026pw"}, timeout=10
        ).json()["token"]
        duty = login_session(web.url, "town0_duty")
        lat, lon = world.grid_point(0)
        sent = 0

        def report():
            nonlocal sent
            sent += 1
            started = time.monotonic()
            answer = requests.post(
                web.url + "/api/v1/cases",
                timeout=15,
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "client_key": f"redis-fault-{sent}",
                    "category_code": "0101",
                    "description": "路边暴露垃圾一堆",
                    "lat": lat,
                    "lon": lon,
                },
            )
            return answer, time.monotonic() - started

        for _ in range(3):
            assert report()[0].status_code == 201
        assert wait_for(lambda: reported() == 3, 20, step=0.2), f"counted {reported()}: see the worker's log"

        redis.stop()
        down_since = time.monotonic()
        slowest = 0.0
        while time.monotonic() - down_since < REDIS_DOWN_SECONDS:
            answer, seconds = report()
            assert answer.status_code == 201, answer.text[:300]
            slowest = max(slowest, seconds)
            time.sleep(0.3)
        assert slowest < 5, f"a report took {slowest:.1f} s while Redis was down"
        health = requests.get(web.url + "/healthz", timeout=10).json()
        assert health == {"status": "degraded"}  # anonymous: the status word only (the detail is for ops.view)
        wall = duty.get(web.url + "/wall/", timeout=15)
        assert wall.status_code == 200 and "数据暂不可用" in wall.text
        with app.app_context():
            waiting = db.query(Outbox).filter(Outbox.topic == "case.changed", Outbox.processed_at.is_(None)).count()
            db.remove()
        assert waiting == sent - 3, "the follow-up of every report made meanwhile waits in the outbox"

        def waiting_rows() -> int:
            with app.app_context():
                count = db.query(Outbox).filter(Outbox.topic == "case.changed", Outbox.processed_at.is_(None)).count()
                db.remove()
                return count

        redis.start()  # the same port, its append-only file: the counters made before the outage are kept
        # the counters are written first, the rows marked processed after the batch's pushes: wait for both
        assert wait_for(lambda: waiting_rows() == 0 and reported() == sent, 60, step=0.5), (
            f"counted {reported()} of {sent}, {waiting_rows()} rows waiting: see {worker.log_path} and {cron.log_path}"
        )
        with app.app_context():
            assert db.query(Case).filter(Case.client_key.like("redis-fault-%")).count() == sent
            db.remove()
        print(f"restarted after the outage: worker {worker.restarts} time(s), cron {cron.restarts} time(s)")
        assert requests.get(web.url + "/healthz", timeout=10).json() == {"status": "up"}
        # (the first wall after the outage may rebuild the counters, and wait up to DRAIN_LEASE_S (8 s) for the
        # lease of a drain that Redis's stop cut short: it waited 30 s before)
        assert "数据暂不可用" not in duty.get(web.url + "/wall/", timeout=20).text
        time.sleep(1)
        assert reported() == sent  # and not one more
    finally:
        for proc in (cron, worker, web):
            if proc is not None:
                proc.stop()
        redis.stop()


@pytest.mark.redis
def test_redis_frozen_reports_still_answered_in_bounded_time(world, app, server_env, tmp_path):
    """Worse than a stopped Redis: one that accepts connections and never answers. The client timeouts
    (1 s connect, 2 s read) bound every request that touches it; reports are accepted meanwhile."""
    if shutil.which("redis-server") is None:
        missing("redis-server", "not installed (Debian package redis-server)")
    redis = ThrowawayRedis(tmp_path / "redis").start()
    env = {**server_env, "REDIS_URL": redis.url}
    ARTIFACTS.mkdir(exist_ok=True)
    web = None
    try:
        web = LiveServer(env, free_port(), ARTIFACTS / "faults-frozen-web.log").start()
        token = requests.post(
            web.url + "/api/v1/tokens", json={"username": "gw0", "password": "Test@2026pw"}, timeout=10
        ).json()["token"]
        lat, lon = world.grid_point(0)
        redis.freeze()
        timings = []
        for i in range(4):
            started = time.monotonic()
            answer = requests.post(
                web.url + "/api/v1/cases",
                timeout=30,
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "client_key": f"frozen-{i}",
                    "category_code": "0101",
                    "description": "路边暴露垃圾一堆",
                    "lat": lat,
                    "lon": lon,
                },
            )
            timings.append(time.monotonic() - started)
            assert answer.status_code == 201, answer.text[:300]
        print(f"report answers while Redis is frozen: {[round(t, 2) for t in timings]} s")
        assert max(timings) < 10, timings
        # after the first failure the process leaves Redis alone for a few seconds (jobs.KICK_PAUSE_S, and
        # flask-limiter's own back-off): the next reports wait for no socket timeout of the kick
        assert max(timings[1:]) < 2.5, timings
        health, seconds = timed(lambda: requests.get(web.url + "/healthz", timeout=30))
        assert health.json() == {"status": "degraded"} and seconds < 10
        redis.thaw()
        assert requests.get(web.url + "/healthz", timeout=10).json() == {"status": "up"}
    finally:
        if web is not None:
            web.stop()
        redis.stop()
    with app.app_context():
        assert db.query(Outbox).filter(Outbox.topic == "case.changed", Outbox.processed_at.is_(None)).count() == 4
        db.remove()


# --- (f) a phone whose clock is wrong -------------------------------------------------------------------


@pytest.mark.postgres
def test_client_clock_skew_is_tolerated_a_little_and_never_trusted_for_the_report_time(world, client):
    """The phone says when it found the matter; the server says when it was reported. A discovery more
    than five minutes in the future is refused naming the field; a few minutes ahead is a clock's drift."""
    from datetime import UTC, datetime

    headers = token_for(client, "gw0")
    lat, lon = world.grid_point(0)
    now = datetime.now(UTC)

    def report(key: str, discovered: datetime):
        return client.post(
            "/api/v1/cases",
            headers=headers,
            json={
                "client_key": key,
                "category_code": "0101",
                "description": "路边暴露垃圾一堆",
                "lat": lat,
                "lon": lon,
                "discovered_at": discovered.isoformat(),
            },
        )

    ahead = report("skew-ahead-10min", now + timedelta(minutes=10))
    assert ahead.status_code == 422 and ahead.get_json()["error"]["field"] == "discovered_at"
    drift = report("skew-ahead-2min", now + timedelta(minutes=2))
    assert drift.status_code == 201
    reported = datetime.fromisoformat(drift.get_json()["reported_at"])
    assert abs((reported - datetime.now(UTC)).total_seconds()) < 60  # the server's clock, not the phone's
    late = report("skew-behind-3h", now - timedelta(hours=3))
    assert late.status_code == 201
    assert datetime.fromisoformat(late.get_json()["discovered_at"]) < reported - timedelta(hours=2)
    visit_person = None
    with client.application.app_context():
        from commandcenter.models import Person

        grid = world.grids[0]
        visit_person = Person(
            name="测试人",
            person_type="empty_nest_elderly",
            visit_frequency="weekly",
            grid_id=grid.id,
            village_id=grid.village_id,
            town_id=grid.town_id,
        )
        db.add(visit_person)
        db.commit()
        person_id = visit_person.id
        db.remove()
    visit = client.post(
        "/api/v1/visits",
        headers=headers,
        json={"client_key": "skew-visit-1", "person_id": person_id, "at": (now + timedelta(minutes=30)).isoformat()},
    )
    assert visit.status_code == 422 and visit.get_json()["error"]["field"] == "at"
