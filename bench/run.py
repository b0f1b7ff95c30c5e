"""Time billing runs at scale, stage by stage, against the floor of plainly reading the inputs.

    python -m bench.run --data DIR --db sqlite|postgresql --date D
        [--modes simulate,post | --post] [--keep-db DIR] [--db-url URL --skip-import]
        [--repeat N] [--profile DIR] [--no-record]

Imports the CSVs of DIR (from bench.generate) into a database, then in fresh subprocesses
(so peak memory is each process's own):

1. the floor: `SELECT *` of the four input tables into dataframes (`pandas.read_sql`), nothing
   else; also `floor_raw_s`, the same rows fetched as plain tuples by the driver (no frames);
2. one billing run through the pipeline per mode (in the order given, against the same
   imported database: `--modes simulate,post` previews, then posts every due line), with
   the pipeline's own stage timings, total wall time and peak RSS.

The database:

* default: a fresh one in a temporary folder (SQLite file, or a PostgreSQL server started with
  bench/pg_server.py), imported and thrown away;
* `--keep-db DIR`: kept in DIR (SQLite `DIR/bench.db`, PostgreSQL data folder `DIR/pg`, its
  server started for this command and stopped after). The import is skipped when DIR already
  holds an import of the same data folder (`DIR/imported-<db>.json`), so a 10M-call database
  is imported once and re-run many times;
* `--db-url URL`: an existing database; `--skip-import` to use what it holds.

Before each run on a bench database (fresh or `--keep-db`) that holds postings (an earlier
`post`), the ledger and grants are emptied and the customers' balances re-imported, so every run
sees the same untouched night: a simulation marks every line `simulated`, a post posts every due
line (`--no-reset` keeps them: a post then finds every line already posted). A `--db-url`
database is never reset.

Prints one JSON object per run and appends one row per run to docs/benchmarks.md (unless
`--no-record`). `--profile DIR` runs the billing child under pyinstrument and writes
DIR/<db>-<mode>-<assignments>.html and .txt (timings then include the profiler's overhead).
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
ENTITIES = ("customers", "packages", "assignments", "usage")
MODES = ("simulate", "post")


def _peak_mib() -> float:
    """This process's peak resident memory: VmHWM of its own address space. (ru_maxrss is
    not: a child started by fork/vfork + exec inherits the parent's high-water mark, so a
    child of the process that imported 1.3M calls "peaked" at the importer's size.)"""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:  # pragma: no cover - not Linux
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return ""


# ----------------------------------------------------------------------------- children

def floor_child(url: str) -> dict:
    """The floor: read the input tables into dataframes, nothing else."""
    import pandas as pd
    import sqlalchemy as sa

    from billing_jobs.store.db import make_engine

    engine = make_engine(url)
    t0 = time.perf_counter()
    rows = {}
    with engine.connect() as conn:
        for table in ENTITIES:
            rows[table] = len(pd.read_sql(sa.text(f"SELECT * FROM {table}"), conn,
                                          coerce_float=False))
    floor_s = time.perf_counter() - t0
    peak = _peak_mib()
    # the same rows as plain driver tuples, no dataframe (a lower bound for any reader)
    t0 = time.perf_counter()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        for table in ENTITIES:
            cur = raw.cursor()
            cur.execute(f"SELECT * FROM {table}")
            while cur.fetchmany(100_000):
                pass
            cur.close()
    return {"floor_s": round(floor_s, 3), "floor_raw_s": round(time.perf_counter() - t0, 3),
            "rows": rows, "floor_peak_mib": peak}


class _RssSampler:
    """Samples this process's resident memory every `every` seconds on a thread (the
    pipeline is run as it is: no stage is wrapped or replaced), so the peak reached by the
    end of each stage can be read off the pipeline's own stage timings afterwards."""

    def __init__(self, every: float = 0.05) -> None:
        import threading

        self.every = every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.perf_counter()

    @staticmethod
    def _rss_mib() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self.t0, self._rss_mib()))
            self._stop.wait(self.every)

    def __enter__(self) -> "_RssSampler":
        self.t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peaks_by_stage(self, timings: dict, total: float,
                       order=("load", "validate", "compute", "gate", "simulate", "post",
                              "report")) -> dict:
        """Highest sampled RSS (MiB) up to the end of each stage, stages taken in pipeline
        order (a stage's end = the time not in any stage, counted first, plus the timings so
        far; approximate by `every`)."""
        out = {}
        end = max(0.0, total - sum(float(timings[n]) for n in order if n in timings))
        for name in order:
            if name not in timings:
                continue
            end += float(timings[name])
            seen = [m for t, m in self.samples if t <= end + self.every]
            if seen:
                out[name] = round(max(seen), 1)
        return out


