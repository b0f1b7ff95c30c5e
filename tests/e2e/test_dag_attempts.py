"""Honest records of the DAG's runs (billing_jobs.staged.stages, the code every task runs).

Each stage is called as its task calls it, on the `db_url` fixture's SQLite and PostgreSQL:
a reprocessed or cleared run is a new attempt with its own run record (its true mode) and its
own report folder, earlier reports kept; a post that runs while another run is posting an
earlier night names that night as being posted, not as never posted; and the hand-offs go
through S3-compatible object storage (moto's server on loopback) when configured.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from billing_jobs.core.errors import UsageError
from billing_jobs.staged import stages as staged_run
from billing_jobs.run.local import run_billing
from billing_jobs.run.request import RunRequest

D = date(2027, 1, 31)
RUN_ID = "backfill__2027-01-31T02:30:00+00:00"


@pytest.fixture
def env(monkeypatch, tmp_path, db_url):
    from billing_jobs.demo.sample_data import generate, write_csv
    from billing_jobs.ingest.importer import import_csv
    from billing_jobs.store.db import make_engine, upgrade

    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("BILLING_SHARDS", "3")
    monkeypatch.setenv("BILLING_SHARD_MIN_ASSIGNMENTS", "0")
    monkeypatch.delenv("BILLING_HANDOFF_URL", raising=False)
    engine = make_engine(db_url)
    upgrade(engine)
    frames = generate(customers=12, assignments=60, calls=400, seed=3, as_of=D)
    paths = write_csv(frames, tmp_path / "csv")
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, paths[entity])
    yield type("Env", (), {"url": db_url, "engine": engine, "tmp": tmp_path})
    engine.dispose()


def _start(env, day: date, run_id: str, *, simulate: bool, attempt: int = 0):
    run_dir = staged_run.run_folder(day, run_id, attempt)
    req = staged_run.new_request(day, run_dir, simulate=simulate, customer_ids=None,
                                 strict=False, started_by=f"airflow:package_billing/{run_id}",
                                 tz="UTC", allow_future=True)  # D lies after today
    shards = staged_run.extract(env.url, req, run_dir, airflow_dag_id="package_billing",
                                airflow_run_id=run_id, attempt=attempt)
    return run_dir, staged_run.gate([staged_run.compute_shard(s) for s in shards])


def _run(env, day: date, run_id: str, *, simulate: bool, attempt: int = 0) -> Path:
    run_dir, gated = _start(env, day, run_id, simulate=simulate, attempt=attempt)
    settled = staged_run.settle(env.url, gated, run_dir)
    return Path(staged_run.report(env.url, settled, run_dir))


def _records(env) -> list[dict]:
    with env.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT run_id, run_date, mode, status, started_by FROM runs ORDER BY started_at"))
        return [dict(r._mapping) for r in rows]


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _charges(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "charges.csv", dtype=str, keep_default_na=False)


def test_reprocessing_a_simulated_night_as_a_post_records_a_post(env):
    """`airflow backfill create ... --dag-run-conf '{"simulate": false}' --reprocess-behavior
    completed` clears the simulated run (clear_number 1) and runs it again with the new conf."""
    first = _run(env, D, RUN_ID, simulate=True)
    again = _run(env, D, RUN_ID, simulate=False, attempt=1)
    assert first != again and first.is_dir() and again.is_dir()
    assert again.name == first.name + ".attempt-2"
    assert _summary(first)["run"]["mode"] == "simulate"  # the first report is kept as it was
    assert set(_charges(first)["status"]) == {"simulated"}
    assert _summary(again)["run"]["mode"] == "post"
    assert set(_charges(again)["status"]) <= {"posted", "invoiced"}
    recs = _records(env)
    assert [(r["mode"], r["status"]) for r in recs] == [("simulate", "succeeded"),
                                                        ("post", "succeeded")]
    assert _summary(again)["run"]["run_id"] == recs[1]["run_id"]
    assert _summary(again)["run"]["airflow_attempt"] == 2
    # the next night's post does not name the reprocessed night as never posted
    nxt = _run(env, D + timedelta(days=1), "scheduled__next", simulate=False)
    assert _summary(nxt)["run"]["unposted_dates"] == []


def test_reprocessing_a_post_keeps_the_first_posting_report(env):
    first = _run(env, D, RUN_ID, simulate=False)
    again = _run(env, D, RUN_ID, simulate=False, attempt=1)
    assert set(_charges(first)["status"]) <= {"posted", "invoiced"}
    assert set(_charges(again)["status"]) == {"already_posted"}
    assert _charges(first)["amount"].tolist() == _charges(again)["amount"].tolist()
    assert [r["mode"] for r in _records(env)] == ["post", "post"]
    assert _summary(first)["counts"] != _summary(again)["counts"]


def test_clearing_only_settle_and_report_is_a_new_attempt(env):
    run_dir, gated = _start(env, D, RUN_ID, simulate=False)
    first = Path(staged_run.report(env.url, staged_run.settle(env.url, gated, run_dir), run_dir))
    # the user clears `settle` (and downstream): extract does not run again
    run_dir2 = staged_run.run_folder(D, RUN_ID, 1)
    again = Path(staged_run.report(env.url, staged_run.settle(env.url, gated, run_dir2),
                                   run_dir2))
    assert again == run_dir2 and first == run_dir
    assert set(_charges(first)["status"]) <= {"posted", "invoiced"}
    assert set(_charges(again)["status"]) == {"already_posted"}
    recs = _records(env)
    assert len(recs) == 2 and {r["status"] for r in recs} == {"succeeded"}
    assert _summary(again)["run"]["run_id"] == recs[1]["run_id"] != recs[0]["run_id"]


def test_a_retried_extract_keeps_its_attempt_record(env):
    run_dir = staged_run.run_folder(D, RUN_ID)
    req = staged_run.new_request(D, run_dir, simulate=True, customer_ids=None, strict=False,
                                 started_by="airflow:x", tz="UTC")
    for _ in range(2):
        staged_run.extract(env.url, req, run_dir, airflow_dag_id="d", airflow_run_id=RUN_ID)
    assert len(_records(env)) == 1


def test_a_night_being_posted_by_another_run_is_not_named_never_posted(env):
    """A backfill posts night D while a manual post of D+1 runs: the manual one's settle (in
    the posting slot) sees D's run record open, and names D as being posted."""
    _run(env, D - timedelta(days=1), "scheduled__first", simulate=False)
    backfill_dir, backfill_gated = _start(env, D, RUN_ID, simulate=False)  # not settled yet
    manual = _run(env, D + timedelta(days=1), "manual__1", simulate=False)
    run = _summary(manual)["run"]
    assert run["unposted_dates"] == []
    assert run["posting_now_dates"] == [D.isoformat()]
    staged_run.report(env.url, staged_run.settle(env.url, backfill_gated, backfill_dir),
                      backfill_dir)
    later = _run(env, D + timedelta(days=2), "manual__2", simulate=False)
    assert _summary(later)["run"]["unposted_dates"] == []
    assert _summary(later)["run"]["posting_now_dates"] == []
    # a night nobody posts is still named
    _run(env, D + timedelta(days=4), "manual__3", simulate=False)
    assert _summary(staged_run.run_folder(D + timedelta(days=4), "manual__3"))["run"][
        "unposted_dates"] == [(D + timedelta(days=3)).isoformat()]


