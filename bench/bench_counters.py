"""Benchmark of the live counters (commandcenter/counters.py) against a real Redis.

    .venv/bin/python bench/bench_counters.py [--redis-url redis://127.0.0.1:6379/14] [--n 20000]
        [--batch 100] [--reconcile-steps 1000000 --pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Measures, with synthetic case.changed payloads (only actions that move a counter) and distinct outbox ids:
  0. one PING round trip, the floor of everything below;
  1. apply_case_event one at a time (WATCH the done marker, MGET it, MULTI/EXEC): updates/s, p50/p95/p99 µs;
  2. the same events applied again (already done: nothing counted): re-applies/s;
  3. apply_case_events in batches (what drain_outbox does): updates/s;
  4. case_counts_many of 20 towns (what the wall reads): µs per read;
  4b. apply_case_event one at a time from --procs processes at once (as several workers would): updates/s;
  5. with --reconcile-steps N: reconcile over two months of N synthetic history steps in a throw-away
     PostgreSQL database (created and dropped here), first on an empty Redis then on a correct one.
The Redis database given (default: db 14, kept for this benchmark) is FLUSHED before and after the run,
unless --no-flush.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis  # noqa: E402

from bench.common import cpu_count, cpu_model  # noqa: E402
from commandcenter import counters  # noqa: E402

# only actions that move a counter (accept, feedback... cost nothing and would flatter the figures);
# escalations go to the town or the city
ACTIONS = [
    ("report", 30),
    ("register", 15),
    ("dispatch", 12),
    ("close", 12),
    ("escalate", 5),
    ("reject", 4),
    ("overdue", 3),
    ("rework", 2),
    ("duplicate", 2),
    ("self_close", 2),
]
CITY, TOWNS, VILLAGES_PER_TOWN, GRIDS_PER_VILLAGE = 1, 20, 10, 8


def machine(r: Redis) -> dict:
    info = r.info("server")
    import redis as redis_py

    return {
        "nproc": cpu_count(),
        "cpu": cpu_model(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "redis": info.get("redis_version"),
        "redis-py": redis_py.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def payloads(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    names, weights = zip(*ACTIONS, strict=True)
    base = datetime(2026, 3, 10)
    out = []
    for i in range(n):
        town = 2 + rnd.randrange(TOWNS)
        village = 100 + (town - 2) * VILLAGES_PER_TOWN + rnd.randrange(VILLAGES_PER_TOWN)
        grid = 1000 + (village - 100) * GRIDS_PER_VILLAGE + rnd.randrange(GRIDS_PER_VILLAGE)
        action = rnd.choices(names, weights)[0]
        out.append(
            {
                "case_id": i,
                "action": action,
                "state": "x",
                "level": rnd.choice(("town", "city")) if action == "escalate" else "grid",
                "town_id": town,
                "village_id": village,
                "grid_id": grid,
                "kind": rnd.choice(("ordinary", "ordinary", "hazard", "dispute")),
                "at": (base + timedelta(minutes=rnd.randrange(3 * 1440))).isoformat(),
            }
        )
    return out


def pct(values: list[int], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] / 1000


def _worker(url: str, events: list[tuple[int, dict]], start, out) -> None:
    r = Redis.from_url(url)
    r.ping()
    start.wait()
    for oid, payload in events:
        counters.apply_case_event(r, oid, payload, CITY)
    out.put(len(events))


def bench_processes(url: str, n: int, procs: int) -> None:
    """`procs` processes (as several RQ workers would be) applying distinct events one at a time."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    events = payloads(n, seed=11)
    start, out = ctx.Barrier(procs + 1), ctx.Queue()
    shares = [[(30_000_000 + i, events[i]) for i in range(k, n, procs)] for k in range(procs)]
    workers = [ctx.Process(target=_worker, args=(url, share, start, out)) for share in shares]
    for p in workers:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    done = sum(out.get() for _ in workers)
    wall = time.perf_counter() - t0
    for p in workers:
        p.join()
    print(f"apply_case_event, {procs} processes  : {done / wall:8.0f} updates/s   ({done} updates in {wall:.2f} s)")