def run_child(url: str, run_date: str, post: bool, out: str) -> dict:
    from billing_jobs.run.local import run_billing
    from billing_jobs.run.request import RunRequest
    from billing_jobs.store.db import make_engine

    req = RunRequest(run_date=date.fromisoformat(run_date), simulate=not post, out_dir=Path(out),
                     started_by="bench", tz="UTC")
    with _RssSampler() as rss:
        t0 = time.perf_counter()
        outcome = run_billing(make_engine(url), req)
        total = time.perf_counter() - t0
    timings = outcome.summary.get("timings", {})
    counts = outcome.summary.get("counts", {})
    return {"status": outcome.status, "message": outcome.message, "total_s": round(total, 3),
            "stages": timings, "lines": counts.get("lines"), "grants": counts.get("grants"),
            "rejects": counts.get("rejects"), "counts": counts, "peak_mib": _peak_mib(),
            "peak_mib_by_stage": rss.peaks_by_stage(timings, total)}


def _child(kind: str, *args: str, profile: Path | None = None) -> dict:
    if profile is not None:
        profile.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pyinstrument", "-r", "pyisession",
               "-o", f"{profile}.pyisession", "-m", "bench.run", "--child", kind, *args]
    else:
        cmd = [sys.executable, "-m", "bench.run", "--child", kind, *args]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{res.stderr[-3000:]}")
    if profile is not None:
        _render(profile)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _render(profile: Path) -> None:
    """The saved pyinstrument session as HTML (to browse) and text (to quote)."""
    session = f"{profile}.pyisession"
    for renderer, ext, opts in (("html", "html", []), ("text", "txt", ["--no-color"])):
        subprocess.run([sys.executable, "-m", "pyinstrument", "--load", session, "-r", renderer,
                        *opts, "-o", f"{profile}.{ext}"], cwd=ROOT, capture_output=True)


# ----------------------------------------------------------------------------- database

def _import(url: str, data: Path, entities=ENTITIES) -> dict:
    from billing_jobs.ingest.importer import import_csv
    from billing_jobs.store.db import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    times = {}
    for entity in entities:
        t0 = time.perf_counter()
        import_csv(engine, entity, data / f"{entity}.csv")
        times[entity] = round(time.perf_counter() - t0, 2)
    engine.dispose()
    return times


#: what a post writes: emptied by the reset, counted to tell whether one is needed
_POSTED_TABLES = ("ledger", "grants", "grant_usage", "call_credits")


def _reset_posting(url: str, data: Path) -> float:
    """Empty the ledger, grants and free-minute state and restore the imported balances
    (bench databases only). A balance is its opening balance plus its ledger rows, so with the
    ledger empty it is the opening balance (re-importing customers.csv would be refused: a
    balance changes only through the ledger)."""
    from billing_jobs.store.db import make_engine

    t0 = time.perf_counter()
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in _POSTED_TABLES:
            conn.exec_driver_sql(f"DELETE FROM {table}")
        conn.exec_driver_sql("UPDATE customers SET balance_micros = opening_balance_micros "
                             "WHERE balance_micros <> opening_balance_micros")
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in _POSTED_TABLES + ("customers",):
                conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
    engine.dispose()
    return round(time.perf_counter() - t0, 2)


def _posted_rows(url: str) -> int:
    from billing_jobs.store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sum(conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one()
                       for t in _POSTED_TABLES)
    except Exception:  # no schema yet
        return 0
    finally:
        engine.dispose()


def _csv_rows(data: Path) -> dict:
    """Data rows of each CSV (lines after the header; the generator writes no embedded
    line breaks)."""
    rows = {}
    for entity in ENTITIES:
        n = 0
        with open(data / f"{entity}.csv", "rb") as fh:
            while block := fh.read(1 << 24):
                n += block.count(b"\n")
        rows[entity] = max(n - 1, 0)
    return rows


def _analyze(url: str) -> None:
    from billing_jobs.store.db import make_engine

    engine = make_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def _data_stamp(data: Path) -> dict:
    return {"data": str(data.resolve()),
            "files": {e: (data / f"{e}.csv").stat().st_size for e in ENTITIES}}


