"""Load test of server mode: mixed traffic for a given time, open loop, everything on this machine.

    .venv/bin/python bench/bench_load.py [--duration 600] [--rate 500] [--web-procs 2] [--threads 150]
        [--workers 2] [--wall-clients 200] [--heartbeat-rate R/5] [--page-rate 10] [--retry-share 0.02]
        [--gridworkers 400] [--old-cases 100000] [--gen-procs 2] [--redis-url redis://127.0.0.1:6379/9]

Server side as in the Procfile: `--web-procs` gunicorn processes (`-w 1 --threads N`, gthread), `--workers`
RQ workers (`rq worker -w rq.worker.SimpleWorker --with-scheduler ... realtime default reports`), on a
throw-away PostgreSQL database (dropped at the end) and the given Redis database (FLUSHED before and after).
Data: the tests' small city (tests/world.py: 2 towns, 4 villages, 8 grids) plus `--gridworkers` gridworker
accounts with API tokens (so the per-account intake limit, 600/min, is not what is measured: it stays at
its default) and `--old-cases` closed cases of the past year (COPY), so that the tables are not empty.

Traffic, open loop (requests leave on a Poisson schedule whether or not earlier ones returned; latency is
measured from the scheduled moment, so queueing in front of the server counts), from `--gen-procs`
generator processes, spread round-robin over the web processes as a load balancer would:
  report      POST /api/v1/cases with a fresh client_key (201 expected)        `--rate` per second
  retry       the same POST again with a key already accepted (200, same case)  `--retry-share` × rate
  heartbeat   POST /api/v1/heartbeats (204)                                    `--heartbeat-rate`
  page        supervisor pages: case list, a case, wall panels, /drill/        `--page-rate`
and `--wall-clients` Socket.IO clients connected to /live over websockets for the whole run (duty officers
of the city, towns and villages; bench/load_wall.py), counting the pushes they receive. At the end: every accepted report is in the
database exactly once, every heartbeat once, the outbox drained, the live counters equal the database.
Memory (VmRSS) and CPU of every server process are sampled every 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import load_wall  # noqa: E402
from bench.bench_wall import (  # noqa: E402
    PASSWORD,
    add_old_cases,
    cpu_seconds,
    create_database,
    drop_database,
    free_port,
    login_cookie,
    make_app,
)
from bench.common import machine, pct  # noqa: E402

REPORT_CODES = [("0101", 40), ("0102", 10), ("0105", 15), ("0106", 15), ("0402", 10), ("0401", 5), ("0403", 5)]
WALL_ACCOUNTS = {
    "city": ["city_duty_officer", "city_leader", "city_supervisor", "city_operator"],
    "town": ["town0_duty", "town1_duty", "town0_supervisor", "town1_supervisor"],
    "village": ["village0_admin", "village1_admin", "village2_admin", "village3_admin"],
}
PAGE_WEIGHTS = [
    ("/cases/", 25),
    ("case", 20),
    ("/wall/panel/counts", 25),
    ("/wall/panel/map", 10),
    ("/wall/panel/alerts", 10),
    ("/wall/panel/rankings", 5),
    ("/drill/", 5),
]


# --- processes on this machine ---------------------------------------------------------------------------


def children_of() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(entry.name))
    return out


def tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def private_kb(pid: int) -> int:
    """Memory of the process's own (not shared): a PostgreSQL backend's RSS counts the shared buffers
    it has touched, which grows with what it reads and is no leak."""
    try:
        total = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
        return total
    except OSError:
        return 0


def cpu_of(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (OSError, IndexError):
        return 0.0


def pids_by_comm(name: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def machine_busy() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields), idle


class Sampler:
    """RSS and CPU of each named process (with its children: gunicorn's worker, RQ's scheduler), and what
    the database connections of the run are doing (waiting for a lock, for the client, or working), and
    the outbox backlog (committed changes the workers have not applied yet)."""

    def __init__(self, named: dict[str, int], db_name: str, db_url: str):
        import psycopg2

        self.named, self.db_name = named, db_name
        self.samples: list[dict] = []
        self.pg = psycopg2.connect(db_url.replace("postgresql+psycopg2", "postgresql"))
        self.pg.autocommit = True

    def database(self) -> dict:
        with self.pg.cursor() as cur:
            cur.execute(
                "SELECT state, coalesce(wait_event_type, '-'), count(*) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() GROUP BY 1, 2",
                (self.db_name,),
            )
            states = {f"{state}/{wait}": n for state, wait, n in cur.fetchall()}
            cur.execute("SELECT count(*) FROM outbox WHERE processed_at IS NULL")
            backlog = cur.fetchone()[0]
        return {"states": states, "backlog": backlog}

    def sample(self, t: float) -> dict:
        kids = children_of()
        row: dict = {"t": t}
        for name, pid in self.named.items():
            pids = tree(pid, kids)
            row[name] = (sum(rss_kb(p) for p in pids), sum(cpu_of(p) for p in pids))
        pg = pids_by_comm("postgres")
        mine = [p for p in pg if self.db_name in _cmdline(p)]
        row["postgres"] = (sum(private_kb(p) for p in mine), sum(cpu_of(p) for p in pg))
        redis = pids_by_comm("redis-server")
        row["redis"] = (sum(rss_kb(p) for p in redis), sum(cpu_of(p) for p in redis))
        row["machine"] = machine_busy()
        row["db"] = self.database()
        self.samples.append(row)
        return row


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


# --- load generators -------------------------------------------------------------------------------------


def generator_process(cfg: dict, out) -> None:
    result = asyncio.run(run_generator(cfg))
    out.put(result)


def _weighted(rnd: random.Random, pairs: list[tuple]) -> object:
    total = sum(w for _, w in pairs)
    x = rnd.uniform(0, total)
    for item, w in pairs:
        x -= w
        if x <= 0:
            return item
    return pairs[-1][0]


async def run_generator(cfg: dict) -> dict:
    from bench.load_http import Pool

    rnd = random.Random(cfg["seed"])
    pools = [Pool("127.0.0.1", port, max_conns=cfg["max_conns"]) for port in cfg["ports"]]
    t0, duration = cfg["t0"], cfg["duration"]
    rec = {
        k: {"t": array("f"), "ms": array("f"), "ok": 0, "errors": Counter(), "samples": []}
        for k in ("report", "retry", "heartbeat", "page")
    }
    accepted: list[tuple[str, int, int]] = []  # (client_key, case id, gridworker index)
    accepted_by_key: dict[str, tuple[int, int]] = {}
    pending: set[asyncio.Task] = set()
    lost: set[str] = set()  # keys of reports sent without an answer (timeout, connection error, unfinished)
    counter = [0]
    rr = [0]

    def pool() -> Pool:
        rr[0] += 1
        return pools[rr[0] % len(pools)]

    def fail(kind: str, what: str, detail: str) -> None:
        rec[kind]["errors"][what] += 1
        if len(rec[kind]["samples"]) < 10:
            rec[kind]["samples"].append(f"{what}: {detail[:200]}")

    async def send(
        kind: str, scheduled: float, method: str, path: str, headers: dict, body: bytes, check, key: str | None = None
    ) -> None:
        if key:
            lost.add(key)  # until its answer arrives, this report's fate is unknown to the client
        try:
            status, hdrs, data = await pool().request(method, path, headers, body, timeout=cfg["timeout"])
        except asyncio.CancelledError:
            fail(kind, "unfinished", "no answer when the run ended")
            raise
        except Exception as exc:
            fail(kind, exc.__class__.__name__, str(exc))
            return
        if key:
            lost.discard(key)
        elapsed = (time.time() - scheduled) * 1000
        problem = check(status, hdrs, data)
        if problem:
            fail(
                kind, f"HTTP {status}" if status not in (200, 201, 204) else "wrong answer", f"{problem} {data[:150]!r}"
            )
            return
        rec[kind]["t"].append(scheduled - t0)
        rec[kind]["ms"].append(elapsed)
        rec[kind]["ok"] += 1

    def report_body(gi: int, key: str) -> bytes:
        lat, lon = cfg["gridworkers"][gi][1], cfg["gridworkers"][gi][2]
        return json.dumps(
            {
                "client_key": key,
                "category_code": _weighted(rnd, REPORT_CODES),
                "description": f"压测上报 {key}",
                "lat": lat + rnd.uniform(-0.02, 0.02),
                "lon": lon + rnd.uniform(-0.02, 0.02),
            }
        ).encode()

    def auth(gi: int) -> dict:
        return {"Authorization": f"Bearer {cfg['gridworkers'][gi][0]}", "Content-Type": "application/json"}

    def new_report(scheduled: float):
        counter[0] += 1
        key = f"ld-{cfg['index']}-{counter[0]}-{rnd.randrange(1 << 30):x}"
        gi = rnd.randrange(len(cfg["gridworkers"]))
        body = report_body(gi, key)

        def check(status, _h, data):
            if status != 201:
                return f"expected 201, got {status}"
            case_id = json.loads(data)["id"]
            accepted.append((key, case_id, gi))
            accepted_by_key[key] = (case_id, gi)
            return None

        return send("report", scheduled, "POST", "/api/v1/cases", auth(gi), body, check, key=key)

    def retry(scheduled: float):
        if not accepted:
            return None
        key, case_id, gi = accepted[rnd.randrange(len(accepted))]
        body = report_body(gi, key)

        def check(status, _h, data):
            if status != 200:
                return f"expected 200 (already reported), got {status}"
            if json.loads(data)["id"] != case_id:
                return f"a retry returned case {json.loads(data)['id']} instead of {case_id}"
            return None

        return send("retry", scheduled, "POST", "/api/v1/cases", auth(gi), body, check)

    def heartbeat(scheduled: float):
        gi = rnd.randrange(len(cfg["gridworkers"]))
        _token, lat, lon = cfg["gridworkers"][gi]
        body = json.dumps({"lat": lat, "lon": lon}).encode()
        return send(
            "heartbeat",
            scheduled,
            "POST",
            "/api/v1/heartbeats",
            auth(gi),
            body,
            lambda status, _h, _d: None if status == 204 else f"expected 204, got {status}",
        )

    def page(scheduled: float):
        path = _weighted(rnd, cfg["pages"])
        cookie = rnd.choice(cfg["cookies"])
        if path == "case":  # the city's supervisor: the town ones see only their town's cases
            path = f"/cases/{rnd.choice(cfg['case_ids'])}"
            cookie = cfg["cookies"][0]

        def check(status, hdrs, data):
            if status != 200:
                return f"{path}: expected 200, got {status}"
            if path.startswith("/wall/panel/") and "x-wall-panel" not in hdrs:
                return f"{path}: not a panel"
            if b"/login" in data[:3000] and b'name="password"' in data:
                return f"{path}: the login page"
            return None

        return send("page", scheduled, "GET", path, {"Cookie": cookie}, b"", check)

    async def schedule(rate: float, make) -> None:
        if rate <= 0:
            return
        at = t0 + rnd.expovariate(rate)
        end = t0 + duration
        while at < end:
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            coro = make(at)
            if coro is not None:
                task = asyncio.create_task(coro)
                pending.add(task)
                task.add_done_callback(pending.discard)
            at += rnd.expovariate(rate)

    await asyncio.sleep(max(0.0, t0 - time.time()))
    cpu0 = time.process_time()
    await asyncio.gather(
        schedule(cfg["rate"], new_report),
        schedule(cfg["retry_rate"], retry),
        schedule(cfg["heartbeat_rate"], heartbeat),
        schedule(cfg["page_rate"], page),
    )
    if pending:
        await asyncio.wait(set(pending), timeout=cfg["timeout"] + 5)
    for task in list(pending):  # still waiting for a connection or an answer: counted as errors
        task.cancel()
    if pending:
        await asyncio.wait(set(pending), timeout=5)
    for p in pools:
        p.close()
    for kind in rec:
        rec[kind]["errors"] = dict(rec[kind]["errors"])
    return {"rec": rec, "accepted": accepted, "lost": sorted(lost), "cpu_s": time.process_time() - cpu0}


# --- setup -----------------------------------------------------------------------------------------------


def prepare_data(app, args) -> dict:
    """The small city, the gridworkers and their tokens, old cases, a few recent ones for the case pages."""
    import psycopg2
    from sqlalchemy import select

    from commandcenter.accounts import create_account
    from commandcenter.auth.service import issue_api_token
    from commandcenter.cases import loop
    from commandcenter.db import db
    from commandcenter.models import Category, Place
    from commandcenter.timeutil import DEFAULT_TZ, from_local, local, utcnow
    from tests.world import build_world

    with app.app_context():
        world = build_world()
        pw_hash = world.accounts["gw0"].password_hash
        grids = [db.get(Place, g.id) for g in world.grids]
        gridworkers = []
        for i in range(args.gridworkers):
            grid = grids[i % len(grids)]
            account = create_account(
                username=f"lgw{i:04d}",
                display_name=f"压测网格员{i}",
                password="",
                role="gridworker",
                place=grid,
                password_hash=pw_hash,
                post="full_time",
            )
            db.flush()
            token = issue_api_token(account, "load")
            gridworkers.append((token, grid.center_lat, grid.center_lon))
        grid_rows = [(g.id, g.village_id, g.town_id, g.center_lat, g.center_lon) for g in grids]
        leaves = [(c.id, c.kind) for c in db.query(Category).filter(Category.depth >= 2)]
        category_id = world.category("0101").id
        now_local = local(utcnow(), DEFAULT_TZ)
        month_start = from_local(datetime(now_local.year, now_local.month, 1), DEFAULT_TZ)
        case_ids = []
        for k in range(100):
            lat, lon = world.grid_point(k % len(grids))
            data = loop.ReportInput(category_id=category_id, description=f"压测前已有事件 {k}", lat=lat, lon=lon)
            actor = db.get(type(world.accounts["gw0"]), world.accounts[f"gw{k % 8}"].id)
            case, _ = loop.report_case(data, actor=actor, source="app", client_key=f"pre-{k:04d}")
            case_ids.append(case.id)
        url = db.get_bind().url.render_as_string(hide_password=False)
        db.remove()
    if args.old_cases:
        pg = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
        add_old_cases(pg, args.old_cases, grid_rows, leaves, month_start, random.Random(7))
        pg.close()
    with app.app_context():
        from sqlalchemy import func, text

        from commandcenter.models import Case

        stored = db.scalar(select(func.count(Case.id)))
        db_mb = db.scalar(text("SELECT pg_database_size(current_database())")) / 2**20
        db.remove()
    return {"gridworkers": gridworkers, "case_ids": case_ids, "stored": stored, "db_mb": db_mb}


def start_servers(
    args, env: dict, tmp: Path, name: str = "web"
) -> tuple[list[tuple[str, subprocess.Popen, int]], list]:
    """`args.web_procs` gunicorn processes (named name1, name2, …) and `args.workers` RQ workers."""
    import requests

    bindir = Path(sys.executable).parent
    procs = []
    for i in range(args.web_procs):
        port = free_port()
        cmd = [
            str(bindir / "gunicorn"),
            "-w",
            "1",
            "--threads",
            str(args.threads),
            "-b",
            f"127.0.0.1:{port}",
            "--keep-alive",
            "5",
            "--backlog",
            "2048",
            "wsgi:app",
        ]
        procs.append(
            (
                f"{name}{i + 1}",
                subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=open(tmp / f"{name}{i + 1}.log", "ab"), stderr=subprocess.STDOUT
                ),
                port,
            )
        )
    for i in range(args.workers):
        cmd = [
            str(bindir / "rq"),
            "worker",
            "-w",
            "rq.worker.SimpleWorker",
            "--with-scheduler",
            "-u",
            args.redis_url,
            "realtime",
            "default",
            "reports",
        ]
        procs.append(
            (
                f"worker{i + 1}",
                subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=open(tmp / f"worker{i + 1}.log", "ab"), stderr=subprocess.STDOUT
                ),
                0,
            )
        )
    for name, p, port in procs:
        if not port:
            continue
        for _ in range(300):
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited: see {tmp / (name + '.log')}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{name} did not answer")
    return procs


def stop_all(procs) -> None:
    for _name, p, _port in procs:
        if p.poll() is None:
            p.terminate()
    for _name, p, _port in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


# --- checks after the run ------------------------------------------------------------------------------------


def wait_drained(app, timeout: float) -> tuple[int, float]:
    from sqlalchemy import func, select

    from commandcenter.db import db
    from commandcenter.models import Outbox

    t = time.time()
    while True:
        with app.app_context():
            left = db.scalar(select(func.count(Outbox.id)).where(Outbox.processed_at.is_(None)))
            db.remove()
        if left == 0 or time.time() - t > timeout:
            return left, time.time() - t
        time.sleep(1.0)


def expected_pushes(app, wall_users: list[str]) -> int:
    """Each case of the run is pushed once to each client in the room of its city, town or village."""
    from sqlalchemy import func, select

    from commandcenter.db import db
    from commandcenter.models import Account, Case

    with app.app_context():
        place_of = dict(db.execute(select(Account.username, Account.place_id)).all())
        per_room = Counter(place_of[u] for u in wall_users)
        rows = db.execute(
            select(Case.town_id, Case.village_id, func.count())
            .where(Case.client_key.like("ld-%"))
            .group_by(Case.town_id, Case.village_id)
        ).all()
        city = sum(n for place, n in per_room.items() if place not in {r[0] for r in rows} | {r[1] for r in rows})
        db.remove()
    return sum(n * (city + per_room.get(town, 0) + per_room.get(village, 0)) for town, village, n in rows)


def verify(
    app,
    accepted: list[tuple[str, int, int]],
    lost: set[str],
    heartbeats_ok: int,
    heartbeats_failed: int,
    redis_url: str,
) -> dict:
    """Every accepted report is stored once under its key; a stored report that was not seen accepted must
    be one whose answer the client lost (timeout): the server committed it, a retry would find it."""
    from redis import Redis
    from sqlalchemy import func, select

    from commandcenter import counters
    from commandcenter.db import db
    from commandcenter.models import Case, Heartbeat, Place
    from commandcenter.timeutil import DEFAULT_TZ, from_local, local, utcnow

    with app.app_context():
        rows = db.execute(select(Case.id, Case.client_key).where(Case.client_key.like("ld-%"))).all()
        in_db = Counter(cid for cid, _ in rows)
        accepted_ids = Counter(cid for _k, cid, _g in accepted)
        keys_db = {k: cid for cid, k in rows}
        accepted_keys = {k for k, _c, _g in accepted}
        unexplained = sum(1 for k in keys_db if k not in accepted_keys and k not in lost)
        stored_of_lost = sum(1 for k in lost if k in keys_db)
        mismatched = sum(1 for k, cid, _g in accepted if keys_db.get(k) != cid)
        heartbeats = db.scalar(select(func.count(Heartbeat.id)))
        city = db.execute(select(Place.id).where(Place.level == "city")).scalar_one()
        today = local(utcnow(), DEFAULT_TZ).date()
        start = from_local(datetime(today.year, today.month, today.day), DEFAULT_TZ)
        today_db = db.scalar(select(func.count(Case.id)).where(Case.reported_at >= start))
        live = counters.case_counts(Redis.from_url(redis_url), city, tz=DEFAULT_TZ).get("reported")
        from commandcenter.models import Outbox

        # an outbox row taken by a drain more than once had its push sent more than once
        drained_twice = db.scalar(select(func.count(Outbox.id)).where(Outbox.attempts > 1))
        db.remove()
    return {
        "accepted": len(accepted),
        "accepted_distinct": len(accepted_ids),
        "load_cases_in_db": len(rows),
        "missing": len(set(accepted_ids) - set(in_db)),
        "extra": len(set(in_db) - set(accepted_ids)),
        "extra_unexplained": unexplained,
        "lost_answers": len(lost),
        "lost_but_stored": stored_of_lost,
        "heartbeats_failed": heartbeats_failed,
        "doubled": sum(1 for n in accepted_ids.values() if n > 1),
        "key_mismatch": mismatched,
        "heartbeats_ok": heartbeats_ok,
        "heartbeats_db": heartbeats,
        "reported_today_db": today_db,
        "reported_today_live": live,
        "outbox_rows_drained_twice": drained_twice,
    }


# --- main ------------------------------------------------------------------------------------------------------


def run(args) -> None:
    from redis import Redis

    Redis.from_url(args.redis_url).flushdb()
    name = f"cc_bench_load_{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    url = create_database(args.pg_admin_url, name)
    procs, walls, gens = [], [], []
    try:
        app = make_app(url, args.redis_url, tmp)
        t = time.time()
        data = prepare_data(app, args)
        print(
            f"setup: {len(data['gridworkers'])} gridworker tokens, {data['stored']:,} stored cases "
            f"(database {data['db_mb']:.0f} MB) in {time.time() - t:.0f}s",
            flush=True,
        )
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": args.redis_url,
            "INSTANCE_PATH": str(tmp),
            "SECRET_KEY": "bench-load",
            "SECURE_COOKIES": "0",
            "LOGIN_RATE_LIMIT": "100000 per minute",
            "ALLOW_DEMO_PASSWORDS": "1",
        }
        procs = start_servers(args, env, tmp)
        bases = [f"http://127.0.0.1:{port}" for _n, _p, port in procs if port]
        ports = [port for _n, _p, port in procs if port]
        import requests

        cookie_of = {}
        for level in WALL_ACCOUNTS.values():
            for username in level:
                cookie_of[username] = login_cookie(bases[0], username, PASSWORD)
        pages = list(PAGE_WEIGHTS)
        drill = requests.get(bases[0] + "/drill/", headers={"Cookie": cookie_of["city_supervisor"]}, timeout=30)
        if drill.status_code != 200:
            pages = [(p, w) for p, w in pages if p != "/drill/"]
            print(f"  /drill/ answers {drill.status_code}: left out of the page mix")
        elif drill.history:  # /drill/ redirects to the viewer's place: ask for where it leads
            from urllib.parse import urlsplit

            final = urlsplit(drill.url)
            pages = [
                (final.path + (f"?{final.query}" if final.query else "") if p == "/drill/" else p, w) for p, w in pages
            ]
        # wall clients: 10 % in the city's room, 20 % in the towns', 70 % in the villages' (a city has few
        # central screens and many local ones); each connects to a web process in turn
        ctx = mp.get_context("spawn")
        jobs, wall_users = [], []
        for i in range(args.wall_clients):
            level = "city" if i % 10 == 0 else "town" if i % 10 in (1, 2) else "village"
            accounts = WALL_ACCOUNTS[level]
            username = accounts[(i // 10) % len(accounts)]
            jobs.append(("127.0.0.1", ports[i % len(ports)], cookie_of[username]))
            wall_users.append(username)
        # the set-up's pushes go out before the measured walls connect (the flusher starts on a first socket)
        load_wall.warm_up(
            ctx, [("127.0.0.1", port, cookie_of["city_duty_officer"]) for port in ports], lambda: wait_drained(app, 60)
        )
        ready, stop, wall_out = ctx.Queue(), ctx.Event(), ctx.Queue()
        per = max(1, args.wall_procs)
        for k in range(per):
            chunk = jobs[k::per]
            if chunk:
                p = ctx.Process(target=load_wall.wall_process, args=(chunk, ready, stop, wall_out), daemon=True)
                p.start()
                walls.append(p)
        t = time.time()
        for _ in jobs:
            ready.get(timeout=300)
        print(
            f"  {len(jobs)} Socket.IO clients connected in {time.time() - t:.1f}s over {len(walls)} processes",
            flush=True,
        )
        # let the workers drain the set-up's outbox, then measure
        wait_drained(app, 60)
        named = {n: p.pid for n, p, _ in procs}
        for i, p in enumerate(walls):
            named[f"wallclients{i + 1}"] = p.pid
        sampler = Sampler(named, name, url)
        page_cookies = [cookie_of[u] for u in ("city_supervisor", "town0_supervisor", "town1_supervisor")]
        t0 = time.time() + 3.0
        out = ctx.Queue()
        g = args.gen_procs
        for k in range(g):
            cfg = {
                "index": k,
                "seed": 1000 + k,
                "ports": ports,
                "t0": t0,
                "duration": args.duration,
                "rate": args.rate / g,
                "retry_rate": args.rate * args.retry_share / g,
                "heartbeat_rate": args.heartbeat_rate / g,
                "page_rate": args.page_rate / g,
                "gridworkers": data["gridworkers"][k::g],
                "cookies": page_cookies,
                "pages": pages,
                "case_ids": data["case_ids"],
                "max_conns": args.max_conns,
                "timeout": args.timeout,
            }
            p = ctx.Process(target=generator_process, args=(cfg, out), daemon=True)
            p.start()
            gens.append(p)
        time.sleep(max(0.0, t0 - time.time()))
        sampler.sample(0.0)
        next_print = 30.0
        while time.time() < t0 + args.duration:
            time.sleep(min(5.0, max(0.1, t0 + args.duration - time.time())))
            el = time.time() - t0
            row = sampler.sample(el)
            if el >= next_print or el >= args.duration - 0.5:
                next_print += 30.0
                prev = sampler.samples[-2]
                busy = 1 - (row["machine"][1] - prev["machine"][1]) / max(1, row["machine"][0] - prev["machine"][0])
                print(
                    f"  t={el:5.0f}s machine CPU {busy * 100:3.0f}%  outbox backlog {row['db']['backlog']}  "
                    + "  ".join(f"{n} {row[n][0] / 1024:.0f}MB" for n in named if not n.startswith("wall")),
                    flush=True,
                )
        results = [out.get(timeout=args.timeout + 120) for _ in gens]
        elapsed_end = time.time() - t0
        for p in gens:
            p.join(10)
        left, drain_s = wait_drained(app, 300)
        sampler.sample(time.time() - t0)
        stop.set()
        wall_counts: Counter = Counter()
        for _ in walls:
            wall_counts.update(wall_out.get(timeout=120))
        rec = {
            k: {"t": [], "ms": [], "ok": 0, "errors": Counter(), "samples": []}
            for k in ("report", "retry", "heartbeat", "page")
        }
        accepted, lost = [], set()
        gen_cpu = 0.0
        for r in results:
            accepted.extend(r["accepted"])
            lost.update(r["lost"])
            gen_cpu += r["cpu_s"]
            for k, v in r["rec"].items():
                rec[k]["t"].extend(v["t"])
                rec[k]["ms"].extend(v["ms"])
                rec[k]["ok"] += v["ok"]
                rec[k]["errors"].update(v["errors"])
                rec[k]["samples"].extend(v["samples"])
        checks = verify(
            app, accepted, lost, rec["heartbeat"]["ok"], sum(rec["heartbeat"]["errors"].values()), args.redis_url
        )
        checks["pushes_expected"] = expected_pushes(app, wall_users)
        print_results(args, rec, sampler, checks, wall_counts, left, drain_s, elapsed_end, gen_cpu, data, pages, tmp)
    finally:
        for p in gens + walls:
            if p.is_alive():
                p.kill()
        stop_all(procs)
        Redis.from_url(args.redis_url).flushdb()
        if not args.keep_db:
            drop_database(args.pg_admin_url, name)


def print_results(
    args, rec, sampler, checks, wall_counts, left, drain_s, elapsed_end, gen_cpu, data, pages, tmp
) -> None:
    d = args.duration
    print(
        f"\nresults: {d:.0f} s, target {args.rate:g} reports/s (+{args.rate * args.retry_share:g} retries/s), "
        f"{args.heartbeat_rate:g} heartbeats/s, {args.page_rate:g} pages/s, {args.wall_clients} wall clients; "
        f"{args.web_procs} web × {args.threads} threads, {args.workers} workers"
    )
    print("| traffic | requests ok | errors | throughput /s | p50 ms | p95 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    total_err = 0
    for kind, r in rec.items():
        errs = sum(r["errors"].values())
        total_err += errs
        ms = r["ms"]
        print(
            f"| {kind} | {r['ok']:,} | {errs:,} | {r['ok'] / d:.1f} | {pct(ms, 0.5):.1f} | {pct(ms, 0.95):.1f} | "
            f"{pct(ms, 0.99):.1f} | {max(ms) if ms else float('nan'):.1f} |"
        )
    for kind, r in rec.items():
        if r["errors"]:
            print(f"  {kind} errors: {dict(r['errors'])}")
            for s in r["samples"][:5]:
                print(f"    {s}")
    # reports' latency by minute: a trend would show queueing building up
    rep = rec["report"]
    if rep["t"]:
        step = 60.0 if d >= 180 else 10.0
        buckets: dict[int, list[float]] = {}
        for t, ms in zip(rep["t"], rep["ms"], strict=True):
            buckets.setdefault(int(t // step), []).append(ms)
        print(
            f"  reports per {step:.0f} s window: "
            + ", ".join(
                f"[{int(k * step)}s: {len(v) / step:.0f}/s p95 {pct(v, 0.95):.0f}]" for k, v in sorted(buckets.items())
            )
        )
    print(f"\nchecks: {json.dumps(checks)}")
    ok = (
        checks["missing"] == 0
        and checks["extra_unexplained"] == 0
        and checks["doubled"] == 0
        and checks["key_mismatch"] == 0
        and left == 0
        and checks["reported_today_db"] == checks["reported_today_live"]
    )
    print(
        f"  every accepted report stored once, live counter = database: {'yes' if ok else 'NO'}"
        + (
            f" ({checks['lost_but_stored']} of the {checks['lost_answers']} reports whose answer was lost were "
            "stored: a retry would return them)"
            if checks["lost_answers"]
            else ""
        )
    )
    print(
        f"  heartbeats: {checks['heartbeats_ok']:,} accepted, {checks['heartbeats_db']:,} rows in the database (since "
        "issue 15 they go to Redis and reach the database in batches, one row per account and "
        "PRESENCE_PERSIST_SECONDS period: commandcenter/heartbeats.py)"
    )
    print(f"  outbox rows left unprocessed: {left} (drained {drain_s:.1f} s after the load stopped)")
    print(
        f"  wall clients: {dict(wall_counts)}; pushes of the run's cases expected {checks['pushes_expected']:,}, "
        f"received {wall_counts.get('case', 0):,}"
    )
    print(f"  errors in total: {total_err}")
    s = sampler.samples
    first, last = s[0], s[-1]
    mid = min(s, key=lambda row: abs(row["t"] - d / 2))
    span = last["t"] - first["t"]
    load_end = min(s, key=lambda row: abs(row["t"] - d))  # CPU shares: while the load ran
    load_span = load_end["t"] - first["t"]
    print(
        "\n| process | RSS start MB | middle MB | end MB | slope over the 2nd half MB/min | CPU % of one core "
        "(during the load) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in [k for k in first if k not in ("t", "machine", "db")]:
        half = [row for row in s if d / 2 <= row["t"] <= d]
        slope = float("nan")
        if len(half) >= 3:
            xs, ys = [row["t"] / 60 for row in half], [row[name][0] / 1024 for row in half]
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            den = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")
        cpu = (load_end[name][1] - first[name][1]) / load_span * 100 if load_span else float("nan")
        note = " (private memory of the run's backends; CPU of every postgres process)" if name == "postgres" else ""
        print(
            f"| {name}{note} | {first[name][0] / 1024:.0f} | {mid[name][0] / 1024:.0f} | {last[name][0] / 1024:.0f} | "
            f"{slope:+.2f} | {cpu:.0f} |"
        )
    busy = 1 - (load_end["machine"][1] - first["machine"][1]) / max(1, load_end["machine"][0] - first["machine"][0])
    print(
        f"  machine CPU busy over the run: {busy * 100:.0f}% of 2 cores; load generators' own CPU: "
        f"{gen_cpu / elapsed_end * 100:.0f}% of one core"
    )
    served = sum(r["ok"] + sum(r["errors"].values()) for r in rec.values())
    cpu_of = {name: last[name][1] - first[name][1] for name in first if name not in ("t", "machine", "db")}
    web = sum(v for k, v in cpu_of.items() if k.startswith("web"))
    workers = sum(v for k, v in cpu_of.items() if k.startswith("worker"))
    walls = sum(v for k, v in cpu_of.items() if k.startswith("wallclients"))
    print(
        f"  CPU per request (all kinds, {served:,} requests): web {web / served * 1000:.2f} ms, "
        f"PostgreSQL {cpu_of['postgres'] / served * 1000:.2f} ms, Redis {cpu_of['redis'] / served * 1000:.2f} ms; "
        f"workers per report {workers / max(1, rec['report']['ok']) * 1000:.2f} ms; wall clients' own CPU "
        f"{walls / span * 100:.0f}% of one core (CPU per request: from the start of the load to the end of the drain)"
    )
    states: Counter = Counter()
    for row in s:
        states.update(row["db"]["states"])
    print(
        "  database connections of the run, mean over the samples (state/wait): "
        + ", ".join(f"{k} {v / len(s):.1f}" for k, v in states.most_common())
    )
    print(
        "  outbox backlog over the run (samples every 5 s): max "
        f"{max(row['db']['backlog'] for row in s)}, at the end of the load {s[-2]['db']['backlog'] if len(s) > 1 else 0}"
    )
    print(f"  logs: {tmp}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pg-admin-url", default=os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--rate", type=float, default=500, help="new reports per second (open loop)")
    parser.add_argument(
        "--retry-share", type=float, default=0.02, help="retries of accepted reports, as a share of --rate"
    )
    parser.add_argument("--heartbeat-rate", type=float, default=None, help="heartbeats per second (default: rate / 5)")
    parser.add_argument("--page-rate", type=float, default=10, help="supervisor page requests per second")
    parser.add_argument("--wall-clients", type=int, default=200)
    parser.add_argument("--wall-procs", type=int, default=2)
    parser.add_argument("--web-procs", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=150, help="gunicorn threads per web process (each open websocket holds one)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gen-procs", type=int, default=2)
    parser.add_argument("--max-conns", type=int, default=64, help="connections per generator and web process")
    parser.add_argument("--timeout", type=float, default=30)
    parser.add_argument("--gridworkers", type=int, default=400)
    parser.add_argument("--old-cases", type=int, default=100_000)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    if args.heartbeat_rate is None:
        args.heartbeat_rate = args.rate / 5
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    print(f"machine: {machine()}")
    run(args)


if __name__ == "__main__":
    main()
