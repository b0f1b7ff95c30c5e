"""Sanity of the reference implementation itself (tests/calc/reference.py).

The reference is the oracle of the differential tests, so it gets its own checks: its
building blocks against hand-computed values, and properties of its output over many
consecutive run dates (periods tile the service window, utilisation never exceeds the
grant and never decreases).
"""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_jobs.core.frames import (
    DUE_LINE_COLUMNS,
    EXTENDED_END_COLUMNS,
    GRANT_COLUMNS,
    UTILISATION_COLUMNS,
)
from tests.calc.reference import (  # noqa: I001
    FreeMinuteState,
    Calendar,
    _read,
    due_lines_on,
    grants_on,
    last_day_of_month,
    parse_match,
    reference_billing,
    round_half_up,
)
from tests.calc.strategies import (
    D,
    anchor_dates,
    assignment,
    customer,
    frequency_and_match,
    make_inputs,
    money_micros,
    package,
    utilisation_cases,
)

# --------------------------------------------------------------------------- money


@pytest.mark.parametrize("micros,currency,expected", [
    (125_000, "EUR", 130_000),
    (124_999, "EUR", 120_000),
    (5_000, "EUR", 10_000),
    (4_999, "EUR", 0),
    (Fraction(37_500), "EUR", 40_000),
    (Fraction(10_000_000, 3), "EUR", 3_330_000),
    (Fraction(20_000_000, 3), "EUR", 6_670_000),
    (333_500_000, "JPY", 334_000_000),
    (333_499_999, "JPY", 333_000_000),
    (1_234_500, "KWD", 1_235_000),
    (1_234_499, "KWD", 1_234_000),
    (0, "KWD", 0),
])
def test_round_half_up(micros, currency, expected):
    assert round_half_up(micros, currency) == expected


def test_round_half_up_refuses_negative():
    with pytest.raises(AssertionError):
        round_half_up(-1, "EUR")


# --------------------------------------------------------------------------- calendar

@pytest.mark.parametrize("text,expected", [
    (None, []), ("", []), ("1", [1]), ("1|15", [1, 15]), ("1,15", [1, 15]), (" 2 | 31 ", [2, 31]),
])
def test_parse_match(text, expected):
    assert parse_match(text) == expected


def test_last_day_of_month():
    assert [last_day_of_month(2027, m) for m in (1, 2, 4, 12)] == [31, 28, 30, 31]
    assert last_day_of_month(2028, 2) == 29


def _dates(cal: Calendar, first: str, last: str) -> list[str]:
    d, out = D(first), []
    while d <= D(last):
        if cal.contains(d):
            out.append(d.isoformat())
        d += timedelta(days=1)
    return out


def test_calendar_monthly_match_clamps_and_collapses():
    cal = Calendar("monthly", (30, 31), D("2027-01-01"))
    assert _dates(cal, "2027-01-25", "2027-03-05") == ["2027-01-30", "2027-01-31", "2027-02-28"]
    cal = Calendar("monthly", (31,), D("2028-01-01"))
    assert _dates(cal, "2028-02-01", "2028-04-30") == ["2028-02-29", "2028-03-31", "2028-04-30"]


