"""The billing DAG under Airflow's LocalExecutor and CeleryExecutor, against the command line (#29).

    python -m bench.airflow_executors --data DIR [--keep-db DIR] [--date 2026-12-01]
        [--executors local,celery] [--shards 1,2] [--rounds 1] [--cli-repeat 1]
        [--work DIR] [--out FILE]

Imports the CSVs of DIR (from bench.generate) into a PostgreSQL database (a throw-away server of
bench/pg_server.py, or the kept one of `--keep-db DIR`, laid out as `bench.run --keep-db` does, so
an import made by `bench.run --db postgresql --keep-db DIR` is reused). Airflow's metadata lives in
a second database (`airflow_bench`, created afresh) of the same server. Then, on loopback:

* once: `airflow db migrate`, the `billing_posting` pool, `redis-server` (when Celery is measured),
  the API server and the DAG processor;
* per configuration (executor x BILLING_SHARDS, in the order local/celery interleaved so a change
  of the machine's load falls on both): a scheduler (`[core] executor = LocalExecutor`,
  parallelism 2; or `CeleryExecutor` and two Celery workers of concurrency 1), started fresh with
  `BILLING_SHARDS=n` and `BILLING_SHARD_MIN_ASSIGNMENTS=0` (so that n shards are really mapped at
  every size), waited for (scheduler heartbeat, workers ready), then one simulate run of the DAG
  triggered for the date and waited for;
* `billing-jobs run --date D` (simulate, the whole process) before the first and after the last
  configuration.

Simulation writes no posting, so every configuration bills the same untouched night; a database
that holds postings (an earlier `bench.run --modes post`) is reset first as bench.run does.

Prints one JSON object: per configuration the wall time of the run (Airflow's dag_run queued_at
-> end_date, and as observed here from the trigger command to the success), each task
instance's queued delay (queued_dttm -> start_date) and duration (start_date -> end_date), the
stage timings the tasks recorded in their hand-off folder, and the command line's wall time.
All Airflow processes run in this command's session (Linux autogroup shares CPU between
sessions: see Stack; `--own-sessions` gives each its own, as tests/e2e/test_celery.py does).
Every wait has a deadline; every process started here is stopped at the end, also on Ctrl-C,
SIGTERM or an error (their logs stay in the work folder when `--work` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AIRFLOW = str(BIN / "airflow")
BILLING = str(BIN / "billing-jobs")
DAG_ID = "package_billing"
META_DB = "airflow_bench"
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Config:
    executor: str  # "local" | "celery"
    shards: int

    @property
    def name(self) -> str:
        return f"{self.executor}-s{self.shards}"


def configurations(executors: list[str], shards: list[int], rounds: int = 1
                   ) -> list[tuple[int, Config]]:
    """(round, configuration) in the order measured: every executor x shards per round, shards
    outermost and the executors back to back for the same shards; every second round takes
    the executors in reverse order, so that neither always runs first (the first run after
    the stack starts pays cold caches)."""
    for e in executors:
        if e not in EXECUTORS:
            raise BenchError(f"unknown executor {e!r} (choose from {', '.join(EXECUTORS)})")
    if not shards or any(n < 1 for n in shards):
        raise BenchError("--shards: one or more integers >= 1")
    if rounds < 1:
        raise BenchError("--rounds: at least 1")
    out = []
    for r in range(1, rounds + 1):
        order = executors if r % 2 else executors[::-1]
        out += [(r, Config(e, n)) for n in shards for e in order]
    return out


def medians(measured: list[dict]) -> dict:
    """Per configuration, the median over the rounds of the run's wall time and of each
    task's queued delay and duration."""
    import statistics

    out: dict = {}
    for name in dict.fromkeys(m["config"] for m in measured):
        runs = [m for m in measured if m["config"] == name]
        tasks: dict = {}
        for m in runs:
            for t in m["tasks"]:
                tasks.setdefault(t["task"], []).append(t)
        out[name] = {
            "rounds": len(runs),
            "wall_s": statistics.median(m["wall_s"] for m in runs),
            "wall_s_each": [m["wall_s"] for m in runs],
            "tasks": {k: {f: statistics.median(t.get(f) or 0 for t in v)
                          for f in ("queued_delay_s", "duration_s", "startup_s")}
                      for k, v in tasks.items()},
        }
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def meta_url(billing_url: str, db: str = META_DB) -> str:
    """Airflow's metadata URL (psycopg2 driver, database `db`) on the billing database's server."""
    base, _, _ = billing_url.rpartition("/")
    return base.replace("+psycopg://", "+psycopg2://") + "/" + db


