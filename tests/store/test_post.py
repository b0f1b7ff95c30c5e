"""post_result in one process: exactly once, invoiced lines, exact money, read-only simulate."""

from __future__ import annotations

import uuid
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from billing_jobs.core.frames import BillingResult
from billing_jobs.core.errors import GateError
from billing_jobs.store.load import load_inputs
from billing_jobs.store.post import post_result

from tests.store.helpers import (
    INITIAL_BALANCE,
    balances,
    dump,
    expected_debits,
    fresh_engine,
    ledger_keys,
    seed_customers,
    synthetic_result,
)

N = 7


def _post(engine, result, **kw):
    return post_result(engine, result, simulate=False, run_id=str(uuid.uuid4()), **kw)


def test_post_twice_posts_once(db_url):
    engine = fresh_engine(db_url)
    seed_customers(engine, N)
    result = synthetic_result(N)
    first = _post(engine, result, batch_customers=3)

    lines = first.due_lines
    assert list(lines.columns[:-1]) == list(result.due_lines.columns)
    assert (lines["status"] == lines["auto_decrement"].map({True: "posted", False: "invoiced"})).all()
    assert (first.grants["status"] == "posted").all() and len(first.grants) == 4
    after_first = dump(engine)
    assert len(after_first["ledger"]) == 3 * N
    want = {c: INITIAL_BALANCE - d for c, d in expected_debits(result).items()}
    assert balances(engine) == want

    second = _post(engine, result, batch_customers=3)
    assert (second.due_lines["status"] == "already_posted").all()
    assert (second.grants["status"] == "already_posted").all()
    assert dump(engine) == after_first  # not a row, not a micro changed
    engine.dispose()


def test_ledger_rows_carry_the_line_exactly(db_url):
    engine = fresh_engine(db_url)
    seed_customers(engine, 2)
    result = synthetic_result(2)
    run_id = str(uuid.uuid4())
    post_result(engine, result, simulate=False, run_id=run_id)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT assignment_id, kind, period_start, period_end, quantity, unit_price_micros, amount_micros, "
            "cost_micros, currency, auto_decrement, status, run_id, run_date, customer_id, package_id "
            "FROM ledger ORDER BY assignment_id, kind")).all()
        grants = conn.execute(sa.text(
            "SELECT assignment_id, period_start, period_end, destination, seconds, run_id, "
            "customer_id FROM grants")).all()
    by_key = {(r[0], r[1]): r for r in rows}
    did = by_key[("A0002-did", "recurring")]
    assert str(did.period_start) == "2027-03-01" and str(did.period_end) == "2027-04-01"
    assert (did.quantity, did.unit_price_micros, did.amount_micros, did.cost_micros) == (2, 1_250_000, 2_500_000, 1_000_000)
    assert did.currency == "EUR" and bool(did.auto_decrement) and did.status == "posted"
    assert did.run_id == run_id and str(did.run_date) == "2027-03-01" and did.customer_id == "C0002"
    setup = by_key[("A0002-seat", "setup")]
    assert setup.period_end is None and setup.amount_micros == 250_000  # 0.25 exactly
    assert by_key[("A0001-seat", "setup")].amount_micros == 125_000      # 0.125 exactly
    minimum = by_key[("A0001-min", "minimum_spend")]
    assert minimum.status == "invoiced" and not bool(minimum.auto_decrement)
    assert str(minimum.period_start) == "2027-02-01" and minimum.amount_micros == 3_330_000
    assert len(grants) == 1
    g = grants[0]
    assert (g.assignment_id, str(g.period_start), str(g.period_end)) == ("A0001-fm", "2027-03-01", "2027-04-01")
    assert (g.destination, g.seconds, g.run_id, g.customer_id) == ("^44|^91", 6000, run_id, "C0001")
    # auto-decrement lines debit the balance; the invoiced minimum-spend line does not
    assert balances(engine) == {"C0001": INITIAL_BALANCE - 2_500_000 - 125_000,
                                "C0002": INITIAL_BALANCE - 2_500_000 - 250_000}
    engine.dispose()


