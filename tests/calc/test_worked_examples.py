"""Worked examples of SPEC sections 3 and 4, each with its expected amounts written out.

Every example runs against both the row-by-row reference (tests/calc/reference.py) and
the vectorised engine (`billing_jobs.calc.billing.compute_billing`).
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pandas as pd
import pytest

from billing_jobs.calc.billing import compute_billing
from billing_jobs.calc.free_minutes import advance_state
from tests.calc.reference import FreeMinuteState, minor_digits, reference_billing
from tests.calc.strategies import D, assignment, call, customer, make_inputs, package


def _engine(inputs, run_date, tz="UTC"):
    return compute_billing(inputs, run_date, tz)


bill_impl = pytest.mark.parametrize("bill", [reference_billing, _engine],
                                    ids=["reference", "engine"])


def bill_nights(bill, inputs, first: date, last: date, tz="UTC"):
    """Post every night from `first` to `last` (free-minute state carried from night to
    night: the reference's own state, or the engine's `advance_state`); the last result."""
    inputs = dataclasses.replace(inputs)  # the caller's inputs keep their (empty) state
    state = FreeMinuteState.fresh()
    result = None
    for day in pd.date_range(first, last, freq="D"):
        if bill is reference_billing:
            result = reference_billing(inputs, day.date(), tz, state=state)
        else:
            result = bill(inputs, day.date(), tz)
            inputs.counters, inputs.consumed = advance_state(
                inputs.counters, inputs.consumed, result.consumption, result.grant_counters)
    return result


# --------------------------------------------------------------------------- helpers

def _iso(value) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).date().isoformat()


def _money(micros: int, currency: str) -> str:
    """Micros as text in the currency's minor unit; flags a value that is not rounded to it."""
    digits = minor_digits(currency)
    step = 10 ** (6 - digits)
    units, rest = divmod(int(micros), step)
    if rest:
        return f"{int(micros)} micros (NOT rounded to {digits} digits)"
    if digits == 0:
        return str(units)
    return f"{units // 10**digits}.{units % 10**digits:0{digits}d}"


def lines(result):
    """(assignment, kind, period_start, period_end, amount, cost), sorted."""
    df = result.due_lines
    return sorted(
        (r.assignment_id, r.kind, _iso(r.period_start), _iso(r.period_end),
         _money(r.amount, r.currency), _money(r.cost, r.currency))
        for r in df.itertuples()
    )


def grants(result):
    """(assignment, period_start, period_end, destination, seconds), sorted."""
    return sorted(
        (r.assignment_id, _iso(r.period_start), _iso(r.period_end), r.destination, int(r.seconds))
        for r in result.grants.itertuples()
    )


def utilisation(result):
    """(assignment, period_start, period_end, seconds_granted, seconds_used), sorted."""
    return sorted(
        (r.assignment_id, _iso(r.period_start), _iso(r.period_end), int(r.seconds_granted),
         int(r.seconds_used))
        for r in result.utilisation.itertuples()
    )


def one(pkg: dict, asg: dict | None = None, usage=(), currency=None):
    """Inputs with one customer C1, one package P1 and one assignment A1."""
    currency = currency or pkg["currency"]
    return make_inputs([customer("C1", currency)], [pkg], [asg or assignment()], usage)


# --------------------------------------------------------------------------- recurring

@bill_impl
def test_monthly_recurring_times_quantity(bill):
    inputs = one(package(retail="9.99", cost="4.5"), assignment(quantity=3, start="2027-01-15"))
    assert lines(bill(inputs, D("2027-03-15"))) == [
        ("A1", "recurring", "2027-03-15", "2027-04-15", "29.97", "13.50"),
    ]
    assert lines(bill(inputs, D("2027-03-16"))) == []
    assert lines(bill(inputs, D("2027-01-14"))) == []


