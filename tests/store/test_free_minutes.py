"""Free minutes reduce the bill, from counters in the database (#12), on SQLite and PostgreSQL.

The issue's example: a 12-minute UK bundle, three 5-minute UK calls of 0.30 each on 5 Jan;
the post of 6 Jan credits 0.72 (300 + 300 + 120 seconds covered: 0.30 + 0.30 + 0.12) and
the grant's counter stands at 720 of 720 seconds, once, whatever re-runs, concurrent posts,
crashes, late calls and reversals happen.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import time
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from billing_jobs.run.local import backfill, run_billing
from billing_jobs.run.request import RunRequest
from billing_jobs.store.db import make_engine, upgrade
from billing_jobs.corrections.reverse import reverse
from billing_jobs.ingest.importer import import_csv
from tests.store.free_minute_poster import post_night

_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["billing_jobs.run.local", "tests.store.free_minute_poster"])

PACKAGES = ("package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
            "free_minutes,destination,minimum_spend,minimum_days,free_minutes_mode\n"
            "UK,UK bundle,free_minutes,0,5.00,0,0,EUR,monthly,12,^44,false,0,\n"
            "UKR,UK bundle (switch rates),free_minutes,0,5.00,0,0,EUR,monthly,12,^44,false,0,"
            "report\n")
CUSTOMERS = ["C1", "C2", "C3"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _calls(rows) -> str:
    return "call_id,customer_id,start_time,destination,duration_s,charge\n" + "".join(
        f"{c},{cu},{t},{d},{s},{m}\n" for c, cu, t, d, s, m in rows)


def _three_calls(customer: str, day: str = "2027-01-05") -> list[tuple]:
    return [(f"{customer}-U{i}", customer, f"{day}T1{i}:00:00Z", "442071234567", 300, "0.30")
            for i in range(3)]


@pytest.fixture
def fm_db(db_url, tmp_path):
    engine = make_engine(db_url)
    upgrade(engine)
    import_csv(engine, "customers", _write(tmp_path / "c.csv",
               "customer_id,name,currency,balance\n"
               + "".join(f"{c},Customer {c},EUR,10.00\n" for c in CUSTOMERS)))
    import_csv(engine, "packages", _write(tmp_path / "p.csv", PACKAGES))
    import_csv(engine, "assignments", _write(tmp_path / "a.csv",
               "assignment_id,customer_id,package_id,quantity,start_date,auto_decrement\n"
               + "".join(f"A-{c},{c},UK,1,2027-01-01,true\n" for c in CUSTOMERS)))
    import_csv(engine, "usage", _write(tmp_path / "u.csv", _calls(
        [r for c in CUSTOMERS for r in _three_calls(c)])))
    yield engine
    engine.dispose()


def _post(engine, day: str, tmp_path: Path, simulate=False):
    req = RunRequest(run_date=date.fromisoformat(day), simulate=simulate,
                     out_dir=tmp_path / f"r-{day}-{simulate}-{time.monotonic_ns()}")
    return run_billing(engine, req)


def _state(engine) -> dict:
    with engine.connect() as conn:
        credits = conn.execute(sa.text(
            "SELECT customer_id, period_start, amount_micros, revision, entry FROM ledger "
            "WHERE kind = 'free_minutes_credit' ORDER BY customer_id, period_start, revision"
        )).all()
        counters = conn.execute(sa.text(
            "SELECT assignment_id, seconds_granted, seconds_used, credited_micros "
            "FROM grant_usage ORDER BY assignment_id")).all()
        calls = conn.execute(sa.text(
            "SELECT customer_id, count(*), sum(seconds), sum(covered_micros) FROM call_credits "
            "GROUP BY customer_id ORDER BY customer_id")).all()
        bal = dict(conn.execute(sa.text("SELECT customer_id, balance_micros FROM customers")).all())
    return {"credits": [(c, str(p)[:10], int(a), int(r), e) for c, p, a, r, e in credits],
            "counters": [tuple(int(v) if i else v for i, v in enumerate(r)) for r in counters],
            "calls": [(c, int(n), int(s), int(m)) for c, n, s, m in calls],
            "balances": {c: int(b) for c, b in bal.items()}}


def _once(state: dict, customers=CUSTOMERS) -> None:
    """The issue's outcome, exactly once per customer."""
    assert state["credits"] == [(c, "2027-01-05", -720_000, 0, "charge") for c in customers]
    assert state["counters"] == [(f"A-{c}", 720, 720, 720_000) for c in customers]
    assert state["calls"] == [(c, 3, 720, 720_000) for c in customers]
    assert all(state["balances"][c] == 10_720_000 for c in customers)


