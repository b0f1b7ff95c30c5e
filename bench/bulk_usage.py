"""Build a SQLite bench database whose usage file is too large for the product's import in a
session (the 1M-assignment x 13-month data: 130M calls, 8.6 GB; the importer's one
transaction took more than 2 h 15 min and a 19 GB WAL before it was stopped).

    python -m bench.bulk_usage DATA_FOLDER KEEP_FOLDER

packages, customers and assignments go through the product's importer (`import_csv`). usage
goes through the product's own parser and writer (`ingest.parse.parsed_chunks`,
`ingest.write.write_rows`: the same stored values), with three differences that only a bench
may take:

* usage's secondary index and triggers (value guards, `daily_spend` upkeep) are dropped for the
  load and re-created after it as a freshly migrated schema has them, and `daily_spend` is
  filled before that by the GROUP BY of migration 0013 (what its upgrade does for rows already
  stored; `FILL_DAILY_SPEND` repeats it, since a migration's SQL is not callable);
* each chunk commits on its own (no all-or-nothing file: a bench can be rebuilt);
* the file-level checks (repeated call ids, calls already credited, customers known) are not
  run: the generator's data passes them (`bench/generate.py`).

`tests/test_bench_bulk_usage.py` checks on a small data set that the database built here holds
exactly the rows the importer writes (every table, `daily_spend` included). The result is
stamped like `bench.run`'s own import (`imported-sqlite.json`), so `bench.run --keep-db` and
`bench.startup --db` use it as they are.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

USAGE_INDEX_AND_TRIGGERS = ("SELECT type, name, sql FROM sqlite_master "
                            "WHERE tbl_name = 'usage' AND type IN ('index', 'trigger') "
                            "AND sql IS NOT NULL")

#: migration 0013's fill of the rollup from stored calls (SQLite's UTC day), as one scan of the
#: table (NOT INDEXED: through the (customer_id, start_time) index every row is a random lookup)
FILL_DAILY_SPEND = ("INSERT INTO daily_spend (customer_id, day, charged_micros, calls) "
                    "SELECT customer_id, substr(start_time, 1, 10), SUM(charge_micros), COUNT(*) "
                    "FROM usage NOT INDEXED GROUP BY 1, 2")


def usage_extras() -> list[tuple[str, str, str]]:
    """usage's index and triggers as the migrations create them (read from a fresh schema)."""
    import tempfile

    from billing_jobs.store.db import make_engine, upgrade

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/schema.db")
        upgrade(engine)
        with engine.connect() as conn:
            extras = [tuple(r) for r in conn.exec_driver_sql(USAGE_INDEX_AND_TRIGGERS)]
        engine.dispose()
    return sorted(extras, key=lambda e: (e[0] != "index", e[1]))


def build(url: str, data: Path, say=print) -> dict:
    """Import data/*.csv into the SQLite database at `url` (bulk usage); seconds per step.
    A database whose usage rows are loaded but not finished (stopped during the index or the
    rollup) is finished without loading again."""
    from billing_jobs.ingest.importer import import_csv
    from billing_jobs.ingest.parse import parsed_chunks
    from billing_jobs.ingest.source import Source
    from billing_jobs.ingest.write import write_rows
    from billing_jobs.store.db import make_engine, upgrade

    engine = make_engine(url)
    if engine.dialect.name != "sqlite":
        raise SystemExit("bench.bulk_usage builds SQLite databases only")
    upgrade(engine)
    extras = usage_extras()
    times: dict[str, float] = {}
    with engine.connect() as conn:
        loaded = conn.exec_driver_sql("SELECT count(*) FROM usage").scalar_one()
        present = {r[1] for r in conn.exec_driver_sql(USAGE_INDEX_AND_TRIGGERS)}
    if loaded and present:
        raise SystemExit("usage is not empty: bench.bulk_usage loads into a new database")
    if not loaded:
        for entity in ("packages", "customers", "assignments"):
            t0 = time.perf_counter()
            import_csv(engine, entity, data / f"{entity}.csv")
            times[entity] = round(time.perf_counter() - t0, 1)
            say(f"{entity}: {times[entity]} s")
        t0 = time.perf_counter()
        with engine.begin() as conn:
            for kind, name, _ in extras:
                conn.exec_driver_sql(f'DROP {kind.upper()} IF EXISTS "{name}"')
        rows = 0
        for _frame, table in parsed_chunks("usage", Source(data / "usage.csv"), 1_000_000):
            with engine.begin() as conn:
                write_rows(conn, "usage", table)
            rows += table.num_rows
            say(f"usage: {rows:,} rows, {time.perf_counter() - t0:.0f} s")
        times["usage_rows"] = round(time.perf_counter() - t0, 1)

    engine.dispose()
    t0 = time.perf_counter()
    raw = sqlite3.connect(engine.url.database, isolation_level=None)
    try:
        # the group-by's temporary b-tree in memory (at most a customer-day per call)
        raw.execute("PRAGMA temp_store = MEMORY")
        raw.execute("PRAGMA cache_size = -4000000")
        raw.execute("BEGIN IMMEDIATE")
        bad = raw.execute(
            "SELECT count(*) FROM usage WHERE typeof(charge_micros) <> 'integer' "
            "OR typeof(duration_s) <> 'integer' OR typeof(start_time) <> 'text'").fetchone()[0]
        if bad:
            raise SystemExit(f"{bad} usage rows would fail the value guards")
        say(f"usage: values checked, {time.perf_counter() - t0:.0f} s")
        if raw.execute("SELECT count(*) FROM daily_spend").fetchone()[0]:
            raise SystemExit("daily_spend is not empty before the fill")
        raw.execute(FILL_DAILY_SPEND)
        say(f"daily_spend filled, {time.perf_counter() - t0:.0f} s")
        for _kind, _name, sql in extras:
            raw.execute(sql)
        raw.execute("COMMIT")
        say(f"usage index and triggers created, {time.perf_counter() - t0:.0f} s")
        raw.execute("ANALYZE")
    finally:
        raw.close()
    times["usage_index_rollup"] = round(time.perf_counter() - t0, 1)
    return times


def main(argv: list[str] | None = None) -> int:
    from bench.run import _data_stamp

    data, keep = (Path(a) for a in (argv or sys.argv[1:]))
    keep.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(keep / 'bench.db').resolve()}"
    t0 = time.perf_counter()
    times = build(url, data)
    (keep / "imported-sqlite.json").write_text(json.dumps(_data_stamp(data)))
    print(json.dumps({"import": times, "total_s": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
