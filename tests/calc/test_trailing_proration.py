"""Worked examples of trailing proration (SPEC section 9): with prorate true, a recurring period
cut by effective_end + 1 is charged retail x qty x kept days / days of the uncut period, rounded
once, half up, to the currency's minor unit. Run on the reference and on the engine."""

from __future__ import annotations

from tests.calc.strategies import D, assignment, package
from tests.calc.test_worked_examples import bill_impl, lines, one


@bill_impl
def test_last_period_cut_by_end_date_is_prorated(bill):
    # March 2027 has 31 days; end 10 Mar keeps 1..10 Mar = 10 days: 31.00 x 10/31 = 10.00,
    # cost 15.50 x 10/31 = 5.00
    inputs = one(package(retail="31", cost="15.5", match="1", prorate=True),
                 assignment(start="2027-01-01", end="2027-03-10"))
    assert lines(bill(inputs, D("2027-02-01"))) == [
        ("A1", "recurring", "2027-02-01", "2027-03-01", "31.00", "15.50"),  # uncut: full
    ]
    assert lines(bill(inputs, D("2027-03-01"))) == [
        ("A1", "recurring", "2027-03-01", "2027-03-11", "10.00", "5.00"),
    ]


@bill_impl
def test_without_prorate_the_cut_period_is_charged_in_full(bill):
    inputs = one(package(retail="31", cost="15.5", match="1", prorate=False),
                 assignment(start="2027-01-01", end="2027-03-10"))
    assert lines(bill(inputs, D("2027-03-01"))) == [
        ("A1", "recurring", "2027-03-01", "2027-03-11", "31.00", "15.50"),
    ]


@bill_impl
def test_quantity_then_one_rounding(bill):
    # 9.99 x 3 = 29.97; x 10/31 = 9.667741... -> 9.67 (rounded once, after the quantity)
    inputs = one(package(retail="9.99", match="1", prorate=True),
                 assignment(quantity=3, start="2027-01-01", end="2027-03-10"))
    assert lines(bill(inputs, D("2027-03-01"))) == [
        ("A1", "recurring", "2027-03-01", "2027-03-11", "9.67", "0.00"),
    ]


@bill_impl
def test_exact_half_rounds_up(bill):
    # April 2027 has 30 days; end 15 Apr keeps 15: 0.01 x 15/30 = 0.005 -> 0.01 (half up)
    inputs = one(package(retail="0.01", match="1", prorate=True),
                 assignment(start="2027-01-01", end="2027-04-15"))
    assert lines(bill(inputs, D("2027-04-01"))) == [
        ("A1", "recurring", "2027-04-01", "2027-04-16", "0.01", "0.00"),
    ]


@bill_impl
def test_end_on_last_day_of_period_is_not_a_cut(bill):
    # end 31 Mar: the period 1 Mar -> 1 Apr is whole, 31.00 in full
    inputs = one(package(retail="31", match="1", prorate=True),
                 assignment(start="2027-01-01", end="2027-03-31"))
    assert lines(bill(inputs, D("2027-03-01"))) == [
        ("A1", "recurring", "2027-03-01", "2027-04-01", "31.00", "0.00"),
    ]