def test_done_when_credit_072_and_counter_720_of_720_once(fm_db, tmp_path):
    sim = _post(fm_db, "2027-01-06", tmp_path, simulate=True)
    credit = sim.result.due_lines[sim.result.due_lines["kind"] == "free_minutes_credit"]
    assert credit["amount"].tolist() == [-720_000] * 3
    assert set(credit["status"]) == {"simulated"}
    assert _state(fm_db)["counters"] == []  # a simulation changes nothing

    first = _post(fm_db, "2027-01-06", tmp_path)
    assert first.ok, first.message
    _once(_state(fm_db))
    rows = (first.report_dir / "charges.csv").read_text().splitlines()
    assert any("free_minutes_credit" in r and "-0.72" in r and "posted" in r for r in rows)
    util = (first.report_dir / "utilisation.csv").read_text()
    assert "12" in util and "0.72" in util  # granted 12 min, used 12, left 0, credited 0.72

    again = _post(fm_db, "2027-01-06", tmp_path)  # a re-run posts nothing twice
    credit = again.result.due_lines[again.result.due_lines["kind"] == "free_minutes_credit"]
    assert credit["amount"].tolist() == [-720_000] * 3
    assert set(credit["status"]) == {"already_posted"}
    _once(_state(fm_db))

    nxt = _post(fm_db, "2027-01-07", tmp_path)  # nothing new to consume the next night
    assert nxt.ok and not (nxt.result.due_lines["kind"] == "free_minutes_credit").any()
    _once(_state(fm_db))


def test_late_call_is_consumed_by_the_next_post_once(fm_db, db_url, tmp_path):
    import_csv(fm_db, "assignments", _write(tmp_path / "a2.csv",
               "assignment_id,customer_id,package_id,quantity,start_date,auto_decrement,"
               "free_minutes\nA-C1,C1,UK,1,2027-01-01,true,20\n"))  # 20 minutes for C1
    assert _post(fm_db, "2027-01-06", tmp_path).ok  # 900 s of C1's 1200 used, 0.90 credited
    # a call of 5 Jan arrives after its day was consumed, and one of 6 Jan
    import_csv(fm_db, "usage", _write(tmp_path / "late.csv", _calls([
        ("C1-LATE", "C1", "2027-01-05T22:00:00Z", "442071234567", 300, "0.40"),
        ("C1-NEXT", "C1", "2027-01-06T09:00:00Z", "442071234567", 60, "0.10")])))
    out = _post(fm_db, "2027-01-07", tmp_path)
    assert out.ok, out.message
    lines = out.result.due_lines
    c1 = lines[(lines["customer_id"] == "C1") & (lines["kind"] == "free_minutes_credit")]
    # LATE takes 300 s (0.40), NEXT the last... 0 s left? 1200 - 900 - 300 = 0: NEXT is not covered
    assert c1["amount"].tolist() == [-400_000] and c1["status"].tolist() == ["posted"]
    late = out.result.consumption.set_index("call_id")["late"].to_dict()
    assert late == {"C1-LATE": True}
    with fm_db.connect() as conn:
        row = conn.execute(sa.text("SELECT seconds_used, credited_micros FROM grant_usage "
                                   "WHERE assignment_id = 'A-C1'")).one()
        flags = dict(conn.execute(sa.text("SELECT call_id, late FROM call_credits "
                                          "WHERE customer_id = 'C1'")).all())
    assert (int(row[0]), int(row[1])) == (1200, 1_300_000)
    assert bool(flags["C1-LATE"]) and not bool(flags["C1-U0"])
    assert (out.report_dir / "free_minutes.csv").read_text().count("C1-LATE") == 1
    # posting 7 Jan again, or 8 Jan, never consumes them twice
    assert _post(fm_db, "2027-01-07", tmp_path).ok
    assert _post(fm_db, "2027-01-08", tmp_path).ok
    st = _state(fm_db)
    assert [c for c in st["credits"] if c[0] == "C1"] == [
        ("C1", "2027-01-05", -900_000, 0, "charge"), ("C1", "2027-01-06", -400_000, 0, "charge")]
    assert st["balances"]["C1"] == 10_000_000 + 900_000 + 400_000


def test_report_mode_keeps_counters_and_credits_nothing(fm_db, tmp_path):
    import_csv(fm_db, "assignments", _write(tmp_path / "a2.csv",
               "assignment_id,customer_id,package_id,quantity,start_date,auto_decrement\n"
               "A-C2,C2,UKR,1,2027-01-01,true\n"))
    out = _post(fm_db, "2027-01-06", tmp_path)
    assert out.ok, out.message
    st = _state(fm_db)
    assert [c[0] for c in st["credits"]] == ["C1", "C3"]
    assert ("A-C2", 720, 720, 0) in st["counters"]
    assert st["balances"]["C2"] == 10_000_000


