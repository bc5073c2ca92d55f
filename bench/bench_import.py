"""Benchmark of `flask import` (commandcenter/importer): 100,000 cases with their history.

    .venv/bin/python bench/bench_import.py [--cases 100000] [--pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--no-sqlite] [--no-postgres] [--keep DIR]

Generates, in a temporary directory, the files of a district (1 city, 20 towns, 200 villages, 1,600 grids with
square boundaries, 221 centers, 1,600 gridworkers and 221 center admins), N cases of one month in the import
format (mixed sources, kinds, states, escalations, overdue ones, disputes) and their history (report,
register, escalate, dispatch, accept, feedback, close, overdue: about 5.6 steps per case). Then imports the
directory with `import_dir` — validation of every row included — into
  1. a fresh SQLite database migrated by Alembic (embedded mode), and
  2. a throw-away PostgreSQL database (created and dropped here), migrated by Alembic,
and prints the seconds per file, rows per second, then runs the import a second time (nothing new) and
prints that too. The categories are the default tree. Live counters are not rebuilt here (that is
`flask counters rebuild`, timed by bench_counters.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine  # noqa: E402
from commandcenter.importer.formats import FORMATS  # noqa: E402

TOWNS, VILLAGES_PER_TOWN, GRIDS_PER_VILLAGE = 20, 10, 8
CATEGORIES = {
    "ordinary": ["010101", "0102", "0103", "0105", "0201", "0302", "0402", "0502", "0503", "3001"],
    "hazard": ["100101", "100102", "0501", "0602", "1007"],
    "dispute": ["2001", "2002", "2005", "2006"],
}


def square(lon0: float, lat0: float, d: float) -> str:
    ring = [[lon0, lat0], [lon0 + d, lat0], [lon0 + d, lat0 + d], [lon0, lat0 + d], [lon0, lat0]]
    return json.dumps(
        {"type": "Polygon", "coordinates": [[[round(x, 5), round(y, 5)] for x, y in ring]]}, separators=(",", ":")
    )


def ts(dt: datetime | None) -> str:
    return "" if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S")


def writer(directory: Path, kind: str):
    fh = (directory / FORMATS[kind].filename).open("w", encoding="utf-8", newline="")
    w = csv.DictWriter(fh, fieldnames=list(FORMATS[kind].names), lineterminator="\n", extrasaction="raise")
    w.writeheader()
    return fh, w


def generate(directory: Path, n_cases: int, seed: int = 11) -> dict[str, int]:
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    fh, w = writer(directory, "places")
    w.writerow({"code": "990000", "name": "基准市", "level": "city", "geometry": square(110.0, 20.0, 2.0)})
    grids = []  # (code, town index, village index)
    for t in range(TOWNS):
        tcode = f"990000{t:03d}"
        tlon, tlat = 110.0 + (t % 5) * 0.4, 20.0 + (t // 5) * 0.4
        w.writerow(
            {
                "code": tcode,
                "name": f"第{t + 1}街道",
                "level": "town",
                "kind": "street",
                "parent_code": "990000",
                "population": 150000,
                "geometry": square(tlon, tlat, 0.4),
            }
        )
        for v in range(VILLAGES_PER_TOWN):
            vcode = f"{tcode}{v:03d}"
            vlon, vlat = tlon + (v % 5) * 0.08, tlat + (v // 5) * 0.08
            w.writerow(
                {
                    "code": vcode,
                    "name": f"第{t + 1}街道第{v + 1}社区",
                    "level": "village",
                    "kind": "community" if v % 2 else "village",
                    "parent_code": tcode,
                    "population": 15000,
                    "geometry": square(vlon, vlat, 0.08),
                }
            )
            for g in range(GRIDS_PER_VILLAGE):
                gcode = f"{vcode}{g:03d}"
                w.writerow(
                    {
                        "code": gcode,
                        "name": f"{vcode}第{g + 1}网格",
                        "level": "grid",
                        "kind": "comprehensive",
                        "parent_code": vcode,
                        "population": 1800,
                        "geometry": square(vlon + (g % 4) * 0.02, vlat + (g // 4) * 0.02, 0.02),
                    }
                )
                grids.append((gcode, t, v))
    fh.close()
    counts["places"] = 1 + TOWNS * (1 + VILLAGES_PER_TOWN * (1 + GRIDS_PER_VILLAGE))
    fh, w = writer(directory, "centers")
    w.writerow({"place_code": "990000", "name": "基准市中心", "level": "city"})
    for t in range(TOWNS):
        w.writerow({"place_code": f"990000{t:03d}", "name": f"第{t + 1}街道综治中心", "level": "town"})
        for v in range(VILLAGES_PER_TOWN):
            w.writerow(
                {
                    "place_code": f"990000{t:03d}{v:03d}",
                    "name": f"第{t + 1}街道第{v + 1}社区综治中心",
                    "level": "village",
                }
            )
    fh.close()
    counts["centers"] = 1 + TOWNS * (1 + VILLAGES_PER_TOWN)
    fh, w = writer(directory, "accounts")
    w.writerow({"username": "duty", "display_name": "值班员", "role": "duty_officer", "place_code": "990000"})
    for t in range(TOWNS):
        w.writerow(
            {
                "username": f"t{t}_admin",
                "display_name": "镇街管理员",
                "role": "center_admin",
                "place_code": f"990000{t:03d}",
                "center_place_code": f"990000{t:03d}",
            }
        )
        for v in range(VILLAGES_PER_TOWN):
            code = f"990000{t:03d}{v:03d}"
            w.writerow(
                {
                    "username": f"v{t}_{v}_admin",
                    "display_name": "村社管理员",
                    "role": "center_admin",
                    "place_code": code,
                    "center_place_code": code,
                }
            )
    for i, (gcode, _, _) in enumerate(grids):
        w.writerow(
            {
                "username": f"gw{i:04d}",
                "display_name": f"网格员{i}",
                "role": "gridworker",
                "post": "full_time",
                "place_code": gcode,
            }
        )
    fh.close()
    counts["accounts"] = 1 + TOWNS * (1 + VILLAGES_PER_TOWN) + len(grids)

    cfh, cw = writer(directory, "cases")
    hfh, hw = writer(directory, "history")
    steps = 0
    start = datetime(2026, 10, 1)
    for i in range(n_cases):
        gi = rng.randrange(len(grids))
        gcode, t, v = grids[gi]
        kind = rng.choices(("ordinary", "hazard", "dispute"), (75, 17, 8))[0]
        reported = start + timedelta(seconds=rng.randrange(30 * 86400))
        number = f"BM{i:010d}"
        source = rng.choices(("app", "hotline", "center"), (80, 12, 8))[0]
        reporter = f"gw{gi:04d}" if source == "app" else (f"t{t}_admin" if source == "center" else "")
        vadmin, tadmin = f"v{t}_{v}_admin", f"t{t}_admin"
        row = {
            "number": number,
            "source": source,
            "category_code": rng.choice(CATEGORIES[kind]),
            "description": f"基准事件 {i}",
            "address": f"{gcode} 附近",
            "lat": "",
            "lon": "",
            "grid_code": gcode,
            "reporter": reporter,
            "reporter_center": f"990000{t:03d}" if source == "center" else "",
            "state": "reported",
            "level": "grid",
            "reported_at": ts(reported),
            "discovered_at": ts(reported - timedelta(minutes=rng.randrange(30))),
        }
        hist = [(reported, reporter, "report", "", "reported", "", "grid")]
        roll = rng.random()
        at = reported
        if roll < 0.05:
            at += timedelta(minutes=rng.randint(5, 90))
            hist.append((at, vadmin, "reject", "reported", "rejected", "grid", "grid"))
            row.update(state="rejected", closed_at=ts(at))
        else:
            at += timedelta(minutes=rng.randint(5, 60))
            hist.append((at, vadmin, "register", "reported", "registered", "grid", "grid"))
            due = at + timedelta(days=3)
            row.update(state="registered", registered_at=ts(at), handle_due=ts(due))
            level = "grid"
            if rng.random() < 0.1:
                at += timedelta(minutes=rng.randint(10, 120))
                hist.append((at, vadmin, "escalate", "registered", "registered", "grid", "town"))
                level = "town"
                row.update(level="town", escalated_to_town="是")
            state = "registered"
            n = 4 if roll < 0.85 else rng.randint(0, 3)
            overdue = rng.random() < 0.06
            for action, to_state, who in (
                ("dispatch", "dispatched", tadmin if level == "town" else vadmin),
                ("accept", "handling", f"gw{gi:04d}"),
                ("feedback", "feedback", f"gw{gi:04d}"),
                ("close", "closed", vadmin),
            )[:n]:
                at += timedelta(hours=rng.uniform(0.5, 12))
                if overdue and action == "close":
                    at = due + timedelta(hours=rng.uniform(1, 24))
                    hist.append((due + timedelta(seconds=30), None, "overdue", state, state, level, level))
                    row.update(overdue="是", overdue_at=ts(due + timedelta(seconds=30)))
                hist.append((at, who, action, state, to_state, level, level))
                state = to_state
                if action == "dispatch":
                    row.update(dispatched_at=ts(at), assignee=f"gw{gi:04d}")
            row["state"] = state
            if state == "closed":
                row["closed_at"] = ts(at)
        if kind == "dispute":
            row["dispute_screening_level"] = "grid"
        cw.writerow(row)
        for at_, actor, action, fs, ts_, fl, tl in hist:
            hw.writerow(
                {
                    "case_number": number,
                    "at": ts(at_),
                    "actor": actor or "",
                    "action": action,
                    "from_state": fs,
                    "to_state": ts_,
                    "from_level": fl,
                    "to_level": tl,
                    "note": "",
                }
            )
        steps += len(hist)
    cfh.close()
    hfh.close()
    counts["cases"] = n_cases
    counts["history"] = steps
    return counts


def run_import(url: str, directory: Path) -> tuple[list, list, dict]:
    from commandcenter import create_app
    from commandcenter import db as dbmod
    from commandcenter.categories import install_default_categories
    from commandcenter.db import db
    from commandcenter.importer import import_dir
    from commandcenter.migrate import upgrade
    from commandcenter.settings import Settings

    upgrade(url)
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-app-"))
    app = create_app(
        Settings.from_env(database_url=url, instance_path=tmp, upload_dir=tmp / "uploads", redis_url=None, testing=True)
    )
    try:
        with app.app_context():
            install_default_categories()
            db.commit()
            cpu = [time.process_time()]

            def lap(result) -> None:
                now = time.process_time()
                result.cpu_seconds = now - cpu[0]
                cpu[0] = now

            first = import_dir(directory, tz="Asia/Shanghai", progress=False, on_result=lap)
            db.remove()
        with app.app_context():
            cpu[0] = time.process_time()
            second = import_dir(directory, tz="Asia/Shanghai", progress=False, on_result=lap)
            from sqlalchemy import func, select

            from commandcenter.models import Case, CaseStep

            totals = {
                "cases": db.execute(select(func.count()).select_from(Case)).scalar_one(),
                "history": db.execute(select(func.count()).select_from(CaseStep)).scalar_one(),
            }
            db.remove()
    finally:
        if dbmod._engine is not None:
            dbmod._engine.dispose()
            dbmod._engine = None
        shutil.rmtree(tmp, ignore_errors=True)
    return first, second, totals


def show(title: str, first: list, second: list, totals: dict) -> None:
    print(f"\n{title}")
    print(f"  {'file':<20}{'rows':>9}{'new':>9}{'wall s':>9}{'cpu s':>8}{'rows/s':>10}   second run: new / wall s")
    for a, b in zip(first, second, strict=True):
        rate = a.rows / a.seconds if a.seconds else float("nan")
        print(
            f"  {a.file:<20}{a.rows:>9}{a.new:>9}{a.seconds:>9.1f}{a.cpu_seconds:>8.1f}{rate:>10.0f}"
            f"   {b.new} / {b.seconds:.1f}"
        )
        for e in a.errors[:3]:
            print(f"    error: {e}")
    cases = next(r for r in first if r.kind == "cases")
    hist = next(r for r in first if r.kind == "history")
    print(
        f"  cases + history: {cases.seconds + hist.seconds:.1f} s wall, "
        f"{cases.cpu_seconds + hist.cpu_seconds:.1f} s CPU of this process "
        f"({cases.rows} cases, {hist.rows} steps); whole directory {sum(r.seconds for r in first):.1f} s; "
        f"in the database: {totals}"
    )


def python_reference() -> float:
    """Wall seconds of a fixed pure-Python loop: compare runs to see how busy the CPU was (smaller is idler)."""
    w = time.monotonic()
    total = 0
    for i in range(3_000_000):
        total += i % 7
    return time.monotonic() - w


def pg_reference(cur, rows: int) -> float:
    """Seconds PostgreSQL alone needs to insert `rows` history-like rows (INSERT … SELECT into an indexed
    temporary table: no client, no foreign keys, no WAL): the floor of the history import, and a gauge of
    how busy the server is."""
    t = time.monotonic()
    cur.execute(
        "CREATE TEMP TABLE ref_steps (id serial PRIMARY KEY, case_id int, at timestamp, actor_id int, "
        "action varchar(20), from_state varchar(12), to_state varchar(12), from_level varchar(10), "
        "to_level varchar(10), note text)"
    )
    cur.execute("CREATE INDEX ON ref_steps (case_id, id)")
    cur.execute("CREATE INDEX ON ref_steps (at)")
    cur.execute(
        "INSERT INTO ref_steps (case_id, at, actor_id, action, from_state, to_state, from_level, to_level) "
        "SELECT g / 6, timestamp '2026-10-01' + g * interval '1 second', g %% 2000, 'register', 'reported', "
        "'registered', 'grid', 'grid' FROM generate_series(1, %s) g",
        (rows,),
    )
    cur.execute("DROP TABLE ref_steps")
    return time.monotonic() - t


def main() -> None:  # noqa: C901
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--keep", type=Path, help="write the generated files here and keep them")
    args = parser.parse_args()
    print(f"machine: {machine()}, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    directory = args.keep or work / "files"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        t = time.monotonic()
        counts = generate(directory, args.cases)
        size = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
        print(f"generated {counts} ({size:.0f} MB of CSV) in {time.monotonic() - t:.1f} s")
        print(
            f"load before the imports: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"pure-Python reference loop: {python_reference():.2f} s wall"
        )
        if not args.no_sqlite:
            url = f"sqlite:///{work / 'bench.db'}"
            show("SQLite (embedded mode, file database)", *run_import(url, directory))
        if not args.no_postgres:
            import psycopg2

            name = f"cc_bench_import_{uuid.uuid4().hex[:8]}"
            admin = psycopg2.connect(args.pg_admin_url)
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
                cur.execute("SHOW server_version")
                version = cur.fetchone()[0]
                print(
                    f"PostgreSQL reference: INSERT … SELECT of {counts['history']} rows into an indexed temp table "
                    f"takes {pg_reference(cur, counts['history']):.1f} s now"
                )
            try:
                url = args.pg_admin_url.rsplit("/", 1)[0] + "/" + name
                show(f"PostgreSQL {version} (local, 127.0.0.1)", *run_import(url, directory))
                print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            finally:
                with admin.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
