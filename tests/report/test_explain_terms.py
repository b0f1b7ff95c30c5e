"""The report says why a line of changed terms costs what it costs (#27, SPEC 10): a change
line names the days of the split period, the price and the quantity; a package change both
packages, a transfer both customers, a cancel its date; a line priced by a price version says
the version's date. The context comes from `run.stages.report_context` (the run's inputs)."""

from __future__ import annotations

from billing_jobs.calc.billing import compute_billing
from billing_jobs.report.explain import explain_lines
from billing_jobs.run.stages import report_context
from tests.calc.strategies import (D, assignment, change, customer, make_inputs, package,
                                   version, with_terms)

SEAT = dict(retail="4", cost="1", prorate=True, name="Seat")


def _explained(inputs, day: str) -> dict[tuple[str, str], str]:
    result = compute_billing(inputs, D(day), "UTC")
    text = explain_lines(result.due_lines, report_context(inputs))
    return {(r.customer_id, r.kind): t for r, t in zip(result.due_lines.itertuples(), text)}


def _seats(qty=5, changes=(), versions=(), packages=()):
    inputs = make_inputs([customer("C1", name="One"), customer("C2", name="Two")],
                         [package("P1", **SEAT), *packages],
                         [assignment(quantity=qty, start="2027-10-01")])
    return with_terms(inputs, versions=versions, changes=changes)


def test_more_seats_credit_and_charge_say_days_price_and_quantity():
    said = _explained(_seats(5, [change(1, "2027-11-10", quantity=8)]), "2027-11-10")
    assert said[("C1", "change_credit")] == (
        "change credit: 5 × Seat (P1) until 2027-11-10 given back: 21 of 30 days × 4.00 × 5 "
        "= -14.00; replaced from 2027-11-10 by 8 × Seat (P1)")
    assert said[("C1", "change_charge")] == (
        "change charge: 8 × Seat (P1) from 2027-11-10: 21 of 30 days × 4.00 × 8 = 22.40; "
        "replaces 5 × Seat (P1)")


def test_package_change_names_both_packages():
    gold = package("GOLD", retail="35", prorate=True, name="Gold")
    said = _explained(_seats(1, [change(1, "2027-11-15", package_id="GOLD")],
                             packages=[gold]), "2027-11-15")
    assert said[("C1", "change_credit")] == (
        "change credit: 1 × Seat (P1) until 2027-11-15 given back: 16 of 30 days × 4.00 × 1 "
        "= -2.13; replaced from 2027-11-15 by 1 × Gold (GOLD)")
    assert said[("C1", "change_charge")] == (
        "change charge: 1 × Gold (GOLD) from 2027-11-15: 16 of 30 days × 35.00 × 1 = 18.67; "
        "replaces 1 × Seat (P1)")


def test_transfer_names_both_customers():
    said = _explained(_seats(1, [change(1, "2027-11-16", customer_id="C2")]), "2027-11-16")
    moved = "; transferred from customer C1 (One) to C2 (Two)"
    assert said[("C1", "change_credit")] == (
        "change credit: 1 × Seat (P1) until 2027-11-16 given back: 15 of 30 days × 4.00 × 1 "
        "= -2.00" + moved)
    assert said[("C2", "change_charge")] == (
        "change charge: 1 × Seat (P1) from 2027-11-16: 15 of 30 days × 4.00 × 1 = 2.00" + moved)


def test_cancel_says_so():
    said = _explained(_seats(5, [change(1, "2027-11-20", cancel=True)]), "2027-11-20")
    assert said == {("C1", "change_credit"): (
        "change credit: 5 × Seat (P1) until 2027-11-20 given back: 11 of 30 days × 4.00 × 5 "
        "= -7.33; cancelled from 2027-11-20")}


def test_a_line_priced_by_a_version_names_its_date():
    inputs = _seats(5, versions=[version("P1", "2027-12-01", retail="6", cost="1")])
    assert _explained(inputs, "2027-11-01")[("C1", "recurring")] == (
        "recurring: 4.00 × 5 = 20.00 for 2027-11-01 to 2027-12-01 (end exclusive)")
    assert _explained(inputs, "2027-12-01")[("C1", "recurring")] == (
        "recurring, price from 2027-12-01: 6.00 × 5 = 30.00 for 2027-12-01 to 2028-01-01 "
        "(end exclusive)")


def test_setup_priced_by_a_version_names_its_date():
    inputs = make_inputs([customer("C1")], [package("P1", **SEAT, setup_retail="5")],
                         [assignment(quantity=2, start="2027-12-03")])
    inputs = with_terms(inputs, versions=[version("P1", "2027-12-01", retail="6",
                                                  setup_retail="7")])
    said = _explained(inputs, "2027-12-03")
    assert said[("C1", "setup")] == "setup fee, price from 2027-12-01: 7.00 × 2 = 14.00"


def test_change_lines_priced_by_a_version_name_it():
    # the split period [12-01, 01-01) is priced on 12-01 by the version: 6.00
    inputs = _seats(5, [change(1, "2027-12-11", quantity=8)],
                    versions=[version("P1", "2027-12-01", retail="6", cost="1")])
    said = _explained(inputs, "2027-12-11")
    assert said[("C1", "change_charge")] == (
        "change charge, price from 2027-12-01: 8 × Seat (P1) from 2027-12-11: 21 of 31 days "
        "× 6.00 × 8 = 32.52; replaces 5 × Seat (P1)")


def test_without_context_the_text_still_reads():
    inputs = _seats(5, [change(1, "2027-11-10", quantity=8)])
    result = compute_billing(inputs, D("2027-11-10"), "UTC")
    text = dict(zip(result.due_lines["kind"], explain_lines(result.due_lines, None)))
    assert text["change_charge"] == (
        "change charge: 8 × P1 from 2027-11-10: 21 of ? days × 4.00 × 8 = 22.40")