def airflow_env(base: dict, *, home: Path, billing_url: str, meta: str, redis_port: int,
                api_port: int, reports: Path, config: Config | None = None) -> dict:
    """The environment of every Airflow process (and of the billing tasks they run): one
    AIRFLOW_HOME, the metadata on PostgreSQL, the execution API on loopback, no example DAGs,
    no catch-up runs, local Parquet hand-offs; with `config`, its executor and shards."""
    env = {
        **base,
        "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), base.get("PYTHONPATH", "")] if p),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-jwt-secret-" + "x" * 32,
        "AIRFLOW__API__SECRET_KEY": "bench-secret",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta.replace("+psycopg2", ""),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "BILLING_DB_URL": billing_url,
        "BILLING_REPORT_DIR": str(reports),
        "BILLING_START_DATE": "2030-01-01",  # no catch-up runs: only the ones triggered here
        "BILLING_SIMULATE_DEFAULT": "true",
        "BILLING_SHARD_MIN_ASSIGNMENTS": "0",  # n shards really mapped at every size
        "BILLING_TZ": "UTC",
    }
    env.pop("BILLING_HANDOFF_URL", None)  # hand-offs: Parquet under the run folder
    if config is not None:
        env["AIRFLOW__CORE__EXECUTOR"] = EXECUTORS[config.executor]
        env["BILLING_SHARDS"] = str(config.shards)
        if config.executor == "local":
            env["AIRFLOW__CORE__PARALLELISM"] = "2"
    return env


def trigger_conf(run_date: str) -> dict:
    """The DAG's params for a simulation of `run_date` (nothing posted: every configuration
    bills the same night)."""
    return {"run_date": run_date, "simulate": True, "allow_future": False, "strict": False}


def run_id_of(config: Config, stamp: str, round_: int = 1) -> str:
    return f"bench__{config.name}__r{round_}__{stamp}"


def _loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return ""


# ----------------------------------------------------------------------------- processes

class Stack:
    """Processes started here, each logging to <home>/<name>.log, each in its own process
    group (so its children stop with it) but in this command's session unless
    `own_sessions`: with Linux's autogroup scheduling (sched_autogroup_enabled) CPU time is
    shared between sessions first, so on a shared machine a process in a session of its own
    gets a share of its own. One session for the whole stack (as for the command-line run)
    keeps the executors comparable: otherwise each Celery worker gets a CPU share while the
    LocalExecutor's task processes share the scheduler's."""

    def __init__(self, home: Path, own_sessions: bool = False):
        self.home = home
        self.own_sessions = own_sessions
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str], env: dict) -> None:
        log = (self.home / f"{name}.log").open("w")
        group = {"start_new_session": True} if self.own_sessions else {"process_group": 0}
        self.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.home, **group)
        log.close()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def stop(self, *names: str) -> None:
        """Stop `names` (all when none): SIGTERM to each process group, SIGKILL after 30 s."""
        chosen = {n: p for n, p in self.procs.items() if not names or n in names}
        for proc in chosen.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in chosen.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
            else:  # the leader is gone; its group's stragglers (task processes) go too
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for n in chosen:
            del self.procs[n]


def wait_for(what: str, stack: Stack, check, deadline: float, every: float = 1.0,
             logs: tuple[str, ...] = ("scheduler",)):
    while True:
        stack.check_alive()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = "".join(f"\n--- {n} log:\n{stack.log(n)}" for n in logs)
            raise BenchError(f"timed out waiting for {what}{detail}")
        time.sleep(every)


def run_cmd(cmd: list[str], env: dict, timeout: float, what: str) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise BenchError(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-2000:]}")
    return done


# ----------------------------------------------------------------------------- measurements

def cli_run(billing_url: str, run_date: str, out: Path, env: dict, timeout: float) -> dict:
    """`billing-jobs run --date D` (simulate), the whole process, and its own stage timings."""
    t0 = time.perf_counter()
    load = _loadavg()
    run_cmd([BILLING, "run", "--date", run_date, "--db", billing_url, "--out", str(out)],
            env, timeout, "billing-jobs run")
    wall = time.perf_counter() - t0
    summaries = sorted(out.rglob("summary.json"))
    timings = {}
    if summaries:
        timings = json.loads(summaries[-1].read_text()).get("timings", {})
    return {"wall_s": round(wall, 2), "stages": timings, "loadavg": load}


