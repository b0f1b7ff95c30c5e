"""One billing run in separate stages, each able to run in its own process or on its own machine.

The Airflow DAG ``package_billing`` runs each function here in its own task; this module knows
nothing about Airflow (plain values and paths in, paths out). Every stage calls the matching
stage of ``billing_jobs.pipeline`` (the same functions ``billing-jobs run`` uses) and hands its
dataframes to the next one as Parquet folders (``billing_jobs.snapshots``).

    extract ──> compute_shard[0..n-1] ──> gate ──> settle ──> report
                                    (any stage failing for good) ──> record_failure

A run lives in one folder (``run_folder``): the report, and under ``snapshots/`` the hand-offs
plus ``run.json`` (the manifest: the billing run record's id and what every stage needs to
rebuild the ``RunRequest``) and ``timings/`` (each stage's timings, in its own file because the
shards run in parallel).

Heavy imports (pandas, SQLAlchemy, the engine) happen inside the functions, so that importing
this module (as the DAG file does when Airflow parses it) stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from billing_jobs.pipeline import RunRequest

log = logging.getLogger(__name__)

MANIFEST = "run.json"  # in <run_dir>/snapshots/: what every stage needs to rebuild the request
DEFAULT_SHARDS = 4


# -- settings --------------------------------------------------------------------------------


def env_db_url() -> str | None:
    """$BILLING_DB_URL, else None (the store's default database)."""
    return os.environ.get("BILLING_DB_URL") or None


def connection_db_url(conn_type: str | None, *, host: str | None = None, port: int | None = None,
                      login: str | None = None, password: str | None = None,
                      schema: str | None = None, extra: dict | None = None) -> str | None:
    """The SQLAlchemy URL of a connection given by its fields: ``extra["sqlalchemy_url"]`` when
    set, else built for a ``postgres``/``postgresql`` or ``sqlite`` connection; None for any
    other type (the caller then uses the connection's own URI)."""
    extra = extra or {}
    if extra.get("sqlalchemy_url"):
        return extra["sqlalchemy_url"]
    if conn_type in ("postgres", "postgresql"):
        import sqlalchemy as sa

        return sa.URL.create("postgresql+psycopg", username=login, password=password,
                             host=host, port=port, database=schema
                             ).render_as_string(hide_password=False)
    if conn_type == "sqlite":
        return f"sqlite:///{host}"
    return None


def n_shards() -> int:
    """$BILLING_SHARDS (at least 1; default 4)."""
    return max(1, int(os.environ.get("BILLING_SHARDS", str(DEFAULT_SHARDS))))


def billing_date(chosen: str | None, when: datetime | None, tz: str) -> date:
    """The billing date: ``chosen`` (``YYYY-MM-DD``) if given, else the calendar date of ``when``
    in the billing time zone ``tz`` (a naive ``when`` is taken as UTC)."""
    if chosen:
        return date.fromisoformat(chosen)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    local = when.astimezone(ZoneInfo(tz))
    return date(local.year, local.month, local.day)


# -- the run folder --------------------------------------------------------------------------


def run_folder(run_date: date, run_id: str) -> Path:
    """``$BILLING_REPORT_DIR/airflow/<run_date>/<run_id>`` (``:`` and other unsafe characters
    of the run id become ``_``)."""
    root = Path(os.environ.get("BILLING_REPORT_DIR", "reports")).resolve()
    return root / "airflow" / run_date.isoformat() / re.sub(r"[^A-Za-z0-9._+-]", "_", run_id)


def work_dir(run_dir: str | Path) -> Path:
    """``<run_dir>/snapshots``: the hand-offs between stages, the manifest, the timings."""
    return Path(run_dir) / "snapshots"


def run_dir_of_path(path: str | Path) -> Path:
    """The run folder holding a snapshot path (``<run_dir>/snapshots/...``)."""
    for parent in Path(path).parents:
        if parent.name == "snapshots":
            return parent.parent
    raise ValueError(f"{path} is not inside a run's snapshots/ folder")


def read_manifest(run_dir: str | Path) -> dict:
    return json.loads((work_dir(run_dir) / MANIFEST).read_text())


def has_started(run_dir: str | Path) -> bool:
    """True once ``extract`` has written the manifest (so a run record exists)."""
    return (work_dir(run_dir) / MANIFEST).exists()


def new_request(run_date: date, run_dir: str | Path, *, simulate, customer_ids, strict,
                started_by: str, tz: str) -> RunRequest:
    """The request of a new run whose report goes to ``run_dir`` (no customers: all)."""
    from billing_jobs.pipeline import RunRequest

    return RunRequest(run_date=run_date, simulate=bool(simulate),
                      customer_ids=customer_ids or None, strict=bool(strict),
                      out_dir=Path(run_dir), started_by=started_by, tz=tz)


def request_of(run_dir: str | Path) -> RunRequest:
    """The run's request, rebuilt from its manifest."""
    from billing_jobs.pipeline import RunRequest

    m = read_manifest(run_dir)
    return RunRequest(run_date=date.fromisoformat(m["run_date"]), simulate=m["simulate"],
                      customer_ids=m["customer_ids"], strict=m["strict"],
                      out_dir=Path(run_dir), started_by=m["started_by"], tz=m["tz"])


def save_timings(run_dir: str | Path, name: str, timings: dict) -> None:
    """One stage's timings in ``timings/<name>.json`` (shards run in parallel: one file each)."""
    folder = work_dir(run_dir) / "timings"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(dict(timings)))


