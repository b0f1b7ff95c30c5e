"""The Airflow DAG `package_billing` (dags/package_billing.py), on a real Airflow 3 in-process.

One Airflow home per module (a SQLite metadata DB made by `airflow db migrate` in a
subprocess); every run is a real `dag.test()` run: the scheduler's dependency logic, dynamic
task mapping, XCom, params, retries and failure callbacks, tasks executed in this process
(so a test can swap a pipeline stage for a failing one). The billing database is the `db_url`
fixture's: SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import sqlalchemy as sa

from billing_jobs.staged.stages import run_folder

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "package_billing.py"
D = date(2027, 1, 31)
CSVS = ("charges.csv", "grants.csv", "utilisation.csv", "rejected.csv")
_seconds = itertools.count(1)  # distinct logical dates, so every dag.test() is its own run


# -- fixtures --------------------------------------------------------------------------------


def _load_dag_module(name: str = "package_billing_dag_under_test"):
    spec = importlib.util.spec_from_file_location(name, DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dag_module(tmp_path_factory):
    """The DAG module, imported under a fresh, migrated AIRFLOW_HOME (once per module)."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "BILLING_DB_RETRY_DELAY_S": "0.1",  # retried settle: no need to wait in a test
        "BILLING_SHARDS": "3",
        "BILLING_SHARD_MIN_ASSIGNMENTS": "0",  # shard even this small sample
    }
    if "airflow.settings" in sys.modules:
        from airflow.configuration import AIRFLOW_HOME

        if AIRFLOW_HOME != str(home):
            pytest.fail(f"Airflow was imported earlier in this session with AIRFLOW_HOME="
                        f"{AIRFLOW_HOME}; these tests need their own", pytrace=False)
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    airflow_bin = Path(sys.executable).with_name("airflow")
    done = subprocess.run([str(airflow_bin), "db", "migrate"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
                    pytrace=False)
    module = _load_dag_module()
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("billing_posting", 1, "package billing posting", False)
    yield module
    mp.undo()


@pytest.fixture
def dag(dag_module):
    return dag_module.package_billing_dag


def _billing_env(monkeypatch, tmp_path, url):
    from billing_jobs.store.db import make_engine, upgrade

    monkeypatch.setenv("BILLING_DB_URL", url)
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("BILLING_TZ", "UTC")
    engine = make_engine(url)
    upgrade(engine)
    return SimpleNamespace(url=url, engine=engine, reports=tmp_path / "reports", tmp=tmp_path)


@pytest.fixture
def billing_env(monkeypatch, tmp_path, db_url):
    """BILLING_DB_URL / BILLING_REPORT_DIR for the DAG's tasks (SQLite and PostgreSQL)."""
    env = _billing_env(monkeypatch, tmp_path, db_url)
    yield env
    env.engine.dispose()


@pytest.fixture
def sqlite_env(monkeypatch, tmp_path):
    """The same on SQLite only, for behaviour that does not depend on the database."""
    env = _billing_env(monkeypatch, tmp_path, f"sqlite:///{tmp_path / 'billing.db'}")
    yield env
    env.engine.dispose()


def _seed(env) -> None:
    from billing_jobs.demo.sample_data import generate, write_csv
    from billing_jobs.ingest.importer import import_csv

    frames = generate(customers=12, assignments=60, calls=400, seed=3, as_of=D)
    paths = write_csv(frames, env.tmp / "csv")
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(env.engine, entity, paths[entity])


@pytest.fixture
def seeded(billing_env):
    _seed(billing_env)
    return billing_env


# -- helpers ---------------------------------------------------------------------------------


def _run(day: date | None, conf: dict):
    """One dag.test() run at `day` 02:30 UTC (+ a few seconds, so each run is new).

    Each run gets a freshly parsed DAG, as a real worker would: in-process, Airflow resolves
    a run's conf into the DAG's own Param objects, which would leak into the next run's
    defaults.
    """
    dag = _load_dag_module().package_billing_dag
    # the scenario's dates (2027) lie after the machine's today: posting them is allowed here
    conf = {"allow_future": True, **conf}
    logical = (None if day is None else
               datetime(day.year, day.month, day.day, 2, 30, tzinfo=timezone.utc)
               + timedelta(seconds=next(_seconds)))
    dr = dag.test(logical_date=logical, run_conf=conf)
    states = {(ti.task_id, ti.map_index): (ti.state, ti.try_number)
              for ti in dr.get_task_instances()}
    return dr, states


def _folder(dag_module, run_date: date, dr) -> Path:
    return run_folder(run_date, dr.run_id)


def _csv(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, dtype=str, keep_default_na=False)


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def _run_record(engine, billing_run_id: str) -> dict:
    from billing_jobs.store import runs

    return runs.get_run(engine, billing_run_id)


def _assert_succeeded(dr, states):
    assert str(dr.state) == "success", states
    assert {k[0] for k in states} == {"extract", "compute", "gate", "settle", "report"}
    assert all(str(s) == "success" for s, _ in states.values()), states


def _cli_report(env, day: date, out: str, **kw) -> Path:
    from billing_jobs.run.local import run_billing
    from billing_jobs.run.request import RunRequest

    outcome = run_billing(env.engine, RunRequest(run_date=day, out_dir=env.tmp / out, **kw))
    assert outcome.ok, outcome.message
    return Path(outcome.report_dir)


# -- the DAG file ----------------------------------------------------------------------------


def test_dag_folder_imports_without_errors(dag_module):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE.parent))
    assert bag.import_errors == {}
    assert "package_billing" in bag.dags


