"""A whole city's day in server mode (issue 15 §5): four workloads, each read against this machine's floor.

    .venv/bin/python bench/bench_city.py [--workloads city,surge,mix,reports] [--duration S]
        [--accounts 15000] [--json results.json] [--redis-url redis://127.0.0.1:6379/9] …  (see --help)

Every invocation first measures the floor (bench/bench_floor.py: a bare Flask insert under gunicorn, the
most answered per second at a rate with p95 < 200 ms and no errors) and prints every throughput as a
share of it: machines here differ by about 30 %, the share does not.

Then, once for all the workloads chosen: a throw-away PostgreSQL database with the tests' small city
(tests/world.py), `--accounts` gridworker accounts with API tokens (COPY, a few seconds for 15,000) spread
over its 8 grids, `--old-cases` closed cases of the past year; the server as in the Procfile
(`--web-procs` gunicorn processes with `--threads` threads, `--workers` RQ workers) on the given Redis
database (FLUSHED before and after). Load comes from `--gen-procs` generator processes (open loop: a
request leaves at its scheduled moment whether or not earlier ones returned, latency counts from that
moment), round-robin over the web processes; wall clients (bench/load_wall.py) are duty officers of the
city (10 %), the towns (20 %) and the villages (70 %) on Socket.IO /live websockets.

Workloads:
  city     the peak of a city, `--duration` (default 600 s): every account sends a heartbeat every
           `--heartbeat-period` s (15,000 / 60 s = 250/s, spread evenly over the period with
           ±`--heartbeat-jitter` s), `--patrols` patrol uploads per 10 minutes (a valid track: a point every
           5 minutes inside the patrol, which ended in the last hour), `--city-rate` reports/s,
           `--page-rate` supervisor pages/s, `--wall-clients` walls, `--retry-share` retried reports.
  surge    the same with `--surge-rate` reports/s for `--duration` (default 180 s).
  mix      the full mix of the reliability issue (walls, pages, heartbeats at rate / 5 like bench_load.py,
           retries) at each of `--mix-rates` in turn, `--step-duration` s each (or `--duration`), until
           the reports' p95 reaches 200 ms or a request fails: the last rate that held, as a share of
           the floor (target ≥ 25 %).
  reports  reports alone, each of `--reports-rates` the same way (target ≥ 50 % of the floor).

Checks after each run (or step), once the outbox is drained: every accepted report is in the database
exactly once under its key, every accepted patrol once; the case counters of today equal the database
(counters.reconcile reports the drift, and fixes it); patrol minutes in Redis equal the patrols'; every
account with an accepted heartbeat is online in Redis; per wall client and room the pushes' seq runs
without a gap or a repeat, no case item arrives twice, the report items received equal those expected
(each case once per client of its city, town or village); the server processes' memory (VmRSS) at the
start and the end. Commit → screen is measured at the wall clients: receive time − the case item's
"at_ms" (the "batch" wire format; the per-event "case" pushes of before carry no at_ms).
Printed per workload: p50/p95/p99 per request kind, errors, throughput and its share of the floor,
commit → screen, pushes per client per second, CPU % and RSS growth per process (load generators and
wall clients included). `--json FILE` writes everything printed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing as mp
import os
import random
import secrets
import signal
import sys
import tempfile
import time
import zlib
from array import array
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import load_wall  # noqa: E402
from bench.bench_floor import floor_rate, print_row  # noqa: E402
from bench.bench_floor import measure as measure_floor  # noqa: E402
from bench.bench_load import (  # noqa: E402
    PAGE_WEIGHTS,
    REPORT_CODES,
    WALL_ACCOUNTS,
    Sampler,
    _weighted,
    start_servers,
    stop_all,
    wait_drained,
)
from bench.bench_wall import (  # noqa: E402
    PASSWORD,
    add_old_cases,
    create_database,
    drop_database,
    login_cookie,
    make_app,
)
from bench.common import machine, pct  # noqa: E402

KINDS = ("report", "retry", "heartbeat", "patrol", "page")
P95_LIMIT_MS = 200.0
# issue 15's targets: the city peak and the surge judge every kind of request (and the city the walls), the
# ladders (mix, reports alone) the reports
TARGETS = {
    "city": {"p95_ms": 200.0, "every_kind": True, "commit_to_screen_ms": 1500.0},
    "surge": {"p95_ms": 500.0, "every_kind": True, "commit_to_screen_ms": None},
}
LADDER_TARGET = {"p95_ms": P95_LIMIT_MS, "every_kind": False, "commit_to_screen_ms": None}


def target_misses(name: str, kinds: dict, pushes: dict | None) -> list[str]:
    """What a run missed of its workload's target (p95 by kind, commit → screen): [] when it held."""
    target = TARGETS.get(name, LADDER_TARGET)
    limit, out = target["p95_ms"], []
    for kind in KINDS if target["every_kind"] else ("report",):
        p95 = kinds.get(kind, {}).get("p95")
        if p95 is None and kind != "report":
            continue
        if p95 is None or not p95 < limit:
            out.append(f"{kind} p95 {fmt(p95, '.0f')} ms ≥ {limit:.0f} ms")
    c2s_limit = target["commit_to_screen_ms"]
    c2s = pushes.get("commit_to_screen_p95") if pushes else None
    if c2s_limit is not None and c2s is not None and not c2s < c2s_limit:
        out.append(f"commit → screen p95 {c2s:.0f} ms ≥ {c2s_limit:.0f} ms")
    return out


# --- load generators -------------------------------------------------------------------------------------


def generator_process(cfg: dict, out) -> None:
    result = asyncio.run(run_generator(cfg))
    out.put(result)
    out.close()
    out.join_thread()


def patrol_body(rnd: random.Random, key: str, lat: float, lon: float, now: float) -> bytes:
    """A patrol that ended in the last hour and lasted 60–120 minutes, with a point every 5 minutes
    (± 30 s) from its start to its end: what fieldwork.check_track accepts."""
    ended = now - rnd.uniform(60, 3600)
    started = ended - rnd.uniform(3600, 7200)
    track, ts = [], started + rnd.uniform(0, 60)
    while ts < ended - 60:
        track.append([round(lon + rnd.uniform(-0.004, 0.004), 6), round(lat + rnd.uniform(-0.004, 0.004), 6), ts])
        ts += 300 + rnd.uniform(-30, 30)
    track.append([round(lon, 6), round(lat, 6), ended - 30])
    return json.dumps(
        {
            "client_key": key,
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
            "ended_at": datetime.fromtimestamp(ended, UTC).isoformat(),
            "track": track,
        }
    ).encode()


