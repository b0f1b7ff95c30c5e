"""Terms that change from a date (SPEC 10, issue #27): price versions and changes of an
assignment, each worked example with its amounts written out (engine only: the reference
knows one set of terms per assignment)."""

from __future__ import annotations

import pandas as pd

from billing_jobs.calc.billing import compute_billing
from tests.calc.strategies import (D, assignment, call, change, customer, make_inputs, package,
                                   version, with_terms)
from billing_jobs.core.money import format_minor


def _iso(value) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).date().isoformat()


def lines(result):
    """(assignment, kind, period_start, period_end, amount, cost), sorted; signed amounts."""
    return sorted((r.assignment_id, r.kind, _iso(r.period_start), _iso(r.period_end),
                   format_minor(r.amount, r.currency), format_minor(r.cost, r.currency))
                  for r in result.due_lines.itertuples())


def grants(result):
    """(customer, assignment, period_start, period_end, seconds), sorted."""
    return sorted((r.customer_id, r.assignment_id, _iso(r.period_start), _iso(r.period_end),
                   int(r.seconds)) for r in result.grants.itertuples())


def bill(inputs, day):
    return compute_billing(inputs, D(day), "UTC")


def nights(inputs, first, last):
    """Every line of every night from `first` to `last`, as `lines` shows them."""
    out = []
    for day in pd.date_range(first, last, freq="D"):
        out += [(day.date().isoformat(), *x) for x in lines(bill(inputs, day.date().isoformat()))]
    return out


SEAT = dict(retail="4", cost="1", prorate=True)  # monthly on the 1st, 30-day November


def seats(qty, changes=(), **pkg):
    inputs = make_inputs([customer("C1"), customer("C2")],
                         [package("P1", **{**SEAT, **pkg})],
                         [assignment(quantity=qty, start="2027-10-01")])
    return with_terms(inputs, changes=changes)


def test_no_terms_over_time_changes_nothing():
    plain = seats(5)
    assert lines(bill(plain, "2027-11-01")) == [
        ("A1", "recurring", "2027-11-01", "2027-12-01", "20.00", "5.00")]


def test_more_seats_mid_period_credit_old_charge_new():
    inputs = seats(5, [change(1, "2027-11-10", quantity=8)])
    assert lines(bill(inputs, "2027-11-01")) == [
        ("A1", "recurring", "2027-11-01", "2027-12-01", "20.00", "5.00")]
    assert lines(bill(inputs, "2027-11-10")) == [
        ("A1", "change_charge", "2027-11-10", "2027-12-01", "22.40", "5.60"),
        ("A1", "change_credit", "2027-11-10", "2027-12-01", "-14.00", "-3.50"),
    ]
    assert lines(bill(inputs, "2027-12-01")) == [
        ("A1", "recurring", "2027-12-01", "2028-01-01", "32.00", "8.00")]
    df = bill(inputs, "2027-11-10").due_lines.set_index("kind")
    assert int(df.loc["change_credit", "quantity"]) == 5
    assert int(df.loc["change_charge", "quantity"]) == 8


def test_fewer_seats_mid_period():
    inputs = seats(8, [change(1, "2027-11-20", quantity=3)])
    assert lines(bill(inputs, "2027-11-20")) == [
        ("A1", "change_charge", "2027-11-20", "2027-12-01", "4.40", "1.10"),
        ("A1", "change_credit", "2027-11-20", "2027-12-01", "-11.73", "-2.93"),
    ]
    assert nights(inputs, "2027-11-21", "2027-11-30") == []


