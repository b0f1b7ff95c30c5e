"""package_billing: the nightly package billing run (SPEC §5, §8), on Airflow 3.

Wiring only: every task calls one stage of ``billing_jobs.staged.stages``, which runs the matching
stage of ``billing_jobs.run.stages`` (the same functions the ``billing-jobs`` command line runs)
and hands the dataframes to the next task as Parquet folders (``billing_jobs.staged.handoff``);
XCom carries folder paths, never dataframes.

    extract ──> compute[shard 0..n-1] ──> gate ──> settle (pool billing_posting) ──> report

* ``extract``  starts the run record, ``run.stages.load_stage`` (load + validate), writes the
  input snapshot and splits the customers into ``$BILLING_SHARDS`` (default 4) shards.
* ``compute``  one mapped task per shard: ``run.stages.compute_stage`` on that shard's customers.
* ``gate``     concatenates the shard results, ``run.stages.gate_stage`` on the whole run.
* ``settle``   ``run.stages.settle_stage``: simulate, or post exactly once. In the 1-slot pool
  ``billing_posting``; retried with exponential back-off on database errors only.
* ``report``   ``run.lifecycle.close_attempt``: the report into the run folder, then the run record closed.

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

import logging
from datetime import date, timedelta
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

from billing_jobs.core import settings  # light: stdlib only until a task runs

from billing_jobs.staged import stages as staged_run

DAG_ID = "package_billing"
POOL = "billing_posting"
BILLING_DB_CONN_ID = "billing_db"
SCHEDULE = settings.schedule()
BILLING_TZ = settings.tz_or_default()
START_DATE = settings.start_date()
DB_RETRIES = settings.db_retries()
DB_RETRY_DELAY_S = settings.db_retry_delay_s()
# Scheduled runs take the params' defaults: production sets BILLING_SIMULATE_DEFAULT=false so
# that the nightly run posts; a manual run can always choose.
SIMULATE_DEFAULT = settings.simulate_default()

# Database trouble (cannot connect, lock timeout, server gone) is worth retrying; anything
# else (gate, strict rejection, a bug) fails at once: a retry would fail the same way.
DB_RETRY = ExceptionRetryPolicy(
    rules=[RetryRule(
        exception=["billing_jobs.core.errors.DatabaseError", "sqlalchemy.exc.OperationalError",
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


# -- from the Airflow context to plain values (no billing rules here) ------------------------


def billing_tz() -> str:
    tz = settings.tz()
    return BILLING_TZ if tz is None else tz


def billing_db_url() -> str | None:
    """The Airflow connection ``billing_db`` if defined, else $BILLING_DB_URL (else the default)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(BILLING_DB_CONN_ID)
    except AirflowNotFoundException:
        conn = None
    if conn is None:
        return settings.db_url()
    return staged_run.connection_db_url(
        conn.conn_type, host=conn.host, port=conn.port, login=conn.login,
        password=conn.password, schema=conn.schema, extra=conn.extra_dejson) or conn.get_uri()


def run_date_of(context) -> date:
    """The billing date: ``run_date`` param, else the logical date's calendar date in the billing
    time zone, else (a manual run without logical date) the date the run was triggered."""
    chosen = context["params"].get("run_date")
    when = None if chosen else context.get("logical_date") or context["dag_run"].run_after
    return staged_run.billing_date(chosen, when, billing_tz())


def attempt_of(context) -> int:
    """0 for a run's first attempt, n after its n-th clear or reprocess (Airflow counts them in
    the run's ``clear_number``; task retries within an attempt do not count)."""
    return int(getattr(context["dag_run"], "clear_number", 0) or 0)


def run_dir_of(context) -> Path:
    """The report folder of this attempt of the run (a clear or reprocess gets a new one)."""
    return staged_run.run_folder(run_date_of(context), context["run_id"], attempt_of(context))


def record_failure(context) -> None:
    """on_failure_callback: the run record (and the run folder's report) say ``failed``."""
    try:
        ti, exc = context["ti"], context.get("exception")
        message = f"{ti.task_id}: {exc}" if exc else f"{ti.task_id} failed"
        staged_run.record_failure(billing_db_url(), run_dir_of(context), message)
    except Exception:  # a callback must never hide the task's own error
        logging.getLogger(__name__).exception("could not record the failed billing run")


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
        "allow_future": Param(
            False, type="boolean", title="Allow a future date",
            description="Post a billing date after today (prepaid in advance). Without it a "
                        "post of a future date fails before anything is written.",
        ),
    },
    tags=["billing"],
    doc_md=__doc__,
)
def package_billing():

    @task(**DB_TASK_ARGS)
    def extract() -> list[str]:
        context = get_current_context()
        params, run_id, run_dir = context["params"], context["run_id"], run_dir_of(context)
        req = staged_run.new_request(
            run_date_of(context), run_dir, simulate=params["simulate"],
            customer_ids=params.get("customer_ids"), strict=params.get("strict"),
            started_by=f"airflow:{DAG_ID}/{run_id}", tz=billing_tz(),
            allow_future=params.get("allow_future", False))
        return staged_run.extract(billing_db_url(), req, run_dir,  # one compute task per shard
                                  airflow_dag_id=DAG_ID, airflow_run_id=run_id,
                                  attempt=attempt_of(context))

    @task(map_index_template="{{ shard_label }}")
    def compute(shard: str) -> str:
        get_current_context()["shard_label"] = staged_run.shard_label(shard)
        return staged_run.compute_shard(shard)

    @task
    def gate(shard_results: list[str]) -> str:
        # one slice read: iterating the lazy sequence probes one index past its end, and the
        # API logs that miss as "XCom not found ... offset=N"
        return staged_run.gate(shard_results[:])

    @task(pool=POOL, pool_slots=1, **DB_TASK_ARGS)
    def settle(gated: str) -> str:
        return staged_run.settle(billing_db_url(), gated, run_dir_of(get_current_context()))

    @task(**DB_TASK_ARGS)
    def report(settled: str) -> str:
        return staged_run.report(billing_db_url(), settled, run_dir_of(get_current_context()))

    shards = extract()
    computed = compute.expand(shard=shards)
    report(settle(gate(computed)))


package_billing_dag = package_billing()