def load_timings(run_dir: str | Path) -> dict:
    """Every stage's timings so far, summed per stage."""
    out: dict[str, float] = {}
    for path in sorted((work_dir(run_dir) / "timings").glob("*.json")):
        for stage, seconds in json.loads(path.read_text()).items():
            out[stage] = round(out.get(stage, 0.0) + seconds, 4)
    return out


def run_info(run_dir: str | Path, req: RunRequest, status: str, message: str,
             unposted: list[str]) -> dict:
    """``pipeline.run_info`` of the run, plus the Airflow DAG and run ids from its manifest."""
    from billing_jobs import pipeline

    m = read_manifest(run_dir)
    return {**pipeline.run_info(req, m["billing_run_id"], status, message, unposted,
                                m["started_at"]),
            "airflow_dag_id": m["airflow_dag_id"], "airflow_run_id": m["airflow_run_id"]}


def _summary_of(report_dir: Path) -> dict:
    path = Path(report_dir) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


@contextlib.contextmanager
def database(db_url: str | None) -> Iterator:
    """An engine for one stage, disposed at the end (no pooled connections left behind)."""
    from billing_jobs.store import make_engine

    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


# -- the stages ------------------------------------------------------------------------------


def extract(db_url: str | None, req: RunRequest, run_dir: str | Path, *,
            airflow_dag_id: str, airflow_run_id: str, shards: int | None = None) -> list[str]:
    """Start the run (its run record and manifest; a retried or cleared run keeps its record),
    load and validate the inputs (``pipeline.load_stage``), write them as a snapshot and split
    the customers into ``shards`` (default ``n_shards()``). Returns one shard file per shard."""
    from billing_jobs import pipeline, snapshots
    from billing_jobs.store import runs, upgrade

    work = work_dir(run_dir)
    work.mkdir(parents=True, exist_ok=True)
    timings = pipeline.Timings()
    manifest_path = work / MANIFEST
    with database(db_url) as engine:
        upgrade(engine)
        if manifest_path.exists():  # a retry or a cleared run: one run record per run folder
            manifest = json.loads(manifest_path.read_text())
        else:
            manifest = {
                "billing_run_id": runs.start_run(engine, req.run_date, req.mode,
                                                 req.customer_ids, req.started_by),
                "started_at": datetime.now(timezone.utc).isoformat(),
                "airflow_dag_id": airflow_dag_id, "airflow_run_id": airflow_run_id,
            }
        manifest.update(run_date=req.run_date.isoformat(), simulate=req.simulate,
                        customer_ids=req.customer_ids, strict=req.strict, tz=req.tz,
                        started_by=req.started_by)
        manifest_path.write_text(json.dumps(manifest, indent=1))
        inputs, rejected = pipeline.load_stage(engine, req, timings)
    snapshots.save_inputs(inputs, rejected, work / "inputs")
    n = shards if shards is not None else n_shards()
    groups = [s for s in snapshots.shard_customers(inputs.customers["customer_id"], n)
              if s] or [[]]
    shard_files = []
    for i, customer_ids in enumerate(groups):
        path = work / "shards" / f"shard-{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"index": i, "customer_ids": customer_ids}))
        shard_files.append(str(path))
    save_timings(run_dir, "extract", timings)
    return shard_files


def shard_label(shard: str | Path) -> str:
    """``shard <i> (<n> customers)``, of a shard file."""
    spec = json.loads(Path(shard).read_text())
    return f"shard {spec['index']} ({len(spec['customer_ids'])} customers)"