def test_structure(dag):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert dag.dag_id == "package_billing"
    assert set(dag.task_dict) == {"extract", "compute", "gate", "settle", "report"}
    assert isinstance(dag.get_task("compute"), MappedOperator)
    order = {t: {d.task_id for d in dag.get_task(t).downstream_list} for t in dag.task_dict}
    assert order == {"extract": {"compute"}, "compute": {"gate"}, "gate": {"settle"},
                     "settle": {"report"}, "report": set()}
    settle = dag.get_task("settle")
    assert settle.pool == "billing_posting" and settle.pool_slots == 1
    assert settle.retries >= 1 and settle.retry_exponential_backoff == 2.0
    assert settle.retry_policy is not None
    assert dag.get_task("gate").retries == 0  # a gate failure is not retried
    assert dag.catchup is True and dag.max_active_runs == 1
    assert dag.timetable.expression == "30 2 * * *"
    assert str(dag.timetable.timezone) in ("UTC", "Timezone('UTC')")
    assert {k: dag.params[k] for k in dag.params} == {
        "run_date": None, "simulate": True, "customer_ids": None, "strict": False,
        "allow_future": False}
    assert all(t.on_failure_callback for t in dag.tasks)


def test_schedule_and_time_zone_come_from_the_environment(dag_module, monkeypatch):
    monkeypatch.setenv("BILLING_SCHEDULE", "15 4 * * *")
    monkeypatch.setenv("BILLING_TZ", "Europe/Paris")
    monkeypatch.setenv("BILLING_SIMULATE_DEFAULT", "false")
    other = _load_dag_module("package_billing_dag_env").package_billing_dag
    assert other.timetable.expression == "15 4 * * *"
    assert "Europe/Paris" in str(other.timetable.timezone)
    assert other.params["simulate"] is False
    assert other.start_date.tzinfo is not None


@pytest.mark.parametrize("name, value", [
    ("run_date", "2027-02-30"), ("run_date", "31/01/2027"), ("run_date", "2027-1-31"),
    ("run_date", 20270131), ("simulate", "no"), ("customer_ids", []), ("customer_ids", [7]),
    ("customer_ids", "C1"), ("strict", None),
])
def test_params_reject_bad_values(dag, name, value):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        copy.copy(dag.params.get_param(name)).resolve(value)