async def run_generator(cfg: dict) -> dict:
    from bench.load_http import Pool

    rnd = random.Random(cfg["seed"])
    pools = [Pool("127.0.0.1", port, max_conns=cfg["max_conns"]) for port in cfg["ports"]]
    api_pools = (
        [Pool("127.0.0.1", port, max_conns=cfg["max_conns"]) for port in cfg["api_ports"]]
        if cfg["api_ports"] != cfg["ports"]
        else pools
    )
    t0, duration, prefix = cfg["t0"], cfg["duration"], cfg["prefix"]
    accounts = cfg["accounts"]  # (global index, account id, token, lat, lon)
    rec = {k: {"t": array("f"), "ms": array("f"), "ok": 0, "errors": Counter(), "samples": []} for k in KINDS}
    accepted: list[tuple[str, int, int]] = []  # reports: (client_key, case id, index in accounts)
    patrols: list[tuple[str, int]] = []  # (client_key, patrol id)
    lost: set[str] = set()  # keys of reports / patrols sent without an answer
    heartbeat_at: dict[int, float] = {}  # account id → scheduled moment of its last accepted heartbeat
    pending: set[asyncio.Task] = set()
    counter = [0]
    rr = [0]

    def pool(kind: str) -> Pool:
        rr[0] += 1
        chosen = pools if kind == "page" else api_pools  # as nginx routes /api/ (docs/operations.md)
        return chosen[rr[0] % len(chosen)]

    def fail(kind: str, what: str, detail: str) -> None:
        rec[kind]["errors"][what] += 1
        if len(rec[kind]["samples"]) < 10:
            rec[kind]["samples"].append(f"{what}: {detail[:200]}")

    async def send(kind, scheduled, method, path, headers, body, check, key=None) -> None:
        if key:
            lost.add(key)
        try:
            status, hdrs, data = await pool(kind).request(method, path, headers, body, timeout=cfg["timeout"])
        except asyncio.CancelledError:
            fail(kind, "unfinished", "no answer when the run ended")
            raise
        except Exception as exc:
            fail(kind, exc.__class__.__name__, str(exc))
            return
        if key:
            lost.discard(key)
        elapsed = (time.time() - scheduled) * 1000
        try:
            problem = check(status, hdrs, data)
        except Exception as exc:  # an answer that is not what the API documents
            problem = f"{exc.__class__.__name__}: {exc}"
        if problem:
            fail(
                kind, f"HTTP {status}" if status not in (200, 201, 204) else "wrong answer", f"{problem} {data[:150]!r}"
            )
            return
        rec[kind]["t"].append(scheduled - t0)
        rec[kind]["ms"].append(elapsed)
        rec[kind]["ok"] += 1

    def auth(token: str) -> dict:
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def report_body(lat: float, lon: float, key: str) -> bytes:
        return json.dumps(
            {
                "client_key": key,
                "category_code": _weighted(rnd, REPORT_CODES),
                "description": f"压测上报 {key}",
                "lat": lat + rnd.uniform(-0.004, 0.004),
                "lon": lon + rnd.uniform(-0.004, 0.004),
            }
        ).encode()

    def new_report(scheduled: float):
        counter[0] += 1
        key = f"{prefix}r-{cfg['index']}-{counter[0]}-{rnd.randrange(1 << 30):x}"
        index = rnd.randrange(len(accounts))
        _gi, _aid, token, lat, lon = accounts[index]
        body = report_body(lat, lon, key)

        def check(status, _h, data):
            if status != 201:
                return f"expected 201, got {status}"
            accepted.append((key, json.loads(data)["id"], index))
            return None

        return send("report", scheduled, "POST", "/api/v1/cases", auth(token), body, check, key=key)

    def retry(scheduled: float):
        if not accepted:
            return None
        key, case_id, index = accepted[rnd.randrange(len(accepted))]
        _gi, _aid, token, lat, lon = accounts[index]
        body = report_body(lat, lon, key)

        def check(status, _h, data):
            if status != 200:
                return f"expected 200 (already reported), got {status}"
            if json.loads(data)["id"] != case_id:
                return f"a retry returned case {json.loads(data)['id']} instead of {case_id}"
            return None

        return send("retry", scheduled, "POST", "/api/v1/cases", auth(token), body, check)

    def heartbeat_of(index: int):
        def make(scheduled: float):
            _gi, aid, token, lat, lon = accounts[index]
            body = json.dumps(
                {"lat": round(lat + rnd.uniform(-0.003, 0.003), 6), "lon": round(lon + rnd.uniform(-0.003, 0.003), 6)}
            ).encode()

            def check(status, _h, _d):
                if status != 204:
                    return f"expected 204, got {status}"
                heartbeat_at[aid] = scheduled
                return None

            return send("heartbeat", scheduled, "POST", "/api/v1/heartbeats", auth(token), body, check)

        return make

    def random_heartbeat(scheduled: float):
        return heartbeat_of(rnd.randrange(len(accounts)))(scheduled)

    def patrol(scheduled: float):
        counter[0] += 1
        key = f"{prefix}p-{cfg['index']}-{counter[0]}-{rnd.randrange(1 << 30):x}"
        _gi, _aid, token, lat, lon = accounts[rnd.randrange(len(accounts))]
        body = patrol_body(rnd, key, lat, lon, scheduled)

        def check(status, _h, data):
            if status != 201:
                return f"expected 201, got {status}"
            answer = json.loads(data)
            if not answer.get("created"):
                return "a new patrol answered as already known"
            patrols.append((key, answer["id"]))
            return None

        return send("patrol", scheduled, "POST", "/api/v1/patrols", auth(token), body, check, key=key)

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

    def launch(coro) -> None:
        if coro is not None:
            task = asyncio.create_task(coro)
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def at_times(times: list[float], makes: list) -> None:
        for at, make in zip(times, makes, strict=True):
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            launch(make(at))

    async def poisson(rate: float, make) -> None:
        if rate <= 0:
            return
        at, end = t0 + rnd.expovariate(rate), t0 + duration
        while at < end:
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            launch(make(at))
            at += rnd.expovariate(rate)

    async def heartbeats_by_account() -> None:
        """Each account every `period` s at its own phase (index / accounts × period) ± jitter."""
        period, jitter, n_total, end = cfg["hb_period"], cfg["hb_jitter"], cfg["n_accounts"], t0 + duration
        events = []
        for index, (gi, *_rest) in enumerate(accounts):
            phase = gi / n_total * period
            cycle = 0
            while True:
                at = t0 + cycle * period + phase + rnd.uniform(-jitter, jitter)
                if at >= end:
                    break
                events.append((max(at, t0), index))
                cycle += 1
        events.sort()
        await at_times([at for at, _ in events], [heartbeat_of(index) for _, index in events])

    await asyncio.sleep(max(0.0, t0 - time.time()))
    cpu0 = time.process_time()
    jobs = [
        poisson(cfg["rate"], new_report),
        poisson(cfg["retry_rate"], retry),
        poisson(cfg["patrol_rate"], patrol),
        poisson(cfg["page_rate"], page),
    ]
    if cfg["hb_mode"] == "accounts":
        jobs.append(heartbeats_by_account())
    elif cfg["hb_mode"] == "rate":
        jobs.append(poisson(cfg["hb_rate"], random_heartbeat))

    await asyncio.gather(*jobs)
    if pending:
        await asyncio.wait(set(pending), timeout=cfg["timeout"] + 5)
    for task in list(pending):  # still waiting for a connection or an answer: counted as errors
        task.cancel()
    if pending:
        await asyncio.wait(set(pending), timeout=5)
    for p in {*pools, *api_pools}:
        p.close()
    for kind in rec:
        rec[kind]["errors"] = dict(rec[kind]["errors"])
    return {
        "rec": rec,
        "accepted": [(k, c) for k, c, _i in accepted],
        "patrols": patrols,
        "lost": sorted(lost),
        "heartbeat_at": heartbeat_at,
        "cpu_s": time.process_time() - cpu0,
    }


