"""The terms-over-time reference (tests/calc/reference.py, `History`) on hand-worked
histories: its segments and its lines, amounts worked out in the comments (no engine here)."""

from __future__ import annotations

from tests.calc.reference import read_histories, reference_terms_lines
from tests.calc.strategies import (D, assignment, change, customer, make_inputs, package,
                                   version, with_terms)


def _lines(inputs, first="2027-01-01", last="2028-12-31"):
    return sorted((x["run_date"].isoformat(), x["customer_id"], x["kind"],
                   x["period_start"].isoformat(),
                   None if x["period_end"] is None else x["period_end"].isoformat(),
                   x["quantity"], x["amount"], x["cost"])
                  for x in reference_terms_lines(inputs, D(first), D(last)))


def _segments(inputs, aid="A1"):
    _, histories = read_histories(inputs)
    return [(s.start.isoformat(), None if s.end is None else s.end.isoformat(),
             s.terms.customer_id, s.terms.package.package_id, s.terms.quantity)
            for s in histories[aid].segments()]


def _seats(prorate=True, **pkg):
    """5 seats at 4.00 (cost 1.00) monthly on the 1st from 2027-10-01; 6.00 from December;
    8 seats from 11-10, to C2 from 11-20, cancelled from 12-10."""
    return with_terms(
        make_inputs([customer("C1"), customer("C2")],
                    [package("P1", retail="4", cost="1", prorate=prorate, **pkg)],
                    [assignment(quantity=5, start="2027-10-01")]),
        versions=[version("P1", "2027-12-01", retail="6", cost="1")],
        changes=[change(1, "2027-11-10", quantity=8), change(2, "2027-11-20", customer_id="C2"),
                 change(3, "2027-12-10", cancel=True)])


def test_prorated_changes_split_their_periods():
    inputs = _seats()
    assert _segments(inputs) == [("2027-10-01", "2027-11-10", "C1", "P1", 5),
                                 ("2027-11-10", "2027-11-20", "C1", "P1", 8),
                                 ("2027-11-20", "2027-12-10", "C2", "P1", 8)]
    assert _lines(inputs) == [
        ("2027-10-01", "C1", "recurring", "2027-10-01", "2027-11-01", 5, 20_000_000, 5_000_000),
        ("2027-11-01", "C1", "recurring", "2027-11-01", "2027-12-01", 5, 20_000_000, 5_000_000),
        # 4 x 5 x 21/30 = 14.00 back, 4 x 8 x 21/30 = 22.40 on
        ("2027-11-10", "C1", "change_charge", "2027-11-10", "2027-12-01", 8, 22_400_000,
         5_600_000),
        ("2027-11-10", "C1", "change_credit", "2027-11-10", "2027-12-01", 5, -14_000_000,
         -3_500_000),
        # 4 x 8 x 11/30 = 11.7333 -> 11.73 from C1 to C2 (cost 2.9333 -> 2.93)
        ("2027-11-20", "C1", "change_credit", "2027-11-20", "2027-12-01", 8, -11_730_000,
         -2_930_000),
        ("2027-11-20", "C2", "change_charge", "2027-11-20", "2027-12-01", 8, 11_730_000,
         2_930_000),
        # the December version: 6 x 8
        ("2027-12-01", "C2", "recurring", "2027-12-01", "2028-01-01", 8, 48_000_000, 8_000_000),
        # cancel from 12-10: 6 x 8 x 22/31 = 34.0645 -> 34.06 back (cost 8 x 22/31 = 5.677)
        ("2027-12-10", "C2", "change_credit", "2027-12-10", "2028-01-01", 8, -34_060_000,
         -5_680_000),
    ]


def test_without_prorate_everything_waits_for_the_next_billing_date():
    inputs = _seats(prorate=False)
    # the cancel from 12-10 ends the service at the period's end: 2028-01-01
    assert _segments(inputs) == [("2027-10-01", "2027-12-01", "C1", "P1", 5),
                                 ("2027-12-01", "2028-01-01", "C2", "P1", 8)]
    assert _lines(inputs) == [
        ("2027-10-01", "C1", "recurring", "2027-10-01", "2027-11-01", 5, 20_000_000, 5_000_000),
        ("2027-11-01", "C1", "recurring", "2027-11-01", "2027-12-01", 5, 20_000_000, 5_000_000),
        ("2027-12-01", "C2", "recurring", "2027-12-01", "2028-01-01", 8, 48_000_000, 8_000_000),
    ]


def test_a_change_inside_a_prorated_start_stub():
    # weekly on Mondays, 7.00 a week; start Wednesday 11-03: stub [11-03, 11-08) of the
    # calendar week [11-01, 11-08): 7 x 2 x 5/7 = 10.00; 3 seats from Friday 11-05:
    # 7 x 2 x 3/7 = 6.00 back, 7 x 3 x 3/7 = 9.00 on
    inputs = with_terms(
        make_inputs([customer("C1")],
                    [package("P1", retail="7", frequency="weekly", match="1", prorate=True)],
                    [assignment(quantity=2, start="2027-11-03")]),
        changes=[change(1, "2027-11-05", quantity=3)])
    assert _lines(inputs, last="2027-11-08") == [
        ("2027-11-03", "C1", "prorated", "2027-11-03", "2027-11-08", 2, 10_000_000, 0),
        ("2027-11-05", "C1", "change_charge", "2027-11-05", "2027-11-08", 3, 9_000_000, 0),
        ("2027-11-05", "C1", "change_credit", "2027-11-05", "2027-11-08", 2, -6_000_000, 0),
        ("2027-11-08", "C1", "recurring", "2027-11-08", "2027-11-15", 3, 21_000_000, 0),
    ]


def test_a_cancel_inside_the_minimum_term_takes_effect_after_it():
    # 90 minimum days from 10-01: the term ends 12-29; the cancel from 11-10 stops service on
    # 12-30: 31 x 2/31 = 2.00 back
    inputs = with_terms(
        make_inputs([customer("C1")], [package("P1", retail="31", prorate=True,
                                               minimum_days=90)],
                    [assignment(start="2027-10-01")]),
        changes=[change(1, "2027-11-10", cancel=True)])
    assert _lines(inputs)[-2:] == [
        ("2027-12-01", "C1", "recurring", "2027-12-01", "2028-01-01", 1, 31_000_000, 0),
        ("2027-12-30", "C1", "change_credit", "2027-12-30", "2028-01-01", 1, -2_000_000, 0),
    ]
    assert len(_lines(inputs)) == 4  # 10-01, 11-01, 12-01 and the credit; nothing after


def test_a_free_minute_override_alone_changes_no_money():
    inputs = with_terms(
        make_inputs([customer("C1")], [package("P1", retail="30", prorate=True)],
                    [assignment(start="2027-10-01")]),
        changes=[change(1, "2027-11-11", free_minutes=30)])
    assert [x for x in _lines(inputs, last="2027-11-30") if x[2].startswith("change")] == []


def test_a_void_yields_nothing():
    inputs = with_terms(
        make_inputs([customer("C1")], [package("P1", retail="30", setup_retail="5")],
                    [assignment(start="2027-10-01")]),
        changes=[change(1, "2027-10-01", void=True)])
    assert _lines(inputs) == [] and _segments(inputs) == []
