"""The run record and the list of dates never posted."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from billing_jobs.core.version import code_version
from billing_jobs.store.runs import finish_run, get_run, start_run, unposted_dates

from tests.store.helpers import fresh_engine


def test_start_and_finish_run(db_url):
    engine = fresh_engine(db_url)
    run_id = start_run(engine, date(2027, 3, 1), "post", ["C2", "C1"], "cli:alice")
    run = get_run(engine, run_id)
    assert run["status"] == "running" and run["mode"] == "post"
    assert str(run["run_date"]) == "2027-03-01" and run["customer_filter"] == ["C1", "C2"]
    assert run["started_by"] == "cli:alice" and run["code_version"] == code_version()
    assert run["finished_at"] is None
    finish_run(engine, run_id, "succeeded", {"lines": 3, "grants": 1},
               {"EUR": {"recurring": "5.00"}}, "ok")
    run = get_run(engine, run_id)
    assert run["status"] == "succeeded" and run["message"] == "ok"
    assert run["counts"] == {"lines": 3, "grants": 1}
    assert run["totals"] == {"EUR": {"recurring": "5.00"}}
    assert run["finished_at"] >= run["started_at"]
    assert get_run(engine, "no-such-run") is None
    with pytest.raises(ValueError):
        start_run(engine, date(2027, 3, 1), "preview", None, "x")
    with pytest.raises(ValueError):
        finish_run(engine, run_id, "done")
    engine.dispose()


def test_code_version_names_the_package():
    assert code_version().startswith("0.1.0")


def _run(engine, day, mode="post", status="succeeded", customers=None):
    run_id = start_run(engine, day, mode, customers, "test")
    if status != "running":
        finish_run(engine, run_id, status, {}, {}, None)


def test_unposted_dates(db_url):
    engine = fresh_engine(db_url)
    d = date(2027, 3, 1)
    assert unposted_dates(engine, d) == []  # nothing ever posted: nothing missed
    _run(engine, d - timedelta(days=3), "simulate")               # simulations do not start it
    _run(engine, d)                                                # first full post: D
    _run(engine, d + timedelta(days=2))                            # D+2 posted
    _run(engine, d + timedelta(days=3), customers=["C1"])          # one customer only
    _run(engine, d + timedelta(days=4), status="failed")           # failed
    _run(engine, d + timedelta(days=5), status="running")          # crashed mid-run
    _run(engine, d + timedelta(days=6), "simulate")                # simulated only
    _run(engine, d + timedelta(days=7))
    _run(engine, d + timedelta(days=7))                            # posted twice: still once
    got = unposted_dates(engine, d + timedelta(days=9))
    assert got == [d + timedelta(days=k) for k in (1, 3, 4, 5, 6, 8)]
    assert unposted_dates(engine, d + timedelta(days=2)) == [d + timedelta(days=1)]
    assert unposted_dates(engine, d) == []
    assert unposted_dates(engine, d - timedelta(days=10)) == []
    engine.dispose()


def test_0011_keeps_run_records_and_allows_interrupted(db_url):
    """Migration 0011 on a database holding runs: the records stay, the index stays, the
    status check takes 'interrupted' and still refuses anything else; the new columns are
    empty for the old records (their folder is then found under the report root)."""
    import sqlalchemy as sa
    from alembic import command

    from billing_jobs.store.db import _alembic_config, make_engine, upgrade

    engine = make_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0010")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO runs (run_id, run_date, mode, started_by, started_at, status) VALUES "
            "('old-1', '2027-01-01', 'post', 'cli:a', '2027-01-01 00:00:00', 'succeeded'), "
            "('old-2', '2027-01-02', 'simulate', 'cli:a', '2027-01-02 00:00:00', 'running')"))
    with pytest.raises(sa.exc.IntegrityError):  # before 0011: no such status
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE runs SET status = 'interrupted' WHERE run_id = 'old-2'"))
    upgrade(engine)
    old = get_run(engine, "old-1")
    assert (old["status"], old["mode"], str(old["run_date"])) == ("succeeded", "post",
                                                                  "2027-01-01")
    assert (old["host"], old["pid"], old["report_dir"]) == (None, None, None)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE runs SET status = 'interrupted' WHERE run_id = 'old-2'"))
    assert get_run(engine, "old-2")["status"] == "interrupted"
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE runs SET status = 'paused' WHERE run_id = 'old-2'"))
    indexes = {tuple(ix["column_names"]) for ix in sa.inspect(engine).get_indexes("runs")}
    assert ("run_date", "mode", "status") in indexes
    engine.dispose()


def test_a_run_records_its_host_pid_and_folder(db_url, tmp_path):
    import os

    from billing_jobs.store.runs import history, this_host

    engine = fresh_engine(db_url)
    run_id = start_run(engine, date(2027, 3, 1), "post", None, "cli:a", pid=os.getpid())
    run = get_run(engine, run_id)
    assert (run["host"], run["pid"]) == (this_host(), os.getpid())
    finish_run(engine, run_id, "interrupted", {}, {}, "interrupted by SIGINT (Ctrl-C)",
               tmp_path / "out")
    [row] = history(engine, tmp_path, 5)
    assert (row["status"], row["report_folder"], row["process"]) == (
        "interrupted", str(tmp_path / "out"), None)
    engine.dispose()


def test_charged_totals_are_the_runs_own_lines():
    from billing_jobs.store.runs import charged_totals

    def block(amount, cost, lines):
        return {"amount": amount, "cost": cost, "lines": lines}

    totals = {"EUR": {"amount": "110.00", "by_status": {
        "posted": block("10.00", "4.00", 2), "invoiced": block("5.005", "0", 1),
        "already_posted": block("95.00", "1", 9)}},
        "JPY": {"by_status": {"already_posted": block("334", "100", 1)}},
        "KWD": {"by_status": {"posted": block("-1.250", "0.000", 1)}}}
    assert charged_totals("post", totals) == {
        "EUR": {"amount": "15.005", "cost": "4.00", "margin": "11.005", "lines": 3},
        "KWD": {"amount": "-1.250", "cost": "0.000", "margin": "-1.250", "lines": 1}}
    assert charged_totals("simulate", totals) == {}
    sim = {"EUR": {"by_status": {"simulated": block("7.00", "1.00", 1),
                                 "already_posted": block("3.00", "0", 1)}}}
    assert charged_totals("simulate", sim) == {
        "EUR": {"amount": "7.00", "cost": "1.00", "margin": "6.00", "lines": 1}}
