"""Free minutes that reduce the bill (SPEC section 9), worked examples with the amounts
written out, each on the row-by-row reference and on the engine."""

from __future__ import annotations

import pandas as pd

from billing_jobs.calc.billing import compute_billing
from tests.calc.reference import reference_billing
from tests.calc.strategies import D, assignment, call, customer, make_inputs, package
from tests.calc.test_worked_examples import bill_impl, bill_nights


def _uk(pid="UK", minutes=12, destination="^44", **kw):
    return package(pid, type="free_minutes", free_minutes=minutes, destination=destination,
                   retail="5", **kw)


def credits(result) -> list[tuple]:
    """(assignment, period_start, amount micros) of the credit lines."""
    df = result.due_lines
    df = df[df["kind"] == "free_minutes_credit"]
    return sorted((r.assignment_id, pd.Timestamp(r.period_start).date().isoformat(),
                   int(r.amount)) for r in df.itertuples())


def used(result) -> list[tuple]:
    return sorted((r.assignment_id, int(r.seconds_granted), int(r.seconds_used), int(r.credited))
                  for r in result.utilisation.itertuples())


@bill_impl
def test_issue_example_three_calls_credit_072(bill):
    inputs = make_inputs([customer("C1")], [_uk()], [assignment("A1", package_id="UK")],
                         [call(f"U{i}", at=f"2027-01-05T1{i}:00:00Z", destination="442071234567",
                               duration_s=300, charge="0.30") for i in range(3)])
    r = bill(inputs, D("2027-01-06"))
    assert credits(r) == [("A1", "2027-01-05", -720_000)]  # 0.30 + 0.30 + 0.30 x 120/300
    assert used(r) == [("A1", 720, 720, 720_000)]
    assert credits(bill(inputs, D("2027-01-05"))) == []  # the calls of 5 Jan are not yet due


@bill_impl
def test_partial_cover_and_spill_over_two_grants(bill):
    # A (5 min, ends first: weekly) then B (10 min, monthly); one 8-minute call of 0.80 and
    # one 10-minute call of 1.00: A covers 300 s of the first (0.50), B 180 s of it (0.30)
    # and 420 s of the second (0.70).
    inputs = make_inputs(
        [customer("C1")],
        [_uk("W", minutes=5, frequency="weekly"), _uk("M", minutes=10)],
        [assignment("A", package_id="W", start="2027-01-04"),
         assignment("B", package_id="M", start="2027-01-01")],
        [call("U1", at="2027-01-05T10:00:00Z", destination="4420", duration_s=480, charge="0.80"),
         call("U2", at="2027-01-05T11:00:00Z", destination="4420", duration_s=600, charge="1.00")])
    r = bill(inputs, D("2027-01-06"))
    assert credits(r) == [("A", "2027-01-05", -500_000), ("B", "2027-01-05", -1_000_000)]
    assert used(r) == [("A", 300, 300, 500_000), ("B", 600, 600, 1_000_000)]


@bill_impl
def test_pattern_that_does_not_match_is_charged_in_full(bill):
    inputs = make_inputs([customer("C1")], [_uk()], [assignment("A1", package_id="UK")],
                         [call("U1", at="2027-01-05T10:00:00Z", destination="33144556677",
                               duration_s=300, charge="0.30")])
    r = bill(inputs, D("2027-01-06"))
    assert credits(r) == [] and used(r) == [("A1", 720, 0, 0)]


@bill_impl
def test_call_at_local_midnight_in_berlin(bill):
    # 23:30 UTC on 5 Jan is 00:30 on 6 Jan in Berlin: the post of 7 Jan consumes it, not 6 Jan
    inputs = make_inputs([customer("C1")], [_uk()], [assignment("A1", package_id="UK")],
                         [call("U1", at="2027-01-05T23:30:00Z", destination="4420",
                               duration_s=60, charge="0.07")])
    assert credits(bill(inputs, D("2027-01-06"), "Europe/Berlin")) == []
    assert credits(bill(inputs, D("2027-01-07"), "Europe/Berlin")) == [("A1", "2027-01-06", -70_000)]
    assert credits(bill(inputs, D("2027-01-06"), "UTC")) == [("A1", "2027-01-05", -70_000)]


@bill_impl
def test_report_mode_moves_counters_without_a_credit(bill):
    inputs = make_inputs([customer("C1")], [_uk(free_minutes_mode="report")],
                         [assignment("A1", package_id="UK")],
                         [call("U1", at="2027-01-05T10:00:00Z", destination="4420",
                               duration_s=300, charge="0")])
    r = bill(inputs, D("2027-01-06"))
    assert credits(r) == [] and used(r) == [("A1", 720, 300, 0)]


@bill_impl
def test_minimum_spend_is_net_of_the_credits(bill):
    # commitment 10.00 a month; the customer spent 3.00 on UK calls of which the bundle
    # covered 0.72: real spend 2.28, shortfall 7.72 on 1 Feb
    inputs = make_inputs(
        [customer("C1")],
        [_uk(), package("MS", retail="10", minimum_spend=True)],
        [assignment("A1", package_id="UK"), assignment("M1", package_id="MS")],
        [call(f"U{i}", at=f"2027-01-{10 + i:02d}T10:00:00Z", destination="4420",
              duration_s=300, charge="0.30") for i in range(10)])
    r = bill_nights(bill, inputs, D("2027-01-02"), D("2027-02-01"))
    ms = r.due_lines[r.due_lines["kind"] == "minimum_spend"]
    assert ms["amount"].tolist() == [7_720_000]
    # a single night without the earlier posts knows nothing consumed: the full 3.00 counts
    # except what its own late window consumes (none: the calls are older than 7 days)
    alone = bill(inputs, D("2027-02-01"))
    assert alone.due_lines.loc[alone.due_lines["kind"] == "minimum_spend", "amount"].tolist() \
        == [7_000_000]


def test_engine_and_reference_agree_over_a_month_of_nights():
    inputs = make_inputs(
        [customer("C1"), customer("C2", currency="JPY")],
        [_uk(), _uk("UKJ", minutes=3, currency="JPY", frequency="weekly"),
         package("MS", retail="10", minimum_spend=True)],
        [assignment("A1", package_id="UK"), assignment("M1", package_id="MS"),
         assignment("J1", "C2", package_id="UKJ", start="2027-01-03")],
        [call(f"U{i}", "C1" if i % 3 else "C2", at=f"2027-01-{1 + i % 28:02d}T{i % 24:02d}:17:00Z",
              destination="4420" if i % 5 else "331", duration_s=37 * (i % 9 + 1),
              charge=f"{(i % 7) * 0.11:.2f}" if i % 3 else str(i % 7 * 10)) for i in range(120)])
    ref = bill_nights(reference_billing, inputs, D("2027-01-02"), D("2027-02-01"))
    eng = bill_nights(compute_billing, inputs, D("2027-01-02"), D("2027-02-01"))
    assert credits(eng) == credits(ref) and used(eng) == used(ref)
    assert sorted(eng.due_lines["amount"]) == sorted(ref.due_lines["amount"])
