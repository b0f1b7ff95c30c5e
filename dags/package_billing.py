"""package_billing: the nightly package billing run (SPEC §5, §8), on Airflow 3.

Wiring only: every task calls a stage of ``billing_jobs.pipeline`` (the same functions the
``billing-jobs`` command line runs) and hands the dataframes to the next task as Parquet
folders (``billing_jobs.snapshots``); XCom carries folder paths, never dataframes.

    extract ──> compute[shard 0..n-1] ──> gate ──> settle (pool billing_posting) ──> report

* ``extract``  starts the run record, ``pipeline.load_stage`` (load + validate), writes the
  input snapshot and splits the customers into ``$BILLING_SHARDS`` (default 4) shards.
* ``compute``  one mapped task per shard: ``pipeline.compute_stage`` on that shard's customers.
* ``gate``     concatenates the shard results, ``pipeline.gate_stage`` on the whole run.
* ``settle``   ``pipeline.settle_stage``: simulate, or post exactly once. In the 1-slot pool
  ``billing_posting``; retried with exponential back-off on database errors only.
* ``report``   ``pipeline.report_stage`` into the run folder, then finishes the run record.

A task that fails for good marks the run record ``failed`` (``on_failure_callback``).

Everything of one run lives in ``$BILLING_REPORT_DIR/airflow/<run_date>/<run_id>/``: the
report (charges.csv, grants.csv, utilisation.csv, rejected.csv, summary.json, report.html)
and, under ``snapshots/``, the Parquet hand-offs between tasks.

Settings (environment of the scheduler / workers):
    BILLING_DB_URL      billing database (an Airflow connection ``billing_db``, when defined, wins)
    BILLING_REPORT_DIR  report root (default ``reports``)
    BILLING_SCHEDULE    cron of the nightly run (default ``30 2 * * *``)
    BILLING_TZ          billing time zone, also the schedule's (default ``UTC``)
    BILLING_START_DATE  first night catch-up bills (default ``2026-01-01``)
    BILLING_SHARDS      compute shards (default 4)
    BILLING_SIMULATE_DEFAULT  default of the ``simulate`` param, so of scheduled runs (default true)
    BILLING_DB_RETRIES / BILLING_DB_RETRY_DELAY_S  retries of database errors in the tasks that
                        use the database, first delay doubled each time (default 4 / 30 s)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pendulum
from airflow.sdk import (
    CronTriggerTimetable,
    ExceptionRetryPolicy,
    Param,
    RetryAction,
    RetryRule,
    dag,
    get_current_context,
    task,
)

DAG_ID = "package_billing"
POOL = "billing_posting"
BILLING_DB_CONN_ID = "billing_db"
SCHEDULE = os.environ.get("BILLING_SCHEDULE", "30 2 * * *")
BILLING_TZ = os.environ.get("BILLING_TZ", "UTC")
START_DATE = os.environ.get("BILLING_START_DATE", "2026-01-01")
DB_RETRIES = int(os.environ.get("BILLING_DB_RETRIES", "4"))
DB_RETRY_DELAY_S = float(os.environ.get("BILLING_DB_RETRY_DELAY_S", "30"))
# Scheduled runs take the params' defaults: production sets BILLING_SIMULATE_DEFAULT=false so
# that the nightly run posts; a manual run can always choose.
SIMULATE_DEFAULT = os.environ.get("BILLING_SIMULATE_DEFAULT", "true").strip().lower() not in (
    "false", "0", "no", "off")

# Database trouble (cannot connect, lock timeout, server gone) is worth retrying; anything
# else (gate, strict rejection, a bug) fails at once: a retry would fail the same way.
DB_RETRY = ExceptionRetryPolicy(
    rules=[RetryRule(
        exception=["billing_jobs.errors.DatabaseError", "sqlalchemy.exc.OperationalError",
                   "sqlalchemy.exc.InterfaceError"],
        action=RetryAction.RETRY,
        reason="database error: retrying with exponential back-off",
    )],
    default=RetryAction.FAIL,
)
DB_TASK_ARGS = dict(
    retries=DB_RETRIES,
    retry_delay=timedelta(seconds=DB_RETRY_DELAY_S),
    retry_exponential_backoff=2.0,
    max_retry_delay=timedelta(minutes=30),
    retry_policy=DB_RETRY,
)

MANIFEST = "run.json"  # in <run_dir>/snapshots/: what every task needs to rebuild the request


# -- wiring helpers (no billing rules here) --------------------------------------------------


def billing_tz() -> str:
    return os.environ.get("BILLING_TZ", BILLING_TZ)


def billing_db_url() -> str | None:
    """The Airflow connection ``billing_db`` if defined, else $BILLING_DB_URL (else the default)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(BILLING_DB_CONN_ID)
    except AirflowNotFoundException:
        conn = None
    if conn is None:
        return os.environ.get("BILLING_DB_URL") or None
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return extra["sqlalchemy_url"]
    if conn.conn_type in ("postgres", "postgresql"):
        import sqlalchemy as sa

        return sa.URL.create("postgresql+psycopg", username=conn.login, password=conn.password,
                             host=conn.host, port=conn.port, database=conn.schema
                             ).render_as_string(hide_password=False)
    if conn.conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    return conn.get_uri()


