"""Free-minute grants (SPEC section 4): one per billing date of a free-minutes assignment,
and a prorated one (rounded down to whole minutes) on a prorated start."""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing_jobs.engine.book import Book
from billing_jobs.engine.calendar import from_days, period_opened_on, start_stub
from billing_jobs.engine.frames import GRANT_COLUMNS


def grants_on(book: Book, run_day: int) -> pd.DataFrame:
    n = len(book)
    D = np.full(n, run_day, dtype="int64")
    today = period_opened_on(book.cal, D, book.eff_end)
    stub = start_stub(book.cal, book.eff_end)

    regular = today.valid & book.free_minutes_type
    prorated = (book.start == run_day) & stub.valid & book.prorate & book.free_minutes_type
    idx = np.flatnonzero(regular | prorated)
    use_stub = prorated[idx]
    minutes = book.minutes[idx]
    stub_minutes = (minutes * stub.days[idx]) // np.maximum(stub.full[idx], 1)
    rows = book.rows.iloc[idx]
    grants = pd.DataFrame({
        "run_date": from_days(np.full(idx.size, run_day, dtype="int64")),
        "customer_id": rows["customer_id"].to_numpy(),
        "assignment_id": rows["assignment_id"].to_numpy(),
        "package_id": rows["package_id"].to_numpy(),
        "period_start": from_days(np.where(use_stub, stub.start[idx], today.start[idx])),
        "period_end": from_days(np.where(use_stub, stub.end[idx], today.end[idx])),
        "destination": rows["destination"].fillna("").to_numpy(),
        "seconds": np.where(use_stub, stub_minutes, minutes).astype("int64") * 60,
    })
    return grants.sort_values(["customer_id", "assignment_id"], kind="stable").reset_index(drop=True)[GRANT_COLUMNS]