def test_upgrade_silver_to_gold_no_setup_again():
    silver = package("SILVER", retail="20", prorate=True, setup_retail="5")
    gold = package("GOLD", retail="35", prorate=True, setup_retail="50")
    inputs = with_terms(make_inputs([customer("C1")], [silver, gold],
                                    [assignment(package_id="SILVER", start="2027-10-01")]),
                        changes=[change(1, "2027-11-15", package_id="GOLD")])
    assert lines(bill(inputs, "2027-10-01")) == [
        ("A1", "recurring", "2027-10-01", "2027-11-01", "20.00", "0.00"),
        ("A1", "setup", "2027-10-01", None, "5.00", "0.00"),
    ]
    assert lines(bill(inputs, "2027-11-15")) == [
        ("A1", "change_charge", "2027-11-15", "2027-12-01", "18.67", "0.00"),
        ("A1", "change_credit", "2027-11-15", "2027-12-01", "-10.67", "0.00"),
    ]
    df = bill(inputs, "2027-11-15").due_lines.set_index("kind")
    assert df.loc["change_credit", "package_id"] == "SILVER"
    assert df.loc["change_charge", "package_id"] == "GOLD"
    assert lines(bill(inputs, "2027-12-01")) == [
        ("A1", "recurring", "2027-12-01", "2028-01-01", "35.00", "0.00")]
    assert bill(inputs, "2027-12-01").due_lines["package_id"].tolist() == ["GOLD"]


def _by_customer(result):
    return sorted((r.customer_id, r.kind, r.amount) for r in result.due_lines.itertuples())


def test_transfer_credit_on_old_customer_charge_on_new():
    inputs = seats(1, [change(1, "2027-11-16", customer_id="C2")], retail="20", cost="0")
    # 20.00 x 15 days (16..30 November) / 30
    assert _by_customer(bill(inputs, "2027-11-16")) == [
        ("C1", "change_credit", -10_000_000), ("C2", "change_charge", 10_000_000)]
    later = seats(1, [change(1, "2027-11-17", customer_id="C2")], retail="20", cost="0")
    # 20.00 x 14 days / 30 = 9.33 (the brief's -9.33 / +9.33 reads 14 days: from 11-17)
    assert _by_customer(bill(later, "2027-11-17")) == [
        ("C1", "change_credit", -9_330_000), ("C2", "change_charge", 9_330_000)]
    assert _by_customer(bill(inputs, "2027-12-01")) == [("C2", "recurring", 20_000_000)]
    assert _by_customer(bill(inputs, "2027-11-01")) == [("C1", "recurring", 20_000_000)]


def test_change_on_a_billing_date_splits_nothing():
    inputs = seats(5, [change(1, "2027-12-01", quantity=8)])
    assert lines(bill(inputs, "2027-12-01")) == [
        ("A1", "recurring", "2027-12-01", "2028-01-01", "32.00", "8.00")]
    assert lines(bill(inputs, "2027-11-01")) == [
        ("A1", "recurring", "2027-11-01", "2027-12-01", "20.00", "5.00")]


def test_the_past_is_immutable_a_change_does_not_reprice_earlier_dates():
    before = seats(5)
    after = seats(5, [change(1, "2027-11-10", quantity=8), change(2, "2027-11-20", quantity=2)])
    for day in ("2027-10-01", "2027-11-01", "2027-11-09"):
        assert lines(bill(after, day)) == lines(bill(before, day))


# --------------------------------------------------------------------------- price versions

def test_price_version_from_december():
    pkg = package("P1", retail="20", cost="8", setup_retail="10")
    base = make_inputs([customer("C1")], [pkg], [assignment(start="2027-10-01")])
    inputs = with_terms(base, versions=[version("P1", "2027-12-01", retail="25", cost="9",
                                                setup_retail="30")])
    assert lines(bill(inputs, "2027-11-01")) == [
        ("A1", "recurring", "2027-11-01", "2027-12-01", "20.00", "8.00")]
    assert lines(bill(inputs, "2027-12-01")) == [
        ("A1", "recurring", "2027-12-01", "2028-01-01", "25.00", "9.00")]
    # recomputing every earlier date (as rebill does) finds what was billed without it
    for day in pd.date_range("2027-10-01", "2027-11-30", freq="D"):
        assert lines(bill(inputs, day.date().isoformat())) == lines(
            bill(base, day.date().isoformat()))
    # a setup is priced on the start date: one starting in December pays the new one
    late = with_terms(make_inputs([customer("C1")], [pkg], [assignment(start="2027-12-05")]),
                      versions=[version("P1", "2027-12-01", retail="25", cost="9",
                                        setup_retail="30")])
    assert ("A1", "setup", "2027-12-05", None, "30.00", "0.00") in lines(
        bill(late, "2027-12-05"))