@bill_impl
def test_recurring_line_carries_unit_price_quantity_currency_and_auto_decrement(bill):
    inputs = one(package(retail="9.99", cost="4.5"),
                 assignment(quantity=3, start="2027-01-15", auto_decrement=False))
    df = bill(inputs, D("2027-02-15")).due_lines
    assert len(df) == 1
    r = df.iloc[0]
    assert (r.customer_id, r.package_id, r.currency) == ("C1", "P1", "EUR")
    assert int(r.quantity) == 3 and int(r.unit_price) == 9_990_000
    assert not bool(r.auto_decrement)
    assert pd.Timestamp(r.run_date).date() == date(2027, 2, 15)


@bill_impl
def test_daily_every_day(bill):
    inputs = one(package(retail="0.5", frequency="daily"), assignment(start="2027-02-27"))
    assert lines(bill(inputs, D("2027-02-28"))) == [
        ("A1", "recurring", "2027-02-28", "2027-03-01", "0.50", "0.00"),
    ]
    assert lines(bill(inputs, D("2027-03-01"))) == [
        ("A1", "recurring", "2027-03-01", "2027-03-02", "0.50", "0.00"),
    ]


@bill_impl
def test_recurring_not_after_end_date(bill):
    inputs = one(package(retail="1", frequency="daily"),
                 assignment(start="2027-01-01", end="2027-01-05"))
    assert lines(bill(inputs, D("2027-01-05"))) == [
        ("A1", "recurring", "2027-01-05", "2027-01-06", "1.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2027-01-06"))) == []


@bill_impl
def test_last_period_cut_at_end_date_but_recurring_amount_is_full(bill):
    inputs = one(package(retail="30", frequency="monthly"),
                 assignment(start="2027-01-10", end="2027-02-14"))
    assert lines(bill(inputs, D("2027-02-10"))) == [
        ("A1", "recurring", "2027-02-10", "2027-02-15", "30.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2027-03-10"))) == []


# --------------------------------------------------------------------------- setup

@bill_impl
def test_setup_on_start_date(bill):
    inputs = one(package(retail="10", setup_retail="25", setup_cost="10"),
                 assignment(quantity=2, start="2027-01-05"))
    assert lines(bill(inputs, D("2027-01-05"))) == [
        ("A1", "recurring", "2027-01-05", "2027-02-05", "20.00", "0.00"),
        ("A1", "setup", "2027-01-05", None, "50.00", "20.00"),
    ]
    df = bill(inputs, D("2027-01-05")).due_lines
    assert int(df[df.kind == "setup"].unit_price.iloc[0]) == 25_000_000
    assert lines(bill(inputs, D("2027-02-05"))) == [
        ("A1", "recurring", "2027-02-05", "2027-03-05", "20.00", "0.00"),
    ]


@bill_impl
def test_no_setup_line_when_setup_retail_and_cost_are_zero(bill):
    inputs = one(package(retail="10"), assignment(start="2027-01-05"))
    assert [x[1] for x in lines(bill(inputs, D("2027-01-05")))] == ["recurring"]


@bill_impl
def test_setup_line_when_only_setup_cost(bill):
    inputs = one(package(retail="10", setup_cost="3"), assignment(start="2027-01-05"))
    assert ("A1", "setup", "2027-01-05", None, "0.00", "3.00") in lines(bill(inputs, D("2027-01-05")))


# --------------------------------------------------------------------------- prorated

@bill_impl
def test_prorated_monthly_match_start_mid_month(bill):
    # match "1", start 2027-01-20: stub 20..31 Jan = 12 days of the 31-day January period.
    inputs = one(package(retail="31", cost="15.5", match="1", prorate=True),
                 assignment(start="2027-01-20"))
    assert lines(bill(inputs, D("2027-01-20"))) == [
        ("A1", "prorated", "2027-01-20", "2027-02-01", "12.00", "6.00"),
    ]
    assert lines(bill(inputs, D("2027-02-01"))) == [
        ("A1", "recurring", "2027-02-01", "2027-03-01", "31.00", "15.50"),
    ]


@bill_impl
def test_no_prorated_line_without_prorate(bill):
    inputs = one(package(retail="31", match="1", prorate=False), assignment(start="2027-01-20"))
    assert lines(bill(inputs, D("2027-01-20"))) == []