def test_overlapping_results_post_each_key_once(db_url):
    """A backfill or a one-customer run overlapping a full run posts nothing twice."""
    engine = fresh_engine(db_url)
    seed_customers(engine, N)
    full = synthetic_result(N)
    part = BillingResult(
        due_lines=full.due_lines[full.due_lines["customer_id"].isin(["C0002", "C0005"])],
        grants=full.grants[full.grants["customer_id"].isin(["C0005"])],
        utilisation=full.utilisation,
    )
    first = _post(engine, part)
    assert first.due_lines.index.equals(part.due_lines.index)  # same frames, plus status
    out = _post(engine, full, batch_customers=2)
    lines = out.due_lines
    repeated = lines["customer_id"].isin(["C0002", "C0005"])
    assert (lines.loc[repeated, "status"] == "already_posted").all()
    assert lines.loc[~repeated, "status"].isin(["posted", "invoiced"]).all()
    g = out.grants.set_index("customer_id")["status"]
    assert g["C0005"] == "already_posted" and (g.drop("C0005") == "posted").all()
    assert len(ledger_keys(engine)) == 3 * N
    assert balances(engine) == {c: INITIAL_BALANCE - d for c, d in expected_debits(full).items()}
    engine.dispose()


def test_simulate_never_writes(db_url):
    engine = fresh_engine(db_url)
    seed_customers(engine, N)
    result = synthetic_result(N)
    before = dump(engine)
    sim = post_result(engine, result, simulate=True, run_id="sim-1")
    assert (sim.due_lines["status"] == "simulated").all()
    assert (sim.grants["status"] == "simulated").all()
    assert dump(engine) == before

    part = BillingResult(due_lines=result.due_lines.iloc[:5], grants=result.grants.iloc[:1],
                         utilisation=result.utilisation)
    _post(engine, part)
    before = dump(engine)
    sim = post_result(engine, result, simulate=True, run_id="sim-2")
    assert dump(engine) == before
    assert sim.due_lines["status"].tolist() == ["already_posted"] * 5 + ["simulated"] * (3 * N - 5)
    assert sim.grants["status"].tolist() == ["already_posted"] + ["simulated"] * (len(result.grants) - 1)
    # the simulation of the rest shows exactly what the post then does
    real = _post(engine, result)
    assert (real.due_lines["status"] != "already_posted").tolist() == \
        (sim.due_lines["status"] == "simulated").tolist()
    engine.dispose()


def test_readers_do_not_wait_for_a_writer(db_url):
    """A simulation and a load run while another transaction holds the write lock (SQLite)
    or row locks (PostgreSQL), and see the last committed state."""
    engine = fresh_engine(db_url)
    seed_customers(engine, 3)
    result = synthetic_result(3)
    with engine.connect() as writer:
        trans = writer.begin()
        writer.execute(sa.text("UPDATE customers SET balance_micros = 0, name = 'changing'"))
        sim = post_result(engine, result, simulate=True, run_id="sim")
        inputs = load_inputs(engine, date(2027, 3, 1))
        trans.rollback()
    assert (sim.due_lines["status"] == "simulated").all()
    assert (inputs.customers["balance"] == INITIAL_BALANCE).all()
    engine.dispose()


def test_empty_result_and_progress(db_url):
    engine = fresh_engine(db_url)
    seed_customers(engine, 3)
    empty = synthetic_result(0)
    for simulate in (True, False):
        out = post_result(engine, empty, simulate=simulate, run_id=str(uuid.uuid4()))
        assert out.due_lines.empty and "status" in out.due_lines.columns
        assert out.grants.empty and "status" in out.grants.columns
    calls = []
    _post(engine, synthetic_result(3), batch_customers=1, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(4, 11), (7, 11), (11, 11)]  # 3 lines + grant, 3 lines, 3 lines + grant
    engine.dispose()


def test_duplicate_keys_are_refused_before_writing(db_url):
    engine = fresh_engine(db_url)
    seed_customers(engine, 2)
    result = synthetic_result(2)
    doubled = BillingResult(
        due_lines=pd.concat([result.due_lines, result.due_lines.iloc[[0]]], ignore_index=True),
        grants=result.grants, utilisation=result.utilisation)
    before = dump(engine)
    with pytest.raises(GateError, match="repeat a posting key"):
        _post(engine, doubled)
    assert dump(engine) == before
    engine.dispose()


def test_unposted_customer_without_row_still_gets_ledger(db_url):
    """Debits are set-based: a customer missing from `customers` (the gate should have
    caught it) does not block the others."""
    engine = fresh_engine(db_url)
    seed_customers(engine, 1)
    out = _post(engine, synthetic_result(2))
    assert out.due_lines["status"].isin(["posted", "invoiced"]).all()
    assert balances(engine) == {"C0001": INITIAL_BALANCE - 2_625_000}
    engine.dispose()


def test_run_date_is_stored_as_given(db_url):
    engine = fresh_engine(db_url)
    seed_customers(engine, 1)
    _post(engine, synthetic_result(1, run_date=date(2028, 2, 29)))
    with engine.connect() as conn:
        assert {str(d) for d in conn.execute(sa.text("SELECT run_date FROM ledger")).scalars()} == {"2028-02-29"}
    engine.dispose()
