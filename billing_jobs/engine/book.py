"""The assignment book: assignments joined with their package and customer, as arrays.

Built once per run; charges, grants and utilisation all read from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from billing_jobs.engine.calendar import (
    FREQ_CODES,
    Calendars,
    effective_end,
    parse_match_days,
    to_days,
)
from billing_jobs.engine.money import minor_digits_series


@dataclass
class Book:
    rows: pd.DataFrame  # one row per assignment, with package and customer columns
    cal: Calendars
    start: np.ndarray
    end: np.ndarray  # NEVER when open
    eff_end: np.ndarray  # OPEN when open
    digits: np.ndarray  # the customer currency's minor-unit digits
    qty: np.ndarray
    minimum_spend: np.ndarray
    prorate: np.ndarray
    free_minutes_type: np.ndarray
    minutes: np.ndarray  # total free minutes per period (override or package x quantity)

    def __len__(self) -> int:
        return len(self.rows)


def build_book(assignments: pd.DataFrame, packages: pd.DataFrame, customers: pd.DataFrame) -> Book:
    pkg = packages.rename(columns={"name": "package_name", "currency": "package_currency",
                                   "free_minutes": "package_free_minutes"})
    rows = assignments.merge(pkg, on="package_id", how="inner", validate="many_to_one")
    rows = rows.merge(customers[["customer_id", "currency"]], on="customer_id", how="inner",
                      validate="many_to_one")
    rows = rows.sort_values("assignment_id", kind="stable").reset_index(drop=True)

    start = to_days(rows["start_date"].to_numpy())
    end = to_days(rows["end_date"].to_numpy())
    min_days = rows["minimum_days"].fillna(0).to_numpy(dtype="int64")
    freq = rows["frequency"].map(FREQ_CODES).to_numpy(dtype="int64")
    match = parse_match_days(rows["frequency_match"]).to_numpy()
    qty = rows["quantity"].to_numpy(dtype="int64")
    override = rows["free_minutes"]
    package_minutes = rows["package_free_minutes"].fillna(0).to_numpy(dtype="int64")
    minutes = np.where(override.isna().to_numpy(),
                       package_minutes * qty,
                       override.fillna(0).to_numpy(dtype="int64"))
    return Book(
        rows=rows,
        cal=Calendars.build(freq, start, match),
        start=start,
        end=end,
        eff_end=effective_end(start, end, min_days),
        digits=minor_digits_series(rows["currency"]).to_numpy(),
        qty=qty,
        minimum_spend=rows["minimum_spend"].to_numpy(dtype=bool),
        prorate=rows["prorate"].to_numpy(dtype=bool),
        free_minutes_type=(rows["type"] == "free_minutes").to_numpy(),
        minutes=minutes,
    )