class _KeptPostgres:
    """A PostgreSQL server whose data folder survives (bench/pg_server.py settings)."""

    def __init__(self, folder: Path) -> None:
        from bench.pg_server import PostgresServer

        self.server = PostgresServer()
        import shutil

        shutil.rmtree(self.server.root, ignore_errors=True)  # use `folder` instead
        folder.mkdir(parents=True, exist_ok=True)
        self.server.root = folder.resolve()
        self.server.data = self.server.root / "data"
        self.server.url = (f"postgresql+psycopg://postgres@127.0.0.1:{self.server.port}"
                           "/postgres")
        self.url = self.server.url

    def start(self) -> "_KeptPostgres":
        s = self.server
        if not (s.data / "PG_VERSION").exists():
            s.start()
            return self
        if s.as_root:
            import shutil

            shutil.chown(s.root, "postgres", "postgres")
        r = s.run_server(timeout_s=120)
        if r.returncode != 0:
            raise SystemExit(f"pg_ctl start failed: {r.stderr or r.stdout}")
        return self

    def stop(self) -> None:
        s = self.server
        s._run(str(s.bin / "pg_ctl"), "-D", str(s.data), "-m", "fast", "-t", "120", "stop")


# ----------------------------------------------------------------------------- record

_HEADER = (
    "| when (UTC) | db | mode | assignments | calls | import | floor | floor raw | load | validate "
    "| compute | gate | post/simulate | report | run total | run / floor | peak MiB | lines "
    "| load avg | note |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")


def _blank(value) -> str:
    return "" if value is None else str(value)


def _append_row(result: dict) -> None:
    if not TABLE.exists():
        TABLE.write_text("# Benchmarks\n\n## Raw rows\n\nRows appended by `python -m bench.run`. "
                         "Seconds.\n\n" + _HEADER)
    s = result["run"]["stages"]
    settle = s.get("post", s.get("simulate", ""))
    imp = result.get("import_s")
    row = (f"| {result['when']} | {result['db']} | {result['mode']} "
           f"| {result['floor']['rows']['assignments']} | {result['floor']['rows']['usage']} "
           f"| {'' if imp is None else imp} | {_blank(result['floor']['floor_s'])} "
           f"| {_blank(result['floor'].get('floor_raw_s'))} | {s.get('load', '')} "
           f"| {s.get('validate', '')} | {s.get('compute', '')} | {s.get('gate', '')} | {settle} "
           f"| {s.get('report', '')} | {result['run']['total_s']} "
           f"| {_blank(result['run_over_floor'])} "
           f"| {result['run']['peak_mib']} | {result['run']['lines']} | {result['loadavg']} "
           f"| {result.get('note') or ''} |\n")
    with TABLE.open("a") as fh:
        fh.write(row)


# ----------------------------------------------------------------------------- main

def _history_ratios(base: list[dict], hist: list[dict]) -> list[dict]:
    """The same night with the long history vs the short one: time and peak memory, per mode
    (the medians when repeated)."""
    import statistics

    out = []
    for mode in dict.fromkeys(r["mode"] for r in base):
        b = [r["run"] for r in base if r["mode"] == mode]
        h = [r["run"] for r in hist if r["mode"] == mode]
        if not b or not h:
            continue
        bt, ht = (statistics.median(x["total_s"] for x in v) for v in (b, h))
        bm, hm = (statistics.median(x["peak_mib"] for x in v) for v in (b, h))
        bl, hl = (statistics.median(x["stages"].get("load", 0) for x in v) for v in (b, h))
        out.append({"mode": mode, "time_ratio": round(ht / bt, 3),
                    "memory_ratio": round(hm / bm, 3), "load_ratio": round(hl / bl, 3) if bl else None,
                    "short_total_s": bt, "long_total_s": ht, "short_peak_mib": bm,
                    "long_peak_mib": hm, "short_calls": base[0]["floor"]["rows"].get("usage"),
                    "long_calls": hist[0]["floor"]["rows"].get("usage"),
                    "same_lines": {x["lines"] for x in b} == {x["lines"] for x in h}})
    return out