@bill_impl
def test_no_prorated_line_when_start_is_a_billing_date(bill):
    inputs = one(package(retail="31", match="1|20", prorate=True), assignment(start="2027-01-20"))
    assert lines(bill(inputs, D("2027-01-20"))) == [
        ("A1", "recurring", "2027-01-20", "2027-02-01", "31.00", "0.00"),
    ]


@bill_impl
def test_prorated_stub_cut_by_end_date(bill):
    # stub 20..24 Jan (end 24 Jan) = 5 of 31 days of 31.00 -> 5.00
    inputs = one(package(retail="31", match="1", prorate=True),
                 assignment(start="2027-01-20", end="2027-01-24"))
    assert lines(bill(inputs, D("2027-01-20"))) == [
        ("A1", "prorated", "2027-01-20", "2027-01-25", "5.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2027-02-01"))) == []


@bill_impl
def test_prorated_weekly_match(bill):
    # Mon+Thu; start Wed 2027-01-06: stub Wed = 1 day of the Mon 4 -> Thu 7 period (3 days).
    inputs = one(package(retail="9", frequency="weekly", match="1|4", prorate=True),
                 assignment(start="2027-01-06"))
    assert lines(bill(inputs, D("2027-01-06"))) == [
        ("A1", "prorated", "2027-01-06", "2027-01-07", "3.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2027-01-07"))) == [
        ("A1", "recurring", "2027-01-07", "2027-01-11", "9.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2027-01-11"))) == [
        ("A1", "recurring", "2027-01-11", "2027-01-14", "9.00", "0.00"),
    ]


@bill_impl
def test_prorated_rounding_half_up_of_a_third(bill):
    # 10.00 x 1/3 = 3.333.. -> 3.33 ; 10.00 x 2 x 1/3 = 6.666.. -> 6.67 (rounded once, not per unit)
    pkg = package(retail="10", frequency="weekly", match="1|4", prorate=True)
    assert lines(bill(one(pkg, assignment(start="2027-01-06")), D("2027-01-06")))[0][4] == "3.33"
    assert lines(bill(one(pkg, assignment(quantity=2, start="2027-01-06")),
                      D("2027-01-06")))[0][4] == "6.67"


# --------------------------------------------------------------------------- rounding

@pytest.mark.parametrize("retail,qty,currency,expected", [
    ("0.125", 1, "EUR", "0.13"),
    ("0.0125", 3, "EUR", "0.04"),
    ("0.0124", 1, "EUR", "0.01"),
    ("0.005", 1, "EUR", "0.01"),
    ("0.004999", 1, "EUR", "0.00"),
    ("333.5", 1, "JPY", "334"),
    ("333.4", 1, "JPY", "333"),
    ("0.5", 1, "JPY", "1"),
    ("1.2345", 1, "KWD", "1.235"),
    ("1.2344", 1, "KWD", "1.234"),
    ("0.0005", 3, "KWD", "0.002"),
])
@bill_impl
def test_rounded_once_half_up_to_minor_unit(bill, retail, qty, currency, expected):
    inputs = one(package(retail=retail, cost=retail, currency=currency),
                 assignment(quantity=qty, start="2027-01-01"))
    ((_, kind, _, _, amount, cost),) = lines(bill(inputs, D("2027-01-01")))
    assert (kind, amount, cost) == ("recurring", expected, expected)


# --------------------------------------------------------------------------- calendar

@bill_impl
def test_monthly_match_31_clamps_to_month_end(bill):
    inputs = one(package(retail="1", match="31"), assignment(start="2027-03-31"))
    assert lines(bill(inputs, D("2027-04-30"))) == [
        ("A1", "recurring", "2027-04-30", "2027-05-31", "1.00", "0.00"),
    ]
    feb = one(package(retail="1", match="31"), assignment(start="2027-01-31"))
    assert lines(bill(feb, D("2027-02-28"))) == [
        ("A1", "recurring", "2027-02-28", "2027-03-31", "1.00", "0.00"),
    ]
    leap = one(package(retail="1", match="31"), assignment(start="2028-01-31"))
    assert lines(bill(leap, D("2028-02-28"))) == []
    assert lines(bill(leap, D("2028-02-29"))) == [
        ("A1", "recurring", "2028-02-29", "2028-03-31", "1.00", "0.00"),
    ]


