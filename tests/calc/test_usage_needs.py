"""Which calls a date needs for minimum spend (calc.usage.usage_needs, #13): the engine's own
periods where the row reads cleanly (only a period that ends on the date sums calls), the
longest period of the frequency back from the date where any calendar value is unreadable."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from billing_jobs.calc.usage import usage_needs


def _day(d: date) -> int:
    return int(np.datetime64(d, "D").astype("int64"))


def _needs(rows, run: date, last: date | None = None) -> dict[str, date]:
    packages = pd.DataFrame([
        {"package_id": "Y", "type": "standard", "minimum_spend": True, "frequency": "yearly",
         "minimum_days": 0, "prorate": False, "frequency_match": None},
        {"package_id": "M", "type": "standard", "minimum_spend": True, "frequency": "monthly",
         "minimum_days": 0, "prorate": False, "frequency_match": None},
        {"package_id": "Y?", "type": "standard", "minimum_spend": True, "frequency": "yearly",
         "minimum_days": 0, "prorate": "maybe", "frequency_match": None},
        {"package_id": "M15", "type": "standard", "minimum_spend": True, "frequency": "monthly",
         "minimum_days": 0, "prorate": True, "frequency_match": "15"},
    ])
    assignments = pd.DataFrame([
        {"customer_id": c, "package_id": p, "start_date": pd.Timestamp(s),
         "end_date": pd.Timestamp(e) if e else pd.NaT} for c, p, s, e in rows])
    assignments["start_date"] = assignments["start_date"].astype("datetime64[s]")
    assignments["end_date"] = assignments["end_date"].astype("datetime64[s]")
    customers = pd.DataFrame({"customer_id": sorted({r[0] for r in rows})})
    got = usage_needs(customers, packages, assignments, _day(run), 400,
                      None if last is None else _day(last))
    return {c: (np.datetime64(int(d), "D").astype(date)) for c, d in
            zip(got["customer_id"], got["since_day"])}


D = date(2027, 3, 1)


def test_a_yearly_period_that_ends_on_the_date_reads_its_year_and_one_that_does_not_nothing():
    assert _needs([("ENDS", "Y", "2025-03-01", None), ("OPEN", "Y", "2025-06-15", None)], D) \
        == {"ENDS": date(2026, 3, 1)}


def test_an_unreadable_calendar_value_keeps_the_wide_read():
    # prorate 'maybe' (validation rejects it): the longest yearly period back from D
    assert _needs([("ODD", "Y?", "2025-06-15", None)], D) == {"ODD": date(2026, 2, 28)}


def test_a_period_cut_by_the_end_date_ends_on_the_date():
    # yearly from 2025-06-15, ended 2027-02-28: the period Jun 15 2026 - Mar 1 2027 ends on D
    assert _needs([("CUT", "Y", "2025-06-15", "2027-02-28")], D) == {"CUT": date(2026, 6, 15)}


def test_a_range_needs_every_period_that_ends_inside_it():
    rows = [("MID", "M15", "2026-01-15", None), ("FIRST", "M", "2026-01-01", None)]
    assert _needs(rows, D) == {"FIRST": date(2027, 2, 1)}  # the 15th is not D
    assert _needs(rows, date(2027, 2, 10), D) == {"MID": date(2027, 1, 15),
                                                   "FIRST": date(2027, 2, 1)}
