"""Where a report's CPU goes: the web side (one POST /api/v1/cases through the whole Flask app, token,
rate limit, validation, the INSERT) and the worker side (the outbox drain: counters, alert plans,
pushes), each timed in this process and profiled with cProfile, PostgreSQL's share from its own
backends' CPU.

    .venv/bin/python bench/profile_report.py [--reports 2000] [--top 25] [--sort tottime]

It runs the app in-process with Werkzeug's test client (no sockets, no gunicorn: what is left is the
app's own work) against a fresh PostgreSQL database and the Redis of REDIS_URL (db 15 by default, flushed).
Prints CPU ms per report for each side and the top functions of each profile.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_wall import create_database, drop_database, make_app  # noqa: E402
from bench.common import machine  # noqa: E402


def postgres_cpu_s() -> float:
    """CPU seconds of every postgres process on this machine (the backends of this run do the work)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm.startswith("postgres"):
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def gunicorn_cpu(args, url: str, token: str, points) -> None:
    """The same reports over HTTP (keep-alive, one at a time) to `gunicorn -w 1 --threads N wsgi:app`."""
    import http.client
    import json
    import subprocess

    from bench.bench_wall import cpu_seconds, free_port

    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": args.redis_url,
        "SECRET_KEY": "profile",
        "SECURE_COOKIES": "0",
        "INTAKE_RATE_LIMIT": "1000000 per minute",
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    cmd = [gunicorn, "-w", "1", "--threads", str(args.gunicorn), "-b", f"127.0.0.1:{port}", "wsgi:app"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = None
        for _ in range(100):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                break
            except OSError:
                time.sleep(0.2)
        worker = int(subprocess.check_output(["pgrep", "-P", str(proc.pid)]).split()[0])
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def post(i: int) -> None:
            lat, lon = points[i % 2]
            body = {"client_key": f"gunicorn-{i:06d}", "category_code": "0101", "description": "路边暴露垃圾一堆"}
            conn.request("POST", "/api/v1/cases", json.dumps({**body, "lat": lat, "lon": lon}), headers)
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 201, answer.status

        for i in range(100):
            post(i)
        n = args.reports
        pg0, cpu0, t0 = postgres_cpu_s(), cpu_seconds(worker), time.perf_counter()
        for i in range(100, 100 + n):
            post(i)
        cpu, wall, pg = cpu_seconds(worker) - cpu0, time.perf_counter() - t0, postgres_cpu_s() - pg0
        print(
            f"\ngunicorn --threads {args.gunicorn}: {n} reports one after another, {cpu / n * 1000:.2f} ms CPU each in "
            f"the web process, {wall / n * 1000:.2f} ms wall, PostgreSQL {pg / n * 1000:.2f} ms CPU each"
        )
        # the city's volume: a heartbeat a minute from every phone (Redis only), and the lightest call there is
        for label, method, path, payload in (
            ("heartbeats", "POST", "/api/v1/heartbeats", json.dumps({"lat": points[0][0], "lon": points[0][1]})),
            ("GET /healthz", "GET", "/healthz", None),
        ):
            cpu0 = cpu_seconds(worker)
            for _ in range(n):
                conn.request(method, path, payload, headers)
                answer = conn.getresponse()
                answer.read()
                assert answer.status in (200, 204), (path, answer.status)
            print(f"  {label}: {(cpu_seconds(worker) - cpu0) / n * 1000:.2f} ms CPU each in the web process")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument(
        "--drain-limit",
        type=int,
        default=500,
        help="rows per drain pass (a worker under 300 reports/s takes about 15 a pass: each pass has its own cost)",
    )
    parser.add_argument(
        "--gunicorn",
        type=int,
        default=0,
        metavar="THREADS",
        help="also send --reports reports one after another to a gunicorn process with this many threads, as the "
        "Procfile runs it, and print its CPU per report (no profile)",
    )
    parser.add_argument("--no-profile", action="store_true", help="time only (cProfile adds about 2× overhead)")
    parser.add_argument(
        "--endpoint",
        default="report",
        choices=["report", "heartbeat", "healthz"],
        help="what the in-process profile sends: reports (default), heartbeats or GET /healthz",
    )
    parser.add_argument(
        "--cold-tokens",
        action="store_true",
        help="every request with a token this process has not cached yet (a phone it has not seen for "
        "TOKEN_CACHE_SECONDS): the token cache's miss path",
    )
    args = parser.parse_args()

    from redis import Redis

    from commandcenter.auth.service import issue_api_token
    from commandcenter.db import db
    from commandcenter.jobs import process_outbox
    from commandcenter.models import Account, Outbox
    from tests.world import build_world

    print(f"machine: {machine()}")
    Redis.from_url(args.redis_url).flushdb()
    name = f"cc_profile_{os.getpid()}"
    url = create_database(args.pg_admin_url, name)
    try:
        app = make_app(url, args.redis_url, Path(tempfile.mkdtemp(prefix="profile-report-")))
        app.config["SETTINGS"].intake_rate_limit = "1000000 per minute"
        with app.app_context():
            world = build_world()
            db.commit()
            gw = db.get(Account, world.accounts["gw0"].id)
            token = issue_api_token(gw, "profile")
            db.commit()
            cold = []
            if args.cold_tokens:
                for _ in range(args.reports + 50):
                    cold.append(issue_api_token(gw, "profile"))
            points = [world.grid_point(k) for k in range(len(world.grids))]
            db.remove()
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}

        def post(i: int) -> None:
            lat, lon = points[i % 2]  # gw0's own village
            if cold:
                headers["Authorization"] = f"Bearer {cold[i]}"
            if args.endpoint == "heartbeat":
                r = client.post("/api/v1/heartbeats", json={"lat": lat, "lon": lon}, headers=headers)
                assert r.status_code == 204, (r.status_code, r.get_data(as_text=True)[:300])
                return
            if args.endpoint == "healthz":
                r = client.get("/healthz", headers=headers)
                assert r.status_code == 200, (r.status_code, r.get_data(as_text=True)[:300])
                return
            r = client.post(
                "/api/v1/cases",
                json={
                    "client_key": f"profile-{i:06d}",
                    "category_code": "0101",
                    "description": "路边暴露垃圾一堆",
                    "lat": lat,
                    "lon": lon,
                },
                headers=headers,
            )
            assert r.status_code == 201, (r.status_code, r.get_data(as_text=True)[:300])

        for i in range(50):  # warm: imports, caches, the statement's compilation
            post(i)
        with app.app_context():
            process_outbox()
            db.remove()

        n = args.reports
        prof = None if args.no_profile else cProfile.Profile(time.process_time)
        pg0, cpu0, t0 = postgres_cpu_s(), time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        for i in range(50, 50 + n):
            post(i)
        if prof:
            prof.disable()
        web_cpu, web_wall, pg_web = time.process_time() - cpu0, time.perf_counter() - t0, postgres_cpu_s() - pg0
        print(
            f"\nweb: {n} {args.endpoint} requests, {web_cpu / n * 1000:.2f} ms CPU each in this process, "
            f"{web_wall / n * 1000:.2f} ms wall, PostgreSQL {pg_web / n * 1000:.2f} ms CPU each"
        )
        if prof:
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)

        if args.gunicorn:
            gunicorn_cpu(args, url, token, points)

        with app.app_context():
            waiting = db.query(Outbox).count()
            db.remove()
        prof = None if args.no_profile else cProfile.Profile(time.process_time)
        pg0, cpu0, t0 = postgres_cpu_s(), time.process_time(), time.perf_counter()
        with app.app_context():
            if prof:
                prof.enable()
            done = 0
            while True:  # as the worker does, passes of at most 500 (server mode keeps passing until empty)
                k = process_outbox(limit=args.drain_limit)
                done += k
                if k == 0:
                    break
            if prof:
                prof.disable()
            db.remove()
        drain_cpu, pg_drain = time.process_time() - cpu0, postgres_cpu_s() - pg0
        print(
            f"\ndrain: {done} outbox rows ({waiting} waiting), {drain_cpu / max(n, 1) * 1000:.2f} ms CPU per report "
            f"in this process, PostgreSQL {pg_drain / max(n, 1) * 1000:.2f} ms CPU per report"
        )
        if prof:
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)
    finally:
        drop_database(args.pg_admin_url, name)
        Redis.from_url(args.redis_url).flushdb()


if __name__ == "__main__":
    main()