@bill_impl
def test_monthly_match_days_on_same_date_bill_once(bill):
    inputs = one(package(retail="1", match="29,30,31"), assignment(start="2027-01-29"))
    assert lines(bill(inputs, D("2027-02-28"))) == [
        ("A1", "recurring", "2027-02-28", "2027-03-29", "1.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2027-01-30"))) == [
        ("A1", "recurring", "2027-01-30", "2027-01-31", "1.00", "0.00"),
    ]


@bill_impl
def test_monthly_without_match_keeps_start_day(bill):
    # start 31 Jan: 28 Feb, then back to 31 Mar (no drift to the 28th)
    inputs = one(package(retail="1"), assignment(start="2027-01-31"))
    assert lines(bill(inputs, D("2027-02-28"))) == [
        ("A1", "recurring", "2027-02-28", "2027-03-31", "1.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2027-03-28"))) == []
    assert lines(bill(inputs, D("2027-03-31"))) == [
        ("A1", "recurring", "2027-03-31", "2027-04-30", "1.00", "0.00"),
    ]


@bill_impl
def test_yearly_29_february(bill):
    inputs = one(package(retail="100", frequency="yearly"), assignment(start="2028-02-29"))
    assert lines(bill(inputs, D("2028-02-29"))) == [
        ("A1", "recurring", "2028-02-29", "2029-02-28", "100.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2029-02-28"))) == [
        ("A1", "recurring", "2029-02-28", "2030-02-28", "100.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2029-03-01"))) == []
    assert lines(bill(inputs, D("2031-02-28"))) == [
        ("A1", "recurring", "2031-02-28", "2032-02-29", "100.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2032-02-29"))) == [
        ("A1", "recurring", "2032-02-29", "2033-02-28", "100.00", "0.00"),
    ]


@bill_impl
def test_weekly_without_match_every_7_days_from_start(bill):
    inputs = one(package(retail="2", frequency="weekly"), assignment(start="2027-01-06"))
    assert lines(bill(inputs, D("2027-01-11"))) == []
    assert lines(bill(inputs, D("2027-01-13"))) == [
        ("A1", "recurring", "2027-01-13", "2027-01-20", "2.00", "0.00"),
    ]


@bill_impl
def test_weekly_match_sunday_is_7(bill):
    inputs = one(package(retail="2", frequency="weekly", match="7"), assignment(start="2027-01-03"))
    assert lines(bill(inputs, D("2027-01-10"))) == [
        ("A1", "recurring", "2027-01-10", "2027-01-17", "2.00", "0.00"),
    ]


@bill_impl
def test_once_open_and_ended(bill):
    open_ = one(package(retail="99", frequency="once"), assignment(start="2027-01-10"))
    assert lines(bill(open_, D("2027-01-10"))) == [
        ("A1", "recurring", "2027-01-10", None, "99.00", "0.00"),
    ]
    assert lines(bill(open_, D("2027-02-10"))) == []
    ended = one(package(retail="99", frequency="once"),
                assignment(start="2027-01-10", end="2027-01-20"))
    assert lines(bill(ended, D("2027-01-10"))) == [
        ("A1", "recurring", "2027-01-10", "2027-01-21", "99.00", "0.00"),
    ]


# --------------------------------------------------------------------------- minimum days

@bill_impl
def test_minimum_days_extends_end_flagged_and_billed_through(bill):
    # end 10 Jan, minimum 60 days -> effective end 1 Mar (start + 59)
    inputs = one(package(retail="5", minimum_days=60),
                 assignment(start="2027-01-01", end="2027-01-10"))
    result = bill(inputs, D("2027-02-01"))
    assert lines(result) == [("A1", "recurring", "2027-02-01", "2027-03-01", "5.00", "0.00")]
    ext = result.extended_ends
    assert [(r.assignment_id, r.customer_id, _iso(r.end_date), _iso(r.effective_end))
            for r in ext.itertuples()] == [("A1", "C1", "2027-01-10", "2027-03-01")]
    assert lines(bill(inputs, D("2027-03-01"))) == [
        ("A1", "recurring", "2027-03-01", "2027-03-02", "5.00", "0.00"),
    ]
    assert lines(bill(inputs, D("2027-04-01"))) == []