@pytest.mark.parametrize("name, value", [
    ("run_date", "2027-01-31"), ("run_date", None), ("simulate", False),
    ("customer_ids", ["C1", "C2"]), ("customer_ids", None),
])
def test_params_accept_good_values(dag, name, value):
    assert copy.copy(dag.params.get_param(name)).resolve(value) == value


def test_a_run_with_a_bad_param_never_starts(dag_module, tmp_path, monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path))
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _run(D, {"run_date": "2027-02-30"})
    assert not (tmp_path / "airflow").exists()


@pytest.mark.parametrize("tz, logical, run_after, param, expected", [
    ("UTC", "2027-01-31T02:30:00+00:00", "2027-01-31T02:30:00+00:00", None, "2027-01-31"),
    # the logical date's calendar date in the billing time zone
    ("Pacific/Auckland", "2027-01-30T13:30:00+00:00", "2027-01-30T13:30:00+00:00", None,
     "2027-01-31"),
    ("America/New_York", "2027-02-01T03:00:00+00:00", "2027-02-01T03:00:00+00:00", None,
     "2027-01-31"),
    # a manual run without logical date: the day it was triggered
    ("UTC", None, "2027-03-05T23:59:00+00:00", None, "2027-03-05"),
    ("Asia/Tokyo", None, "2027-03-05T23:59:00+00:00", None, "2027-03-06"),
    # the param wins
    ("UTC", "2027-01-31T02:30:00+00:00", "2027-01-31T02:30:00+00:00", "2026-12-25", "2026-12-25"),
])
def test_billing_date_of_a_run(dag_module, monkeypatch, tz, logical, run_after, param, expected):
    monkeypatch.setenv("BILLING_TZ", tz)
    context = {"params": {"run_date": param},
               "dag_run": SimpleNamespace(run_after=datetime.fromisoformat(run_after))}
    if logical is not None:
        context["logical_date"] = datetime.fromisoformat(logical)
    assert dag_module.run_date_of(context) == date.fromisoformat(expected)


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_nightly_runs_simulate_post_and_repost(dag_module, seeded):
    env = seeded

    # 1. a scheduled-like run: params by default (simulate), date from the logical date
    dr, states = _run(D, {})
    _assert_succeeded(dr, states)
    assert len([k for k in states if k[0] == "compute"]) == 3  # one mapped task per shard
    sim = _folder(dag_module, D, dr)
    summary = _summary(sim)
    assert summary["mode"] == "simulate" and summary["status"] == "succeeded"
    assert summary["run_date"] == D.isoformat()
    charges = _csv(sim, "charges.csv")
    assert len(charges) > 5 and set(charges["status"]) == {"simulated"}
    assert len(set(charges["customer_id"])) > 3
    record = _run_record(env.engine, summary["run_id"])
    assert record["status"] == "succeeded" and record["mode"] == "simulate"
    assert record["started_by"].startswith("airflow:package_billing/")
    assert _count(env.engine, "ledger") == 0

    # 2. the same report as the command line's path for the same date, byte for byte
    cli = _cli_report(env, D, "cli-sim", simulate=True)
    for name in CSVS:
        assert (sim / name).read_bytes() == (cli / name).read_bytes(), name

    # 3. one customer only: the same as the command line's `--customer`
    one = sorted(set(charges["customer_id"]))[1]
    dr, states = _run(D, {"customer_ids": [one]})
    _assert_succeeded(dr, states)
    only = _folder(dag_module, D, dr)
    assert set(_csv(only, "charges.csv")["customer_id"]) == {one}
    cli_one = _cli_report(env, D, "cli-one", simulate=True, customer_ids=[one])
    for name in CSVS:
        assert (only / name).read_bytes() == (cli_one / name).read_bytes(), name

    # 4. post: exactly the simulated lines, now posted or invoiced
    dr, states = _run(D, {"simulate": False})
    _assert_succeeded(dr, states)
    post = _folder(dag_module, D, dr)
    posted = _csv(post, "charges.csv")
    pd.testing.assert_frame_equal(posted.drop(columns="status"), charges.drop(columns="status"))
    expected = posted["auto_decrement"].map({"true": "posted", "false": "invoiced",
                                             "True": "posted", "False": "invoiced"})
    assert (posted["status"] == expected).all()
    ledger, grants = _count(env.engine, "ledger"), _count(env.engine, "grants")
    assert ledger == len(posted)
    assert grants == len(_csv(post, "grants.csv"))
    assert _summary(post)["mode"] == "post"

    # 5. posting the same date again (another run) posts nothing
    dr, states = _run(D, {"simulate": False})
    _assert_succeeded(dr, states)
    again = _csv(_folder(dag_module, D, dr), "charges.csv")
    assert len(again) == len(posted) and set(again["status"]) == {"already_posted"}
    assert _count(env.engine, "ledger") == ledger and _count(env.engine, "grants") == grants

    # 6. the next night, chosen by the run_date param; then a missed night is named
    d1, d3 = D + timedelta(days=1), D + timedelta(days=3)
    dr, states = _run(D, {"simulate": False, "run_date": d1.isoformat()})
    _assert_succeeded(dr, states)
    night1 = _folder(dag_module, d1, dr)
    assert _summary(night1)["run_date"] == d1.isoformat()
    assert _summary(night1)["run"]["unposted_dates"] == []
    assert _count(env.engine, "ledger") == ledger + len(_csv(night1, "charges.csv"))
    dr, states = _run(d3, {"simulate": False})
    _assert_succeeded(dr, states)
    assert _summary(_folder(dag_module, d3, dr))["run"]["unposted_dates"] == [
        (D + timedelta(days=2)).isoformat()]
    with env.engine.connect() as conn:
        dates = conn.execute(sa.text(
            "SELECT DISTINCT run_date FROM ledger ORDER BY run_date")).scalars().all()
    assert [str(d)[:10] for d in dates][:2] == [D.isoformat(), d1.isoformat()]


