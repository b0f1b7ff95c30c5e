"""Time the start-up of the light commands and of Run Package, whole process, wall clock.

    python -m bench.startup [--runs 7] [--db sqlite:////work/bench/startup-100k/bench.db]
                            [--customer C] [--no-demo] [--json out.json]

Each command runs `--runs` times in a fresh process through the installed console script
(`billing-jobs` next to this Python), alternated command by command so that a change of load
hits them all alike; the median and every run are printed as one JSON object (and written to
--json). The package's bytecode is compiled first, as `make install` does.

Commands: `--version`, `--help`, and `run --date 2026-12-01 --customer C` (simulate, a report
written into a fresh temporary folder each time) on the demo database (built once in a temporary
folder by `billing-jobs demo`) and, with --db, on that database (`run ... --db URL`) (--customer: the customer given,
else the one with most calls, found by SQL). Timings here are noisy: the load average is
recorded before each run, and the CPU time (user + system) of each run is given beside its wall
time (less sensitive to other processes on a busy machine).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATE = "2026-12-01"


def _loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return ""


def _script() -> list[str]:
    exe = Path(sys.executable).with_name("billing-jobs")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "billing_jobs.cli"]


def _time(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of argv in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _largest_customer(url: str) -> str:
    """The customer with most calls (ties: the lowest id). Counted from the daily_spend
    rollup (one row per customer-day, migration 0013) rather than from every call."""
    sql = ("SELECT customer_id FROM daily_spend GROUP BY customer_id "
           "ORDER BY SUM(calls) DESC, customer_id LIMIT 1")
    from sqlalchemy import create_engine, text

    with create_engine(url).connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--db", help="database URL of a bench database for `run` (optional)")
    p.add_argument("--customer", help="customer for `run` on --db (default: most calls)")
    p.add_argument("--no-demo", action="store_true", help="skip `run` on the demo database")
    p.add_argument("--json", type=Path, help="also write the result here")
    a = p.parse_args(argv)

    package = Path(importlib.util.find_spec("billing_jobs").origin).parent  # what the runs import
    compileall.compile_dir(str(package), quiet=1)
    bj = _script()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        tmp = Path(tmp)
        commands: dict[str, list[str]] = {"version": [*bj, "--version"], "help": [*bj, "--help"]}
        if not a.no_demo:
            demo = tmp / "demo"
            demo.mkdir()
            subprocess.run([*bj, "demo"], cwd=demo, check=True, capture_output=True)
            commands["run_demo"] = [*bj, "run", "--date", DATE, "--customer", "C000001",
                                    "--db", f"sqlite:///{demo / 'billing.db'}"]
        customer = None
        if a.db:
            customer = a.customer or _largest_customer(a.db)
            commands["run_db"] = [*bj, "run", "--date", DATE, "--customer", customer,
                                  "--db", a.db]
        for name, argv in commands.items():  # warm the file cache once
            _time(_with_out(argv, tmp, f"{name}-warm"), tmp)
        runs: dict[str, list[float]] = {k: [] for k in commands}
        cpus: dict[str, list[float]] = {k: [] for k in commands}
        loads: dict[str, list[str]] = {k: [] for k in commands}
        for i in range(a.runs):
            for name, argv in commands.items():
                loads[name].append(_loadavg())
                wall, cpu = _time(_with_out(argv, tmp, f"{name}-{i}"), tmp)
                runs[name].append(round(wall, 3))
                cpus[name].append(round(cpu, 3))
    result = {
        "runs": a.runs, "package": str(package), "db": a.db, "customer": customer, "python": sys.version.split()[0],
        "commands": {k: {"argv": " ".join(v[len(bj):]), "median_s": round(statistics.median(runs[k]), 3),
                         "min_s": min(runs[k]), "all_s": runs[k],
                         "cpu_median_s": round(statistics.median(cpus[k]), 3), "cpu_all_s": cpus[k],
                         "loadavg": loads[k]}
                     for k, v in commands.items()},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return 0


def _with_out(argv: list[str], tmp: Path, tag: str) -> list[str]:
    """A `run` writes its report into a fresh folder of its own."""
    return [*argv, "--out", str(tmp / f"report-{tag}")] if "run" in argv else argv


if __name__ == "__main__":
    sys.exit(main())