@bill_impl
def test_minimum_days_not_flagged_when_end_is_later_or_open(bill):
    inputs = make_inputs(
        [customer("C1")],
        [package("P1", retail="5", minimum_days=10)],
        [assignment("A1", start="2027-01-01", end="2027-01-10"),   # exactly start + 9
         assignment("A2", start="2027-01-01", end="2027-03-10"),
         assignment("A3", start="2027-01-01"),
         assignment("A4", start="2027-01-01", end="2027-01-09")],  # one day short
    )
    ext = bill(inputs, D("2027-01-05")).extended_ends
    assert [(r.assignment_id, _iso(r.end_date), _iso(r.effective_end)) for r in ext.itertuples()] \
        == [("A4", "2027-01-09", "2027-01-10")]


# --------------------------------------------------------------------------- minimum spend

def _calls(*specs):
    return [call(f"U{i}", at=at, destination=dest, duration_s=dur, charge=charge)
            for i, (at, dest, dur, charge) in enumerate(specs, 1)]


@bill_impl
def test_minimum_spend_shortfall_on_period_end(bill):
    inputs = one(package(retail="100", cost="40", minimum_spend=True),
                 assignment(start="2027-01-01"),
                 usage=_calls(("2027-01-05T10:00:00Z", "+44", 60, "20.25"),
                              ("2027-01-31T23:59:59Z", "+44", 60, "10.25"),
                              ("2027-02-01T00:00:00Z", "+44", 60, "50"),     # next period
                              ("2026-12-31T23:59:59Z", "+44", 60, "50")))    # before
    assert lines(bill(inputs, D("2027-01-01"))) == []  # no recurring line, ever
    assert lines(bill(inputs, D("2027-02-01"))) == [
        ("A1", "minimum_spend", "2027-01-01", "2027-02-01", "69.50", "40.00"),
    ]


@bill_impl
def test_minimum_spend_met_gives_zero_line(bill):
    inputs = one(package(retail="100", cost="40", minimum_spend=True),
                 assignment(start="2027-01-01"),
                 usage=_calls(("2027-01-05T10:00:00Z", "+44", 60, "120")))
    assert lines(bill(inputs, D("2027-02-01"))) == [
        ("A1", "minimum_spend", "2027-01-01", "2027-02-01", "0.00", "40.00"),
    ]


@bill_impl
def test_minimum_spend_rounds_after_subtracting_spend(bill):
    # 100 - 0.005 = 99.995 -> 100.00 (half up of the difference, rounded once)
    inputs = one(package(retail="100", minimum_spend=True), assignment(start="2027-01-01"),
                 usage=_calls(("2027-01-05T10:00:00Z", "+44", 60, "0.005")))
    assert lines(bill(inputs, D("2027-02-01")))[0][4] == "100.00"


@bill_impl
def test_minimum_spend_cut_by_end_date_is_prorated(bill):
    # end 15 Jan: period 1..15 Jan = 15 of 31 days of 31.00 = 15.00, minus 5 spent
    inputs = one(package(retail="31", cost="62", minimum_spend=True),
                 assignment(start="2027-01-01", end="2027-01-15"),
                 usage=_calls(("2027-01-10T10:00:00Z", "+44", 60, "5"),
                              ("2027-01-16T10:00:00Z", "+44", 60, "5")))
    assert lines(bill(inputs, D("2027-01-15"))) == []
    assert lines(bill(inputs, D("2027-01-16"))) == [
        ("A1", "minimum_spend", "2027-01-01", "2027-01-16", "10.00", "30.00"),
    ]