def test_price_version_prices_a_start_stub_on_the_start_date():
    pkg = package("P1", retail="31", match="1", prorate=True)
    inputs = with_terms(make_inputs([customer("C1")], [pkg], [assignment(start="2027-12-20")]),
                        versions=[version("P1", "2027-12-01", retail="62")])
    # 12 days of the 31-day December at 62.00
    assert lines(bill(inputs, "2027-12-20")) == [
        ("A1", "prorated", "2027-12-20", "2028-01-01", "24.00", "0.00")]


def test_change_lines_priced_with_the_version_in_force_on_the_period_start():
    # the December price is 6.00 a seat; a change on 12-10 prices both lines at it
    inputs = with_terms(seats(5), versions=[version("P1", "2027-12-01", retail="6", cost="1")],
                        changes=[change(1, "2027-12-10", quantity=8)])
    # December has 31 days: 22 days from 12-10; 6 x 5 x 22/31 = 21.29; 6 x 8 x 22/31 = 34.06
    assert lines(bill(inputs, "2027-12-10")) == [
        ("A1", "change_charge", "2027-12-10", "2028-01-01", "34.06", "5.68"),
        ("A1", "change_credit", "2027-12-10", "2028-01-01", "-21.29", "-3.55"),
    ]


# --------------------------------------------------------------------------- without prorate

def test_without_prorate_changes_wait_for_the_next_billing_date():
    inputs = seats(5, [change(1, "2027-11-10", quantity=8),
                       change(2, "2027-11-16", customer_id="C2")], prorate=False)
    assert nights(inputs, "2027-11-02", "2027-11-30") == []
    assert _by_customer(bill(inputs, "2027-11-01")) == [("C1", "recurring", 20_000_000)]
    assert _by_customer(bill(inputs, "2027-12-01")) == [("C2", "recurring", 32_000_000)]


def test_without_prorate_package_change_from_next_billing_date():
    silver = package("SILVER", retail="20")
    gold = package("GOLD", retail="35", setup_retail="50")
    inputs = with_terms(make_inputs([customer("C1")], [silver, gold],
                                    [assignment(package_id="SILVER", start="2027-10-01")]),
                        changes=[change(1, "2027-11-15", package_id="GOLD")])
    assert nights(inputs, "2027-11-02", "2027-11-30") == []
    assert lines(bill(inputs, "2027-12-01")) == [
        ("A1", "recurring", "2027-12-01", "2028-01-01", "35.00", "0.00")]


# --------------------------------------------------------------------------- cancel

def test_cancel_with_prorate_credits_the_rest_and_ends():
    inputs = seats(5, [change(1, "2027-11-10", cancel=True)])
    assert lines(bill(inputs, "2027-11-10")) == [
        ("A1", "change_credit", "2027-11-10", "2027-12-01", "-14.00", "-3.50")]
    assert nights(inputs, "2027-11-11", "2028-01-31") == []
    assert lines(bill(inputs, "2027-11-01")) == [
        ("A1", "recurring", "2027-11-01", "2027-12-01", "20.00", "5.00")]


def test_cancel_without_prorate_ends_at_the_period_end():
    inputs = seats(5, [change(1, "2027-11-10", cancel=True)], prorate=False)
    assert nights(inputs, "2027-11-02", "2028-01-31") == []
    assert lines(bill(inputs, "2027-11-01")) == [
        ("A1", "recurring", "2027-11-01", "2027-12-01", "20.00", "5.00")]


def test_cancel_inside_the_minimum_term_takes_effect_after_it():
    # start 10-01, 90 minimum days: the term runs to 12-29; a cancel from 11-10 takes effect
    # from 12-30: December is billed, and 12-30 credits 2 days of the 31-day December
    inputs = seats(1, [change(1, "2027-11-10", cancel=True)], retail="31", cost="0",
                   minimum_days=90)
    assert nights(inputs, "2027-11-02", "2027-11-30") == []
    assert lines(bill(inputs, "2027-12-01")) == [
        ("A1", "recurring", "2027-12-01", "2028-01-01", "31.00", "0.00")]
    assert nights(inputs, "2027-12-02", "2028-02-01") == [
        ("2027-12-30", "A1", "change_credit", "2027-12-30", "2028-01-01", "-2.00", "0.00")]


