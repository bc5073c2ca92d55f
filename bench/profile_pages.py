"""Where the full mix's page CPU goes: each supervisor page of the mix (bench_load.PAGE_WEIGHTS) requested
one after another through the whole Flask app, with the data of bench_city.py (the tests' small city, 100
recent cases and `--old-cases` closed cases of the past year), CPU of this process and of PostgreSQL per page.

    .venv/bin/python bench/profile_pages.py [--each 40] [--old-cases 100000] [--profile /wall/panel/map]

It runs the app in-process with Werkzeug's test client as the city's supervisor (what the mix's "case" pages
use; the town supervisors see less) against a fresh PostgreSQL database and the Redis of --redis-url (db 15
by default, flushed). `--profile PATH` also prints the top functions of that page's cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_city import prepare_data  # noqa: E402
from bench.bench_load import PAGE_WEIGHTS  # noqa: E402
from bench.bench_wall import create_database, drop_database, make_app  # noqa: E402
from bench.common import machine  # noqa: E402
from bench.profile_report import postgres_cpu_s  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--each", type=int, default=40, help="requests of every page")
    parser.add_argument("--old-cases", type=int, default=100_000)
    parser.add_argument(
        "--accounts",
        type=int,
        default=15_000,
        help="gridworker accounts, each online with a live point (a heartbeat) as at a city's peak",
    )
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--profile", default=None, metavar="PATH", help="print the cProfile of this page")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    from redis import Redis

    from commandcenter.db import db
    from commandcenter.jobs import process_outbox
    from tests.conftest import PASSWORD

    print(f"machine: {machine()}")
    Redis.from_url(args.redis_url).flushdb()
    name = f"cc_pages_{os.getpid()}"
    url = create_database(args.pg_admin_url, name)
    try:
        app = make_app(url, args.redis_url, Path(tempfile.mkdtemp(prefix="profile-pages-")))
        # the data of bench_city.py (its small city, its phones, 100 recent cases, the old ones)
        data = prepare_data(app, SimpleNamespace(accounts=args.accounts, old_cases=args.old_cases))
        case_ids = data["case_ids"]
        with app.app_context():
            while process_outbox(limit=500):  # the counters the wall panels read
                pass
            # every phone online with a live point, as the city peak's heartbeats leave them
            from commandcenter import counters
            from commandcenter.jobs import counters_redis
            from commandcenter.models import Account
            from commandcenter.timeutil import utcnow

            r, now = counters_redis(), utcnow()
            towns = dict(db.query(Account.id, Account.town_id).filter(Account.username.like("cgw%")).all())
            for _i, account_id, _token, lat, lon in data["accounts"]:
                counters.apply_heartbeat(r, account_id, towns.get(account_id), now, lat, lon, trail=True, dirty=True)
            db.remove()

        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        answer = client.post("/login", data={"username": "city_supervisor", "password": PASSWORD, "csrf_token": token})
        assert answer.status_code in (302, 303), answer.status_code
        drill = client.get("/drill/")
        drill_path = drill.headers.get("Location", "/drill/") if drill.status_code in (301, 302, 303) else "/drill/"
        paths = []
        for path, weight in PAGE_WEIGHTS:
            if path == "case":
                paths.append(("/cases/<id>", weight, lambda i: f"/cases/{case_ids[i % len(case_ids)]}"))
            elif path == "/drill/":
                paths.append((drill_path, weight, lambda i, p=drill_path: p))
            else:
                paths.append((path, weight, lambda i, p=path: p))
        total_weight = sum(w for _, w, _ in paths)
        print(
            f"\n{args.each} requests of each page as city_supervisor, {args.old_cases:,} old cases, "
            f"{args.accounts:,} gridworkers online\n"
        )
        print("| page | weight in the mix | web CPU ms | PostgreSQL CPU ms | wall ms | bytes |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        mix_web = mix_pg = 0.0
        for label, weight, make in paths:
            for i in range(3):  # warm
                client.get(make(i))
            prof = cProfile.Profile(time.process_time) if args.profile == label else None
            pg0, cpu0, t0 = postgres_cpu_s(), time.process_time(), time.perf_counter()
            size = 0
            if prof:
                prof.enable()
            for i in range(args.each):
                answer = client.get(make(i))
                assert answer.status_code == 200, (label, answer.status_code)
                size += len(answer.data)
            if prof:
                prof.disable()
            web = (time.process_time() - cpu0) / args.each * 1000
            pgc = (postgres_cpu_s() - pg0) / args.each * 1000
            wall = (time.perf_counter() - t0) / args.each * 1000
            mix_web += web * weight / total_weight
            mix_pg += pgc * weight / total_weight
            print(f"| `{label}` | {weight} | {web:.1f} | {pgc:.1f} | {wall:.1f} | {size // args.each:,} |")
            if prof:
                pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)
        print(f"| the mix's average page | | {mix_web:.1f} | {mix_pg:.1f} | | |")
    finally:
        drop_database(args.pg_admin_url, name)
        Redis.from_url(args.redis_url).flushdb()


if __name__ == "__main__":
    main()
