"""The assignment book: assignments joined with their package and customer, as arrays.

Built once per run; charges, grants and utilisation all read from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from billing_jobs.calc.calendar import (
    FREQ_CODES,
    Calendars,
    effective_end,
    parse_match_days,
    to_days,
)
from billing_jobs.calc.terms import Terms, build_terms
from billing_jobs.core.money import minor_digits_series


def customer_codes(ids: pd.Series, customer_ids: np.ndarray) -> np.ndarray:
    """Integer code of each id: its position in `customer_ids` (sorted), -1 when unknown.

    Text ids go through arrow's hash lookup (no Python object per row: the usage table has
    tens of millions of rows); anything else through a pandas Categorical."""
    try:
        arr = pa.array(ids, from_pandas=True)
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            raise TypeError(arr.type)
        keys = pa.array(np.asarray(customer_ids, dtype=object), type=arr.type)
    except (pa.ArrowException, TypeError, ValueError):
        return pd.Categorical(ids, categories=customer_ids).codes.astype("int64")
    pos = pc.index_in(arr, value_set=keys)
    return pos.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")


@dataclass
class Book:
    rows: pd.DataFrame  # one row per assignment, with package and customer columns
    customer_code: np.ndarray  # position of the row's customer in the sorted customer ids
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
    terms: Terms  # terms over time (SPEC 10): versions of packages, changes of assignments

    @property
    def stop(self) -> np.ndarray:
        """The first day without service: effective_end + 1, or a cancel's day (OPEN)."""
        return self.terms.stop

    def __len__(self) -> int:
        return len(self.rows)


def voided(assignments: pd.DataFrame, changes: pd.DataFrame | None) -> np.ndarray:
    """Mask of the assignments a `void` change row withdraws entirely (SPEC 10)."""
    if changes is None or not len(changes):
        return np.zeros(len(assignments), dtype=bool)
    gone = changes["assignment_id"][changes["void"].to_numpy(dtype=bool)].astype(str)
    return assignments["assignment_id"].astype(str).isin(gone).to_numpy()


def build_book(assignments: pd.DataFrame, packages: pd.DataFrame, customers: pd.DataFrame,
               versions: pd.DataFrame | None = None, changes: pd.DataFrame | None = None) -> Book:
    """The book of the assignments (a voided one is left out: it produces nothing)."""
    assignments = assignments[~voided(assignments, changes)]
    pkg = packages.rename(columns={"name": "package_name", "currency": "package_currency",
                                   "free_minutes": "package_free_minutes"})
    pkg = pkg.assign(match_mask=parse_match_days(pkg["frequency_match"]).to_numpy())
    rows = assignments.merge(pkg, on="package_id", how="inner", validate="many_to_one")
    rows = rows.merge(customers[["customer_id", "currency"]], on="customer_id", how="inner",
                      validate="many_to_one")
    rows = rows.sort_values("assignment_id", kind="stable").reset_index(drop=True)

    start = to_days(rows["start_date"].to_numpy())
    end = to_days(rows["end_date"].to_numpy())
    min_days = rows["minimum_days"].fillna(0).to_numpy(dtype="int64")
    freq = rows["frequency"].map(FREQ_CODES).to_numpy(dtype="int64")
    match = rows["match_mask"].to_numpy(dtype="int64")
    qty = rows["quantity"].to_numpy(dtype="int64")
    override = rows["free_minutes"]
    package_minutes = rows["package_free_minutes"].fillna(0).to_numpy(dtype="int64")
    minutes = np.where(override.isna().to_numpy(),
                       package_minutes * qty,
                       override.fillna(0).to_numpy(dtype="int64"))
    customer_ids = np.sort(customers["customer_id"].to_numpy(dtype=object))
    cal = Calendars.build(freq, start, match)
    eff_end = effective_end(start, end, min_days)
    prorate = rows["prorate"].to_numpy(dtype=bool)
    minimum_spend = rows["minimum_spend"].to_numpy(dtype=bool)
    return Book(
        rows=rows,
        customer_code=customer_codes(rows["customer_id"], customer_ids),
        cal=cal,
        start=start,
        end=end,
        eff_end=eff_end,
        digits=minor_digits_series(rows["currency"]).to_numpy(),
        qty=qty,
        minimum_spend=minimum_spend,
        prorate=prorate,
        free_minutes_type=(rows["type"] == "free_minutes").to_numpy(),
        minutes=minutes,
        terms=build_terms(rows, cal, start, eff_end, prorate, minimum_spend, packages,
                          customer_ids, versions, changes, customer_codes),
    )