def _secs(a, b) -> float | None:
    return None if a is None or b is None else round((b - a).total_seconds(), 2)


def task_rows(engine, run_id: str, home: Path | None = None) -> list[dict]:
    import sqlalchemy as sa

    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT task_id, map_index, state, hostname, queued_dttm, start_date, end_date "
            "FROM task_instance WHERE dag_id = :dag AND run_id = :run "
            "ORDER BY start_date NULLS LAST, map_index"), {"dag": DAG_ID, "run": run_id})
        return [{"task": r.task_id + (f"[{r.map_index}]" if r.map_index >= 0 else ""),
                 "state": r.state, "hostname": r.hostname,
                 "queued_delay_s": _secs(r.queued_dttm, r.start_date),
                 "duration_s": _secs(r.start_date, r.end_date),
                 "queued_at": r.queued_dttm.isoformat() if r.queued_dttm else None,
                 "start": r.start_date.isoformat() if r.start_date else None,
                 "end": r.end_date.isoformat() if r.end_date else None,
                 **(task_startup(home, run_id, r.task_id, r.map_index) if home else {})}
                for r in rows]


def task_startup(home: Path, run_id: str, task: str, map_index: int) -> dict:
    """From a task's log: seconds from its first line (the task runner started) to "Worker
    startup parse complete" (task SDK up, DAG file parsed: billing modules imported), and that
    parse alone (dag_file_parse_ms)."""
    path = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task}"
    if map_index >= 0:
        path = path / f"map_index={map_index}"
    path = path / "attempt=1.log"
    if not path.exists():
        return {}
    first = parsed = None
    parse_ms = None
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        when = rec.get("timestamp")
        if not when:
            continue
        stamp = datetime.fromisoformat(when.replace("Z", "+00:00"))
        first = first or stamp
        if rec.get("event") == "Worker startup parse complete":
            parsed, parse_ms = stamp, rec.get("dag_file_parse_ms")
            break
    if first is None or parsed is None:
        return {}
    return {"startup_s": _secs(first, parsed),
            "dag_parse_s": None if parse_ms is None else round(parse_ms / 1000, 2)}


def task_stage_timings(reports: Path, run_date: str, run_id: str) -> dict:
    """The stage timings each task wrote into its run's hand-off folder (timings/<name>.json)."""
    import re

    name = re.sub(r"[^A-Za-z0-9._+-]", "_", run_id)
    folder = reports / "airflow" / run_date / name / "snapshots" / "timings"
    if not folder.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def measure(config: Config, *, stack: Stack, env: dict, engine, reports: Path, run_date: str,
            stamp: str, ready_s: float, run_s: float, round_: int = 1) -> dict:
    """Start this configuration's scheduler (and workers), trigger one run, wait for it."""
    import sqlalchemy as sa

    def scalar(sql: str, **kw):
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), kw).scalar()

    names = ["scheduler"]
    since = datetime.now(timezone.utc)
    t_start = time.monotonic()
    stack.start("scheduler", [AIRFLOW, "scheduler", "--skip-serve-logs"], env)
    if config.executor == "celery":
        for n in (1, 2):
            name = f"worker-{n}"
            names.append(name)
            stack.start(name, [AIRFLOW, "celery", "worker", "--concurrency", "1",
                               "--skip-serve-logs", "--celery-hostname", f"w{n}@%h"],
                        {**env, "BILLING_WORKER_NAME": f"w{n}"})
    logs = tuple(names)
    try:
        deadline = time.monotonic() + ready_s
        wait_for("the scheduler's heartbeat", stack, lambda: scalar(
            "SELECT count(*) FROM job WHERE job_type = 'SchedulerJob' AND state = 'running' "
            "AND start_date >= :since AND latest_heartbeat > start_date", since=since),
            deadline, logs=logs)
        for name in names[1:]:
            wait_for(f"{name} ready", stack, lambda n=name: " ready." in stack.log(n, 100_000),
                     deadline, logs=(name,))
        ready = round(time.monotonic() - t_start, 1)

        run_id = run_id_of(config, stamp, round_)
        load = _loadavg()
        t0 = time.monotonic()
        run_cmd([AIRFLOW, "dags", "trigger", DAG_ID, "--conf",
                 json.dumps(trigger_conf(run_date)), "--run-id", run_id], env, 300,
                "airflow dags trigger")
        trigger_cmd_s = round(time.monotonic() - t0, 1)
        state = wait_for(f"run {run_id} to finish", stack, lambda: scalar(
            "SELECT state FROM dag_run WHERE dag_id = :dag AND run_id = :run "
            "AND state IN ('success', 'failed')", dag=DAG_ID, run=run_id),
            time.monotonic() + run_s, every=0.5, logs=logs)
        observed = round(time.monotonic() - t0, 1)
        load_after = _loadavg()
        with engine.connect() as conn:
            r = conn.execute(sa.text(
                "SELECT queued_at, start_date, end_date FROM dag_run WHERE dag_id = :dag "
                "AND run_id = :run"), {"dag": DAG_ID, "run": run_id}).one()
        tasks = task_rows(engine, run_id, stack.home)
        if state != "success":
            raise BenchError(f"{run_id} ended {state}: {tasks}"
                             + "".join(f"\n--- {n} log:\n{stack.log(n)}" for n in logs))
        busy = sum(t["duration_s"] or 0 for t in tasks)
        return {
            "config": config.name, "round": round_, "executor": EXECUTORS[config.executor],
            "shards": config.shards, "run_id": run_id, "state": state,
            "stack_ready_s": ready, "trigger_command_s": trigger_cmd_s,
            "wall_s": _secs(r.queued_at, r.end_date),  # trigger (queued) -> success
            "running_s": _secs(r.start_date, r.end_date),
            "observed_trigger_to_success_s": observed,  # includes the trigger command's start-up
            "sum_task_durations_s": round(busy, 2),
            "sum_queued_delays_s": round(sum(t["queued_delay_s"] or 0 for t in tasks), 2),
            "tasks": tasks,
            "stage_timings": task_stage_timings(reports, run_date, run_id),
            "loadavg_before": load, "loadavg_after": load_after,
        }
    finally:
        stack.stop(*names)


