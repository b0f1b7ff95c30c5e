"""`bench.bulk_usage` (the bench's loader for very large usage files) builds the database the
product's importer builds: every table row for row, `daily_spend` included, and usage's index
and triggers as the migrations made them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from bench import bulk_usage
from bench.run import _import

ROOT = Path(__file__).resolve().parents[1]


def _tables(db: Path) -> dict:
    con = sqlite3.connect(db)
    try:
        names = [n for (n,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' AND name <> 'alembic_version' ORDER BY name")]
        rows = {n: sorted(con.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr)
                for n in names}
        rows["schema"] = sorted(con.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%'").fetchall())  # ANALYZE's statistics are not data
        return rows
    finally:
        con.close()


def test_bulk_loaded_database_equals_the_imported_one(tmp_path):
    data = tmp_path / "data"
    gen = subprocess.run(
        [sys.executable, "-m", "bench.generate", "--customers", "20", "--assignments", "80",
         "--calls", "3000", "--months", "3", "--seed", "5", "--out", str(data),
         "--as-of", "2026-11-30"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr[-3000:]
    imported, bulk = tmp_path / "imported.db", tmp_path / "bulk.db"
    _import(f"sqlite:///{imported}", data)
    bulk_usage.build(f"sqlite:///{bulk}", data, say=lambda _: None)

    want, got = _tables(imported), _tables(bulk)
    assert len(want["usage"]) == 9000
    assert len(want["daily_spend"]) > 20
    assert sum(r[2] for r in want["daily_spend"]) == sum(r[5] for r in want["usage"])
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == want[name], name