def compute_shard(shard: str | Path) -> str:
    """``pipeline.compute_stage`` on one shard's customers; returns its result folder."""
    from billing_jobs import pipeline, snapshots

    spec = json.loads(Path(shard).read_text())
    run_dir = run_dir_of_path(shard)
    timings = pipeline.Timings()
    with timings.stage("compute"):
        inputs, _ = snapshots.load_inputs(work_dir(run_dir) / "inputs")
        result = pipeline.compute_stage(
            snapshots.filter_inputs(inputs, spec["customer_ids"]), request_of(run_dir))
        out = snapshots.save_result(result,
                                    work_dir(run_dir) / "computed" / f"shard-{spec['index']}")
    # the shard's index is its position in extract's list, so the index of its mapped task
    save_timings(run_dir, f"compute-{spec['index']}", timings)
    return str(out)


def gate(shard_results: Iterable[str | Path]) -> str:
    """The shards' results joined, ``pipeline.gate_stage`` on the whole run; returns the gated
    result's folder."""
    from billing_jobs import pipeline, snapshots

    shard_results = list(shard_results)
    run_dir = run_dir_of_path(shard_results[0])
    timings = pipeline.Timings()
    with timings.stage("gate"):
        result = snapshots.concat_results([snapshots.load_result(p) for p in shard_results])
        inputs, _ = snapshots.load_inputs(work_dir(run_dir) / "inputs")
        pipeline.gate_stage(result, inputs)
        out = snapshots.save_result(result, work_dir(run_dir) / "gated")
    save_timings(run_dir, "gate", timings)
    return str(out)


def settle(db_url: str | None, gated: str | Path) -> str:
    """``pipeline.settle_stage``: simulate, or post exactly once; returns the settled result's
    folder."""
    from billing_jobs import pipeline, snapshots

    run_dir = run_dir_of_path(gated)
    req = request_of(run_dir)
    timings = pipeline.Timings()
    with timings.stage(req.mode), database(db_url) as engine:
        result = pipeline.settle_stage(engine, snapshots.load_result(gated), req,
                                       read_manifest(run_dir)["billing_run_id"])
        out = snapshots.save_result(result, work_dir(run_dir) / "settled")
    save_timings(run_dir, "settle", timings)
    return str(out)


def report(db_url: str | None, settled: str | Path) -> str:
    """``pipeline.report_stage`` into the run folder, then the run record says ``succeeded``;
    returns the report folder."""
    from billing_jobs import pipeline, snapshots
    from billing_jobs.store import runs

    run_dir = run_dir_of_path(settled)
    req = request_of(run_dir)
    _, rejected = snapshots.load_inputs(work_dir(run_dir) / "inputs")
    timings = pipeline.Timings(load_timings(run_dir))
    timings["total_before_report"] = round(sum(timings.values()), 4)
    with database(db_url) as engine:
        unposted = ([] if req.simulate
                    else [d.isoformat() for d in runs.unposted_dates(engine, req.run_date)])
        with timings.stage("report"):
            report_dir = pipeline.report_stage(
                req, snapshots.load_result(settled), rejected,
                run_info(run_dir, req, "succeeded", "", unposted), timings, Path(run_dir))
        summary = _summary_of(report_dir)
        runs.finish_run(engine, read_manifest(run_dir)["billing_run_id"], "succeeded",
                        summary.get("counts", {}), summary.get("totals", {}), "")
    return str(report_dir)


def record_failure(db_url: str | None, run_dir: str | Path, message: str) -> None:
    """A stage failed for good: the run folder's report and the run record say ``failed``
    with ``message``. The report lists the lines computed so far (if the gate passed), not
    posted, as the command line's does. Nothing to do if the run never started."""
    from billing_jobs import pipeline, snapshots
    from billing_jobs.store import runs

    if not has_started(run_dir):
        log.warning("no run record to mark failed (the run failed before it started)")
        return
    req = request_of(run_dir)
    try:
        _, rejected = snapshots.load_inputs(work_dir(run_dir) / "inputs")
    except FileNotFoundError:
        from billing_jobs.engine.frames import empty_frame
        rejected = empty_frame(snapshots.REJECTED_COLUMNS)
    try:
        computed = snapshots.load_result(work_dir(run_dir) / "gated")
    except FileNotFoundError:
        computed = pipeline.empty_result()
    result = snapshots.BillingResult(computed.due_lines.assign(status="not_posted"),
                                     computed.grants.assign(status="not_posted"),
                                     computed.utilisation, computed.extended_ends)
    report_dir = pipeline.report_stage(req, result, rejected,
                                       run_info(run_dir, req, "failed", message, []),
                                       load_timings(run_dir), Path(run_dir))
    summary = _summary_of(report_dir)
    with database(db_url) as engine:
        runs.finish_run(engine, read_manifest(run_dir)["billing_run_id"], "failed",
                        summary.get("counts", {}), summary.get("totals", {}), message)