@contextlib.contextmanager
def _database():
    """An engine for one task, disposed at the end (no pooled connections left behind)."""
    from billing_jobs.store import make_engine

    engine = make_engine(billing_db_url())
    try:
        yield engine
    finally:
        engine.dispose()


def run_date_of(context) -> date:
    """The billing date: ``run_date`` param, else the logical date's calendar date in the billing
    time zone, else (a manual run without logical date) the date the run was triggered."""
    chosen = context["params"].get("run_date")
    if chosen:
        return date.fromisoformat(chosen)
    when = context.get("logical_date") or context["dag_run"].run_after
    return pendulum.instance(when).in_timezone(billing_tz()).date()


def run_folder(run_date: date, run_id: str) -> Path:
    """``$BILLING_REPORT_DIR/airflow/<run_date>/<run_id>`` (``:`` and other unsafe characters
    of the run id become ``_``)."""
    root = Path(os.environ.get("BILLING_REPORT_DIR", "reports")).resolve()
    return root / "airflow" / run_date.isoformat() / re.sub(r"[^A-Za-z0-9._+-]", "_", run_id)


def run_dir_of(context) -> Path:
    return run_folder(run_date_of(context), context["run_id"])


def _work(run_dir: str | Path) -> Path:
    return Path(run_dir) / "snapshots"


def _run_dir_of_path(path: str | Path) -> Path:
    """The run folder holding a snapshot path (``<run_dir>/snapshots/...``)."""
    for parent in Path(path).parents:
        if parent.name == "snapshots":
            return parent.parent
    raise ValueError(f"{path} is not inside a run's snapshots/ folder")


def _manifest(run_dir: str | Path) -> dict:
    return json.loads((_work(run_dir) / MANIFEST).read_text())


def _request(run_dir: str | Path):
    from billing_jobs.pipeline import RunRequest

    m = _manifest(run_dir)
    return RunRequest(run_date=date.fromisoformat(m["run_date"]), simulate=m["simulate"],
                      customer_ids=m["customer_ids"], strict=m["strict"],
                      out_dir=Path(run_dir), started_by=m["started_by"], tz=m["tz"])


def _save_timings(run_dir: str | Path, task_id: str, timings: dict) -> None:
    """Each task's stage timings in its own file (mapped tasks run in parallel)."""
    folder = _work(run_dir) / "timings"
    folder.mkdir(parents=True, exist_ok=True)
    ti = get_current_context()["ti"]
    map_index = ti.map_index if ti.map_index is not None else -1
    suffix = f"-{map_index}" if map_index >= 0 else ""
    (folder / f"{task_id}{suffix}.json").write_text(json.dumps(dict(timings)))


def _timings(run_dir: str | Path) -> dict:
    out: dict[str, float] = {}
    for path in sorted((_work(run_dir) / "timings").glob("*.json")):
        for stage, seconds in json.loads(path.read_text()).items():
            out[stage] = round(out.get(stage, 0.0) + seconds, 4)
    return out


def _run_info(run_dir: str | Path, req, status: str, message: str, unposted: list[str]) -> dict:
    from billing_jobs.store import runs

    m = _manifest(run_dir)
    return {
        "run_id": m["billing_run_id"], "run_date": req.run_date, "mode": req.mode,
        "status": status, "started_by": req.started_by, "customer_ids": req.customer_ids,
        "started_at": m["started_at"], "finished_at": datetime.now(timezone.utc).isoformat(),
        "message": message, "unposted_dates": unposted, "code_version": runs.code_version(),
        "strict": req.strict, "tz": req.tz,
        "airflow_dag_id": m["airflow_dag_id"], "airflow_run_id": m["airflow_run_id"],
    }