@bill_impl
def test_minimum_spend_on_prorated_stub(bill):
    # match "1", start 20 Jan, prorate: stub 12/31 of 31.00 = 12.00 minus 2.50 spent
    pkg = package(retail="31", minimum_spend=True, match="1", prorate=True)
    usage = _calls(("2027-01-25T10:00:00Z", "+44", 60, "2.5"))
    inputs = one(pkg, assignment(start="2027-01-20"), usage=usage)
    assert lines(bill(inputs, D("2027-01-20"))) == []   # no prorated line for minimum spend
    assert lines(bill(inputs, D("2027-02-01"))) == [
        ("A1", "minimum_spend", "2027-01-20", "2027-02-01", "9.50", "0.00"),
    ]
    no_prorate = one({**pkg, "prorate": False}, assignment(start="2027-01-20"), usage=usage)
    assert lines(bill(no_prorate, D("2027-02-01"))) == []


@bill_impl
def test_minimum_spend_with_setup(bill):
    inputs = one(package(retail="100", setup_retail="7", minimum_spend=True),
                 assignment(start="2027-01-01"))
    assert lines(bill(inputs, D("2027-01-01"))) == [
        ("A1", "setup", "2027-01-01", None, "7.00", "0.00"),
    ]


@bill_impl
def test_minimum_spend_once_open_never_ends_and_ended_does(bill):
    open_ = one(package(retail="50", frequency="once", minimum_spend=True),
                assignment(start="2027-01-01"))
    assert lines(bill(open_, D("2027-01-01"))) == []
    assert lines(bill(open_, D("2027-06-01"))) == []
    ended = one(package(retail="50", frequency="once", minimum_spend=True),
                assignment(start="2027-01-01", end="2027-01-10"))
    assert lines(bill(ended, D("2027-01-11"))) == [
        ("A1", "minimum_spend", "2027-01-01", "2027-01-11", "50.00", "0.00"),
    ]


@bill_impl
def test_minimum_spend_uses_local_date_of_calls(bill):
    # 23:30 UTC on 31 Jan is 1 Feb in Berlin: outside January's spend there.
    inputs = one(package(retail="100", minimum_spend=True), assignment(start="2027-01-01"),
                 usage=_calls(("2027-01-31T23:30:00Z", "+44", 60, "30")))
    assert lines(bill(inputs, D("2027-02-01"), "UTC"))[0][4] == "70.00"
    assert lines(bill(inputs, D("2027-02-01"), "Europe/Berlin"))[0][4] == "100.00"


@bill_impl
def test_minimum_spend_jpy(bill):
    inputs = one(package(retail="1000", currency="JPY", minimum_spend=True),
                 assignment(start="2027-01-01"),
                 usage=_calls(("2027-01-05T10:00:00Z", "+44", 60, "0.5")), currency="JPY")
    assert lines(bill(inputs, D("2027-02-01")))[0][4] == "1000"   # 999.5 -> 1000


# --------------------------------------------------------------------------- grants

def _fm(**kw):
    base = dict(type="free_minutes", free_minutes=100, destination="^44", retail="5")
    base.update(kw)
    return package(**base)


@bill_impl
def test_free_minutes_grant_minutes_times_quantity(bill):
    inputs = one(_fm(), assignment(quantity=2, start="2027-01-01"))
    result = bill(inputs, D("2027-02-01"))
    assert grants(result) == [("A1", "2027-02-01", "2027-03-01", "^44", 12000)]
    assert lines(result) == [("A1", "recurring", "2027-02-01", "2027-03-01", "10.00", "0.00")]
    assert grants(bill(inputs, D("2027-02-02"))) == []
    g = result.grants.iloc[0]
    assert (g.customer_id, g.package_id) == ("C1", "P1")
    assert pd.Timestamp(g.run_date).date() == date(2027, 2, 1)


@bill_impl
def test_free_minutes_override_replaces_package_minutes_times_quantity(bill):
    inputs = one(_fm(), assignment(quantity=2, start="2027-01-01", free_minutes=30))
    assert grants(bill(inputs, D("2027-01-01"))) == [("A1", "2027-01-01", "2027-02-01", "^44", 1800)]