# --------------------------------------------------------------------------- void

def test_void_produces_nothing():
    pkg = package("P1", retail="20", setup_retail="5", prorate=True)
    inputs = with_terms(make_inputs([customer("C1")], [pkg],
                                    [assignment(start="2027-10-05"),
                                     assignment("A2", start="2027-10-05")]),
                        changes=[change(1, "2027-10-20", "A1", void=True)])
    for day in ("2027-10-05", "2027-11-05", "2027-10-20"):
        assert {r.assignment_id for r in bill(inputs, day).due_lines.itertuples()} <= {"A2"}
    assert {r.assignment_id for r in bill(inputs, "2027-10-05").due_lines.itertuples()} == {"A2"}


# --------------------------------------------------------------------------- minimum spend

def _committed(qty=1, changes=(), prorate=True, usage=()):
    pkg = package("P1", retail="30", minimum_spend=True, prorate=prorate)
    inputs = make_inputs([customer("C1"), customer("C2")], [pkg],
                         [assignment(quantity=qty, start="2027-10-01")], usage)
    return with_terms(inputs, changes=changes)


def test_minimum_spend_split_commitment():
    calls = [call("U1", at="2027-11-05T10:00:00Z", charge="12.345")]
    inputs = _committed(1, [change(1, "2027-11-11", quantity=2)], usage=calls)
    # 30 x 10/30 + 60 x 20/30 = 50.00 committed, 12.345 spent: 37.655 -> 37.66 (once)
    assert nights(inputs, "2027-11-02", "2027-11-30") == []
    assert lines(bill(inputs, "2027-12-01")) == [
        ("A1", "minimum_spend", "2027-11-01", "2027-12-01", "37.66", "0.00")]


def test_minimum_spend_without_prorate_commits_the_old_terms():
    inputs = _committed(1, [change(1, "2027-11-11", quantity=2)], prorate=False)
    assert lines(bill(inputs, "2027-12-01")) == [
        ("A1", "minimum_spend", "2027-11-01", "2027-12-01", "30.00", "0.00")]
    assert lines(bill(inputs, "2028-01-01")) == [
        ("A1", "minimum_spend", "2027-12-01", "2028-01-01", "60.00", "0.00")]


def test_minimum_spend_of_a_transfer_sums_each_holders_calls():
    calls = [call("U1", "C1", at="2027-11-05T10:00:00Z", charge="3"),
             call("U2", "C1", at="2027-11-20T10:00:00Z", charge="100"),  # C1's, after D
             call("U3", "C2", at="2027-11-10T10:00:00Z", charge="100"),  # C2's, before D
             call("U4", "C2", at="2027-11-25T10:00:00Z", charge="4")]
    inputs = _committed(1, [change(1, "2027-11-16", customer_id="C2")], usage=calls)
    # 30.00 committed - (3 + 4)
    assert _by_customer(bill(inputs, "2027-12-01")) == [("C2", "minimum_spend", 23_000_000)]


# --------------------------------------------------------------------------- free minutes

def _minutes(changes=(), prorate=True, usage=()):
    pkg = package("P1", type="free_minutes", free_minutes=100, prorate=prorate)
    inputs = make_inputs([customer("C1"), customer("C2")], [pkg],
                         [assignment(start="2027-10-01")], usage)
    return with_terms(inputs, changes=changes)


def _run(inputs, first, last):
    """Post every night from `first` to `last`, the free-minute state carried; results by day."""
    import dataclasses

    from billing_jobs.calc.free_minutes import advance_state

    inputs = dataclasses.replace(inputs)
    out = {}
    for day in pd.date_range(first, last, freq="D"):
        result = compute_billing(inputs, day.date(), "UTC")
        inputs.counters, inputs.consumed = advance_state(
            inputs.counters, inputs.consumed, result.consumption, result.grant_counters)
        out[day.date().isoformat()] = result
    return out


def _cuts(result):
    return sorted((r.customer_id, r.assignment_id, _iso(r.period_start), _iso(r.period_end),
                   int(r.seconds)) for r in result.grant_cuts.itertuples())


def _util(result):
    return sorted((r.customer_id, r.assignment_id, _iso(r.period_start), _iso(r.period_end),
                   int(r.seconds_granted), int(r.seconds_used))
                  for r in result.utilisation.itertuples())