# --- setup -----------------------------------------------------------------------------------------------


def seed_accounts(conn, n: int, grids: list[tuple], pw_hash: str, token_days: int) -> list[tuple]:
    """n gridworker accounts (cgw00000…) over the grids, each with one API token, by COPY: a few seconds
    for 15,000 (create_account + issue_api_token, one commit each, would take minutes). Returns
    (index, account id, token, lat, lon) per account."""
    now = datetime.now(UTC).replace(tzinfo=None)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S")
    expires = (now + timedelta(days=token_days)).strftime("%Y-%m-%d %H:%M:%S")
    cur = conn.cursor()
    buf = io.StringIO()
    for i in range(n):
        gid, vid, tid, _lat, _lon = grids[i % len(grids)]
        buf.write(
            f"cgw{i:05d}\t压测网格员{i}\t{pw_hash}\tgridworker\tfull_time\t{gid}\t{tid}\t{vid}\t"
            f"f\tt\t0\t{stamp}\tf\t{stamp}\n"
        )
    buf.seek(0)
    cur.copy_expert(
        "COPY accounts (username, display_name, password_hash, role, post, place_id, town_id, village_id, "
        "can_unmask, active, failed_logins, password_changed_at, must_change_password, created_at) FROM STDIN",
        buf,
    )
    cur.execute("SELECT id, username FROM accounts WHERE username LIKE 'cgw%'")
    ids = {int(u[3:]): aid for aid, u in cur.fetchall()}
    from commandcenter.security import token_digest

    out, buf = [], io.StringIO()
    for i in range(n):
        token = secrets.token_urlsafe(32)
        buf.write(f"{ids[i]}\t{token_digest(token)}\tcity-bench\t{stamp}\t{expires}\tf\n")
        _gid, _vid, _tid, lat, lon = grids[i % len(grids)]
        out.append((i, ids[i], token, lat, lon))
    buf.seek(0)
    cur.copy_expert("COPY api_tokens (account_id, token_hash, name, created_at, expires_at, revoked) FROM STDIN", buf)
    conn.commit()
    return out


def prepare_data(app, args) -> dict:
    """The small city, the accounts and their tokens, old cases, a few recent ones for the case pages."""
    import psycopg2
    from sqlalchemy import func, select, text

    from commandcenter.cases import loop
    from commandcenter.db import db
    from commandcenter.models import Case, Category, Place
    from commandcenter.timeutil import DEFAULT_TZ, from_local, local, utcnow
    from tests.world import build_world

    with app.app_context():
        world = build_world()
        pw_hash = world.accounts["gw0"].password_hash
        grids = [db.get(Place, g.id) for g in world.grids]
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
        token_days = app.config["SETTINGS"].api_token_days
        url = db.get_bind().url.render_as_string(hide_password=False)
        db.remove()
    pg = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
    t = time.time()
    accounts = seed_accounts(pg, args.accounts, grid_rows, pw_hash, token_days)
    accounts_s = time.time() - t
    if args.old_cases:
        add_old_cases(pg, args.old_cases, grid_rows, leaves, month_start, random.Random(7))
    with pg.cursor() as cur:
        cur.execute("ANALYZE")
    pg.commit()
    pg.close()
    with app.app_context():
        stored = db.scalar(select(func.count(Case.id)))
        db_mb = db.scalar(text("SELECT pg_database_size(current_database())")) / 2**20
        db.remove()
    return {
        "accounts": accounts,
        "accounts_s": accounts_s,
        "case_ids": case_ids,
        "stored": stored,
        "db_mb": db_mb,
    }


def page_list(base: str, cookie: str) -> list[tuple[str, int]]:
    """The page mix of bench_load.py; /drill/ as where it redirects the city's supervisor."""
    import requests

    pages = list(PAGE_WEIGHTS)
    drill = requests.get(base + "/drill/", headers={"Cookie": cookie}, timeout=30)
    if drill.status_code != 200:
        print(f"  /drill/ answers {drill.status_code}: left out of the page mix")
        return [(p, w) for p, w in pages if p != "/drill/"]
    if drill.history:
        from urllib.parse import urlsplit

        final = urlsplit(drill.url)
        target = final.path + (f"?{final.query}" if final.query else "")
        pages = [(target if p == "/drill/" else p, w) for p, w in pages]
    return pages


# --- one run -----------------------------------------------------------------------------------------------