def _summary_of(report_dir: Path) -> dict:
    path = Path(report_dir) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record_failure(context) -> None:
    """on_failure_callback: the run record (and the run folder's report) say ``failed``."""
    import logging

    log = logging.getLogger(__name__)
    try:
        from billing_jobs import pipeline, snapshots
        from billing_jobs.store import runs

        run_dir = run_dir_of(context)
        if not (_work(run_dir) / MANIFEST).exists():
            log.warning("no run record to mark failed (the run failed before it started)")
            return
        ti = context["ti"]
        exc = context.get("exception")
        message = f"{ti.task_id}: {exc}" if exc else f"{ti.task_id} failed"
        req = _request(run_dir)
        try:
            _, rejected = snapshots.load_inputs(_work(run_dir) / "inputs")
        except FileNotFoundError:
            from billing_jobs.engine.frames import empty_frame
            rejected = empty_frame(snapshots.REJECTED_COLUMNS)
        # as the command line does: the lines computed so far (if the gate passed), not posted
        try:
            computed = snapshots.load_result(_work(run_dir) / "gated")
        except FileNotFoundError:
            computed = pipeline.empty_result()
        result = snapshots.BillingResult(computed.due_lines.assign(status="not_posted"),
                                         computed.grants.assign(status="not_posted"),
                                         computed.utilisation, computed.extended_ends)
        report_dir = pipeline.report_stage(req, result, rejected,
                                           _run_info(run_dir, req, "failed", message, []),
                                           _timings(run_dir), Path(run_dir))
        summary = _summary_of(report_dir)
        with _database() as engine:
            runs.finish_run(engine, _manifest(run_dir)["billing_run_id"], "failed",
                            summary.get("counts", {}), summary.get("totals", {}), message)
    except Exception:  # a callback must never hide the task's own error
        log.exception("could not record the failed billing run")


# -- the DAG ---------------------------------------------------------------------------------


