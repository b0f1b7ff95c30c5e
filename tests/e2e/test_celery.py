"""The DAG under a real Airflow with CeleryExecutor: scheduler, DAG processor, API server and two
Celery workers, Redis as the broker, Airflow's metadata and the billing data on PostgreSQL.

Everything runs on loopback, started here: `redis-server` (Debian's package; .ci/run installs
it), the session's PostgreSQL server (tests/pg_server.py), and the Airflow components as
subprocesses of this test with one AIRFLOW_HOME. A posting run is triggered with the command
line, as an operator would; the test asserts that it succeeded, that its shards ran on both
workers (each worker has its own BILLING_WORKER_NAME, recorded per shard), and that its charges
equal the command line's. Bounded: every wait has a deadline, every process is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.conftest import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[2]
D = date(2027, 1, 31)
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DEADLINE_S = 360

pytestmark = pytest.mark.timeout(480)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, home: Path):
        self.home = home
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str], env: dict) -> None:
        log = (self.home / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.home, start_new_session=True)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{self.log(name)}",
                            pytrace=False)

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 15)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)


def _wait(what: str, stack: Stack, check, deadline: float, every: float = 1.0):
    while True:
        stack.check_alive()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; scheduler log:\n{stack.log('scheduler')}"
                        f"\nworker-1 log:\n{stack.log('worker-1')}", pytrace=False)
        time.sleep(every)


def _seed(url: str, tmp: Path) -> None:
    from billing_jobs.demo.sample_data import generate, write_csv
    from billing_jobs.ingest.importer import import_csv
    from billing_jobs.store.db import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    frames = generate(customers=16, assignments=80, calls=500, seed=5, as_of=D)
    paths = write_csv(frames, tmp / "csv")
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, paths[entity])
    engine.dispose()


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server missing: apt-get install redis-server (.ci/run does)")
def test_celery_executor_two_workers_bill_like_the_cli(pg_admin_url, tmp_path, monkeypatch):
    from billing_jobs.staged import stages as staged_run
    from billing_jobs.run.local import run_billing
    from billing_jobs.run.request import RunRequest
    from billing_jobs.store.db import make_engine

    deadline = time.monotonic() + DEADLINE_S
    home = tmp_path / "airflow"
    home.mkdir()
    stack = Stack(home)
    billing_url = fresh_postgres_database(pg_admin_url)
    meta = fresh_postgres_database(pg_admin_url).replace("+psycopg://", "+psycopg2://")
    redis_port, api_port = _free_port(), _free_port()
    reports = tmp_path / "reports"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API_AUTH__JWT_SECRET": "test-jwt-secret-" + "x" * 32,
        "AIRFLOW__API__SECRET_KEY": "test-secret",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta.replace("+psycopg2", ""),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "BILLING_DB_URL": billing_url,
        "BILLING_REPORT_DIR": str(reports),
        "BILLING_START_DATE": "2030-01-01",  # no catch-up runs: only the one triggered here
        "BILLING_SHARDS": "4",
        "BILLING_SHARD_MIN_ASSIGNMENTS": "0",
        "BILLING_TZ": "UTC",
    }
    env.pop("BILLING_HANDOFF_URL", None)
    monkeypatch.setenv("BILLING_REPORT_DIR", str(reports))  # where this test reads them
    phases = {}

    def phase(name: str) -> None:
        phases[name] = round(DEADLINE_S - (deadline - time.monotonic()))
    try:
        stack.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], env)
        stack.start("migrate", [AIRFLOW, "db", "migrate"], env)
        _seed(billing_url, tmp_path)  # meanwhile
        # the command line's charges for the date, before anything is posted
        cli = run_billing(make_engine(billing_url), RunRequest(run_date=D, out_dir=tmp_path / "cli"))
        migrate = stack.procs.pop("migrate")
        assert migrate.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, \
            stack.log("migrate")
        phase("migrated+seeded")
        stack.start("api-server", [AIRFLOW, "api-server", "--port", str(api_port)], env)
        stack.start("dag-processor", [AIRFLOW, "dag-processor"], env)
        stack.start("scheduler", [AIRFLOW, "scheduler", "--skip-serve-logs"], env)
        for n in (1, 2):
            stack.start(f"worker-{n}", [
                AIRFLOW, "celery", "worker", "--concurrency", "1", "--skip-serve-logs",
                "--celery-hostname", f"w{n}@%h"], {**env, "BILLING_WORKER_NAME": f"w{n}"})
        done = subprocess.run([AIRFLOW, "pools", "set", "billing_posting", "1", "posting"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]

        engine = sa.create_engine(meta)
        try:
            def scalar(sql: str, **kw):
                with engine.connect() as conn:
                    return conn.execute(sa.text(sql), kw).scalar()

            _wait("the DAG to be parsed", stack, lambda: scalar(
                "SELECT count(*) FROM serialized_dag WHERE dag_id = 'package_billing'"),
                deadline)
            phase("parsed")
            conf = json.dumps({"run_date": D.isoformat(), "simulate": False,
                               "allow_future": True})  # D lies after today
            done = subprocess.run([AIRFLOW, "dags", "trigger", "package_billing", "--conf", conf,
                                   "--run-id", "manual__celery"], env=env, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            state = _wait("the run to finish", stack, lambda: scalar(
                "SELECT state FROM dag_run WHERE run_id = 'manual__celery' "
                "AND state IN ('success', 'failed')"), deadline, every=2)
            tis = {}
            with engine.connect() as conn:
                for row in conn.execute(sa.text(
                        "SELECT task_id, map_index, state, queue FROM task_instance "
                        "WHERE run_id = 'manual__celery'")):
                    tis[(row.task_id, row.map_index)] = row.state
        finally:
            engine.dispose()
        assert state == "success", (tis, stack.log("worker-1"), stack.log("worker-2"))
        phase("run done")
        print(f"celery test phases (s since start): {phases}")
        assert sum(1 for k in tis if k[0] == "compute") == 4
    finally:
        stack.stop()

    task_logs = list((home / "logs").rglob("*.log"))
    assert any("task_id=gate" in str(p) for p in task_logs), task_logs
    for path in task_logs:  # gate reads the mapped results without probing past their end
        assert "XCom not found" not in path.read_text(errors="replace"), path

    run_dir = staged_run.run_folder(D, "manual__celery")
    workers = staged_run.shard_workers(run_dir)
    assert sorted(workers) == [0, 1, 2, 3]
    assert set(workers.values()) == {"w1", "w2"}, workers  # both workers computed shards
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run"]["mode"] == "post" and summary["run"]["status"] == "succeeded"

    dag_charges = pd.read_csv(run_dir / "charges.csv", dtype=str, keep_default_na=False)
    cli_charges = pd.read_csv(cli.report_dir / "charges.csv", dtype=str, keep_default_na=False)
    assert len(dag_charges) > 0
    pd.testing.assert_frame_equal(dag_charges.drop(columns="status"),
                                  cli_charges.drop(columns="status"))
    assert set(dag_charges["status"]) <= {"posted", "invoiced"}
