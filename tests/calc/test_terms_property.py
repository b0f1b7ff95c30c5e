"""Terms over time (SPEC 10, issue #27), as a property: for random small books with random
price versions and change histories, posting every night of a ~3-month window gives, per
(customer, kind), the sum of the lines the independent reference (tests/calc/reference.py,
`History`) yields per segment of terms; every posting key appears once; and recomputing a
night after later changes (or versions) were recorded gives the lines it gave before: the
past is immutable.

Covered: standard packages without minimum spend, weekly and monthly calendars (with and
without match days, so start stubs), minimum terms, end dates, prorate true and false, price
versions, changes of quantity / package (same calendar) / customer / free-minute override, and
cancels. Not covered here: minimum spend, free-minute grants and credits, void (a
correction, not a change from a date).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from billing_jobs.calc.billing import compute_billing
from tests.calc.reference import read_histories, reference_terms_lines
from tests.calc.strategies import (
    D,
    assignment,
    change,
    customer,
    make_inputs,
    package,
    terms_books,
    version,
    with_terms,
)

TZ = "UTC"
FIELDS = ("run_date", "customer_id", "assignment_id", "package_id", "kind", "period_start",
          "period_end", "quantity", "unit_price", "amount", "cost")


def _cell(v):
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.date()
    if hasattr(v, "item"):
        v = v.item()
    return v


def _rows(df: pd.DataFrame) -> list[tuple]:
    return [tuple(_cell(r[f]) for f in FIELDS) for r in df.to_dict("records")]


def nights(inputs, first: date, last: date) -> dict[date, list[tuple]]:
    """compute_billing for every date of [first, last]: its due lines (FIELDS tuples)."""
    out = {}
    d = first
    while d <= last:
        out[d] = _rows(compute_billing(inputs, d, TZ).due_lines)
        d += timedelta(days=1)
    return out


def _totals(rows) -> dict[tuple, tuple[int, int]]:
    acc: dict[tuple, list[int]] = {}
    for r in rows:
        t = acc.setdefault((r[1], r[4]), [0, 0])
        t[0] += r[9]
        t[1] += r[10]
    return {k: tuple(v) for k, v in sorted(acc.items())}


def describe(inputs, first, last) -> str:
    _, histories = read_histories(inputs)
    parts = [f"window {first} .. {last}"]
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        parts.append("packages:\n" + inputs.packages[
            ["package_id", "cost", "retail", "setup_cost", "setup_retail", "frequency",
             "frequency_match", "minimum_days", "prorate"]].to_string())
        parts.append("assignments:\n" + inputs.assignments.to_string())
        parts.append("versions:\n" + inputs.versions.to_string())
        parts.append("changes:\n" + inputs.changes.to_string())
    for aid, h in sorted(histories.items()):
        parts.append(f"{aid}: stop {h.stop}; takes effect {h.effective}")
        for s in h.segments():
            parts.append(f"  [{s.start}, {s.end}) {s.terms.customer_id} "
                         f"{s.terms.package.package_id} x{s.terms.quantity}")
    return "\n".join(parts)


def check_against_reference(inputs, first, last, full=None):
    """The engine's nights of [first, last] against the reference; returns the nights."""
    full = full if full is not None else nights(inputs, first, last)
    engine = [r for rows in full.values() for r in rows]
    ref = [tuple(x[f] for f in FIELDS) for x in reference_terms_lines(inputs, first, last)]
    keys = Counter((r[2], r[4], r[5]) for r in engine)
    twice = [k for k, n in keys.items() if n > 1]
    assert not twice, f"keys posted twice: {twice}\n" + describe(inputs, first, last)
    if _totals(engine) != _totals(ref) or Counter(engine) != Counter(ref):
        only_eng = sorted(set(engine) - set(ref), key=str)
        only_ref = sorted(set(ref) - set(engine), key=str)
        raise AssertionError(
            f"engine totals {_totals(engine)}\nreference totals {_totals(ref)}\n"
            f"columns {FIELDS}\nonly in engine:\n  " + "\n  ".join(map(repr, only_eng))
            + "\nonly in reference:\n  " + "\n  ".join(map(repr, only_ref)) + "\n"
            + describe(inputs, first, last))
    return full


