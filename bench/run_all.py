"""Run every benchmark of bench/ one after the other and print their figures (`make bench`).

The floor (bench_floor.py: a bare Flask insert on this machine) runs first, so that the figures of the
others can be read as a share of it: machines here differ by about 30 % from one to the next.
`--quick` (the default) uses small sizes that finish in about ten minutes; `--full` uses the sizes of
docs/performance.md and docs/reliability.md (over an hour). Any other arguments after `--` go to every
script. A benchmark that fails is reported and the others still run; the exit status says if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# script → (quick arguments, full arguments)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "bench_floor.py": (
        ["--rates", "300,500", "--seconds", "10"],
        ["--rates", "200,400,500,600,700", "--seconds", "20"],
    ),
    "bench_alerts.py": (["--cases", "20"], []),
    "bench_counters.py": (["--n", "5000", "--procs", "2"], ["--reconcile-steps", "100000"]),
    "bench_import.py": (["--cases", "10000", "--no-sqlite"], []),
    "bench_wall.py": (["--clients", "50", "--procs", "2", "--cases", "30", "--sizes", "100000", "--repeat", "5"], []),
    "bench_load.py": (
        ["--duration", "60", "--rate", "20", "--wall-clients", "50"],
        ["--duration", "600", "--rate", "45"],
    ),
    "bench_city.py": (
        [
            "--duration",
            "20",
            "--mix-rates",
            "30,60,100,150",
            "--reports-rates",
            "50,100,200,300",
            "--floor-seconds",
            "5",
        ],
        [],
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="full", action="store_false", help="small sizes (default)")
    mode.add_argument("--full", dest="full", action="store_true", help="the sizes of the docs")
    parser.set_defaults(full=False)
    parser.add_argument("--only", default="", help="comma-separated script names, e.g. bench_floor.py,bench_wall.py")
    args, extra = parser.parse_known_args()
    chosen = [name for name in BENCHES if not args.only or name in args.only.split(",")]
    failed = []
    for index, name in enumerate(chosen, 1):
        quick, full = BENCHES[name]
        command = [sys.executable, str(HERE / name), *(full if args.full else quick), *extra]
        print(f"\n=== [{index}/{len(chosen)}] {name} {' '.join(command[2:])}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, cwd=HERE.parent)
        print(
            f"=== {name}: {'ok' if code == 0 else f'failed (exit {code})'} in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