# ----------------------------------------------------------------------------- main

def _database(a):
    """(server, url, import seconds or None) of the billing database, imported when needed."""
    from bench import run as bench_run

    if a.keep_db:
        a.keep_db.mkdir(parents=True, exist_ok=True)
        server = bench_run._KeptPostgres(a.keep_db / "pg").start()
        stamp_file = a.keep_db / "imported-postgresql.json"
    else:
        from bench.pg_server import PostgresServer

        server = PostgresServer().start()
        stamp_file = None
    url = server.url
    try:
        import_s = None
        if not (stamp_file and stamp_file.exists()
                and json.loads(stamp_file.read_text()) == bench_run._data_stamp(a.data)):
            if stamp_file and stamp_file.exists():
                raise BenchError(f"{a.keep_db} holds another import; remove it first")
            import_s = round(sum(bench_run._import(url, a.data).values()), 2)
            bench_run._analyze(url)
            if stamp_file:
                stamp_file.write_text(json.dumps(bench_run._data_stamp(a.data)))
        if bench_run._posted_rows(url):
            bench_run._reset_posting(url, a.data)
    except BaseException:
        server.stop()
        raise
    return server, url, import_s


def _fresh_meta_db(billing_url: str) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(billing_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {META_DB} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {META_DB}")
    finally:
        admin.dispose()
    return meta_url(billing_url)


def bench(a) -> dict:
    import sqlalchemy as sa

    work = a.work or Path(tempfile.mkdtemp(prefix="billing-airflow-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    home, reports = work / "airflow", work / "reports"
    home.mkdir(exist_ok=True)
    configs = configurations(a.executors, a.shards, a.rounds)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    result: dict = {"data": str(a.data), "date": a.date, "work": str(work),
                    "own_sessions": a.own_sessions,
                    "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    "loadavg_start": _loadavg(), "cpus": os.cpu_count(), "cli": [],
                    "configs": []}
    server = stack = engine = None
    try:
        server, url, import_s = _database(a)
        result["import_s"] = import_s
        meta = _fresh_meta_db(url)
        redis_port, api_port = free_port(), free_port()
        base = airflow_env(dict(os.environ), home=home, billing_url=url, meta=meta,
                           redis_port=redis_port, api_port=api_port, reports=reports)
        stack = Stack(home, own_sessions=a.own_sessions)
        deadline = time.monotonic() + a.ready_deadline
        if "celery" in a.executors:
            stack.start("redis", ["redis-server", "--port", str(redis_port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no"], base)
        t0 = time.monotonic()
        run_cmd([AIRFLOW, "db", "migrate"], base, a.ready_deadline, "airflow db migrate")
        run_cmd([AIRFLOW, "pools", "set", "billing_posting", "1", "posting"], base, 300,
                "airflow pools set")
        result["migrate_s"] = round(time.monotonic() - t0, 1)
        stack.start("api-server", [AIRFLOW, "api-server", "--port", str(api_port)], base)
        stack.start("dag-processor", [AIRFLOW, "dag-processor"], base)
        engine = sa.create_engine(meta)

        def parsed() -> int:
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT count(*) FROM serialized_dag "
                                            "WHERE dag_id = :d"), {"d": DAG_ID}).scalar()
        wait_for("the DAG to be parsed", stack, parsed, deadline, every=2,
                 logs=("dag-processor",))

        def api_up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", api_port), timeout=1):
                    return True
            except OSError:
                return False
        wait_for("the API server", stack, api_up, deadline, logs=("api-server",))

        cli_env = {**os.environ, "PYTHONPATH": base["PYTHONPATH"], "BILLING_TZ": "UTC"}
        for i in range(a.cli_repeat):
            result["cli"].append(cli_run(url, a.date, work / f"cli-{i}-before", cli_env,
                                         a.run_deadline))
        for round_, config in configs:
            env = airflow_env(dict(os.environ), home=home, billing_url=url, meta=meta,
                              redis_port=redis_port, api_port=api_port, reports=reports,
                              config=config)
            m = measure(config, stack=stack, env=env, engine=engine, reports=reports,
                        run_date=a.date, stamp=stamp, ready_s=a.ready_deadline,
                        run_s=a.run_deadline, round_=round_)
            print(json.dumps({k: m[k] for k in ("config", "round", "wall_s", "running_s",
                                                "observed_trigger_to_success_s",
                                                "loadavg_before")}), file=sys.stderr,
                  flush=True)
            result["configs"].append(m)
        for i in range(a.cli_repeat):
            result["cli"].append(cli_run(url, a.date, work / f"cli-{i}-after", cli_env,
                                         a.run_deadline))
        result["medians"] = medians(result["configs"])
        result["loadavg_end"] = _loadavg()
        return result
    finally:
        if engine is not None:
            engine.dispose()
        if stack is not None:
            stack.stop()
        if server is not None:
            server.stop()
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="CSV folder from bench.generate")
    p.add_argument("--keep-db", type=Path, metavar="DIR",
                   help="PostgreSQL kept in DIR/pg (bench.run --keep-db layout); import reused")
    p.add_argument("--date", default="2026-12-01", help="billing date (simulated)")
    p.add_argument("--executors", default="local,celery", help="comma-separated: local, celery")
    p.add_argument("--shards", default="1,2", help="comma-separated BILLING_SHARDS values")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every configuration N times (executor order reversed in "
                        "every second round); medians reported")
    p.add_argument("--own-sessions", action="store_true",
                   help="start each Airflow process in a session of its own (default: all in "
                        "this command's session; see Stack)")
    p.add_argument("--cli-repeat", type=int, default=1,
                   help="command-line runs before the first and after the last configuration")
    p.add_argument("--work", type=Path, metavar="DIR",
                   help="AIRFLOW_HOME, logs and reports here, kept (default: a temporary folder)")
    p.add_argument("--out", type=Path, help="also write the JSON result to this file")
    p.add_argument("--ready-deadline", type=float, default=900.0,
                   help="seconds for Airflow to migrate / start / parse (each phase)")
    p.add_argument("--run-deadline", type=float, default=1800.0,
                   help="seconds for one run (DAG or command line) to finish")
    a = p.parse_args(argv)
    a.executors = [e.strip() for e in a.executors.split(",") if e.strip()]
    try:
        a.shards = [int(s) for s in a.shards.split(",") if s.strip()]
    except ValueError:
        p.error("--shards: comma-separated integers")
    try:
        configurations(a.executors, a.shards, a.rounds)
    except BenchError as exc:
        p.error(str(exc))
    if not (a.data / "usage.csv").exists():
        p.error(f"{a.data} holds no usage.csv (a bench.generate folder)")
    return a


def _sigterm(signum, frame):  # stop everything through the finally blocks
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if "celery" in a.executors and shutil.which("redis-server") is None:
        raise SystemExit("redis-server missing: apt-get install redis-server")
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        result = bench(a)
    except BenchError as exc:
        print(f"bench.airflow_executors: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