def _append_ratio(a, ratios: list[dict]) -> None:
    """One line per mode under the raw rows: the history ratio (kept inside the table as a
    row whose note says so)."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    with TABLE.open("a") as fh:
        for r in ratios:
            fh.write(f"| {when} | {a.db} | {r['mode']} | | {r['long_calls']} | | | | | | | | | "
                     f"| {r['long_total_s']} | | {r['long_peak_mib']} | | {_loadavg()} "
                     f"| history ratio vs {r['short_calls']} calls: time {r['time_ratio']}, "
                     f"memory {r['memory_ratio']}, load {r['load_ratio']}, "
                     f"same lines {r['same_lines']} |\n")


def _bench_database(a, data: Path, keep_db: Path | None, modes: list[str], note: str
                    ) -> list[dict]:
    """Import `data` (unless kept), measure the floor, then run each mode: the result rows."""
    server = None
    results = []
    with tempfile.TemporaryDirectory(prefix="billing-bench-") as tmp:
        stamp_file = None
        if a.db_url:
            url = a.db_url
        elif keep_db:
            keep_db.mkdir(parents=True, exist_ok=True)
            stamp_file = keep_db / f"imported-{a.db}.json"
            if a.db == "sqlite":
                url = f"sqlite:///{(keep_db / 'bench.db').resolve()}"
            else:
                server = _KeptPostgres(keep_db / "pg").start()
                url = server.url
        elif a.db == "sqlite":
            url = f"sqlite:///{tmp}/bench.db"
        else:
            from bench.pg_server import PostgresServer

            server = PostgresServer().start()
            url = server.url
        owned = not a.db_url  # only a bench database is ever reset
        try:
            reused = bool(a.skip_import or (
                stamp_file and stamp_file.exists()
                and json.loads(stamp_file.read_text()) == _data_stamp(data)))
            import_s = import_detail = None
            if not reused:
                if stamp_file and stamp_file.exists():
                    raise SystemExit(f"{keep_db} holds another import; remove it first")
                import_detail = _import(url, data)
                import_s = round(sum(import_detail.values()), 2)
                _analyze(url)
                if stamp_file:
                    stamp_file.write_text(json.dumps(_data_stamp(data)))
            floor = ({"floor_s": None, "floor_raw_s": None, "rows": _csv_rows(data)}
                     if a.no_floor else _child("floor", "--url", url))
            for mode in modes:
                for i in range(a.repeat):
                    reset_s = None
                    if owned and not a.no_reset and _posted_rows(url):
                        reset_s = _reset_posting(url, data)
                    prof = None
                    if a.profile:
                        n = floor["rows"].get("assignments", "x")
                        prof = a.profile / f"{a.db}-{mode}-{n}-{i + 1}"
                    load = _loadavg()
                    run = _child("run", "--url", url, "--date", a.date, "--out",
                                 f"{tmp}/report-{mode}-{i}",
                                 *(["--post"] if mode == "post" else []),
                                 profile=prof)
                    result = {
                        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
                        "db": a.db, "mode": mode, "date": a.date, "import_s": import_s,
                        "import_detail": import_detail, "reset_s": reset_s, "floor": floor,
                        "run": run, "loadavg": load, "note": note,
                        "profile": str(prof) if prof else None,
                        "run_over_floor": (round(run["total_s"] / floor["floor_s"], 2)
                                           if floor.get("floor_s") else None),
                        "run_over_floor_raw": (round(run["total_s"] / floor["floor_raw_s"], 2)
                                               if floor.get("floor_raw_s") else None),
                    }
                    import_s = None  # reported on the first row only
                    print(json.dumps(result), flush=True)
                    results.append(result)
                    if not a.no_record:
                        _append_row(result)
        finally:
            if server:
                server.stop()
    return results



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--db-url", help="use this database instead of a fresh one")
    p.add_argument("--keep-db", type=Path, metavar="DIR",
                   help="keep the database in DIR and reuse its import on the next call")
    p.add_argument("--skip-import", action="store_true",
                   help="with --db-url: the database already holds the data")
    p.add_argument("--date", default="2026-11-30")
    p.add_argument("--post", action="store_true", help="same as --modes post")
    p.add_argument("--modes", default=None,
                   help="comma-separated runs, in order, on the same database "
                        "(simulate, post; default simulate)")
    p.add_argument("--repeat", type=int, default=1, help="run each mode N times")
    p.add_argument("--no-reset", action="store_true",
                   help="keep earlier postings (default on a bench database: empty the "
                        "ledger before each run; a --db-url database is never reset)")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the floor measurement (row counts then come from the CSVs)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="run the billing children under pyinstrument, reports in DIR")
    p.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    p.add_argument("--note", default="", help="free text for the row's note column")
    p.add_argument("--history-data", type=Path, metavar="DIR",
                   help="also run the same modes and date on DIR (the same data with a longer "
                        "call history, `bench.generate --months 13`) and report the history "
                        "ratio: its time and peak memory over those of --data")
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
    if a.skip_import and not a.db_url:
        p.error("--skip-import needs --db-url")
    if a.history_data is not None and a.db_url:
        p.error("--history-data needs a bench database (not --db-url)")
    modes = ["post"] if a.post and not a.modes else (a.modes or "simulate").split(",")
    for m in modes:
        if m not in MODES:
            p.error(f"unknown mode {m!r} (simulate, post)")

    results = _bench_database(a, a.data, a.keep_db, modes, a.note)
    if a.history_data is not None:
        keep = a.keep_db / "history" if a.keep_db else None
        hist = _bench_database(a, a.history_data, keep, modes,
                               (a.note + " " if a.note else "") + "history")
        ratios = _history_ratios(results, hist)
        print(json.dumps({"history_ratio": ratios}), flush=True)
        if not a.no_record:
            _append_ratio(a, ratios)
        results += hist
    return 0 if all(r["run"]["status"] == "succeeded" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
