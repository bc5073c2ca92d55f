"""Benchmark of the alert path: a case registered → its warning delivered to a connected browser at
its due time.

    .venv/bin/python bench/bench_alerts.py [--cases 40] [--lead 8] [--redis-url redis://127.0.0.1:6379/11]

A throw-away PostgreSQL database with the tests' small city; a web process (`flask serve`) and a
separate RQ worker (`rq worker --with-scheduler`), both in server mode; a Socket.IO client logged in
as the city duty officer. This process reports `--cases` 乱停车 cases (as another web process would),
each discovered so that its warning (15 minutes before the hour) falls `--lead` seconds or more in the
future. The path under test: commit → outbox → RQ job → enqueue_at(warning time) → the worker's
scheduler → check → alert row → push through the Redis message queue → web process → client.
Delay = time the "alert" push reached the client − the case's warning time (same clock).
The Redis database given is flushed before and after; the PostgreSQL database is dropped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, pct  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--lead", type=float, default=8.0, help="seconds from report to the first warning")
    args = parser.parse_args()

    import psycopg2
    from redis import Redis

    from commandcenter import create_app
    from commandcenter.cases import loop
    from commandcenter.db import db
    from commandcenter.migrate import upgrade
    from commandcenter.models import Account
    from commandcenter.settings import Settings
    from commandcenter.timeutil import utcnow
    from tests.conftest import LiveServer, WorkerProcess, free_port, login_session, socket_client
    from tests.world import build_world

    name = f"cc_bench_alerts_{os.getpid()}"
    admin = psycopg2.connect(args.pg_admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    url = args.pg_admin_url.rsplit("/", 1)[0] + "/" + name
    redis = Redis.from_url(args.redis_url)
    redis.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="cc-bench-alerts-"))
    web = worker = None
    try:
        upgrade(url)
        app = create_app(Settings.from_env(database_url=url, redis_url=args.redis_url, instance_path=tmp))
        with app.app_context():
            world = build_world()
            category_id = world.category("0401").id
            points = [world.grid_point(i) for i in range(8)]
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": args.redis_url,
            "INSTANCE_PATH": str(tmp),
            "SECRET_KEY": "bench",
            "SECURE_COOKIES": "0",
            "LOGIN_RATE_LIMIT": "1000 per minute",
        }
        web = LiveServer(env, free_port(), tmp / "web.log").start()
        worker = WorkerProcess(env, tmp / "worker.log").start()
        client, events = socket_client(web.url, login_session(web.url, "city_duty_officer"))
        time.sleep(2)  # the worker registers and its scheduler starts

        warn_at: dict[str, float] = {}
        with app.app_context():
            gridworkers = [db.query(Account).filter_by(username=f"gw{i}").one() for i in range(8)]
            for i in range(args.cases):
                now = utcnow()
                # warning = discovered + 45 min; put it `lead` s ahead, spread over a few seconds
                discovered = now - timedelta(minutes=45) + timedelta(seconds=args.lead + (i % 10) * 0.5)
                lat, lon = points[i % 8]
                data = loop.ReportInput(
                    category_id=category_id, description="占用消防通道", lat=lat, lon=lon, discovered_at=discovered
                )
                case, _ = loop.report_case(
                    data, actor=gridworkers[i % 8], source="app", client_key=f"bench-{uuid.uuid4().hex}", now=now
                )
                due_wall = time.time() + (case.transfer_warn_at - utcnow()).total_seconds()
                warn_at[case.number] = due_wall
                time.sleep(0.2)
        deadline = time.time() + args.lead + 30
        received: dict[str, float] = {}
        while time.time() < deadline and len(received) < len(warn_at):
            for event, data in list(events):
                if event == "alert" and data["number"] in warn_at and data["number"] not in received:
                    received[data["number"]] = data.get("_t", time.time())
            time.sleep(0.02)
        client.disconnect()
        delays = [received[n] - warn_at[n] for n in received]
        print(f"machine: {machine()}")
        print(f"cases: {len(warn_at)}, alerts delivered: {len(received)}, early: {sum(d < 0 for d in delays)}")
        if delays:
            print(
                f"delay after the warning time: p50 {pct(delays, 0.5):.3f} s, p95 {pct(delays, 0.95):.3f} s, "
                f"max {max(delays):.3f} s (target p95 < 2 s)"
            )
    finally:
        if worker:
            worker.stop()
        if web:
            web.stop()
        redis.flushdb()
        from commandcenter import db as dbmod

        if dbmod._engine is not None:
            dbmod._engine.dispose()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
