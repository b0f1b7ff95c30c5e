"""bench/airflow_executors.py without Airflow processes: its arguments, the configurations it
measures and the environment it gives the Airflow processes (the benchmark itself is run by hand,
see docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import airflow_executors as ae


def _data(tmp_path: Path) -> Path:
    (tmp_path / "usage.csv").write_text("header\n")
    return tmp_path


def test_configurations_pair_the_executors_per_shard_count():
    got = ae.configurations(["local", "celery"], [1, 2])
    assert [(r, c.name) for r, c in got] == [(1, "local-s1"), (1, "celery-s1"),
                                              (1, "local-s2"), (1, "celery-s2")]
    got = ae.configurations(["local", "celery"], [2], rounds=2)
    assert [(r, c.name) for r, c in got] == [(1, "local-s2"), (1, "celery-s2"),
                                              (2, "celery-s2"), (2, "local-s2")]
    with pytest.raises(ae.BenchError):
        ae.configurations(["local"], [1], rounds=0)
    with pytest.raises(ae.BenchError):
        ae.configurations(["kubernetes"], [1])
    with pytest.raises(ae.BenchError):
        ae.configurations(["local"], [0])


def test_arguments(tmp_path):
    a = ae.parse_args(["--data", str(_data(tmp_path)), "--shards", "2", "--executors", "celery"])
    assert a.shards == [2] and a.executors == ["celery"] and a.date == "2026-12-01"
    with pytest.raises(SystemExit):
        ae.parse_args(["--data", str(_data(tmp_path)), "--shards", "x"])
    with pytest.raises(SystemExit):
        ae.parse_args(["--data", str(tmp_path / "missing")])


def test_environment_of_each_executor(tmp_path):
    billing = "postgresql+psycopg://postgres@127.0.0.1:5999/postgres"
    meta = ae.meta_url(billing)
    assert meta == "postgresql+psycopg2://postgres@127.0.0.1:5999/airflow_bench"
    common = dict(home=tmp_path / "home", billing_url=billing, meta=meta, redis_port=6399,
                  api_port=8999, reports=tmp_path / "reports")
    base = {"PATH": "/bin", "BILLING_HANDOFF_URL": "s3://x/y", "PYTHONPATH": "/elsewhere"}

    local = ae.airflow_env(base, config=ae.Config("local", 1), **common)
    assert local["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert local["AIRFLOW__CORE__PARALLELISM"] == "2"
    assert local["BILLING_SHARDS"] == "1" and local["BILLING_SHARD_MIN_ASSIGNMENTS"] == "0"
    assert "BILLING_HANDOFF_URL" not in local
    assert local["PYTHONPATH"].split(":") == [str(ae.ROOT), "/elsewhere"]
    assert local["BILLING_DB_URL"] == billing
    assert local["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == meta
    assert local["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8999/execution/"

    celery = ae.airflow_env(base, config=ae.Config("celery", 2), **common)
    assert celery["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert celery["BILLING_SHARDS"] == "2"
    assert celery["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6399/0"
    assert celery["AIRFLOW__CELERY__RESULT_BACKEND"] == (
        "db+postgresql://postgres@127.0.0.1:5999/airflow_bench")
    assert celery["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "1"


def test_trigger_conf_simulates_the_night():
    conf = ae.trigger_conf("2026-12-01")
    assert conf["simulate"] is True and conf["run_date"] == "2026-12-01"
    assert ae.run_id_of(ae.Config("celery", 2), "20261207T000000", 2) == (
        "bench__celery-s2__r2__20261207T000000")


def test_medians_over_rounds():
    def run(config, wall, extract):
        return {"config": config, "wall_s": wall,
                "tasks": [{"task": "extract", "queued_delay_s": 1.0, "duration_s": extract}]}
    got = ae.medians([run("local-s1", 10.0, 4.0), run("local-s1", 14.0, 6.0),
                      run("local-s1", 12.0, 5.0), run("celery-s1", 9.0, 3.0)])
    assert got["local-s1"]["wall_s"] == 12.0 and got["local-s1"]["rounds"] == 3
    assert got["local-s1"]["tasks"]["extract"] == {"queued_delay_s": 1.0, "duration_s": 5.0,
                                                   "startup_s": 0}
    assert got["celery-s1"]["wall_s_each"] == [9.0]


def test_task_startup_from_the_task_log(tmp_path):
    folder = (tmp_path / "logs" / "dag_id=package_billing" / "run_id=r1" / "task_id=compute"
              / "map_index=1")
    folder.mkdir(parents=True)
    (folder / "attempt=1.log").write_text(
        '{"timestamp":"2026-12-07T05:56:51.300000Z","event":"::group::Pre Execute"}\n'
        'not json\n'
        '{"timestamp":"2026-12-07T05:57:09.800000Z","event":"Worker startup parse complete",'
        '"dag_file_parse_ms":2416}\n'
        '{"timestamp":"2026-12-07T05:57:20.000000Z","event":"Done"}\n')
    assert ae.task_startup(tmp_path, "r1", "compute", 1) == {"startup_s": 18.5,
                                                             "dag_parse_s": 2.42}
    assert ae.task_startup(tmp_path, "r1", "gate", -1) == {}