def test_calendar_monthly_without_match_uses_start_day():
    cal = Calendar("monthly", (), D("2027-01-31"))
    assert _dates(cal, "2027-01-01", "2027-04-30") == [
        "2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]


def test_calendar_weekly():
    assert _dates(Calendar("weekly", (1, 4), D("2027-01-06")), "2027-01-01", "2027-01-14") == [
        "2027-01-04", "2027-01-07", "2027-01-11", "2027-01-14"]
    # without match: start + 7k, also before the start
    assert _dates(Calendar("weekly", (), D("2027-01-06")), "2026-12-25", "2027-01-20") == [
        "2026-12-30", "2027-01-06", "2027-01-13", "2027-01-20"]


def test_calendar_yearly_29_february():
    cal = Calendar("yearly", (), D("2028-02-29"))
    assert cal.contains(D("2027-02-28")) and cal.contains(D("2029-02-28"))
    assert not cal.contains(D("2032-02-28")) and cal.contains(D("2032-02-29"))
    assert cal.next_after(D("2028-02-29")) == D("2029-02-28")
    assert cal.prev_before(D("2028-02-29")) == D("2027-02-28")


def test_calendar_once_and_daily():
    once = Calendar("once", (), D("2027-01-10"))
    assert _dates(once, "2027-01-01", "2027-12-31") == ["2027-01-10"]
    assert once.next_after(D("2027-01-10")) is None
    daily = Calendar("daily", (), D("2027-01-10"))
    assert daily.next_after(D("2027-02-28")) == D("2027-03-01")
    assert daily.prev_before(D("2027-03-01")) == D("2027-02-28")


def test_next_and_prev_around_a_stub():
    cal = Calendar("monthly", (1,), D("2027-01-20"))
    assert cal.prev_before(D("2027-01-20")) == D("2027-01-01")
    assert cal.next_after(D("2027-01-20")) == D("2027-02-01")


# --------------------------------------------------------------------------- frames

def test_frames_have_contract_columns_and_dtypes_even_when_empty():
    inputs = make_inputs([customer()], [package(retail="1")], [assignment(start="2027-01-01")])
    for run_date in (D("2026-01-01"), D("2027-01-01")):
        r = reference_billing(inputs, run_date)
        assert list(r.due_lines.columns) == DUE_LINE_COLUMNS
        assert list(r.grants.columns) == GRANT_COLUMNS
        assert list(r.utilisation.columns) == UTILISATION_COLUMNS
        assert list(r.extended_ends.columns) == EXTENDED_END_COLUMNS
        dl = r.due_lines
        for c in ("run_date", "period_start", "period_end"):
            assert str(dl[c].dtype) == "datetime64[s]"
        for c in ("quantity", "unit_price", "amount", "cost"):
            assert str(dl[c].dtype) == "int64"
        assert str(dl["auto_decrement"].dtype) == "bool"


# --------------------------------------------------------------------------- properties

@st.composite
def single_assignment(draw):
    freq, match = draw(frequency_and_match())
    start = draw(anchor_dates)
    end = draw(st.one_of(st.none(), st.integers(0, 70).map(lambda n: start + timedelta(days=n))))
    pkg = package(retail=draw(money_micros), cost=draw(money_micros), frequency=freq, match=match,
                  minimum_spend=draw(st.booleans()), prorate=draw(st.booleans()),
                  minimum_days=draw(st.sampled_from([0, 1, 20, 45])), type="free_minutes",
                  free_minutes=draw(st.sampled_from([0, 10])), currency="EUR")
    asg = assignment(start=start.isoformat(), end=None if end is None else end.isoformat(),
                     quantity=draw(st.integers(1, 3)))
    return pkg, asg


def _effective_end(pkg, asg) -> date | None:
    if asg["end_date"] is None:
        return None
    end = D(asg["end_date"])
    if pkg["minimum_days"]:
        end = max(end, D(asg["start_date"]) + timedelta(days=pkg["minimum_days"] - 1))
    return end


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(single_assignment())
def test_periods_tile_the_service_window(case):
    """Over consecutive nights, the periods charged (recurring/prorated, or minimum spend at
    their end) and granted follow each other without gap or overlap, inside the window."""
    pkg, asg = case
    inputs = make_inputs([customer()], [pkg], [asg])
    start = D(asg["start_date"])
    eff_end = _effective_end(pkg, asg)
    last = (eff_end + timedelta(days=1)) if eff_end else start + timedelta(days=80)
    # the row-level rules of reference_billing, night after night (frames are built once
    # at the end to check that they agree)
    currencies, (a,) = _read(inputs)
    charged, granted, setup = [], [], 0
    d = start - timedelta(days=1)
    while d <= last:
        for row in due_lines_on(d, a, "EUR", []):
            assert row["amount"] >= 0 and row["cost"] >= 0
            if row["kind"] == "setup":
                setup += 1
                continue
            ps, pe = row["period_start"], row["period_end"]
            if row["kind"] == "minimum_spend":
                assert pkg["minimum_spend"] and pe == d
            else:
                assert not pkg["minimum_spend"] and ps == d
                assert row["amount"] <= round_half_up(pkg["retail"] * asg["quantity"], "EUR")
            charged.append((ps, pe))
        for row in grants_on(d, a):
            granted.append((row["period_start"], row["period_end"]))
            assert row["seconds"] <= pkg["free_minutes"] * asg["quantity"] * 60
        d += timedelta(days=1)
    # the frame on the last charged night holds the same line as the rows
    if charged:
        night = charged[-1][1] if pkg["minimum_spend"] else charged[-1][0]
        lines = reference_billing(inputs, night).due_lines
        assert (lines.period_start.dt.date == charged[-1][0]).any()
    assert setup == 0  # no setup price in these packages
    for periods in (sorted(charged), sorted(granted)):
        for (s1, e1), (s2, _) in zip(periods, periods[1:]):
            assert e1 == s2, periods
        for s, e in periods:
            assert start <= s and (e is None or s < e)
            if eff_end is not None:
                assert e is not None and e <= eff_end + timedelta(days=1)
    if eff_end is not None and not pkg["minimum_spend"] and (
            pkg["prorate"] or Calendar(pkg["frequency"], tuple(parse_match(pkg["frequency_match"])),
                                       start).contains(start)):
        # everything from the start to the effective end was charged
        assert charged and charged[0][0] == start and charged[-1][1] == eff_end + timedelta(days=1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(utilisation_cases())
def test_utilisation_bounded_and_never_decreasing(case):
    inputs, run_date, tz = case
    total = int(inputs.usage["duration_s"].sum())
    before = {}
    state = FreeMinuteState.fresh()  # night after night, each posting what it consumed
    for n in range(0, 8):
        u = reference_billing(inputs, run_date + timedelta(days=n), tz, state=state).utilisation
        assert (u.seconds_used <= u.seconds_granted).all()
        assert (u.seconds_used >= 0).all()
        assert u.seconds_used.sum() <= total
        now = {(r.assignment_id, r.period_start): int(r.seconds_used) for r in u.itertuples()}
        for key, used in now.items():
            assert used >= before.get(key, 0), (key, used, before[key])
        before.update(now)