def test_free_minute_quantity_change_mid_period_cuts_and_grants():
    calls = [call("U1", at="2027-11-05T10:00:00Z", duration_s=600),
             call("U2", at="2027-11-12T10:00:00Z", duration_s=1200)]
    inputs = _minutes([change(1, "2027-11-11", quantity=3)], usage=calls)
    nights_ = _run(inputs, "2027-11-01", "2027-11-13")
    assert grants(nights_["2027-11-01"]) == [("C1", "A1", "2027-11-01", "2027-12-01", 6000)]
    # 6000 s x 10/30 = 2000 s to 11-11; 3 x 6000 s x 20/30 = 12000 s from 11-11
    assert grants(nights_["2027-11-11"]) == [("C1", "A1", "2027-11-11", "2027-12-01", 12000)]
    assert _cuts(nights_["2027-11-11"]) == [("C1", "A1", "2027-11-01", "2027-11-11", 2000)]
    assert _util(nights_["2027-11-11"]) == [("C1", "A1", "2027-11-01", "2027-11-11", 2000, 600)]
    assert _util(nights_["2027-11-13"]) == [("C1", "A1", "2027-11-11", "2027-12-01", 12000, 1200)]
    assert all(not len(r.grant_cuts) for d, r in nights_.items() if d != "2027-11-11")
    assert grants(bill(inputs, "2027-12-01")) == [("C1", "A1", "2027-12-01", "2028-01-01", 18000)]


def test_a_cut_grant_never_gives_less_than_it_gave():
    calls = [call("U1", at="2027-11-05T10:00:00Z", duration_s=3000)]
    inputs = _minutes([change(1, "2027-11-11", quantity=3)], usage=calls)
    nights_ = _run(inputs, "2027-11-06", "2027-11-11")
    assert _cuts(nights_["2027-11-11"]) == [("C1", "A1", "2027-11-01", "2027-11-11", 3000)]


def test_free_minutes_transfer_new_grant_on_the_new_customer():
    calls = [call("U1", "C2", at="2027-11-20T10:00:00Z", duration_s=60)]
    inputs = _minutes([change(1, "2027-11-16", customer_id="C2")], usage=calls)
    nights_ = _run(inputs, "2027-11-15", "2027-11-21")
    # 6000 x 15/30: the old grant to 11-16 (C1) and a new one from it (C2)
    assert grants(nights_["2027-11-16"]) == [("C2", "A1", "2027-11-16", "2027-12-01", 3000)]
    assert _cuts(nights_["2027-11-16"]) == [("C1", "A1", "2027-11-01", "2027-11-16", 3000)]
    assert _util(nights_["2027-11-21"]) == [("C2", "A1", "2027-11-16", "2027-12-01", 3000, 60)]


def test_free_minutes_without_prorate_old_grant_runs_to_its_end():
    inputs = _minutes([change(1, "2027-11-11", quantity=3)], prorate=False)
    nights_ = _run(inputs, "2027-11-01", "2027-12-01")
    assert all(not len(r.grant_cuts) for r in nights_.values())
    assert [g for r in nights_.values() for g in grants(r)] == [
        ("C1", "A1", "2027-11-01", "2027-12-01", 6000),
        ("C1", "A1", "2027-12-01", "2028-01-01", 18000)]


def test_free_minutes_cancel_with_prorate_cuts_and_grants_nothing_more():
    inputs = _minutes([change(1, "2027-11-11", cancel=True)])
    nights_ = _run(inputs, "2027-11-10", "2027-12-02")
    assert _cuts(nights_["2027-11-11"]) == [("C1", "A1", "2027-11-01", "2027-11-11", 2000)]
    assert [g for r in nights_.values() for g in grants(r)] == []


def test_free_minute_override_change_is_priced_with_the_override():
    inputs = _minutes([change(1, "2027-11-11", free_minutes=30)])
    assert grants(bill(inputs, "2027-11-11")) == [
        ("C1", "A1", "2027-11-11", "2027-12-01", 1200)]  # 30 min x 60 x 20/30
    assert lines(bill(inputs, "2027-11-11")) == []  # same money terms: no change lines
