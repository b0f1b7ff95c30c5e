"""compute_billing: everything due on one billing date, from validated input frames."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from billing_jobs.engine.book import build_book
from billing_jobs.engine.calendar import NEVER, OPEN, from_days, to_days
from billing_jobs.engine.charges import due_lines_on
from billing_jobs.engine.frames import BillingInputs, BillingResult
from billing_jobs.engine.grants import grants_on
from billing_jobs.engine.usage import SpendIndex, call_days
from billing_jobs.engine.utilisation import utilisation_on


def day_number(d: date | str | pd.Timestamp) -> int:
    return int(np.datetime64(pd.Timestamp(d).date(), "D").astype("int64"))


def extended_ends(book) -> pd.DataFrame:
    ext = (book.end > NEVER) & (book.eff_end < OPEN) & (book.eff_end > book.end)
    rows = book.rows[ext]
    return pd.DataFrame({
        "assignment_id": rows["assignment_id"].to_numpy(),
        "customer_id": rows["customer_id"].to_numpy(),
        "end_date": from_days(book.end[ext]),
        "effective_end": from_days(book.eff_end[ext]),
    })


def compute_billing(inputs: BillingInputs, run_date, tz: str = "UTC") -> BillingResult:
    run_day = day_number(run_date)
    book = build_book(inputs.assignments, inputs.packages, inputs.customers)

    usage = inputs.usage
    day_of_call = call_days(usage["start_time"], tz) if len(usage) else np.zeros(0, dtype="int64")
    codes = np.sort(inputs.customers["customer_id"].unique())

    def code_of(ids: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(codes, ids), max(codes.size - 1, 0))
        return np.where(codes.size and (codes[pos] == ids), pos, -1) if codes.size else np.full(len(ids), -1)

    spend_index = None
    if book.minimum_spend.any() and len(usage):
        usage_codes = code_of(usage["customer_id"].to_numpy())
        known = usage_codes >= 0
        spend_index = SpendIndex(usage_codes[known], day_of_call[known],
                                 usage["charge"].to_numpy(dtype="int64")[known])
    book_codes = code_of(book.rows["customer_id"].to_numpy())

    return BillingResult(
        due_lines=due_lines_on(book, run_day, spend_index, book_codes),
        grants=grants_on(book, run_day),
        utilisation=utilisation_on(book, run_day, usage, day_of_call),
        extended_ends=extended_ends(book),
    )