def as_recorded_on(inputs, d: date):
    """`inputs` as they stood on night d: only the changes and versions dated d or earlier."""
    import dataclasses

    ch, ver = inputs.changes, inputs.versions
    return dataclasses.replace(
        inputs, changes=ch[ch["effective_from"] <= pd.Timestamp(d)].reset_index(drop=True),
        versions=ver[ver["effective_from"] <= pd.Timestamp(d)].reset_index(drop=True))


def check_past_is_immutable(inputs, first, last, full=None, every_night=False):
    """Each night d recomputed with the whole history (`full`, as rebill would) = night d
    computed with only the changes and versions dated up to d (as it was posted).

    Unless `every_night`, the nights recomputed are those where either side could have a
    line: the full run has lines, or the reference over the history as recorded on d has
    (the reference is cheap; the engine costs ~40 ms a night); nights where nothing was
    dated after d are the same inputs and skipped."""
    full = full if full is not None else nights(inputs, first, last)
    later = [pd.Timestamp(x).date() for x in (*inputs.changes["effective_from"],
                                                 *inputs.versions["effective_from"])]
    for d, rows in full.items():
        if not any(x > d for x in later):
            continue
        recorded = as_recorded_on(inputs, d)
        if not (every_night or rows or reference_terms_lines(recorded, d, d)):
            continue
        then = _rows(compute_billing(recorded, d, TZ).due_lines)
        assert sorted(rows, key=str) == sorted(then, key=str), (
            f"night {d} changed after later changes were recorded:\nas posted {then}\n"
            f"recomputed {rows}\n" + describe(inputs, first, last))


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])


def _seats():
    """5 seats, a change to 8 on 11-10 and a cancel from 12-10 (both prorated)."""
    inputs = with_terms(
        make_inputs([customer("C1"), customer("C2")],
                    [package("P11", retail="4", cost="1", prorate=True)],
                    [assignment(package_id="P11", quantity=5, start="2027-10-01")]),
        versions=[version("P11", "2027-12-01", retail="6", cost="1")],
        changes=[change(1, "2027-11-10", quantity=8), change(2, "2027-11-20", customer_id="C2"),
                 change(3, "2027-12-10", cancel=True)])
    return inputs, D("2027-10-01"), D("2027-12-31")


@settings(max_examples=5, **SETTINGS)
@given(terms_books())
@example(_seats())
def test_nightly_posting_sums_to_the_reference_and_the_past_stands(case):
    """Nightly posting of ~3 months = the reference's lines (per (customer, kind) totals, and
    line by line); each key (assignment, kind, period_start) once; and no night changes when
    it is recomputed after later changes and versions were recorded."""
    full = check_against_reference(*case)
    check_past_is_immutable(*case, full=full)



def interesting_nights(inputs, first: date, last: date) -> list[date]:
    """The nights where lines can appear or vanish: the reference's run dates, each change's
    date and effective day, each stop, and the day either side of each."""
    _, histories = read_histories(inputs)
    days = {x["run_date"] for x in reference_terms_lines(inputs, first, last)}
    for h in histories.values():
        days |= {c.day for c in h.changes} | set(h.effective.values())
        days |= {h.a.start} | ({h.stop} if h.stop is not None else set())
    around = {d + timedelta(days=k) for d in days for k in (-1, 0, 1)}
    return sorted(d for d in around if first <= d <= last)


@settings(max_examples=30, **SETTINGS)
@given(terms_books(), st.randoms(use_true_random=False))
def test_the_nights_that_matter_agree_line_by_line(case, rnd):
    """More histories, fewer nights each: up to 10 nights where lines appear or vanish, each
    night's lines = the reference's lines of that night (every column the reference knows)."""
    inputs, first, last = case
    ref = {}
    for x in reference_terms_lines(inputs, first, last):
        ref.setdefault(x["run_date"], []).append(tuple(x[f] for f in FIELDS))
    days = interesting_nights(inputs, first, last)
    for d in sorted(rnd.sample(days, min(10, len(days)))):
        got = _rows(compute_billing(inputs, d, TZ).due_lines)
        want = ref.get(d, [])
        assert sorted(got, key=str) == sorted(want, key=str), (
            f"night {d}\ncolumns {FIELDS}\nengine    {sorted(got, key=str)}\n"
            f"reference {sorted(want, key=str)}\n" + describe(inputs, first, last))
