"""The run record and the list of dates never posted."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from billing_jobs.store.runs import code_version, finish_run, get_run, start_run, unposted_dates

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
