"""The posting gate: hand-built BillingResult frames, corrupted one way at a time."""

from __future__ import annotations

import pandas as pd
import pytest

from billing_jobs.checks import gate
from billing_jobs.core.frames import (
    DUE_LINE_COLUMNS,
    GRANT_COLUMNS,
    UTILISATION_COLUMNS,
    BillingInputs,
    BillingResult,
    empty_frame,
)
from billing_jobs.core.errors import BillingError, GateError

M = 1_000_000
D = pd.Timestamp


def inputs() -> BillingInputs:
    customers = pd.DataFrame({"customer_id": ["C1", "C2", "C3", "C4"],
                              "name": ["a", "b", "c", "d"],
                              "currency": ["EUR", "JPY", "KWD", "EUR"],
                              "balance": [0, 0, 0, 0]})
    packages = pd.DataFrame({
        "package_id": ["P1", "P2", "P3", "P4"], "name": ["", "", "", ""],
        "type": ["standard", "free_minutes", "standard", "standard"],
        "cost": [M, 0, 0, 0], "retail": [10 * M, 5 * M, 334 * M, M],
        "setup_cost": [0, 0, 0, 0], "setup_retail": [0, 0, 0, 0],
        "currency": ["EUR", "EUR", "JPY", "EUR"],
        "frequency": ["monthly", "weekly", "monthly", "monthly"],
        "frequency_match": [None, None, None, None], "free_minutes": [0, 100, 0, 0],
        "destination": ["", "^44", "", ""], "minimum_spend": [False] * 4,
        "minimum_days": [0, 0, 0, 90], "prorate": [False] * 4, "description": [""] * 4})
    assignments = pd.DataFrame({
        "assignment_id": ["A1", "A2", "A3", "A4", "A5"],
        "customer_id": ["C1", "C1", "C2", "C3", "C4"],
        "package_id": ["P1", "P2", "P3", "P1", "P4"],
        "quantity": [1, 1, 1, 1, 1],
        "start_date": pd.to_datetime(["2027-01-01", "2027-01-04", "2027-01-01", "2027-01-01",
                                      "2027-01-01"]).astype("datetime64[s]"),
        "end_date": pd.to_datetime([None, "2027-03-31", "2027-01-31", None, "2027-01-31"]
                                   ).astype("datetime64[s]"),
        "auto_decrement": [True, True, False, True, True],
        "free_minutes": pd.array([None] * 5, dtype="Int64")})
    return BillingInputs(customers, packages, assignments, empty_frame(
        ["call_id", "customer_id", "start_time", "destination", "duration_s", "charge"]))


def line(assignment, customer, package, kind, start, amount, currency, cost=0, end=None):
    return {"run_date": D(start), "customer_id": customer, "assignment_id": assignment,
            "package_id": package, "kind": kind, "period_start": D(start),
            "period_end": D(end) if end else pd.NaT, "quantity": 1, "unit_price": amount,
            "amount": amount, "cost": cost, "currency": currency, "auto_decrement": True}


def good_lines() -> list[dict]:
    return [
        line("A1", "C1", "P1", "recurring", "2027-01-01", 10 * M, "EUR", M, "2027-02-01"),
        line("A2", "C1", "P2", "recurring", "2027-01-04", 5 * M, "EUR", 0, "2027-01-11"),
        line("A3", "C2", "P3", "recurring", "2027-01-01", 334 * M, "JPY", 0, "2027-02-01"),
        line("A4", "C3", "P1", "recurring", "2027-01-01", 1_250_000, "KWD", 0, "2027-02-01"),
        # A5 ends 2027-01-31 but minimum_days 90 bills it through 2027-03-31
        line("A5", "C4", "P4", "recurring", "2027-03-01", M, "EUR", 0, "2027-04-01"),
    ]


def grants_rows() -> list[dict]:
    return [{"run_date": D("2027-01-04"), "customer_id": "C1", "assignment_id": "A2",
             "package_id": "P2", "period_start": D("2027-01-04"),
             "period_end": D("2027-01-11"), "destination": "^44", "seconds": 6000}]


def result(lines=None, grants=None) -> BillingResult:
    dl = pd.DataFrame(good_lines() if lines is None else lines, columns=DUE_LINE_COLUMNS)
    for c in ("run_date", "period_start", "period_end"):
        dl[c] = pd.to_datetime(dl[c]).astype("datetime64[s]")
    for c in ("quantity", "unit_price", "amount", "cost"):
        dl[c] = dl[c].astype("int64")
    gr = pd.DataFrame(grants_rows() if grants is None else grants, columns=GRANT_COLUMNS)
    for c in ("run_date", "period_start", "period_end"):
        gr[c] = pd.to_datetime(gr[c]).astype("datetime64[s]")
    gr["seconds"] = gr["seconds"].astype("int64")
    return BillingResult(dl, gr, empty_frame(UTILISATION_COLUMNS))


def with_change(index: int, **values) -> list[dict]:
    rows = good_lines()
    rows[index].update(values)
    return rows


def fails(res: BillingResult) -> str:
    with pytest.raises(GateError) as info:
        gate(res, inputs())
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("posting gate failed, nothing posted: ")
    assert isinstance(info.value, BillingError)
    return msg


def test_good_lines_pass():
    assert gate(result(), inputs()) is None


def test_empty_result_passes():
    assert gate(result(lines=[], grants=[]), inputs()) is None