def bench_redis(r: Redis, n: int, batch: int) -> None:
    lat = []
    for _ in range(3000):  # the floor: one round trip through redis-py on this machine
        a = time.perf_counter_ns()
        r.ping()
        lat.append(time.perf_counter_ns() - a)
    print(
        f"PING round trip (redis-py)      : p50 {pct(lat, 0.5):6.0f} µs   p95 {pct(lat, 0.95):6.0f} µs "
        f"(apply_case_event needs 3: WATCH, MGET, MULTI/EXEC)"
    )
    events = payloads(n)
    for i in range(200):  # warm-up (connection, code paths), on ids the measurement does not use
        counters.apply_case_event(r, 10_000_000 + i, events[i], CITY)

    lat = []
    t0 = time.perf_counter()
    for i, p in enumerate(events):
        a = time.perf_counter_ns()
        counters.apply_case_event(r, i, p, CITY)
        lat.append(time.perf_counter_ns() - a)
    wall = time.perf_counter() - t0
    print(
        f"apply_case_event, one at a time : {n / wall:8.0f} updates/s   p50 {pct(lat, 0.5):6.0f} µs   "
        f"p95 {pct(lat, 0.95):6.0f} µs   p99 {pct(lat, 0.99):6.0f} µs   ({n} updates in {wall:.2f} s)"
    )

    m = max(1, n // 10)
    before = counters.case_counts(r, CITY, month="202603")
    t0 = time.perf_counter()
    again = sum(counters.apply_case_event(r, i, events[i], CITY) for i in range(m))
    wall = time.perf_counter() - t0
    assert again == 0 and counters.case_counts(r, CITY, month="202603") == before, "an event was counted twice"
    print(f"same events again (no-op)       : {m / wall:8.0f} re-applies/s (none counted twice)")

    lat = []
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        chunk = [(20_000_000 + i, events[i]) for i in range(start, min(n, start + batch))]
        a = time.perf_counter_ns()
        counters.apply_case_events(r, chunk, CITY)
        lat.append(time.perf_counter_ns() - a)
    wall = time.perf_counter() - t0
    print(
        f"apply_case_events, batches of {batch:<3}: {n / wall:8.0f} updates/s   p50 {pct(lat, 0.5):6.0f} µs "
        f"per batch   p95 {pct(lat, 0.95):6.0f} µs"
    )

    towns = list(range(2, 2 + TOWNS))
    lat = []
    for _ in range(500):
        a = time.perf_counter_ns()
        counters.case_counts_many(r, towns, day=date(2026, 3, 11))
        lat.append(time.perf_counter_ns() - a)
    print(f"case_counts_many of {TOWNS} towns    : p50 {pct(lat, 0.5):6.0f} µs   p95 {pct(lat, 0.95):6.0f} µs")

    total = counters.case_counts(r, CITY, month="202603")["reported"]
    expected = 2 * sum(1 for p in events if p["action"] == "report")
    assert total == expected + sum(1 for i in range(200) if events[i]["action"] == "report"), (total, expected)


# --- reconcile over N synthetic steps in a throw-away PostgreSQL database ----------------------------

SYNTH_SQL = """
INSERT INTO places (id, code, name, level, city_id, active) VALUES (1, 'C', 'city', 'city', 1, true);
INSERT INTO places (id, code, name, level, parent_id, city_id, town_id, active)
  SELECT 1 + t, 'T' || t, 'town', 'town', 1, 1, 1 + t, true FROM generate_series(1, {towns}) t;
INSERT INTO places (id, code, name, level, parent_id, city_id, town_id, village_id, active)
  SELECT 100 + v, 'V' || v, 'village', 'village', 2 + (v - 1) % {towns}, 1, 2 + (v - 1) % {towns}, 100 + v, true
  FROM generate_series(1, {villages}) v;
INSERT INTO places (id, code, name, level, parent_id, city_id, town_id, village_id, active)
  SELECT 10000 + g, 'G' || g, 'grid', 'grid', 101 + (g - 1) % {villages}, 1, 2 + ((g - 1) % {villages}) % {towns}, 101 + (g - 1) % {villages}, true
  FROM generate_series(1, {grids}) g;
INSERT INTO categories (id, code, name, depth, kind, must_escalate, warn_ratio, active)
  VALUES (1, '9901', 'other', 2, 'ordinary', false, 0.8, true);
INSERT INTO cases (id, number, source, category_id, kind, description, grid_id, village_id, town_id, state, level,
                   self_handled, discovered_at, reported_at, overdue, escalated_to_town, escalated_to_city,
                   rework_count, outstanding, updated_at, version)
  SELECT c, 'B' || c, 'app', 1, (ARRAY['ordinary', 'hazard', 'dispute'])[1 + c % 3], 'x', g.id, g.village_id, g.town_id,
         'closed', 'grid', false, t, t, false, false, false, 0, false, t, 1
  FROM (SELECT c, 10001 + (c::bigint * 7919) % {grids} AS gid,
               timestamp '2026-02-28 16:00' + ((c::bigint * 104729) % (60 * 1440)) * interval '1 minute' AS t
        FROM generate_series(1, {cases}) c) s JOIN places g ON g.id = s.gid;
INSERT INTO case_steps (case_id, at, action, to_state, to_level)
  SELECT c.id, c.reported_at + k * interval '3 hours',
         (ARRAY['report', 'register', 'dispatch', 'escalate', 'close'])[k + 1], 'x',
         CASE WHEN k = 3 THEN (ARRAY['village', 'town', 'city'])[1 + c.id % 3] ELSE 'grid' END
  FROM cases c CROSS JOIN generate_series(0, 4) k;
ANALYZE;
"""


def bench_reconcile(r: Redis, steps: int, admin_url: str) -> None:
    import psycopg2
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from commandcenter.migrate import upgrade

    name = f"cc_bench_{os.getpid()}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    engine = None
    try:
        upgrade(url)
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
        cases = steps // 5
        villages = TOWNS * VILLAGES_PER_TOWN
        t0 = time.perf_counter()
        raw = psycopg2.connect(url)
        with raw, raw.cursor() as cur:  # no parameters: the % in the SQL are modulo operators
            cur.execute(
                SYNTH_SQL.format(towns=TOWNS, villages=villages, grids=villages * GRIDS_PER_VILLAGE, cases=cases)
            )
        raw.close()
        print(
            f"synthetic history               : {cases * 5} steps of {cases} cases in "
            f"{villages * GRIDS_PER_VILLAGE} grids over March–April 2026, loaded in {time.perf_counter() - t0:.1f} s"
        )
        with Session(engine) as session:
            for label in ("empty Redis (all keys rebuilt)", "correct Redis (nothing to fix)"):
                t0 = time.perf_counter()
                rep = counters.reconcile(r, session, date(2026, 3, 1), date(2026, 4, 30), 1, tz="Asia/Shanghai")
                wall = time.perf_counter() - t0
                print(
                    f"reconcile, {label:<31}: {wall:6.2f} s   keys checked {rep['keys_checked']}, "
                    f"fixed {rep['keys_fixed']}"
                )
            city = counters.case_counts(r, 1, month="202603")
            print(
                f"  city, March 2026: reported {city['reported']}, closed {city['closed']}, "
                f"escalated:town {city['escalated:town']}, escalated:city {city['escalated:city']}"
            )
    finally:
        if engine is not None:
            engine.dispose()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--n", type=int, default=20000, help="counter updates to apply (default 20000)")
    parser.add_argument("--batch", type=int, default=100, help="batch size of the batched run (default 100)")
    parser.add_argument("--procs", type=int, default=2, help="processes of the concurrent run (default 2; 0: skip)")
    parser.add_argument("--reconcile-steps", type=int, default=0, help="also time reconcile over N history steps")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-flush", action="store_true", help="do not FLUSHDB the Redis database")
    args = parser.parse_args()

    r = Redis.from_url(args.redis_url)
    info = machine(r)
    print(
        f"machine: {info['nproc']} CPUs ({info['cpu']}), load {info['load']}; Redis {info['redis']}, "
        f"redis-py {info['redis-py']}, Python {info['python']}"
    )
    print(f"         {info['os']}; Redis at {args.redis_url}")
    if not args.no_flush:
        r.flushdb()
    try:
        bench_redis(r, args.n, args.batch)
        if args.procs:
            bench_processes(args.redis_url, args.n, args.procs)
        if args.reconcile_steps:
            r.flushdb()
            bench_reconcile(r, args.reconcile_steps, args.pg_admin_url)
    finally:
        if not args.no_flush:
            r.flushdb()
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