@bill_impl
def test_free_minutes_prorated_start_rounds_down(bill):
    # 100 min x 12/31 = 38.7 -> 38 min
    inputs = one(_fm(match="1", prorate=True), assignment(start="2027-01-20"))
    result = bill(inputs, D("2027-01-20"))
    assert grants(result) == [("A1", "2027-01-20", "2027-02-01", "^44", 38 * 60)]
    assert lines(result) == [("A1", "prorated", "2027-01-20", "2027-02-01", "1.94", "0.00")]
    override = one(_fm(match="1", prorate=True), assignment(start="2027-01-20", free_minutes=10))
    assert grants(bill(override, D("2027-01-20"))) == [("A1", "2027-01-20", "2027-02-01", "^44", 180)]


@bill_impl
def test_free_minutes_no_stub_grant_without_prorate(bill):
    inputs = one(_fm(match="1"), assignment(start="2027-01-20"))
    assert grants(bill(inputs, D("2027-01-20"))) == []


@bill_impl
def test_free_minutes_once_open_grant(bill):
    inputs = one(_fm(frequency="once", destination=""), assignment(start="2027-01-20"))
    assert grants(bill(inputs, D("2027-01-20"))) == [("A1", "2027-01-20", None, "", 6000)]


@bill_impl
def test_standard_package_makes_no_grant(bill):
    inputs = one(package(retail="5", free_minutes=0), assignment(start="2027-01-01"))
    assert grants(bill(inputs, D("2027-01-01"))) == []


# --------------------------------------------------------------------------- utilisation

@bill_impl
def test_utilisation_ends_first_then_spills(bill):
    inputs = make_inputs(
        [customer("C1")],
        [_fm(package_id="P1", free_minutes=10, destination="^44"),            # monthly
         _fm(package_id="P2", free_minutes=5, destination="", frequency="weekly")],
        [assignment("A1", package_id="P1", start="2027-01-01"),
         assignment("A2", package_id="P2", start="2027-01-01")],   # weekly from Fri 1 Jan
        _calls(
            ("2027-01-02T10:00:00Z", "+442071234567", 600, "0"),  # A2 (ends 8 Jan) 300, A1 300
            ("2027-01-03T10:00:00Z", "12125550100", 120, "0"),    # A2 only, used up: unfree
            ("2027-01-09T10:00:00Z", "442071234567", 200, "0"),   # A2 week 2 (ends 15 Jan)
            ("2027-01-10T10:00:00Z", "442071234567", 999, "0"),   # run date: not counted
        ),
    )
    assert utilisation(bill(inputs, D("2027-01-10"))) == [
        ("A1", "2027-01-01", "2027-02-01", 600, 300),
        ("A2", "2027-01-08", "2027-01-15", 300, 200),
    ]


@bill_impl
def test_utilisation_same_end_lowest_assignment_id_first(bill):
    inputs = make_inputs(
        [customer("C1")],
        [_fm(package_id="P1", free_minutes=1, destination="")],
        [assignment("B", start="2027-01-01"), assignment("A", start="2027-01-01")],
        _calls(("2027-01-05T10:00:00Z", "44", 90, "0")),
    )
    assert utilisation(bill(inputs, D("2027-01-06"))) == [
        ("A", "2027-01-01", "2027-02-01", 60, 60),
        ("B", "2027-01-01", "2027-02-01", 60, 30),
    ]


@bill_impl
def test_utilisation_earlier_periods_still_compete(bill):
    # A2 weekly from Mon 28 Dec: [28 Dec, 4 Jan) then [4 Jan, 11 Jan), 60 s each.
    # U1 (30 Dec) uses up A2's first week. U2 (2 Jan) could use A2's first week (it ends
    # first) but it is empty, so U2 goes to A1. On 10 Jan A2's first week is not reported,
    # yet the calls before A1's period still decide what A1 has left: the counters carry
    # them from night to night (each night posts the calls of the day before).
    inputs = make_inputs(
        [customer("C1")],
        [_fm(package_id="P1", free_minutes=10, destination=""),
         _fm(package_id="P2", free_minutes=1, destination="", frequency="weekly")],
        [assignment("A1", package_id="P1", start="2027-01-01"),
         assignment("A2", package_id="P2", start="2026-12-28")],
        _calls(("2026-12-30T10:00:00Z", "44", 60, "0"),
               ("2027-01-02T10:00:00Z", "44", 60, "0")),
    )
    assert utilisation(bill_nights(bill, inputs, D("2026-12-29"), D("2027-01-10"))) == [
        ("A1", "2027-01-01", "2027-02-01", 600, 60),
        ("A2", "2027-01-04", "2027-01-11", 60, 0),
    ]
    # without the earlier nights (nothing posted before 10 Jan) only the calls of the late
    # window [2 Jan, 9 Jan] are consumed: U2 takes A2's first week, A1 keeps everything
    assert utilisation(bill(inputs, D("2027-01-10"))) == [
        ("A1", "2027-01-01", "2027-02-01", 600, 0),
        ("A2", "2027-01-04", "2027-01-11", 60, 0),
    ]