@dag(
    dag_id=DAG_ID,
    description="Nightly package billing: charges, free-minute grants, simulation or posting.",
    schedule=CronTriggerTimetable(SCHEDULE, timezone=BILLING_TZ),
    start_date=pendulum.parse(START_DATE, tz=BILLING_TZ),
    catchup=True,
    max_active_runs=1,
    default_args={"owner": "billing", "retries": 0, "on_failure_callback": record_failure},
    params={
        "run_date": Param(
            None, type=["null", "string"], format="date", pattern=r"^\d{4}-\d{2}-\d{2}$",
            title="Billing date",
            description="YYYY-MM-DD. Empty: the run's logical date in the billing time zone "
                        "(for a manual run without one: the day it was triggered).",
        ),
        "simulate": Param(
            SIMULATE_DEFAULT, type="boolean", title="Simulate",
            description="true: write the report only. false: post to the ledger (exactly once).",
        ),
        "customer_ids": Param(
            None, type=["null", "array"], items={"type": "string", "minLength": 1}, minItems=1,
            title="Customers",
            description="Only these customer ids. Empty: all customers.",
        ),
        "strict": Param(
            False, type="boolean", title="Strict",
            description="Fail before posting when any input row is rejected.",
        ),
    },
    tags=["billing"],
    doc_md=__doc__,
)
def package_billing():

    @task(**DB_TASK_ARGS)
    def extract() -> list[str]:
        from billing_jobs import pipeline, snapshots
        from billing_jobs.store import runs, upgrade

        context = get_current_context()
        params = context["params"]
        run_dir = run_dir_of(context)
        work = _work(run_dir)
        work.mkdir(parents=True, exist_ok=True)
        req = pipeline.RunRequest(
            run_date=run_date_of(context), simulate=bool(params["simulate"]),
            customer_ids=params.get("customer_ids") or None, strict=bool(params.get("strict")),
            out_dir=run_dir, started_by=f"airflow:{DAG_ID}/{context['run_id']}", tz=billing_tz())
        timings = pipeline.Timings()
        manifest_path = work / MANIFEST
        with _database() as engine:
            upgrade(engine)
            if manifest_path.exists():  # a retry or a cleared run: one run record per Airflow run
                manifest = json.loads(manifest_path.read_text())
            else:
                manifest = {
                    "billing_run_id": runs.start_run(engine, req.run_date, req.mode,
                                                     req.customer_ids, req.started_by),
                    "started_at": datetime.now(timezone.utc).isoformat(),
                    "airflow_dag_id": DAG_ID, "airflow_run_id": context["run_id"],
                }
            manifest.update(run_date=req.run_date.isoformat(), simulate=req.simulate,
                            customer_ids=req.customer_ids, strict=req.strict, tz=req.tz,
                            started_by=req.started_by)
            manifest_path.write_text(json.dumps(manifest, indent=1))
            inputs, rejected = pipeline.load_stage(engine, req, timings)
        snapshots.save_inputs(inputs, rejected, work / "inputs")
        n_shards = max(1, int(os.environ.get("BILLING_SHARDS", "4")))
        shards = [s for s in snapshots.shard_customers(inputs.customers["customer_id"], n_shards)
                  if s] or [[]]
        shard_files = []
        for i, customer_ids in enumerate(shards):
            path = work / "shards" / f"shard-{i}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"index": i, "customer_ids": customer_ids}))
            shard_files.append(str(path))
        _save_timings(run_dir, "extract", timings)
        return shard_files  # one mapped compute task per shard file

    @task(map_index_template="{{ shard_label }}")
    def compute(shard: str) -> str:
        from billing_jobs import pipeline, snapshots

        spec = json.loads(Path(shard).read_text())
        get_current_context()["shard_label"] = (
            f"shard {spec['index']} ({len(spec['customer_ids'])} customers)")
        run_dir = _run_dir_of_path(shard)
        timings = pipeline.Timings()
        with timings.stage("compute"):
            inputs, _ = snapshots.load_inputs(_work(run_dir) / "inputs")
            result = pipeline.compute_stage(
                snapshots.filter_inputs(inputs, spec["customer_ids"]), _request(run_dir))
            out = snapshots.save_result(result, _work(run_dir) / "computed" / f"shard-{spec['index']}")
        _save_timings(run_dir, "compute", timings)
        return str(out)

    @task
    def gate(shard_results: list[str]) -> str:
        from billing_jobs import pipeline, snapshots

        shard_results = list(shard_results)
        run_dir = _run_dir_of_path(shard_results[0])
        timings = pipeline.Timings()
        with timings.stage("gate"):
            result = snapshots.concat_results([snapshots.load_result(p) for p in shard_results])
            inputs, _ = snapshots.load_inputs(_work(run_dir) / "inputs")
            pipeline.gate_stage(result, inputs)
            out = snapshots.save_result(result, _work(run_dir) / "gated")
        _save_timings(run_dir, "gate", timings)
        return str(out)

    @task(pool=POOL, pool_slots=1, **DB_TASK_ARGS)
    def settle(gated: str) -> str:
        from billing_jobs import pipeline, snapshots

        run_dir = _run_dir_of_path(gated)
        req = _request(run_dir)
        timings = pipeline.Timings()
        with timings.stage(req.mode), _database() as engine:
            result = pipeline.settle_stage(engine, snapshots.load_result(gated), req,
                                           _manifest(run_dir)["billing_run_id"])
            out = snapshots.save_result(result, _work(run_dir) / "settled")
        _save_timings(run_dir, "settle", timings)
        return str(out)

    @task(**DB_TASK_ARGS)
    def report(settled: str) -> str:
        from billing_jobs import pipeline, snapshots
        from billing_jobs.store import runs

        run_dir = _run_dir_of_path(settled)
        req = _request(run_dir)
        _, rejected = snapshots.load_inputs(_work(run_dir) / "inputs")
        timings = pipeline.Timings(_timings(run_dir))
        timings["total_before_report"] = round(sum(timings.values()), 4)
        with _database() as engine:
            unposted = ([] if req.simulate
                        else [d.isoformat() for d in runs.unposted_dates(engine, req.run_date)])
            with timings.stage("report"):
                report_dir = pipeline.report_stage(
                    req, snapshots.load_result(settled), rejected,
                    _run_info(run_dir, req, "succeeded", "", unposted), timings, Path(run_dir))
            summary = _summary_of(report_dir)
            runs.finish_run(engine, _manifest(run_dir)["billing_run_id"], "succeeded",
                            summary.get("counts", {}), summary.get("totals", {}), "")
        return str(report_dir)

    shards = extract()
    computed = compute.expand(shard=shards)
    report(settle(gate(computed)))


package_billing_dag = package_billing()
