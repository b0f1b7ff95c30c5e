"""The poster's set-based steps (#29): the inserted rows' positions, exact debits summed without
a Python loop per line, the balance bound as one set check - same outcomes on both databases."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from billing_jobs.core.errors import GateError
from billing_jobs.core.frames import BillingResult
from billing_jobs.core.money import BALANCE_BOUND_MICROS, MAX_MICROS, format_amount
from billing_jobs.store import ledger
from billing_jobs.store.post import _line_debits, _line_table, post_result

from tests.store.helpers import (INITIAL_BALANCE, balances, dump, expected_debits, fresh_engine,
                                 ledger_keys, seed_customers, synthetic_result)


def _post(engine, result, **kw):
    return post_result(engine, result, simulate=False, run_id=str(uuid.uuid4()), **kw)


def _with_amounts(result, amounts: dict[str, int]):
    """`result` with the setup line of each customer in `amounts` charging that amount."""
    lines = result.due_lines.copy()
    for customer, amount in amounts.items():
        at = (lines["customer_id"] == customer) & (lines["kind"] == "setup")
        lines.loc[at, ["unit_price", "amount"]] = amount
    return BillingResult(due_lines=lines, grants=result.grants.iloc[0:0],
                         utilisation=result.utilisation, extended_ends=result.extended_ends)


def test_line_debits_are_exact_sums_of_the_inserted_auto_decrement_lines():
    rng = np.random.default_rng(7)
    n = 400
    frame = synthetic_result(1).due_lines
    lines = pd.DataFrame({c: np.repeat(frame[c].to_numpy()[:1], n) for c in frame.columns})
    lines["customer_id"] = rng.choice(["C1", "C2", "C3", "C4"], n)
    lines["assignment_id"] = [f"A{i}" for i in range(n)]
    lines["amount"] = rng.integers(-MAX_MICROS, MAX_MICROS, n, dtype="int64")
    lines.loc[:19, "amount"] = MAX_MICROS  # sums far beyond 64 bits
    lines["auto_decrement"] = rng.random(n) < 0.7
    table = _line_table(lines)
    inserted = np.sort(rng.choice(n, 300, replace=False)).astype("int64")
    # the batch table holds its rows in any order: the debits follow `seq`, not the row
    shuffled = table.take(rng.permutation(n))
    want = ledger.posted_debits(
        {"customer_id": lines.at[i, "customer_id"], "amount_micros": int(lines.at[i, "amount"]),
         "status": "posted" if lines.at[i, "auto_decrement"] else "invoiced"}
        for i in inserted)
    got = _line_debits(shuffled, inserted)
    assert got == {c: a for c, a in want.items() if a}
    assert all(type(a) is int for a in got.values())
    assert _line_debits(table, np.zeros(0, dtype="int64")) == {}


def test_batches_post_each_line_once_with_exact_balances(db_url):
    engine = fresh_engine(db_url)
    seed_customers(engine, 9)
    result = synthetic_result(9)
    first = _post(engine, result, batch_customers=4)  # 3 batches
    lines = first.due_lines
    assert (lines["status"] == np.where(lines["auto_decrement"], "posted", "invoiced")).all()
    assert (first.grants["status"] == "posted").all()
    assert balances(engine) == {c: INITIAL_BALANCE - d for c, d in expected_debits(result).items()}
    assert len(ledger_keys(engine)) == len(lines)
    after = dump(engine)
    again = _post(engine, result)  # the database's default batch size: one batch here
    assert (again.due_lines["status"] == "already_posted").all()
    assert (again.grants["status"] == "already_posted").all()
    assert dump(engine) == after
    engine.dispose()


def test_balance_bound_refuses_the_batch_naming_the_first_customer(db_url):
    engine = fresh_engine(db_url)
    seed_customers(engine, 4, balance=-BALANCE_BOUND_MICROS + 1_000_000)
    result = synthetic_result(4)
    before = dump(engine)
    with pytest.raises(GateError) as err:
        _post(engine, result, batch_customers=10)
    debit = expected_debits(result)["C0001"]
    new = -BALANCE_BOUND_MICROS + 1_000_000 - debit
    assert str(err.value) == (
        f"refusing to post: customer C0001: balance would become {format_amount(new, 'EUR')} "
        f"EUR, beyond the bound of {format_amount(BALANCE_BOUND_MICROS, 'EUR')} either way; "
        "nothing posted for its batch")
    assert dump(engine) == before  # not a row, not a micro
    engine.dispose()


def test_bound_check_is_exact_beyond_64_bits(db_url):
    """Ten lines of the largest amount: the customer's debit (1e19 micros) does not fit in 64
    bits; the refusal names the exact balance it would give, and nothing is posted."""
    engine = fresh_engine(db_url)
    seed_customers(engine, 2, balance=0)
    one = synthetic_result(1)
    base = one.due_lines
    setup = base[base["kind"] == "setup"]
    lines = pd.concat([setup.assign(assignment_id=f"A-big-{i}", customer_id="C0002",
                                    unit_price=MAX_MICROS, amount=MAX_MICROS)
                       for i in range(10)] + [base], ignore_index=True)
    result = BillingResult(due_lines=lines, grants=one.grants.iloc[0:0],
                           utilisation=one.utilisation, extended_ends=one.extended_ends)
    before = dump(engine)
    with pytest.raises(GateError, match="customer C0002: balance would become "
                       + format_amount(-10 * MAX_MICROS, "EUR").replace(".", r"\.")
                       + " EUR"):
        _post(engine, result)
    assert dump(engine) == before
    engine.dispose()


def test_a_refused_batch_leaves_the_earlier_batches_posted(db_url):
    engine = fresh_engine(db_url)
    seed_customers(engine, 6)
    result = _with_amounts(synthetic_result(6), {"C0005": BALANCE_BOUND_MICROS + INITIAL_BALANCE
                                                 + 1})
    with pytest.raises(GateError, match="customer C0005: balance would become"):
        _post(engine, result, batch_customers=2)  # C0005 is in the third batch
    got = balances(engine)
    debits = expected_debits(result)
    assert got == {c: INITIAL_BALANCE - (debits[c] if c < "C0005" else 0) for c in got}
    assert {a for a, _, _ in ledger_keys(engine)} == {
        a for a, c in zip(result.due_lines["assignment_id"], result.due_lines["customer_id"])
        if c < "C0005"}
    engine.dispose()