def test_negative_amount():
    msg = fails(result(with_change(0, amount=-10 * M)))
    assert "amount >= 0 [expect_column_values_to_be_between on due_lines]" in msg
    assert "1 failing, e.g. (A1, recurring, 2027-01-01)" in msg


def test_negative_cost():
    msg = fails(result(with_change(1, cost=-1 * M)))
    assert "cost >= 0" in msg and "(A2, recurring, 2027-01-04)" in msg


def test_amount_over_the_maximum():
    msg = fails(result(with_change(0, amount=10**18 + 10_000)))
    assert "amount <= 1000000000000 units" in msg and "(A1, recurring, 2027-01-01)" in msg


def test_duplicate_posting_key():
    rows = good_lines() + [good_lines()[0]]
    msg = fails(result(rows))
    assert ("posting key (assignment_id, kind, period_start) is unique "
            "[expect_compound_columns_to_be_unique on due_lines]: 2 failing") in msg
    assert "(A1, recurring, 2027-01-01), (A1, recurring, 2027-01-01)" in msg


def test_same_period_different_kind_is_not_a_duplicate():
    rows = good_lines() + [dict(good_lines()[0], kind="setup")]
    assert gate(result(rows), inputs()) is None


def test_wrong_currency():
    msg = fails(result(with_change(0, currency="USD")))
    assert "line currency equals the customer's currency" in msg
    assert "(A1, recurring, 2027-01-01)" in msg


def test_line_before_the_start_date():
    msg = fails(result(with_change(1, period_start=D("2027-01-03"))))
    assert "line period_start inside the assignment's service window" in msg
    assert "(A2, recurring, 2027-01-03)" in msg


def test_line_after_the_end_date():
    msg = fails(result(with_change(2, period_start=D("2027-02-01"))))
    assert "service window" in msg and "(A3, recurring, 2027-02-01)" in msg


def test_line_after_the_minimum_term():
    msg = fails(result(with_change(4, period_start=D("2027-04-01"))))
    assert "service window" in msg and "(A5, recurring, 2027-04-01)" in msg


def test_amount_not_a_multiple_of_the_minor_unit():
    msg = fails(result(with_change(0, amount=10_005_000)))  # 10.005 EUR
    assert "amount is a multiple of the currency's minor unit" in msg
    assert "(A1, recurring, 2027-01-01)" in msg


def test_yen_amount_with_a_fraction():
    msg = fails(result(with_change(2, amount=334_500_000)))  # 334.5 JPY
    assert "minor unit" in msg and "(A3, recurring, 2027-01-01)" in msg


def test_cost_not_a_multiple_of_the_minor_unit():
    msg = fails(result(with_change(3, cost=1_250_500)))  # 1.2505 KWD
    assert "cost is a multiple of the currency's minor unit" in msg


def test_unknown_kind():
    msg = fails(result(with_change(0, kind="bonus")))
    assert "kind in setup/recurring/prorated/minimum_spend" in msg
    assert "(A1, bonus, 2027-01-01)" in msg


def test_line_of_an_unknown_assignment():
    msg = fails(result(with_change(0, assignment_id="A99")))
    assert "every line belongs to a validated assignment" in msg and "(A99, " in msg


def test_line_of_another_customer():
    msg = fails(result(with_change(0, customer_id="C4")))
    assert "line customer is the assignment's customer" in msg


def test_missing_period_start():
    msg = fails(result(with_change(0, period_start=pd.NaT)))
    assert "period_start is present" in msg and "(A1, recurring, ?)" in msg


def test_totals_that_do_not_reconcile():
    # two amounts whose int64 total overflows: the range rule and the reconciliation fail
    rows = good_lines() + [dict(good_lines()[0], kind="setup", amount=2**62),
                           dict(good_lines()[0], kind="prorated", amount=2**62)]
    msg = fails(result(rows))
    assert "per-customer totals reconcile" in msg
    assert "[expect_column_pair_values_to_be_equal on customer totals]: 1 failing, e.g. (C1, EUR)" in msg


def test_every_failure_is_named():
    rows = with_change(0, amount=-10 * M)
    rows[1]["currency"] = "USD"
    msg = fails(result(rows))
    assert "amount >= 0" in msg and "line currency equals" in msg


def test_many_offending_keys_are_counted():
    rows = [line("A1", "C1", "P1", "recurring", f"2027-01-{d:02d}", -M, "EUR") for d in range(1, 11)]
    msg = fails(result(rows))
    assert "10 failing, e.g. (A1, recurring, 2027-01-01)" in msg and "and 5 more" in msg


def test_negative_grant_seconds():
    g = grants_rows()
    g[0]["seconds"] = -60
    msg = fails(result(grants=g))
    assert "seconds >= 0 [expect_column_values_to_be_between on grants]" in msg
    assert "(A2, 2027-01-04)" in msg


def test_duplicate_grant_key():
    msg = fails(result(grants=grants_rows() * 2))
    assert "grant key (assignment_id, period_start) is unique" in msg


def test_grant_outside_the_window():
    g = grants_rows()
    g[0]["period_start"] = D("2027-04-05")
    msg = fails(result(grants=g))
    assert "grant period_start inside the assignment's service window" in msg


def test_missing_columns():
    res = result()
    res.due_lines = res.due_lines.drop(columns=["amount"])
    with pytest.raises(GateError, match="due_lines lacks columns amount"):
        gate(res, inputs())