@pytest.mark.slow
def test_settle_retried_after_a_database_error_posts_once(dag_module, seeded, monkeypatch):
    """The worst case: the first attempt committed, then the connection died. The retry
    (exponential back-off, database errors only) posts nothing twice."""
    from billing_jobs.run import stages as run_stages
    from billing_jobs.core.errors import DatabaseError

    env = seeded
    with env.engine.connect() as conn:
        before = dict(conn.execute(sa.text("SELECT customer_id, balance_micros FROM customers")).all())
    real, calls = run_stages.settle_stage, []

    def flaky(engine, result, req, run_id):
        calls.append(req.mode)
        out = real(engine, result, req, run_id)
        if len(calls) == 1:
            raise DatabaseError("posting failed: server closed the connection (test)")
        return out

    monkeypatch.setattr(run_stages, "settle_stage", flaky)
    dr, states = _run(D, {"simulate": False})
    _assert_succeeded(dr, states)
    assert states[("settle", -1)][1] == 2 and calls == ["post", "post"]
    charges = _csv(_folder(dag_module, D, dr), "charges.csv")
    assert _count(env.engine, "ledger") == len(charges) > 0
    with env.engine.connect() as conn:
        after = dict(conn.execute(sa.text("SELECT customer_id, balance_micros FROM customers")).all())
        debits = dict(conn.execute(sa.text(
            "SELECT customer_id, sum(amount_micros) FROM ledger WHERE status = 'posted' "
            "GROUP BY customer_id")).all())
    for customer_id, balance in before.items():
        assert after[customer_id] == balance - int(debits.get(customer_id, 0)), (
            f"{customer_id}: balance debited {balance - after[customer_id]} micros for "
            f"{int(debits.get(customer_id, 0))} of posted lines (a retried settle debited twice)")
    assert set(charges["status"]) == {"already_posted"}  # the retry found them all posted