def test_small_runs_are_not_sharded(env, monkeypatch):
    monkeypatch.setenv("BILLING_SHARD_MIN_ASSIGNMENTS", "1000")
    run_dir = staged_run.run_folder(D, RUN_ID)
    req = staged_run.new_request(D, run_dir, simulate=True, customer_ids=None, strict=False,
                                 started_by="airflow:x", tz="UTC")
    assert len(staged_run.extract(env.url, req, run_dir, airflow_dag_id="d",
                                  airflow_run_id=RUN_ID)) == 1
    monkeypatch.setenv("BILLING_SHARD_MIN_ASSIGNMENTS", "60")
    assert len(staged_run.extract(env.url, req, run_dir, airflow_dag_id="d",
                                  airflow_run_id=RUN_ID)) == 3


# -- hand-offs on S3-compatible storage --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto's S3-compatible server on loopback, with the bucket `handoffs`."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import boto3

    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    deadline = time.monotonic() + 60
    while True:
        try:
            s3.create_bucket(Bucket="handoffs")
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}",
                            pytrace=False)
            time.sleep(0.3)
    yield url, s3
    proc.terminate()
    proc.wait(timeout=30)


def test_hand_offs_on_s3_compatible_storage(env, s3_server, monkeypatch):
    url, s3 = s3_server
    monkeypatch.setenv("BILLING_HANDOFF_URL", "s3://handoffs/billing")
    monkeypatch.setenv("BILLING_HANDOFF_CONN_ID", "billing_handoff")
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_HANDOFF", json.dumps({
        "conn_type": "aws", "login": "test", "password": "test",
        "extra": {"endpoint_url": url, "region_name": "us-east-1"}}))
    folder = _run(env, D, RUN_ID, simulate=True)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="handoffs")["Contents"]]
    prefix = f"billing/airflow/{D.isoformat()}/{folder.name}/snapshots/"
    assert all(k.startswith(prefix) for k in keys)
    for part in ("run.json", "inputs/dtypes.json", "computed/shard-2/dtypes.json",
                 "gated/due_lines.parquet", "settled/dtypes.json", "workers/shard-0.json"):
        assert prefix + part in keys, part
    assert not (folder / "snapshots").exists()  # nothing handed off through the local disk
    cli = run_billing(env.engine, RunRequest(run_date=D, out_dir=env.tmp / "cli"))
    pd.testing.assert_frame_equal(_charges(folder), _charges(cli.report_dir))
    assert _summary(folder)["totals"] == _summary(cli.report_dir)["totals"]


def test_a_future_date_is_not_posted_by_the_airflow_stages(env):
    """A manual DAG run with a mistyped run_date fails before anything is written (#30 item 4);
    the `allow_future` param lets a prepaid-in-advance post through."""
    future = date.today() + timedelta(days=400)
    run_dir = staged_run.run_folder(future, "manual__future")
    req = staged_run.new_request(future, run_dir, simulate=False, customer_ids=None,
                                 strict=False, started_by="airflow:x", tz="UTC")
    with pytest.raises(UsageError, match="after today"):
        staged_run.extract(env.url, req, run_dir, airflow_dag_id="d",
                           airflow_run_id="manual__future")
    engine = sa.create_engine(env.url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM ledger")).scalar() == 0
    engine.dispose()
    simulated = staged_run.new_request(future, run_dir, simulate=True, customer_ids=None,
                                       strict=False, started_by="airflow:x", tz="UTC")
    assert staged_run.extract(env.url, simulated, run_dir, airflow_dag_id="d",
                              airflow_run_id="manual__future")
