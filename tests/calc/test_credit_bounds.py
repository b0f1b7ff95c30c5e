"""Issue #28 item 2: no int64 product of two amounts (or amount x seconds / days) overflows
inside the documented bounds. Each exact helper is checked against Python integers at the
bounds, and the credit of the issue's call is computed end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_jobs.calc.calendar import NEVER, OPEN
from billing_jobs.calc.consumption import consume, credit_amounts
from billing_jobs.calc.usage import SpendIndex, call_days
from billing_jobs.checks.inputs import MAX_DURATION_S, MAX_PERIOD_MINUTES
from billing_jobs.core.money import (MAX_MICROS, MICRO_DIGITS, mul_div_floor, mul_div_round,
                                     prorate_round)

#: the longest span of days the engine forms (an open period: NEVER .. OPEN)
MAX_SPAN_DAYS = int(OPEN - NEVER)


def _half_up(num: int, den: int) -> int:
    return (2 * num + den) // (2 * den)


def _grants(rows):
    return pd.DataFrame(rows, columns=["customer_id", "assignment_id", "period_start",
                                       "period_end", "destination", "seconds", "seconds_used"])


def _calls(rows):
    c = pd.DataFrame(rows, columns=["call_id", "customer_id", "start_time", "destination",
                                    "duration_s", "charge"])
    return c.assign(day=call_days(c["start_time"]))


def _covered_credit(charge_units: int, duration_s: int, granted_s: int, currency="VND"):
    g = _grants([["c1", "a1", "2027-01-01", "2027-02-01", "", granted_s, 0]])
    calls = _calls([["k1", "c1", "2027-01-05T00:00:00Z", "84900", duration_s,
                     charge_units * 1_000_000]])
    cov = consume(g, calls)
    credit = credit_amounts(cov, pd.Series({"a1": currency}))
    return int(cov["covered"].iloc[0]), int(credit["amount"].iloc[0])


def test_a_24_hour_call_of_120_million_vnd_fully_covered_is_credited_in_full():
    covered, credit = _covered_credit(120_000_000, 86_400, 86_400)
    assert covered == 120_000_000 * 1_000_000
    assert credit == -120_000_000 * 1_000_000  # was -13,248,009 (int64 wrapped)


def test_a_24_hour_call_of_60_million_vnd_fully_covered_is_a_credit_not_a_charge():
    covered, credit = _covered_credit(60_000_000, 86_400, 86_400)
    assert credit == -60_000_000 * 1_000_000  # was positive: the gate failed the whole night


def test_the_largest_call_half_covered_matches_python_integers():
    charge = MAX_MICROS // 1_000_000  # 1e12 units, the maximum charge
    covered, credit = _covered_credit(charge, MAX_DURATION_S, MAX_DURATION_S // 3, "EUR")
    exact = _half_up(charge * 1_000_000 * (MAX_DURATION_S // 3), MAX_DURATION_S)
    assert covered == exact
    assert credit == -(_half_up(exact, 10_000) * 10_000)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, MAX_MICROS), st.integers(1, MAX_DURATION_S),
                          st.floats(0, 1)), min_size=1, max_size=20)
       | st.lists(st.tuples(st.sampled_from([0, 1, MAX_MICROS - 1, MAX_MICROS]),
                            st.sampled_from([1, 2, 59, 86_400, MAX_DURATION_S - 1,
                                             MAX_DURATION_S]),
                            st.sampled_from([0.0, 0.5, 1.0])), min_size=1, max_size=8))
def test_mul_div_round_equals_python_integers_at_the_bounds(rows):
    charge = [r[0] for r in rows]
    dur = [r[1] for r in rows]
    taken = [min(d, int(d * r[2])) for d, r in zip(dur, rows)]
    got = mul_div_round(np.array(charge, dtype="int64"), np.array(taken, dtype="int64"),
                        np.array(dur, dtype="int64"))
    assert got.dtype == np.int64
    assert [int(v) for v in got] == [_half_up(c * t, d) for c, t, d in zip(charge, taken, dur)]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, MAX_PERIOD_MINUTES * 60), st.integers(1, MAX_SPAN_DAYS), st.floats(0, 1))
def test_mul_div_floor_equals_python_integers_at_the_bounds(seconds, full, frac):
    days = min(full, int(full * frac))
    assert int(mul_div_floor(seconds, days, full)) == seconds * days // full


@settings(max_examples=300, deadline=None)
@given(st.integers(0, MAX_MICROS), st.integers(1, MAX_SPAN_DAYS), st.floats(0, 1),
       st.integers(0, MAX_MICROS), st.sampled_from([0, 2, 3]))
def test_prorate_round_equals_python_integers_at_the_bounds(full_micros, period, frac, minus,
                                                           digits):
    """money.prorate_round (trailing and start proration, minimum spend, change lines):
    exact for periods up to the longest span the engine forms, not only 400 days."""
    days = min(period, int(period * frac))
    step = 10 ** (MICRO_DIGITS - digits)
    num = full_micros * days - minus * period  # value x period
    exact = 0 if num <= 0 else _half_up(num, period * step) * step
    assert int(prorate_round(full_micros, days, period, minus, digits)) == exact


def test_spend_sums_stay_exact_when_the_running_total_of_all_customers_passes_int64():
    """SpendIndex keeps one cumulative sum over every customer's calls: ten customers at the
    per-customer maximum pass 2**63. The sums wrap, but each customer's spend (a difference,
    at most MAX_MICROS) is exact modulo 2**64, hence exact."""
    n = 10
    codes = np.repeat(np.arange(n), 2)
    days = np.tile([100, 101], n)
    charges = np.full(2 * n, MAX_MICROS // 2, dtype="int64")
    with np.errstate(over="ignore"):
        idx = SpendIndex(codes, days, charges)
        got = idx.spend(np.arange(n), np.full(n, 100), np.full(n, 102))
    assert [int(v) for v in got] == [MAX_MICROS] * n