@pytest.mark.slow
def test_a_failed_task_marks_the_run_failed(dag_module, sqlite_env, monkeypatch):
    from billing_jobs.run import stages as run_stages

    billing_env = sqlite_env
    _seed(billing_env)

    def broken(*args, **kwargs):
        raise RuntimeError("settle exploded (test)")

    monkeypatch.setattr(run_stages, "settle_stage", broken)
    dr, states = _run(D, {"simulate": False})
    assert str(dr.state) == "failed"
    assert str(states[("settle", -1)][0]) == "failed"
    assert states[("settle", -1)][1] == 1  # not a database error: no retry
    assert str(states[("report", -1)][0]) == "upstream_failed"
    folder = _folder(dag_module, D, dr)
    summary = _summary(folder)
    assert summary["status"] == "failed" and "settle exploded" in summary["message"]
    charges = _csv(folder, "charges.csv")  # what would have been posted, marked not posted
    assert len(charges) > 0 and set(charges["status"]) == {"not_posted"}
    record = _run_record(billing_env.engine, summary["run_id"])
    assert record["status"] == "failed" and "settle exploded" in record["message"]
    assert _count(billing_env.engine, "ledger") == 0


@pytest.mark.slow
def test_a_post_failing_after_it_wrote_says_what_it_posted(dag_module, sqlite_env, monkeypatch):
    """settle wrote the ledger, then failed for good (not a database error): the failed run's
    report and record say what the database holds for the run (the same lifecycle as the
    command line, run_lifecycle.close_attempt), never 'not_posted' for a posted line."""
    from billing_jobs.run import stages as run_stages

    billing_env = sqlite_env
    _seed(billing_env)
    real = run_stages.settle_stage

    def wrote_then_failed(engine, result, req, run_id):
        real(engine, result, req, run_id)
        raise RuntimeError("settle exploded after posting (test)")

    monkeypatch.setattr(run_stages, "settle_stage", wrote_then_failed)
    dr, states = _run(D, {"simulate": False})
    assert str(dr.state) == "failed"
    folder = _folder(dag_module, D, dr)
    summary = _summary(folder)
    assert summary["status"] == "failed" and "settle exploded" in summary["message"]
    charges = _csv(folder, "charges.csv")
    assert len(charges) == _count(billing_env.engine, "ledger") > 0
    assert set(charges["status"]) <= {"posted", "invoiced"}
    record = _run_record(billing_env.engine, summary["run_id"])
    assert record["status"] == "failed"
    assert record["counts"]["lines"] == len(charges)


@pytest.mark.slow
def test_manual_run_without_logical_date_bills_the_trigger_day(dag_module, sqlite_env):
    dr, states = _run(None, {})
    _assert_succeeded(dr, states)
    day = dr.run_after.astimezone(timezone.utc).date()
    summary = _summary(_folder(dag_module, day, dr))
    assert summary["run_date"] == day.isoformat() and summary["mode"] == "simulate"


@pytest.mark.slow
def test_an_airflow_connection_billing_db_wins_over_the_environment(dag_module, billing_env,
                                                                     monkeypatch):
    url = sa.make_url(billing_env.url)
    if url.get_backend_name() == "postgresql":
        conn = {"conn_type": "postgres", "host": url.host, "port": url.port, "login": url.username,
                "password": url.password, "schema": url.database}
    else:
        conn = {"conn_type": "generic", "extra": {"sqlalchemy_url": billing_env.url}}
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_DB", json.dumps(conn))
    monkeypatch.setenv("BILLING_DB_URL", f"sqlite:///{billing_env.tmp}/no/such/dir/billing.db")
    dr, states = _run(D, {})
    _assert_succeeded(dr, states)
    summary = _summary(_folder(dag_module, D, dr))
    assert _run_record(billing_env.engine, summary["run_id"])["status"] == "succeeded"