def test_reverse_gives_the_minutes_back_and_a_new_post_credits_once(fm_db, tmp_path):
    first = _post(fm_db, "2027-01-06", tmp_path)
    reverse(fm_db, first.run_id, simulate=False)
    st = _state(fm_db)
    assert st["counters"] == [(f"A-{c}", 720, 0, 0) for c in CUSTOMERS]
    assert st["calls"] == [] and all(b == 10_000_000 for b in st["balances"].values())
    reverse(fm_db, first.run_id, simulate=False)  # twice: nothing more
    assert _state(fm_db)["counters"] == st["counters"]
    assert _post(fm_db, "2027-01-06", tmp_path).ok
    st = _state(fm_db)
    assert [c for c in st["credits"] if c[0] == "C1"] == [
        ("C1", "2027-01-05", -720_000, 0, "charge"), ("C1", "2027-01-05", 720_000, 1, "reversal"),
        ("C1", "2027-01-05", -720_000, 2, "charge")]
    assert st["counters"] == [(f"A-{c}", 720, 720, 720_000) for c in CUSTOMERS]
    assert all(b == 10_720_000 for b in st["balances"].values())


def test_backfill_carries_the_counters_from_night_to_night(fm_db, tmp_path):
    # calls on 5 and 6 Jan; a simulated backfill 6..8 Jan must not consume 5 Jan twice
    import_csv(fm_db, "usage", _write(tmp_path / "u2.csv", _calls(
        [("C1-D6", "C1", "2027-01-06T10:00:00Z", "442071234567", 60, "0.06")])))
    sims = backfill(fm_db, RunRequest(run_date=date(2027, 1, 6), simulate=True,
                                      out_dir=tmp_path / "bf", customer_ids=["C1"]),
                    date(2027, 1, 8))
    credits = [(o.result.due_lines.loc[o.result.due_lines["kind"] == "free_minutes_credit",
                                       "amount"].tolist()) for o in sims]
    assert credits == [[-720_000], [], []]  # 7 Jan: C1-D6 finds the bundle used up
    posts = backfill(fm_db, RunRequest(run_date=date(2027, 1, 6), simulate=False,
                                       out_dir=tmp_path / "bf2", customer_ids=["C1"]),
                     date(2027, 1, 8))
    assert all(o.ok for o in posts)
    st = _state(fm_db)
    assert st["credits"] == [("C1", "2027-01-05", -720_000, 0, "charge")]
    assert st["calls"] == [("C1", 3, 720, 720_000)]


# ----------------------------------------------------------------------------- processes

def _child(url: str, out: Path, go: Path | None = None, crash_at: str | None = None):
    proc = _CTX.Process(target=post_night, args=(url, "2027-01-06", str(out),
                                                 str(go) if go else None, crash_at))
    proc.start()
    return proc


def test_three_concurrent_posts_credit_once(fm_db, db_url, tmp_path):
    go = tmp_path / "go"
    outs = [tmp_path / f"out{i}.json" for i in range(3)]
    kids = [_child(db_url, o, go) for o in outs]
    deadline = time.monotonic() + 120
    while not all(Path(str(o) + ".ready").exists() for o in outs):
        assert time.monotonic() < deadline, "children did not start"
        time.sleep(0.01)
    go.write_text("go")
    for k in kids:
        k.join(timeout=180)
        assert k.exitcode == 0
    results = [json.loads(o.read_text()) for o in outs]
    statuses = sorted(s for r in results for _a, _m, s in r["credits"])
    assert statuses.count("posted") == 3 and statuses.count("already_posted") == 6, results
    assert all(m == -720_000 for r in results for _a, m, _s in r["credits"])
    _once(_state(fm_db))


@pytest.mark.parametrize("point", ["mid_batch:1", "before_commit:1", "after_commit:1"])
def test_sigkill_mid_post_then_rerun_credits_once(fm_db, db_url, tmp_path, point):
    kid = _child(db_url, tmp_path / "out.json", crash_at=point)
    kid.join(timeout=180)
    assert kid.exitcode == -signal.SIGKILL
    st = _state(fm_db)
    if point == "after_commit:1":
        _once(st)
    else:  # nothing of the batch stands: no credit, no counter, no consumed call
        assert st["credits"] == [] and st["counters"] == [] and st["calls"] == []
    assert _post(fm_db, "2027-01-06", tmp_path).ok
    _once(_state(fm_db))


def test_another_date_consuming_meanwhile_defers_the_credit_never_doubles(fm_db, tmp_path):
    """A backfill of 6 Jan computes, then the post of 7 Jan runs first and consumes the calls
    of 5 Jan as late calls; the backfill's post then credits nothing for them (deferred)."""
    import uuid

    from billing_jobs.run.stages import compute_stage, load_stage
    from billing_jobs.store.post import post_result

    req = RunRequest(run_date=date(2027, 1, 6), simulate=False)
    inputs, _rejected = load_stage(fm_db, req)
    stale = compute_stage(inputs, req)
    assert _post(fm_db, "2027-01-07", tmp_path).ok
    st = _state(fm_db)
    assert st["credits"] == [(c, "2027-01-06", -720_000, 0, "charge") for c in CUSTOMERS]
    settled = post_result(fm_db, stale, simulate=False, run_id=str(uuid.uuid4()))
    credit = settled.due_lines[settled.due_lines["kind"] == "free_minutes_credit"]
    assert set(credit["status"]) == {"deferred"}
    assert settled.consumption.empty
    assert _state(fm_db) == st  # nothing consumed or credited twice
