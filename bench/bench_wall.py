"""Benchmark of the wall display: push latency to many Socket.IO clients, and render time against the
number of stored events.

    .venv/bin/python bench/bench_wall.py [--pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--redis-url redis://127.0.0.1:6379/12] [--clients 200] [--procs 4] [--cases 100] [--interval 0.6]
        [--sizes 100000,1000000] [--repeat 20] [--skip-push] [--skip-render] [--keep-db]

(a) push: a throw-away PostgreSQL database with the tests' small city, a live server (`flask serve`) and a
    separate RQ worker (`--worker-class`, SimpleWorker as in the Procfile), both in server mode on the given
    Redis database; `--clients` python-socketio clients
    (spread over `--procs` processes, so that the clients' own GIL does not add to the figures) connect to
    /live as the city duty officer. This process then reports `--cases` cases in server mode, one every
    `--interval` s, exactly as another web process would: commit → outbox → RQ job in the worker → counters
    → push through the Redis message queue → the web process → every client. Latency = time the "case"
    push reached a client − time of the commit (an after_commit hook in this process; same clock).
    CPU per push = CPU time (user + system, from /proc) the web and the worker processes spent during the
    run, less their idle rate measured just before, divided by the number of cases.
(b) render: a throw-away database with the full demo district (17 towns, ~1,340 grids, a month of history),
    then old events (closed cases reported 1–13 months ago) bulk-inserted with COPY up to each of `--sizes`;
    the wall page and each panel are rendered `--repeat` times (Flask test client, in process: no network)
    after a warm-up, with the counters in Redis. The render time must not grow with the stored events:
    the panels read counters, and the few queries (hourly chart, today's points, open alerts) are
    indexed range queries over today's rows or the open alerts.
The Redis database given is FLUSHED before and after. The PostgreSQL databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, pct  # noqa: E402

PASSWORD = "Test@2026pw"


# --- helpers -----------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_database(admin_url: str, name: str) -> str:
    import psycopg2

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    from commandcenter.migrate import upgrade

    upgrade(url)
    return url


def drop_database(admin_url: str, name: str) -> None:
    import psycopg2

    from commandcenter import db as dbmod

    if dbmod._engine is not None:
        dbmod._engine.dispose()
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def make_app(database_url: str, redis_url: str, instance: Path):
    import logging

    from commandcenter import create_app
    from commandcenter.settings import Settings

    app = create_app(
        Settings.from_env(
            database_url=database_url,
            redis_url=redis_url,
            instance_path=instance,
            upload_dir=instance / "uploads",
            testing=True,
            allow_default_passwords=True,
        )
    )
    logging.getLogger().setLevel(logging.WARNING)  # the figures, not the app's INFO lines
    return app


def login_cookie(base_url: str, username: str, password: str) -> str:
    import requests

    s = requests.Session()
    page = s.get(base_url + "/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = s.post(
        base_url + "/login",
        data={"username": username, "password": password, "csrf_token": token},
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:300]
    return "; ".join(f"{c.name}={c.value}" for c in s.cookies)


# --- (a) push latency ----------------------------------------------------------------------------------------


def client_process(base_url: str, cookie: str, n: int, ready, stop, out) -> None:
    """Connect n Socket.IO clients; record (case id, receive time) of every "case" report push."""
    import socketio

    received: list[tuple[int, int, float]] = []
    clients = []
    for i in range(n):
        c = socketio.Client(reconnection=False)

        def on_case(data, i=i):
            if data.get("action") == "report":
                received.append((i, data["id"], time.time()))

        c.on("case", on_case, namespace="/live")
        for attempt in range(5):
            try:
                c.connect(
                    base_url,
                    headers={"Cookie": cookie},
                    namespaces=["/live"],
                    transports=["websocket"],
                    wait_timeout=20,
                )
                break
            except Exception:
                if attempt == 4:
                    raise
                time.sleep(0.5)
        clients.append(c)
        ready.put(1)
    stop.wait()
    out.put(list(received))
    for c in clients:  # best effort: the process ends anyway
        try:
            c.disconnect()
        except Exception:
            pass
    os._exit(0)


def bench_push(args) -> dict:
    from sqlalchemy import event

    from commandcenter.db import session_factory

    commits: list[float] = []
    # registered before create_app() installs the outbox kick: this stamp is the commit itself
    event.listen(session_factory, "after_commit", lambda _s: commits.append(time.time()))

    from redis import Redis

    Redis.from_url(args.redis_url).flushdb()
    name = f"cc_bench_wall_push_{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-wall-"))
    url = create_database(args.pg_admin_url, name)
    procs: list[subprocess.Popen] = []
    try:
        app = make_app(url, args.redis_url, tmp)
        from tests.world import build_world

        with app.app_context():
            world = build_world()
            points = [world.grid_point(i) for i in range(len(world.grids))]
            category_id = world.category("0101").id
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": args.redis_url,
            "INSTANCE_PATH": str(tmp),
            "SECRET_KEY": "bench-wall",
            "SECURE_COOKIES": "0",
            "LOGIN_RATE_LIMIT": "1000 per minute",
        }
        port = free_port()
        log = open(tmp / "web.log", "ab")
        web = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(web)
        worker_cmd = [str(Path(sys.executable).parent / "rq"), "worker", "-u", args.redis_url]
        if args.worker_class:
            worker_cmd += ["--worker-class", args.worker_class]
        worker = subprocess.Popen(
            [*worker_cmd, "realtime", "default"],
            cwd=ROOT,
            env=env,
            stdout=open(tmp / "worker.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        procs.append(worker)
        base = f"http://127.0.0.1:{port}"
        import requests

        for _ in range(150):
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        cookie = login_cookie(base, "city_duty_officer", PASSWORD)

        ctx = mp.get_context("spawn")
        ready, stop, out = ctx.Queue(), ctx.Event(), ctx.Queue()
        per = [args.clients // args.procs + (1 if i < args.clients % args.procs else 0) for i in range(args.procs)]
        clients = [
            ctx.Process(target=client_process, args=(base, cookie, n, ready, stop, out), daemon=True) for n in per if n
        ]
        t = time.time()
        for p in clients:
            p.start()
        for _ in range(args.clients):
            ready.get(timeout=180)
        connect_s = time.time() - t
        time.sleep(2)

        idle_s = 5.0
        c0 = (cpu_seconds(web.pid), cpu_seconds(worker.pid))
        time.sleep(idle_s)
        c1 = (cpu_seconds(web.pid), cpu_seconds(worker.pid))
        idle_rate = [(b - a) / idle_s for a, b in zip(c0, c1, strict=True)]

        from commandcenter.cases import loop
        from commandcenter.db import db
        from commandcenter.models import Account

        committed: dict[int, float] = {}
        started = time.time()
        with app.app_context():
            gws = [db.query(Account).filter_by(username=f"gw{i}").one() for i in range(len(points))]
            for k in range(args.cases):
                gi = k % len(points)
                lat, lon = points[gi]
                data = loop.ReportInput(category_id=category_id, description="压测事件", lat=lat, lon=lon)
                n_before = len(commits)
                case, _ = loop.report_case(
                    data, actor=gws[gi], source="app", client_key=f"bench-{uuid.uuid4().hex[:16]}"
                )
                committed[case.id] = commits[n_before]
                time.sleep(args.interval)
            db.remove()
        time.sleep(3)
        duration = time.time() - started
        c2 = (cpu_seconds(web.pid), cpu_seconds(worker.pid))
        stop.set()
        received = []
        for _ in clients:
            received.extend(out.get(timeout=120))
        for p in clients:
            p.join(10)
            if p.is_alive():
                p.kill()
        cpu = [(b - a - rate * duration) / args.cases for a, b, rate in zip(c1, c2, idle_rate, strict=True)]
        latencies = [(at - committed[cid]) * 1000 for _i, cid, at in received if cid in committed]
        return {
            "clients": args.clients,
            "procs": len(clients),
            "connect_s": connect_s,
            "cases": args.cases,
            "interval": args.interval,
            "expected": args.cases * args.clients,
            "delivered": len(latencies),
            "p50": pct(latencies, 0.50),
            "p95": pct(latencies, 0.95),
            "p99": pct(latencies, 0.99),
            "max": max(latencies) if latencies else float("nan"),
            "web_cpu_ms": cpu[0] * 1000,
            "worker_cpu_ms": cpu[1] * 1000,
            "idle_web_pct": idle_rate[0] * 100,
            "idle_worker_pct": idle_rate[1] * 100,
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        Redis.from_url(args.redis_url).flushdb()
        if not args.keep_db:
            drop_database(args.pg_admin_url, name)


# --- (b) render time against stored events -------------------------------------------------------------------

COPY_COLUMNS = (
    "id",
    "number",
    "source",
    "category_id",
    "kind",
    "description",
    "address",
    "lat",
    "lon",
    "grid_id",
    "village_id",
    "town_id",
    "state",
    "level",
    "valid",
    "self_handled",
    "discovered_at",
    "reported_at",
    "registered_at",
    "closed_at",
    "overdue",
    "escalated_to_town",
    "escalated_to_city",
    "rework_count",
    "outstanding",
    "updated_at",
    "version",
)


def add_old_cases(
    conn, n: int, grids: list[tuple], leaves: list[tuple], month_start: datetime, rnd: random.Random
) -> None:
    """Bulk-insert n closed cases reported 1 to 13 months before this month (COPY, in chunks)."""
    cur = conn.cursor()
    cur.execute("SELECT COALESCE(MAX(id), 0) FROM cases")
    next_id = cur.fetchone()[0] + 1
    span = 365 * 86400
    chunk = 200_000
    done = 0
    while done < n:
        size = min(chunk, n - done)
        buf = io.StringIO()
        for i in range(size):
            cid = next_id + done + i
            gid, vid, tid, lat, lon = grids[rnd.randrange(len(grids))]
            leaf_id, kind = leaves[rnd.randrange(len(leaves))]
            reported = month_start - timedelta(days=1, seconds=rnd.randrange(span))
            closed = reported + timedelta(hours=rnd.randrange(1, 96))
            r, c = reported.strftime("%Y-%m-%d %H:%M:%S"), closed.strftime("%Y-%m-%d %H:%M:%S")
            buf.write(
                f"{cid}\tBH{cid:012d}\tapp\t{leaf_id}\t{kind}\t历史事件\t\\N\t{lat}\t{lon}\t{gid}\t{vid}\t{tid}\t"
                f"closed\tgrid\tt\tf\t{r}\t{r}\t{r}\t{c}\tf\tf\tf\t0\tf\t{c}\t1\n"
            )
        buf.seek(0)
        cur.copy_expert(f"COPY cases ({', '.join(COPY_COLUMNS)}) FROM STDIN", buf)
        conn.commit()
        done += size
    cur.execute("SELECT setval(pg_get_serial_sequence('cases', 'id'), (SELECT MAX(id) FROM cases))")
    cur.execute("ANALYZE cases")
    conn.commit()


def time_requests(client, paths: list[str], repeat: int) -> dict[str, tuple[float, float]]:
    out = {}
    for path in paths:
        for _ in range(3):  # warm-up
            assert client.get(path).status_code == 200, path
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, path
        out[path] = (statistics.median(times), pct(times, 0.95))
    return out


def bench_render(args) -> list[dict]:
    import psycopg2
    from redis import Redis
    from sqlalchemy import func, select, text

    from commandcenter.db import db
    from commandcenter.demo.loader import load_demo
    from commandcenter.models import Case, Category, Place
    from commandcenter.timeutil import DEFAULT_TZ, from_local, local, utcnow

    Redis.from_url(args.redis_url).flushdb()
    name = f"cc_bench_wall_render_{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-wall-"))
    url = create_database(args.pg_admin_url, name)
    results = []
    try:
        app = make_app(url, args.redis_url, tmp)
        with app.app_context():
            t = time.time()
            load_demo(scale=1.0)
            print(f"  demo district loaded in {time.time() - t:.0f}s", flush=True)
            grids = [
                (g.id, g.village_id, g.town_id, round(g.center_lat, 6), round(g.center_lon, 6))
                for g in db.query(Place).filter_by(level="grid")
            ]
            leaves = [(c.id, c.kind) for c in db.query(Category).filter(Category.depth >= 2)]
            base_count = db.scalar(select(func.count(Case.id)))
            now_local = local(utcnow(), DEFAULT_TZ)
            month_start = from_local(datetime(now_local.year, now_local.month, 1), DEFAULT_TZ)
            db.remove()
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert (
            client.post("/login", data={"username": "duty", "password": "Demo@2026", "csrf_token": token}).status_code
            == 302
        )
        paths = [
            "/wall",
            *[f"/wall/panel/{p}" for p in ("map", "counts", "attendance", "alerts", "logins", "rankings")],
            "/wall/geojson",
        ]
        client.get("/wall")  # primes the counters (reconcile of the month, presence of today)
        pg = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
        rnd = random.Random(5)
        stored = base_count
        for size in [0, *args.sizes]:
            if size > stored:
                t = time.time()
                add_old_cases(pg, size - stored, grids, leaves, month_start, rnd)
                print(f"  {size - stored:,} old events added with COPY in {time.time() - t:.0f}s", flush=True)
                stored = size
            with app.app_context():
                total = db.scalar(select(func.count(Case.id)))
                table_mb = db.scalar(text("SELECT pg_total_relation_size('cases')")) / 2**20
                db.remove()
            timings = time_requests(client, paths, args.repeat)
            results.append({"stored": total, "table_mb": table_mb, "timings": timings})
            print(
                f"  {total:>10,} stored events ({table_mb:,.0f} MB): /wall median {timings['/wall'][0]:.1f} ms",
                flush=True,
            )
        with app.app_context():  # the hourly chart's query plan at the largest size
            from commandcenter.wall import queries

            scope = queries.scope_of_place(db.query(Place).filter_by(level="city").one())
            bucket, _ = queries._hour_bucket()
            start = utcnow() - timedelta(hours=12)
            stmt = scope.cases(
                select(bucket, func.count()).where(Case.reported_at >= start, Case.reported_at < utcnow())
            )
            sql = str(
                stmt.group_by(bucket).compile(dialect=db.get_bind().dialect, compile_kwargs={"literal_binds": True})
            )
            plan = [row[0] for row in db.execute(text("EXPLAIN (ANALYZE, COSTS OFF) " + sql))]
            results.append({"plan": plan})
            db.remove()
        pg.close()
        return results
    finally:
        Redis.from_url(args.redis_url).flushdb()
        if not args.keep_db:
            drop_database(args.pg_admin_url, name)


# --- main ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pg-admin-url", default=os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.6, help="seconds between two reports")
    parser.add_argument("--sizes", default="100000,1000000", help="stored events to measure the render time at")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--worker-class",
        default="rq.worker.SimpleWorker",
        help="as in the Procfile (jobs run in the worker process); rq.worker.Worker forks a work horse "
        "per job, which rebuilds the application every time",
    )
    parser.add_argument("--skip-push", action="store_true")
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-up (servers, databases) when stopped
    args.sizes = [int(x) for x in args.sizes.split(",") if x]
    print(f"machine: {machine()}")
    if not args.skip_push:
        print(
            f"\n(a) push latency: {args.clients} Socket.IO clients, {args.cases} cases reported {args.interval}s apart, "
            f"worker class {args.worker_class}"
        )
        res = bench_push(args)
        print(f"  clients connected in {res['connect_s']:.1f}s over {res['procs']} processes")
        print(f"  pushes received: {res['delivered']:,} of {res['expected']:,}")
        print(
            f"  commit → push received: p50 {res['p50']:.1f} ms   p95 {res['p95']:.1f} ms   p99 {res['p99']:.1f} ms"
            f"   max {res['max']:.1f} ms   (target p95 < 300 ms: {'met' if res['p95'] < 300 else 'NOT met'})"
        )
        print(
            f"  CPU per push (one case → {args.clients} clients): web {res['web_cpu_ms']:.1f} ms, "
            f"worker {res['worker_cpu_ms']:.1f} ms   (idle: web {res['idle_web_pct']:.1f}%, "
            f"worker {res['idle_worker_pct']:.1f}% of a CPU, subtracted)"
        )
    if not args.skip_render:
        print("\n(b) render time against stored events (full demo district, counters in Redis)")
        results = bench_render(args)
        plan = results.pop()["plan"]
        paths = list(results[0]["timings"])
        header = "  stored events  " + "".join(
            f"{p.replace('/wall/panel/', '').replace('/wall/', '').replace('/wall', 'wall'):>12}" for p in paths
        )
        print(header + "   (median ms / p95 ms)")
        for row in results:
            cells = "".join(f"{row['timings'][p][0]:>6.1f}/{row['timings'][p][1]:<5.1f}" for p in paths)
            print(f"  {row['stored']:>13,}  {cells}")
        print("  plan of the hourly chart's query at the largest size:")
        for line in plan:
            print("    " + line)


if __name__ == "__main__":
    main()
