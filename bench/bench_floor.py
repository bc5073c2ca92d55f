"""The ceiling of this machine for a Flask intake, whatever the app does: how many reports a second a
Flask endpoint that only inserts one row into PostgreSQL can take, under gunicorn as the Procfile runs it.

    .venv/bin/python bench/bench_floor.py [--rates 300,500,700] [--seconds 20]

The endpoint (`bench/floor_app.py`) parses the JSON body and runs one INSERT … ON CONFLICT and a commit:
nothing of what a real report needs (token, validation, grid lookup, rate limit, case number, history
step, outbox, counters, pushes to the walls). Requests are sent open loop (a Poisson schedule, latency
counted from the scheduled moment) from one asyncio process over keep-alive connections
(`bench/load_http.py`, about 0.1 ms of CPU a request). PostgreSQL runs on the same two cores, as in
`bench/bench_load.py`. Compare its figures with the app's own in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_wall import free_port  # noqa: E402
from bench.common import machine, pct  # noqa: E402
from bench.load_http import Pool  # noqa: E402


async def send(port: int, rate: float, seconds: float, seed: int) -> dict:
    pool = Pool("127.0.0.1", port, max_conns=256)
    latencies: list[float] = []
    errors = 0
    rnd = random.Random(seed)

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        body = json.dumps(
            {
                "client_key": f"floor-{seed}-{i}",
                "category_code": "0101",
                "description": "路边暴露垃圾一堆",
                "lat": 30.1,
                "lon": 120.2,
            }
        ).encode()
        try:
            status, _headers, _body = await pool.request("POST", "/r", {"Content-Type": "application/json"}, body)
            errors += status != 201
        except Exception:
            errors += 1
        latencies.append((time.monotonic() - scheduled) * 1000)

    tasks, start = [], time.monotonic()
    t, i = start, 0
    while t - start < seconds:
        t += rnd.expovariate(rate)
        delay = t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, t)))
        i += 1
    await asyncio.gather(*tasks)
    took = time.monotonic() - start
    pool.close()
    return {
        "rate": rate,
        "sent": len(latencies),
        "errors": errors,
        "done_per_s": len(latencies) / took,
        "p50": pct(latencies, 0.50),
        "p95": pct(latencies, 0.95),
        "p99": pct(latencies, 0.99),
    }


def measure(
    pg_admin_url: str, rates: list[float], seconds: float, workers: int = 2, threads: int = 16, on_row=None
) -> list[dict]:
    """Start the floor server on a throw-away database, send each rate in turn, return one row per rate
    (rate, sent, errors, done_per_s, p50, p95, p99); `on_row(row)` is called as each one is done."""
    import psycopg2

    name = f"cc_bench_floor_{os.getpid()}"
    admin = psycopg2.connect(pg_admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    tmp = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    server = None
    rows = []
    try:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE floor_cases (id serial PRIMARY KEY, k text UNIQUE NOT NULL, body jsonb, "
                "created_at timestamptz DEFAULT now())"
            )
        port = free_port()
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-w",
                str(workers),
                "--threads",
                str(threads),
                "-k",
                "gthread",
                "--keep-alive",
                "5",
                "--backlog",
                "2048",
                "-b",
                f"127.0.0.1:{port}",
                "bench.floor_app:app",
            ],
            cwd=ROOT,
            env={**os.environ, "FLOOR_DSN": dsn},
            stdout=open(tmp / "gunicorn.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(2)
        for seed, rate in enumerate(rates):
            res = asyncio.run(send(port, rate, seconds, seed))
            rows.append(res)
            if on_row:
                on_row(res)
            time.sleep(2)
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    return rows


def floor_rate(rows: list[dict], p95_ms: float = 200.0) -> float:
    """The floor as one figure: the most answered per second at a rate with p95 under `p95_ms` and no
    errors (the lowest rate's answered per second if none qualifies)."""
    good = [r["done_per_s"] for r in rows if r["p95"] < p95_ms and r["errors"] == 0]
    if good:
        return max(good)
    return min((r["done_per_s"] for r in rows), default=float("nan"))


def print_row(res: dict) -> None:
    print(
        f"| {res['rate']:.0f} | {res['sent']:,} | {res['errors']} | {res['done_per_s']:.0f} | "
        f"{res['p50']:.1f} | {res['p95']:.1f} | {res['p99']:.1f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pg-admin-url", default=os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--rates", default="300,500,700", help="requests per second, one run each")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn process")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(
        f"server: gunicorn -w {args.workers} --threads {args.threads} (gthread), bench/floor_app.py; "
        f"{args.seconds:.0f} s per rate\n"
    )
    print("| offered /s | sent | errors | answered /s | p50 ms | p95 ms | p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = measure(
        args.pg_admin_url,
        [float(r) for r in args.rates.split(",")],
        args.seconds,
        args.workers,
        args.threads,
        on_row=print_row,
    )
    print(f"\nfloor: {floor_rate(rows):.0f} answered/s (the most answered at a rate with p95 < 200 ms, no errors)")


if __name__ == "__main__":
    main()