@bill_impl
def test_utilisation_pattern_and_plus(bill):
    inputs = one(_fm(free_minutes=10, destination="^44|^1"), assignment(start="2027-01-01"),
                 usage=_calls(("2027-01-02T10:00:00Z", "+442071234567", 10, "0"),
                              ("2027-01-02T11:00:00Z", "12125550100", 20, "0"),
                              ("2027-01-02T12:00:00Z", "+919812345678", 40, "0"),
                              ("2027-01-02T13:00:00Z", "33144", 80, "0")))
    assert utilisation(bill(inputs, D("2027-01-03"))) == [("A1", "2027-01-01", "2027-02-01", 600, 30)]


@bill_impl
def test_utilisation_reports_periods_containing_day_before(bill):
    # On 1 Feb the day before is 31 Jan: January's period is reported, February's is not.
    inputs = one(_fm(free_minutes=10), assignment(start="2027-01-01"),
                 usage=_calls(("2027-01-31T10:00:00Z", "44", 100, "0")))
    assert utilisation(bill(inputs, D("2027-02-01"))) == [("A1", "2027-01-01", "2027-02-01", 600, 100)]
    assert utilisation(bill(inputs, D("2027-01-01"))) == []


@bill_impl
def test_utilisation_prorated_stub(bill):
    inputs = one(_fm(free_minutes=100, match="1", prorate=True), assignment(start="2027-01-20"),
                 usage=_calls(("2027-01-21T10:00:00Z", "44", 3000, "0")))
    assert utilisation(bill(inputs, D("2027-01-22"))) == [("A1", "2027-01-20", "2027-02-01", 2280, 2280)]


# --------------------------------------------------------------------------- shapes

def _assert_contract_dtypes(expected, actual, names):
    for name in names:
        exp, act = getattr(expected, name), getattr(actual, name)
        assert list(act.columns) == list(exp.columns), name
        for col in exp.columns:
            e, a = exp[col].dtype, act[col].dtype
            if pd.api.types.is_string_dtype(e):
                assert pd.api.types.is_string_dtype(a) or a == object, (name, col, str(a))
            else:
                assert a == e, (name, col, str(a), str(e))


def _shape_inputs():
    return make_inputs(
        [customer("C1")],
        [_fm(package_id="P1", setup_retail="1", minimum_days=10),
         package("P2", retail="3", frequency="once")],
        [assignment("A1", package_id="P1", start="2027-01-01", end="2027-01-02"),
         assignment("A2", package_id="P2", start="2027-01-01")],
        _calls(("2027-01-01T10:00:00Z", "44", 10, "0")),
    )


@pytest.mark.parametrize("run_date,names", [
    ("2027-01-01", ("due_lines", "grants", "extended_ends")),
    ("2027-01-02", ("utilisation",)),
])
def test_engine_frames_match_contract_dtypes(run_date, names):
    inputs = _shape_inputs()
    expected = reference_billing(inputs, D(run_date))
    actual = _engine(inputs, D(run_date))
    for name in names:
        assert len(getattr(expected, name)) > 0, name
    _assert_contract_dtypes(expected, actual, names)


def test_engine_empty_frames_keep_contract_dtypes():
    """Nothing due (a date before every start): the frames are empty but keep their dtypes."""
    inputs = _shape_inputs()
    expected = reference_billing(inputs, D("2026-06-01"))
    actual = _engine(inputs, D("2026-06-01"))
    _assert_contract_dtypes(expected, actual, ("due_lines", "grants", "utilisation"))
