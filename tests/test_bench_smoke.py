"""Smoke test of the benchmark tools at a tiny scale (no timing assertions).

`bench.generate` writes the four CSVs; `bench.run` imports them into a fresh SQLite
database, measures the floor and runs the pipeline (simulate, then post) in child
processes, printing one JSON object per run. The test checks those objects have the stage
timings and a succeeded status, and that `--no-record` leaves docs/benchmarks.md alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTITIES = ("customers", "packages", "assignments", "usage")
STAGES = {"load", "validate", "compute", "gate", "report", "total_before_report"}


def _digest(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def test_generate_then_run_simulate_and_post(tmp_path):
    data = tmp_path / "data"
    gen = subprocess.run(
        [sys.executable, "-m", "bench.generate", "--customers", "10", "--assignments", "50",
         "--calls", "500", "--seed", "3", "--out", str(data), "--as-of", "2026-11-30"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr[-3000:]
    for entity in ENTITIES:
        assert (data / f"{entity}.csv").stat().st_size > 0

    table = ROOT / "docs" / "benchmarks.md"
    before = _digest(table)
    res = subprocess.run(
        [sys.executable, "-m", "bench.run", "--data", str(data), "--db", "sqlite",
         "--date", "2026-11-30", "--modes", "simulate,post", "--no-record"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [r["mode"] for r in runs] == ["simulate", "post"]
    for r in runs:
        run = r["run"]
        assert run["status"] == "succeeded", run["message"]
        assert STAGES | {r["mode"]} <= set(run["stages"]), run["stages"]
        assert r["floor"]["rows"]["assignments"] == 50
        assert r["floor"]["rows"]["usage"] == 500
        assert run["lines"] is not None and run["peak_mib"] > 0
    assert runs[0]["import_s"] is not None  # a fresh database was imported
    assert _digest(table) == before  # --no-record


def test_a_kept_database_posts_the_same_night_again_after_the_reset(tmp_path):
    """`--repeat 2 --modes post` on a kept database: the reset before each run empties the
    ledger and free-minute state and restores the opening balances, so both runs post the
    same lines (a balance is never restored by re-importing customers, which is refused)."""
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "bench.generate", "--customers", "10", "--assignments", "50",
         "--calls", "500", "--seed", "5", "--out", str(data), "--as-of", "2026-11-30"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    args = [sys.executable, "-m", "bench.run", "--data", str(data), "--db", "sqlite",
            "--keep-db", str(tmp_path / "keep"), "--date", "2026-11-30", "--modes", "post",
            "--no-floor", "--no-record"]
    runs = []
    for repeat in ("2", "1"):  # the second call reuses the kept import
        res = subprocess.run(args + ["--repeat", repeat], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        runs += [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(runs) == 3 and runs[2]["import_s"] is None
    posted = [r["run"]["counts"]["lines_by_status"] for r in runs]
    assert posted[0].get("posted", 0) > 0
    assert posted[1] == posted[0] and posted[2] == posted[0]
