"""Time one billing run at scale, stage by stage, against the floor of plainly reading the inputs.

    python -m bench.run --data DIR --db sqlite|postgresql --date D [--post] [--db-url URL]

Imports the CSVs of DIR (from bench.generate) into a fresh database, then in fresh
subprocesses (so peak memory is the run's own): (1) the floor: `SELECT *` of the four input
tables into dataframes; (2) one billing run through the pipeline, with stage timings.
Prints one JSON object and appends a row to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "benchmarks.md"


def _peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def floor_child(url: str) -> dict:
    """The floor: read the input tables into dataframes, nothing else."""
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    t0 = time.perf_counter()
    rows = {}
    with engine.connect() as conn:
        for table in ("customers", "packages", "assignments", "usage"):
            rows[table] = len(pd.read_sql(sa.text(f"SELECT * FROM {table}"), conn, coerce_float=False))
    return {"floor_s": round(time.perf_counter() - t0, 3), "rows": rows, "floor_peak_mib": _peak_mib()}


def run_child(url: str, run_date: str, post: bool, out: str) -> dict:
    from billing_jobs.pipeline import RunRequest, run_billing

    req = RunRequest(run_date=date.fromisoformat(run_date), simulate=not post, out_dir=Path(out),
                     started_by="bench")
    t0 = time.perf_counter()
    outcome = run_billing(url, req)
    total = time.perf_counter() - t0
    timings = outcome.summary.get("timings", {})
    return {"status": outcome.status, "message": outcome.message, "total_s": round(total, 3),
            "stages": timings, "lines": outcome.summary.get("counts", {}).get("lines"),
            "peak_mib": _peak_mib()}


def _child(kind: str, *args: str) -> dict:
    cmd = [sys.executable, "-m", "bench.run", "--child", kind, *args]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _import(url: str, data: Path) -> float:
    from billing_jobs.store import import_csv, make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    t0 = time.perf_counter()
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, data / f"{entity}.csv")
    engine.dispose()
    return round(time.perf_counter() - t0, 2)


def _append_row(result: dict) -> None:
    if not TABLE.exists():
        TABLE.write_text(
            "# Benchmarks\n\nRows appended by `python -m bench.run` (2 cores, 24 GiB). Seconds.\n\n"
            "| when | db | mode | assignments | calls | import | floor | load | validate | compute | gate "
            "| post/simulate | report | run total | run / floor | peak MiB | lines |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    s = result["run"]["stages"]
    settle = s.get("post", s.get("simulate", ""))
    ratio = result["run"]["total_s"] / max(result["floor"]["floor_s"], 1e-9)
    row = (f"| {result['when']} | {result['db']} | {result['mode']} "
           f"| {result['floor']['rows']['assignments']} | {result['floor']['rows']['usage']} "
           f"| {result['import_s']} | {result['floor']['floor_s']} | {s.get('load', '')} "
           f"| {s.get('validate', '')} | {s.get('compute', '')} | {s.get('gate', '')} | {settle} "
           f"| {s.get('report', '')} | {result['run']['total_s']} | {ratio:.2f} "
           f"| {result['run']['peak_mib']} | {result['run']['lines']} |\n")
    with TABLE.open("a") as fh:
        fh.write(row)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--db-url", help="use this database instead of a fresh one")
    p.add_argument("--date", default="2026-11-30")
    p.add_argument("--post", action="store_true")
    p.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.child == "floor":
        print(json.dumps(floor_child(a.url)))
        return 0
    if a.child == "run":
        print(json.dumps(run_child(a.url, a.date, a.post, a.out)))
        return 0
    if a.data is None:
        p.error("--data is required")

    server = None
    with tempfile.TemporaryDirectory(prefix="billing-bench-") as tmp:
        if a.db_url:
            url = a.db_url
        elif a.db == "sqlite":
            url = f"sqlite:///{tmp}/bench.db"
        else:
            sys.path.insert(0, str(ROOT))
            from tests.pg_server import PostgresServer

            server = PostgresServer().start()
            url = server.url
        try:
            import_s = _import(url, a.data)
            floor = _child("floor", "--url", url)
            run = _child("run", "--url", url, "--date", a.date, "--out", f"{tmp}/report",
                         *(["--post"] if a.post else []))
        finally:
            if server:
                server.stop()
    result = {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "db": a.db,
              "mode": "post" if a.post else "simulate", "date": a.date, "import_s": import_s,
              "floor": floor, "run": run,
              "run_over_floor": round(run["total_s"] / max(floor["floor_s"], 1e-9), 2)}
    print(json.dumps(result))
    if not a.no_record:
        _append_row(result)
    return 0 if run["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