def start_walls(ctx, n: int, ports: list[int], cookie_of: dict, procs: int):
    """n wall clients: 10 % in the city's room, 20 % in the towns', 70 % in the villages'."""
    jobs = []
    for i in range(n):
        level = "city" if i % 10 == 0 else "town" if i % 10 in (1, 2) else "village"
        accounts = WALL_ACCOUNTS[level]
        username = accounts[(i // 10) % len(accounts)]
        jobs.append(("127.0.0.1", ports[i % len(ports)], cookie_of[username]))
    ready, stop, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    walls = []
    for k in range(max(1, procs)):
        chunk = jobs[k::procs]
        if chunk:
            p = ctx.Process(target=load_wall.wall_process_detail, args=(chunk, ready, stop, out), daemon=True)
            p.start()
            walls.append(p)
    t = time.time()
    for _ in jobs:
        ready.get(timeout=300)
    return walls, stop, out, time.time() - t


def run_workload(env: dict, spec: dict) -> dict:
    """One run of `spec` (a workload or a step of a ladder) against the running server: walls, load,
    drain, checks. Returns everything measured."""
    args, app, ctx = env["args"], env["app"], env["ctx"]
    prefix = spec["prefix"]
    walls, gens = [], []
    stop = None
    try:
        connect_s = 0.0
        wait_drained(app, 60)  # what came before (the set-up, the last run) reaches no wall of this run
        if spec["walls"]:
            walls, stop, wall_out, connect_s = start_walls(
                ctx, spec["walls"], env["ports"], env["cookie_of"], args.wall_procs
            )
        wait_drained(app, 60)
        named = {n: p.pid for n, p, _ in env["procs"]}
        for i, p in enumerate(walls):
            named[f"wallclients{i + 1}"] = p.pid
        t0 = time.time() + 3.0
        out = ctx.Queue()
        g = args.gen_procs
        for k in range(g):
            cfg = {
                "index": k,
                "seed": zlib.crc32(f"{prefix}:{k}".encode()),
                "prefix": prefix,
                "ports": env["ports"],
                "api_ports": env["api_ports"],
                "t0": t0,
                "duration": spec["duration"],
                "rate": spec["rate"] / g,
                "retry_rate": spec["rate"] * spec["retry_share"] / g,
                "hb_mode": spec["hb_mode"],
                "hb_rate": spec.get("hb_rate", 0) / g,
                "hb_period": args.heartbeat_period,
                "hb_jitter": args.heartbeat_jitter,
                "n_accounts": len(env["accounts"]),
                "patrol_rate": spec["patrol_rate"] / g,
                "page_rate": spec["page_rate"] / g,
                "accounts": env["accounts"][k::g],
                "cookies": env["page_cookies"],
                "pages": env["pages"],
                "case_ids": env["case_ids"],
                "max_conns": args.max_conns,
                "timeout": args.timeout,
            }
            p = ctx.Process(target=generator_process, args=(cfg, out), daemon=True)
            p.start()
            gens.append(p)
            named[f"generator{k + 1}"] = p.pid
        sampler = Sampler(named, env["db_name"], env["db_url"])
        every = min(args.sample_every, max(1.0, spec["duration"] / 8))
        time.sleep(max(0.0, t0 - time.time()))
        sampler.sample(0.0)
        next_print = 30.0
        end = t0 + spec["duration"]
        while time.time() < end:
            time.sleep(min(every, max(0.05, end - time.time())))
            el = time.time() - t0
            row = sampler.sample(el)
            if el >= next_print:
                next_print += 30.0
                prev = sampler.samples[-2]
                busy = 1 - (row["machine"][1] - prev["machine"][1]) / max(1, row["machine"][0] - prev["machine"][0])
                print(
                    f"    t={el:4.0f}s machine CPU {busy * 100:3.0f}%  outbox backlog {row['db']['backlog']}"
                    f"  {_cpu_by_role(sampler.samples, 30.0)}",
                    flush=True,
                )
        results = [out.get(timeout=args.timeout + 120) for _ in gens]
        for p in gens:
            p.join(10)
        left, drain_s = wait_drained(app, 300)
        time.sleep(args.settle)  # the last tick's batches on their way to the walls
        sampler.sample(time.time() - t0)
        wall_counts: Counter = Counter()
        clients: list[dict] = []
        latencies = array("f")
        wall_seconds = 0.0
        if walls:
            stop.set()
            user_of = {cookie: user for user, cookie in env["cookie_of"].items()}
            for _ in walls:
                counts, detail = wall_out.get(timeout=120)
                wall_counts.update({k: v for k, v in counts.items() if isinstance(v, int)})
                for client, cookie in zip(detail["clients"], detail["cookies"], strict=True):
                    clients.append({**client, "user": user_of[cookie]})
                lat = array("f")
                lat.frombytes(detail["latency_ms"])
                latencies.extend(lat)
                wall_seconds = max(wall_seconds, detail["seconds"])
        sampler.pg.close()
    finally:
        for p in gens + walls:
            if p.is_alive():
                p.kill()
    return summarize(
        env, spec, merge(results), sampler, left, drain_s, wall_counts, clients, latencies, wall_seconds, connect_s
    )


def warm_up(env: dict) -> None:
    """What a server that has been running a while has done already: the walls' counters primed from the
    database (the first wall request on a flushed Redis rebuilds them, online sets included), a flusher
    started (the first socket starts one) and the set-up's pushes gone out. Not measured."""
    import requests

    app, ctx = env["app"], env["ctx"]
    base = f"http://127.0.0.1:{env['ports'][0]}"
    answer = requests.get(
        base + "/wall/panel/counts", headers={"Cookie": env["cookie_of"]["city_supervisor"]}, timeout=120
    )
    if answer.status_code != 200:
        print(f"  warm-up: /wall/panel/counts answered {answer.status_code}")
    cookie = env["cookie_of"]["city_duty_officer"]
    load_wall.warm_up(
        ctx, [("127.0.0.1", port, cookie) for port in env["ports"]], lambda: wait_drained(app, 120), env["args"].settle
    )


def merge(results: list[dict]) -> dict:
    rec = {k: {"t": [], "ms": [], "ok": 0, "errors": Counter(), "samples": []} for k in KINDS}
    accepted, patrols, lost, heartbeat_at, cpu = [], [], set(), {}, 0.0
    for r in results:
        accepted.extend(r["accepted"])
        patrols.extend(r["patrols"])
        lost.update(r["lost"])
        heartbeat_at.update(r["heartbeat_at"])
        cpu += r["cpu_s"]
        for k, v in r["rec"].items():
            rec[k]["t"].extend(v["t"])
            rec[k]["ms"].extend(v["ms"])
            rec[k]["ok"] += v["ok"]
            rec[k]["errors"].update(v["errors"])
            rec[k]["samples"].extend(v["samples"])
    return {
        "rec": rec,
        "accepted": accepted,
        "patrols": patrols,
        "lost": lost,
        "heartbeat_at": heartbeat_at,
        "cpu_s": cpu,
    }


# --- checks after a run ------------------------------------------------------------------------------------


def check_stored(app, prefix: str, accepted: list[tuple[str, int]], lost: set[str]) -> dict:
    """Every accepted report and patrol of the run is stored once under its key; a stored one not seen
    accepted must be one whose answer the client lost (timeout): committed, a retry would find it."""
    from sqlalchemy import select

    from commandcenter.db import db
    from commandcenter.models import Case, Patrol

    out = {}
    with app.app_context():
        for kind, model in (("reports", Case), ("patrols", Patrol)):
            tag = f"{prefix}{kind[0]}-"
            mine = [(k, i) for k, i in accepted if k.startswith(tag)]
            rows = db.execute(select(model.id, model.client_key).where(model.client_key.like(f"{tag}%"))).all()
            in_db = Counter(i for i, _ in rows)
            keys_db = Counter(k for _, k in rows)
            ids = Counter(i for _, i in mine)
            accepted_keys = {k for k, _ in mine}
            pairs = {(k, i) for i, k in rows}
            out[kind] = {
                "accepted": len(mine),
                "in_db": len(rows),
                "missing": len(set(ids) - set(in_db)),
                "doubled": sum(1 for n in ids.values() if n > 1) + sum(1 for n in keys_db.values() if n > 1),
                "key_mismatch": sum(1 for k, i in mine if (k, i) not in pairs),
                "extra_unexplained": sum(1 for _, k in rows if k not in accepted_keys and k not in lost),
                "lost_answers": sum(1 for k in lost if k.startswith(tag)),
                "lost_but_stored": sum(1 for _, k in rows if k in lost),
            }
        db.remove()
    return out


def check_counters(app, redis_url: str) -> dict:
    """Case counters of today against the committed history steps (counters.reconcile: it reports the
    drift and fixes it), and the patrol minutes in Redis of the bench's accounts against their patrols."""
    from redis import Redis
    from sqlalchemy import select

    from commandcenter import counters
    from commandcenter.counters.presence import _patrol_pieces
    from commandcenter.db import db
    from commandcenter.models import Account, Patrol, Place
    from commandcenter.timeutil import DEFAULT_TZ, local, utcnow

    r = Redis.from_url(redis_url)
    with app.app_context():
        city = db.execute(select(Place.id).where(Place.level == "city")).scalar_one()
        today = local(utcnow(), DEFAULT_TZ).date()
        report = counters.reconcile(r, db, today, today, city, tz=DEFAULT_TZ)
        rows = db.execute(
            select(Patrol.gridworker_id, Patrol.started_at, Patrol.ended_at)
            .join(Account, Account.id == Patrol.gridworker_id)
            .where(Account.username.like("cgw%"))
        ).all()
        db.remove()
    truth: dict[tuple[str, str], float] = Counter()
    for aid, started, ended in rows:
        for day, minutes in _patrol_pieces(started, ended, DEFAULT_TZ):
            truth[(day, str(aid))] += minutes
    off = 0
    examples = []
    keys = sorted(truth)
    with r.pipeline(transaction=False) as pipe:
        for day, aid in keys:
            pipe.hget(f"cc:patrol:{day}:all", aid)
        values = pipe.execute()
    for key, value in zip(keys, values, strict=True):
        cached = float(value) if value is not None else 0.0
        if abs(cached - truth[key]) > 0.05:
            off += 1
            if len(examples) < 5:
                examples.append((*key, cached, round(truth[key], 2)))
    return {
        "case_keys_checked": report.get("keys_checked"),
        "case_keys_off": report.get("keys_fixed"),
        "case_drift_e.g.": [list(x) for x in report.get("drift", [])[:5]],
        "case_events_pending": report.get("pending"),
        "patrol_minutes_checked": len(keys),
        "patrol_minutes_off": off,
        "patrol_minutes_off_e.g.": examples,
    }


def check_online(redis_url: str, heartbeat_at: dict[int, float]) -> dict:
    """Every account whose heartbeat was accepted is online in Redis since at least that moment."""
    from redis import Redis

    ids = list(heartbeat_at)
    r = Redis.from_url(redis_url)
    missing, examples = 0, []
    for i in range(0, len(ids), 5000):
        chunk = ids[i : i + 5000]
        with r.pipeline(transaction=False) as pipe:
            for aid in chunk:
                pipe.zscore("cc:online:all", str(aid))
            for aid, score in zip(chunk, pipe.execute(), strict=True):
                if score is None or score < heartbeat_at[aid] - 2:
                    missing += 1
                    if len(examples) < 5:
                        examples.append((aid, round(heartbeat_at[aid], 2), score))
    return {"accounts_with_heartbeats": len(ids), "not_online": missing, "not_online_e.g.": examples}


def expected_items(app, prefix: str, users: list[str]) -> list[int]:
    """Report items each wall client should receive: the run's cases of its city, town or village."""
    from sqlalchemy import func, select

    from commandcenter.db import db
    from commandcenter.models import Account, Case, Place

    with app.app_context():
        place_of = dict(db.execute(select(Account.username, Account.place_id)).all())
        level_of = dict(db.execute(select(Place.id, Place.level)).all())
        rows = db.execute(
            select(Case.town_id, Case.village_id, func.count())
            .where(Case.client_key.like(f"{prefix}r-%"))
            .group_by(Case.town_id, Case.village_id)
        ).all()
        db.remove()
    total = sum(n for _t, _v, n in rows)
    by_town, by_village = Counter(), Counter()
    for town, village, n in rows:
        by_town[town] += n
        by_village[village] += n
    out = []
    for user in users:
        place = place_of[user]
        level = level_of[place]
        out.append(total if level == "city" else by_town[place] if level == "town" else by_village[place])
    return out


def slope(rows: list[dict], name: str) -> float:
    """Least-squares slope of the RSS over `rows`, MB per minute (NaN with fewer than 3 samples)."""
    if len(rows) < 3:
        return float("nan")
    xs, ys = [row["t"] / 60 for row in rows], [row[name][0] / 1024 for row in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def _cpu_by_role(samples: list[dict], span: float) -> str:
    """CPU % of one core of each kind of process (web, api, worker, postgres, redis, load) over the last
    `span` seconds of samples: which one a slow window of the progress lines belongs to."""
    last = samples[-1]
    first = next((row for row in samples if row["t"] >= last["t"] - span - 0.01), samples[0])
    took = last["t"] - first["t"]
    if took <= 0:
        return ""
    roles: dict[str, float] = {}
    for name, value in last.items():
        if name in ("t", "machine", "db") or name not in first:
            continue
        role = name.rstrip("0123456789")
        role = {"generator": "load", "wallclients": "load"}.get(role, role)
        roles[role] = roles.get(role, 0.0) + max(0.0, value[1] - first[name][1])
    return "CPU " + " ".join(f"{role} {used / took * 100:.0f}%" for role, used in roles.items())


def alive(samples: list[dict], name: str) -> list[dict]:
    """The samples taken while the process was there (a load generator ends before the last one)."""
    return [row for row in samples if row[name][0] > 0] or samples[:1]


def summarize(env, spec, m, sampler, left, drain_s, wall_counts, clients, latencies, wall_seconds, connect_s) -> dict:
    args, app = env["args"], env["app"]
    d = spec["duration"]
    floor = env["floor"]
    kinds = {}
    for kind, r in m["rec"].items():
        ms = r["ms"]
        if not r["ok"] and not r["errors"]:
            continue
        kinds[kind] = {
            "ok": r["ok"],
            "errors": sum(r["errors"].values()),
            "error_kinds": dict(r["errors"]),
            "error_samples": r["samples"][:5],
            "per_s": r["ok"] / d,
            "share_of_floor": r["ok"] / d / floor if floor else None,
            "p50": pct(ms, 0.5),
            "p95": pct(ms, 0.95),
            "p99": pct(ms, 0.99),
            "max": max(ms) if ms else float("nan"),
        }
    rep = m["rec"]["report"]
    windows = []
    if rep["t"]:
        step = 60.0 if d >= 180 else 10.0
        buckets: dict[int, list[float]] = {}
        for t, ms in zip(rep["t"], rep["ms"], strict=True):
            buckets.setdefault(int(t // step), []).append(ms)
        windows = [
            {"from_s": int(k * step), "per_s": len(v) / step, "p95": pct(v, 0.95)} for k, v in sorted(buckets.items())
        ]
    stored = check_stored(app, spec["prefix"], m["accepted"] + m["patrols"], m["lost"])
    counts = check_counters(app, args.redis_url)
    online = check_online(args.redis_url, m["heartbeat_at"])
    pushes: dict = {}
    if clients:
        expected = expected_items(app, spec["prefix"], [c["user"] for c in clients])
        batch = wall_counts.get("batch", 0) > 0
        received = [c["report_items"] for c in clients]
        lat = list(latencies)
        pushes = {
            "format": "batch" if batch else "per-event",
            "clients": len(clients),
            "connect_s": connect_s,
            "messages_per_client_per_s": sum(c["messages"] for c in clients) / len(clients) / max(1e-9, wall_seconds),
            "items_per_client_per_s": sum(c["items"] for c in clients) / len(clients) / max(1e-9, wall_seconds),
            "report_items_expected": sum(expected),
            "case_items_received": wall_counts.get("case", 0),
            "report_items_distinct": sum(received) if batch else None,
            "clients_missing_items": sum(1 for e, g in zip(expected, received, strict=True) if g < e)
            if batch
            else None,
            "items_missing": sum(max(0, e - g) for e, g in zip(expected, received, strict=True)) if batch else None,
            "duplicate_items": sum(c["dups"] for c in clients),
            "seq_gaps": sum(c["gaps"] for c in clients),
            "seq_repeats": sum(c["seq_repeats"] for c in clients),
            "unnumbered": sum(c["unnumbered"] for c in clients),
            "examples": [f"{c['user']}: {e}" for c in clients for e in c["examples"]][:8],
            "lost_connections": wall_counts.get("lost", 0) + wall_counts.get("closed_by_server", 0),
            "commit_to_screen_n": len(lat),
            "commit_to_screen_p50": pct(lat, 0.5),
            "commit_to_screen_p95": pct(lat, 0.95),
            "commit_to_screen_p99": pct(lat, 0.99),
            "events": {
                k: v for k, v in wall_counts.items() if k in ("batch", "case", "alert", "g.case", "g.visit_due")
            },
        }
    s = sampler.samples
    first = s[0]
    load_end = min(s, key=lambda row: abs(row["t"] - d))
    procs = {}
    for name in [k for k in first if k not in ("t", "machine", "db")]:
        mine = alive(s, name)
        start, end = mine[0], mine[-1]
        if not name.startswith("generator"):
            end = min(mine, key=lambda row: abs(row["t"] - d))  # CPU while the load ran
        span = end["t"] - start["t"]
        cpu = (end[name][1] - start[name][1]) / span * 100 if span else float("nan")
        procs[name] = {
            "start_mb": start[name][0] / 1024,
            "end_mb": mine[-1][name][0] / 1024,
            "growth_mb": (mine[-1][name][0] - start[name][0]) / 1024,
            "slope_mb_per_min": slope([row for row in mine if d / 2 <= row["t"] <= d], name),
            "cpu_pct": cpu,
            "cpu_s": mine[-1][name][1] - start[name][1],  # from the start of the load to the end of the drain
        }
    served = sum(k["ok"] + k["errors"] for k in kinds.values())
    cpu_ms = {
        group: sum(v["cpu_s"] for n, v in procs.items() if n.startswith(group)) / max(1, served) * 1000
        for group in ("web", "api", "postgres", "redis")
    }
    cpu_ms["workers_per_report"] = (
        sum(v["cpu_s"] for n, v in procs.items() if n.startswith("worker")) / max(1, m["rec"]["report"]["ok"]) * 1000
    )
    busy = 1 - (load_end["machine"][1] - first["machine"][1]) / max(1, load_end["machine"][0] - first["machine"][0])
    total_ok = sum(k["ok"] for k in kinds.values())
    problems = []
    for kind, st in stored.items():
        if st["missing"] or st["doubled"] or st["key_mismatch"] or st["extra_unexplained"]:
            problems.append(f"{kind} not stored exactly once")
    if left:
        problems.append(f"{left} outbox rows left")
    if counts["case_keys_off"]:
        problems.append("case counters differ from the database")
    if counts["patrol_minutes_off"]:
        problems.append("patrol minutes differ from the database")
    if online["not_online"]:
        problems.append("accounts with heartbeats not online")
    if pushes:
        if pushes["duplicate_items"] or pushes["seq_gaps"] or pushes["seq_repeats"]:
            problems.append("pushes doubled or missing (seq)")
        if pushes["items_missing"]:
            problems.append("report items missing at the walls")
        if pushes["format"] == "per-event" and pushes["case_items_received"] != pushes["report_items_expected"]:
            problems.append("case pushes received ≠ expected")
        if pushes["lost_connections"]:
            problems.append("wall connections lost")
    errors = sum(k["errors"] for k in kinds.values())
    misses = target_misses(spec["name"], kinds, pushes)
    return {
        "name": spec["name"],
        "spec": {k: v for k, v in spec.items() if k != "prefix"},
        "requests": kinds,
        "all_per_s": total_ok / d,
        "all_share_of_floor": total_ok / d / floor if floor else None,
        "report_windows": windows,
        "stored": stored,
        "counters": counts,
        "online": online,
        "outbox_left": left,
        "drain_s": drain_s,
        "pushes": pushes,
        "processes": procs,
        "machine_busy_pct": busy * 100,
        "cpu_ms_per_request": cpu_ms,
        "generators_cpu_pct_self": m["cpu_s"] / d * 100,
        "outbox_backlog_max": max(row["db"]["backlog"] for row in s),
        "errors": errors,
        "problems": problems,
        "misses": misses,
        "held": not misses and errors == 0 and not problems,
    }


# --- printing ----------------------------------------------------------------------------------------------


def fmt(x, spec=".1f") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return format(x, spec)


def print_result(res: dict, floor: float) -> None:
    sp = res["spec"]
    print(
        f"\n== {res['name']}: {sp['duration']:.0f} s, {sp['rate']:g} reports/s"
        f" (+{sp['rate'] * sp['retry_share']:g} retries/s), heartbeats "
        + (
            f"every {sp['hb_period']:g} s from each of {sp['accounts']:,} accounts"
            if sp["hb_mode"] == "accounts"
            else f"{sp.get('hb_rate', 0):g}/s"
            if sp["hb_mode"] == "rate"
            else "none"
        )
        + f", {sp['patrol_rate'] * 600:g} patrols per 10 min, {sp['page_rate']:g} pages/s, {sp['walls']} walls"
        f" — floor {floor:.0f}/s"
    )
    print("| request | ok | errors | per s | share of floor | p50 ms | p95 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, k in res["requests"].items():
        print(
            f"| {kind} | {k['ok']:,} | {k['errors']:,} | {k['per_s']:.1f} | {fmt(k['share_of_floor'] * 100, '.1f')} % | "
            f"{fmt(k['p50'])} | {fmt(k['p95'])} | {fmt(k['p99'])} | {fmt(k['max'])} |"
        )
    print(
        f"| all | {sum(k['ok'] for k in res['requests'].values()):,} | {res['errors']:,} | {res['all_per_s']:.1f} | "
        f"{fmt(res['all_share_of_floor'] * 100 if res['all_share_of_floor'] is not None else None)} % | | | | |"
    )
    for kind, k in res["requests"].items():
        if k["errors"]:
            print(f"  {kind} errors: {k['error_kinds']}")
            for sample in k["error_samples"]:
                print(f"    {sample}")
    if res["report_windows"]:
        print(
            "  reports by window: "
            + ", ".join(f"[{w['from_s']}s: {w['per_s']:.0f}/s p95 {w['p95']:.0f}]" for w in res["report_windows"])
        )
    pu = res["pushes"]
    if pu:
        print(
            f"  walls ({pu['format']} pushes, {pu['clients']} clients connected in {pu['connect_s']:.1f} s): "
            f"commit → screen p50 {fmt(pu['commit_to_screen_p50'], '.0f')} / p95 "
            f"{fmt(pu['commit_to_screen_p95'], '.0f')} / p99 {fmt(pu['commit_to_screen_p99'], '.0f')} ms "
            f"({pu['commit_to_screen_n']:,} items); per client per second {pu['messages_per_client_per_s']:.2f} "
            f"messages, {pu['items_per_client_per_s']:.2f} items"
        )
        print(
            f"  report items expected {pu['report_items_expected']:,}, case items received "
            f"{pu['case_items_received']:,}, distinct {fmt(pu['report_items_distinct'], ',')}, missing "
            f"{fmt(pu['items_missing'], ',')}; duplicates {pu['duplicate_items']}, seq gaps {pu['seq_gaps']}, "
            f"seq repeats {pu['seq_repeats']}, unnumbered {pu['unnumbered']}, connections lost "
            f"{pu['lost_connections']}; events {pu['events']}"
        )
        if pu["examples"]:
            print(f"    e.g. {pu['examples']}")
    for kind, st in res["stored"].items():
        if st["accepted"] or st["in_db"]:
            print(
                f"  {kind}: {st['accepted']:,} accepted, {st['in_db']:,} in the database; missing {st['missing']}, "
                f"doubled {st['doubled']}, key mismatch {st['key_mismatch']}, stored unexplained "
                f"{st['extra_unexplained']} (answers lost {st['lost_answers']}, of which stored "
                f"{st['lost_but_stored']})"
            )
    c = res["counters"]
    print(
        f"  counters = database: case keys {c['case_keys_checked']} checked, {c['case_keys_off']} off"
        f"{' e.g. ' + str(c['case_drift_e.g.']) if c['case_keys_off'] else ''}; patrol minutes "
        f"{c['patrol_minutes_checked']} checked, {c['patrol_minutes_off']} off"
        f"{' e.g. ' + str(c['patrol_minutes_off_e.g.']) if c['patrol_minutes_off'] else ''}; online: "
        f"{res['online']['accounts_with_heartbeats']:,} accounts with heartbeats, {res['online']['not_online']} "
        f"not online"
        + (
            f" e.g. (account, heartbeat sent, online since) {res['online']['not_online_e.g.']}"
            if res["online"]["not_online"]
            else ""
        )
    )
    print(
        f"  outbox: {res['outbox_left']} left (drained {res['drain_s']:.1f} s after the load), backlog max "
        f"{res['outbox_backlog_max']}; machine busy {res['machine_busy_pct']:.0f}% of the cores; load "
        f"generators' own CPU {res['generators_cpu_pct_self']:.0f}% of one core"
    )
    c = res["cpu_ms_per_request"]
    print(
        f"  CPU per request (all kinds): web {c['web']:.2f} ms, API {c.get('api', 0):.2f} ms, PostgreSQL {c['postgres']:.2f} ms, Redis "
        f"{c['redis']:.2f} ms; workers per report {c['workers_per_report']:.2f} ms"
    )
    print("| process | RSS start MB | end MB | growth MB | slope over the 2nd half MB/min | CPU % of one core |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, pr in res["processes"].items():
        note = " (private memory of the run's backends; CPU of all)" if name == "postgres" else ""
        print(
            f"| {name}{note} | {pr['start_mb']:.0f} | {pr['end_mb']:.0f} | {pr['growth_mb']:+.1f} | "
            f"{fmt(pr['slope_mb_per_min'], '+.2f')} | {pr['cpu_pct']:.0f} |"
        )
    why = [*res["misses"], *res["problems"]]
    if res["errors"]:
        why.insert(0, f"{res['errors']} requests failed")
    target = TARGETS.get(res["name"], LADDER_TARGET)
    met = (
        f"{'every kind' if target['every_kind'] else 'report'} p95 < {target['p95_ms']:.0f} ms"
        + (f", commit → screen p95 < {target['commit_to_screen_ms']:.0f} ms" if target["commit_to_screen_ms"] else "")
        + ", no errors, all checks passed"
    )
    print(f"  {'held' if res['held'] else 'NOT held'}: " + ("; ".join(why) or met))


def print_ladder(name: str, steps: list[dict], floor: float) -> dict:
    print(f"\n== {name}: the ladder (p95 of reports < {P95_LIMIT_MS:.0f} ms, no errors, every check passed)")
    print(
        "| reports/s offered | answered /s | share of floor | p95 ms | p99 ms | errors | commit → screen p95 | held |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    best = None
    for st in steps:
        rep = st["requests"].get("report", {})
        c2s = st["pushes"].get("commit_to_screen_p95") if st["pushes"] else None
        print(
            f"| {st['spec']['rate']:g} | {fmt(rep.get('per_s'))} | {fmt(rep.get('share_of_floor', 0) * 100)} % | "
            f"{fmt(rep.get('p95'))} | {fmt(rep.get('p99'))} | {st['errors']} | {fmt(c2s, '.0f')} ms | "
            f"{'yes' if st['held'] else 'no' + (': ' + '; '.join(st['problems']) if st['problems'] else '')} |"
        )
        if st["held"]:
            best = st
    out = {
        "held_rate": best["spec"]["rate"] if best else None,
        "held_answered_per_s": best["requests"]["report"]["per_s"] if best else None,
        "share_of_floor": best["requests"]["report"]["per_s"] / floor if best and floor else None,
    }
    print(
        f"  highest rate held: {fmt(out['held_answered_per_s'])} reports/s = "
        f"{fmt(out['share_of_floor'] * 100 if out['share_of_floor'] else None)} % of the floor ({floor:.0f}/s)"
    )
    return out


# --- main --------------------------------------------------------------------------------------------------


def workload_specs(args, name: str, rate: float | None = None) -> dict:
    base = {
        "name": name,
        "accounts": args.accounts,
        "hb_period": args.heartbeat_period,
        "retry_share": args.retry_share,
        "prefix": f"cy{os.getpid() % 10000}{name[0]}{int(rate or 0)}",
    }
    if name in ("city", "surge"):
        return {
            **base,
            "duration": args.duration or (600.0 if name == "city" else 180.0),
            "rate": args.city_rate if name == "city" else args.surge_rate,
            "hb_mode": "accounts",
            "patrol_rate": args.patrols / 600.0,
            "page_rate": args.page_rate,
            "walls": args.wall_clients,
        }
    if name == "mix":
        return {
            **base,
            "duration": args.duration or args.step_duration,
            "rate": rate,
            "hb_mode": "rate",
            "hb_rate": rate / 5,
            "patrol_rate": 0.0,
            "page_rate": args.page_rate,
            "walls": args.wall_clients,
        }
    return {
        **base,
        "duration": args.duration or args.step_duration,
        "rate": rate,
        "retry_share": 0.0,
        "hb_mode": None,
        "patrol_rate": 0.0,
        "page_rate": 0.0,
        "walls": 0,
    }


def run(args) -> dict:
    from redis import Redis

    out: dict = {"machine": machine(), "args": vars(args), "workloads": {}}
    print(f"machine: {machine()}")
    # the floor, on an idle server (the app is not started yet)
    print(
        f"\nfloor (bench_floor.py: a bare Flask insert, gunicorn -w 2 --threads 16), {args.floor_seconds:.0f} s per rate"
    )
    print("| offered /s | sent | errors | answered /s | p50 ms | p95 ms | p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = measure_floor(
        args.pg_admin_url, [float(r) for r in args.floor_rates.split(",")], args.floor_seconds, on_row=print_row
    )
    floor = floor_rate(rows, P95_LIMIT_MS)
    print(f"  floor: {floor:.0f} answered/s (the most answered at a rate with p95 < 200 ms and no errors)")
    out["floor"] = {"rows": rows, "per_s": floor}

    Redis.from_url(args.redis_url).flushdb()
    db_name = f"cc_bench_city_{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-city-"))
    db_url = create_database(args.pg_admin_url, db_name)
    procs = []
    try:
        app = make_app(db_url, args.redis_url, tmp)
        t = time.time()
        data = prepare_data(app, args)
        print(
            f"\nsetup: {len(data['accounts']):,} gridworker accounts with tokens in {data['accounts_s']:.1f} s, "
            f"{data['stored']:,} stored cases (database {data['db_mb']:.0f} MB), {time.time() - t:.0f} s in all",
            flush=True,
        )
        server_env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": args.redis_url,
            "INSTANCE_PATH": str(tmp),
            "SECRET_KEY": "bench-city",
            "SECURE_COOKIES": "0",
            "LOGIN_RATE_LIMIT": "100000 per minute",
            "ALLOW_DEMO_PASSWORDS": "1",
        }
        procs = start_servers(args, server_env, tmp)
        ports = [port for _n, _p, port in procs if port]
        if args.api_procs:  # the Procfile's api1, api2: /api/ on processes of their own, fewer threads
            api_args = argparse.Namespace(**{**vars(args), "web_procs": args.api_procs, "threads": args.api_threads})
            api_args.workers = 0
            api = start_servers(api_args, server_env, tmp, name="api")
            procs += api
            api_ports = [port for _n, _p, port in api]
        else:
            api_ports = ports
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        cookie_of = {u: login_cookie(bases[0], u, PASSWORD) for level in WALL_ACCOUNTS.values() for u in level}
        env = {
            "args": args,
            "app": app,
            "ctx": mp.get_context("spawn"),
            "procs": procs,
            "ports": ports,
            "api_ports": api_ports,
            "cookie_of": cookie_of,
            "page_cookies": [cookie_of[u] for u in ("city_supervisor", "town0_supervisor", "town1_supervisor")],
            "pages": page_list(bases[0], cookie_of["city_supervisor"]),
            "accounts": data["accounts"],
            "case_ids": data["case_ids"],
            "db_name": db_name,
            "db_url": db_url,
            "floor": floor,
        }
        warm_up(env)
        print(f"  server: {args.web_procs} web × {args.threads} threads, {args.workers} workers; logs in {tmp}")
        for name in args.workloads.split(","):
            name = name.strip()
            if name in ("city", "surge"):
                spec = workload_specs(args, name)
                print(f"\n-- {name}: {spec['duration']:.0f} s …", flush=True)
                res = run_workload(env, spec)
                print_result(res, floor)
                out["workloads"][name] = res
            elif name in ("mix", "reports"):
                rates = [float(r) for r in (args.mix_rates if name == "mix" else args.reports_rates).split(",")]
                steps = []
                for rate in rates:
                    spec = workload_specs(args, name, rate)
                    print(f"\n-- {name} at {rate:g} reports/s: {spec['duration']:.0f} s …", flush=True)
                    res = run_workload(env, spec)
                    print_result(res, floor)
                    steps.append(res)
                    if not res["held"]:
                        break
                out["workloads"][name] = {"steps": steps, **print_ladder(name, steps, floor)}
            else:
                raise SystemExit(f"unknown workload {name!r}: city, surge, mix or reports")
        print_summary(out, floor)
    finally:
        stop_all(procs)
        Redis.from_url(args.redis_url).flushdb()
        if not args.keep_db:
            drop_database(args.pg_admin_url, db_name)
    return out


def print_summary(out: dict, floor: float) -> None:
    print(f"\n== summary (floor {floor:.0f}/s on {out['machine']})")
    print(
        "| workload | reports/s answered | share of floor | report p95 ms | all requests/s | share of floor | "
        "commit → screen p95 ms | held |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, w in out["workloads"].items():
        if "steps" in w:
            best = next((s for s in reversed(w["steps"]) if s["held"]), None)
            rows = [(f"{name} (highest held)", best)] if best else [(f"{name} (none held)", w["steps"][0])]
        else:
            rows = [(name, w)]
        for label, r in rows:
            rep = r["requests"].get("report", {})
            c2s = r["pushes"].get("commit_to_screen_p95") if r["pushes"] else None
            print(
                f"| {label} | {fmt(rep.get('per_s'))} | {fmt(rep.get('share_of_floor', 0) * 100)} % | "
                f"{fmt(rep.get('p95'))} | {r['all_per_s']:.1f} | {fmt(r['all_share_of_floor'] * 100)} % | "
                f"{fmt(c2s, '.0f')} | {'yes' if r['held'] else 'no'} |"
            )


def clean(x):
    """NaN (no values) as null, so that the file is plain JSON."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    return x


def main() -> None:
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument(
        "--workloads",
        default="city,surge,mix,reports",
        help="comma-separated, run in this order on one server and database: city, surge, mix, reports",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of every run and ladder step (default: city 600, surge 180, a ladder step --step-duration)",
    )
    parser.add_argument(
        "--step-duration", type=float, default=60, help="seconds of each step of the mix and reports ladders"
    )
    parser.add_argument("--accounts", type=int, default=15_000, help="gridworker accounts with API tokens")
    parser.add_argument(
        "--heartbeat-period", type=float, default=60, help="seconds between two heartbeats of an account (city, surge)"
    )
    parser.add_argument(
        "--heartbeat-jitter", type=float, default=5, help="± seconds around each account's heartbeat moment"
    )
    parser.add_argument("--patrols", type=float, default=1000, help="patrol uploads per 10 minutes (city, surge)")
    parser.add_argument("--city-rate", type=float, default=20, help="reports per second at the city peak")
    parser.add_argument("--surge-rate", type=float, default=80, help="reports per second in the surge")
    parser.add_argument(
        "--mix-rates", default="30,45,60,80,100,125,150,175,200,250", help="report rates of the mix ladder"
    )
    parser.add_argument(
        "--reports-rates", default="50,100,150,200,250,300,350,400,500", help="report rates of the reports-alone ladder"
    )
    parser.add_argument(
        "--page-rate", type=float, default=10, help="supervisor page requests per second (city, surge, mix)"
    )
    parser.add_argument("--wall-clients", type=int, default=200, help="Socket.IO /live clients (city, surge, mix)")
    parser.add_argument("--wall-procs", type=int, default=2, help="processes holding the wall clients")
    parser.add_argument(
        "--retry-share",
        type=float,
        default=0.02,
        help="retries of accepted reports, as a share of the report rate (not in reports alone)",
    )
    parser.add_argument(
        "--old-cases", type=int, default=100_000, help="closed cases of the past year in the database (COPY)"
    )
    parser.add_argument("--floor-rates", default="300,400,500,600,700", help="offered rates of the floor measurement")
    parser.add_argument("--floor-seconds", type=float, default=20, help="seconds per floor rate")
    parser.add_argument("--web-procs", type=int, default=2, help="gunicorn processes (-w 1 each, as in the Procfile)")
    parser.add_argument(
        "--threads", type=int, default=150, help="gunicorn threads per web process (each open websocket holds one)"
    )
    parser.add_argument(
        "--api-procs",
        type=int,
        default=2,
        help="gunicorn processes for /api/ alone, as the Procfile's api1, api2 (0: the API on the web processes)",
    )
    parser.add_argument("--api-threads", type=int, default=4, help="gunicorn threads per API process (the Procfile's)")
    parser.add_argument("--workers", type=int, default=2, help="RQ workers (SimpleWorker, realtime default reports)")
    parser.add_argument("--gen-procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--max-conns", type=int, default=64, help="connections per generator and web process")
    parser.add_argument("--timeout", type=float, default=30, help="seconds before a request counts as failed")
    parser.add_argument("--sample-every", type=float, default=5, help="seconds between samples of CPU and memory")
    parser.add_argument("--settle", type=float, default=3, help="seconds the walls keep listening after the drain")
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL to create the throw-away databases in",
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/9", help="Redis database (FLUSHED before and after)"
    )
    parser.add_argument("--json", default=None, help="write every figure to this file")
    parser.add_argument("--keep-db", action="store_true", help="keep the database at the end")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    out = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(clean(out), indent=1, default=str))
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
