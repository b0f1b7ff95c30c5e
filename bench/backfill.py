"""Time a backfill of N nights, loaded once (billing_jobs.run.backfill_plan), against one night.

    python -m bench.backfill --db-url URL --first 2026-11-02 --last 2026-12-01 [--no-record]

In one process: `plan_backfill` (load and validate the range once), then for each night the
run's own stage functions (`run.stages`) on that night's inputs (`backfill_plan.night`): compute, gate,
simulate, report (a report folder per night, as a run writes). In a fresh subprocess: one
night alone through `run.local.run_billing` (simulate), for the ratio. Prints one JSON object
and (unless --no-record) appends a line to docs/benchmarks.md's raw rows.

Each night runs what `run.local.run_billing` runs after its load stage, minus the run
record (two single-row writes) and the free-minute state carried from night to night
(`run.local.backfill`, which `billing-jobs backfill` runs, does both on the same plan).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from bench.run import ROOT, TABLE, _loadavg, _peak_mib


def backfill_child(url: str, first: date, last: date, out: Path) -> dict:
    from billing_jobs.report import write_report
    from billing_jobs.run import stages
    from billing_jobs.run.lifecycle import run_info
    from billing_jobs.run.request import RunRequest, Timings
    from billing_jobs.run.backfill_plan import night, plan_backfill
    from billing_jobs.store.db import make_engine

    engine = make_engine(url)
    t0 = time.perf_counter()
    plan = plan_backfill(engine, first, last)
    plan_s = time.perf_counter() - t0
    nights, lines = [], 0
    day = first
    while day <= last:
        t1 = time.perf_counter()
        req = RunRequest(run_date=day, simulate=True, out_dir=out / day.isoformat(),
                         started_by="bench-backfill", tz="UTC")
        timings = Timings()
        inputs, rejected = night(plan, day)
        with timings.stage("compute"):
            result = stages.compute_stage(inputs, req)
        with timings.stage("gate"):
            stages.gate_stage(result, inputs)
        with timings.stage("simulate"):
            result = stages.settle_stage(engine, result, req, "bench-backfill")
        info = run_info(req, "bench-backfill", "succeeded", "", [],
                        datetime.now(timezone.utc))
        with timings.stage("report"):
            write_report(req.out_dir, info, result, rejected, timings)
        lines += len(result.due_lines)
        nights.append(round(time.perf_counter() - t1, 3))
        day += timedelta(days=1)
    total = time.perf_counter() - t0
    return {"plan_s": round(plan_s, 3), "nights": len(nights), "night_s": nights,
            "total_s": round(total, 3), "lines": lines, "peak_mib": _peak_mib(),
            "calls_loaded": len(plan.raw.usage)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db-url", required=True)
    p.add_argument("--first", type=date.fromisoformat, required=True)
    p.add_argument("--last", type=date.fromisoformat, required=True)
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--note", default="")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(backfill_child(a.db_url, a.first, a.last, Path(a.out))))
        return 0
    with tempfile.TemporaryDirectory(prefix="billing-backfill-") as tmp:
        load = _loadavg()
        one = subprocess.run([sys.executable, "-m", "bench.run", "--child", "run", "--url",
                              a.db_url, "--date", a.last.isoformat(), "--out", f"{tmp}/one"],
                             cwd=ROOT, capture_output=True, text=True)
        if one.returncode:
            raise SystemExit(one.stderr[-3000:])
        one_night = json.loads(one.stdout.strip().splitlines()[-1])
        res = subprocess.run([sys.executable, "-m", "bench.backfill", "--child", "--db-url",
                              a.db_url, "--first", a.first.isoformat(), "--last",
                              a.last.isoformat(), "--out", f"{tmp}/nights"],
                             cwd=ROOT, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stderr[-3000:])
        back = json.loads(res.stdout.strip().splitlines()[-1])
    out = {"first": a.first.isoformat(), "last": a.last.isoformat(), "one_night_s":
           one_night["total_s"], "one_night_peak_mib": one_night["peak_mib"], "backfill": back,
           "ratio": round(back["total_s"] / one_night["total_s"], 2), "loadavg": load}
    print(json.dumps(out))
    if not a.no_record:
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
        with TABLE.open("a") as fh:
            fh.write(f"| {when} | {a.db_url.split(':')[0]} | backfill | | | | | | "
                     f"{back['plan_s']} | | | | | | {back['total_s']} | | {back['peak_mib']} "
                     f"| {back['lines']} | {load} | {back['nights']} nights loaded once: "
                     f"{out['ratio']}x one night ({one_night['total_s']} s) "
                     f"{a.note} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
