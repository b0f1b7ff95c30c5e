"""Free-minute grants (SPEC section 4): one per billing date of a free-minutes assignment,
and a prorated one (rounded down to whole minutes) on a prorated start."""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing_jobs.calc.book import Book
from billing_jobs.calc.calendar import from_days, period_opened_on, start_stub
from billing_jobs.core.frames import GRANT_COLUMNS, HELD_GRANT_COLUMNS, empty_frame

_OPEN_DAY = np.iinfo("int64").max


def _day_numbers(s: pd.Series) -> np.ndarray:
    """Dates as day numbers; NaT (an open period) as the far future."""
    d = pd.to_datetime(s).to_numpy().astype("datetime64[D]")
    return np.where(np.isnat(d), _OPEN_DAY, d.astype("int64"))


def overlapped_by_granted(grants: pd.DataFrame, granted: pd.DataFrame) -> pd.DataFrame:
    """For each grant of `grants` (the current calendar) whose period overlaps a grant the
    database holds live for the same assignment under another period_start: its position
    (`_pos`), and the earliest such stored grant (`posted_period_start`, `posted_run_date`).

    Such a grant is held back (never granted, never consumed): granting it would give the
    overlapping days' minutes twice (a moved start date or a changed frequency, #17 item 2).
    The stored grant keeps serving its own period until `rebill` moves it."""
    out = pd.DataFrame({"_pos": pd.Series(dtype="int64"),
                        "posted_period_start": pd.Series(dtype="datetime64[s]"),
                        "posted_run_date": pd.Series(dtype="datetime64[s]")})
    if not len(grants) or not len(granted):
        return out
    mine = pd.DataFrame({"_pos": np.arange(len(grants)),
                         "assignment_id": grants["assignment_id"].astype(str).to_numpy(),
                         "_s": _day_numbers(grants["period_start"]),
                         "_e": _day_numbers(grants["period_end"])})
    stored = pd.DataFrame({"assignment_id": granted["assignment_id"].astype(str).to_numpy(),
                           "_ss": _day_numbers(granted["period_start"]),
                           "_se": _day_numbers(granted["period_end"]),
                           "posted_period_start": pd.to_datetime(granted["period_start"])
                           .to_numpy().astype("datetime64[s]"),
                           "posted_run_date": pd.to_datetime(granted["run_date"])
                           .to_numpy().astype("datetime64[s]")})
    pairs = mine.merge(stored, on="assignment_id", how="inner")
    hit = pairs[(pairs["_s"] != pairs["_ss"]) & (pairs["_s"] < pairs["_se"])
                & (pairs["_ss"] < pairs["_e"])]
    hit = hit.sort_values(["_pos", "_ss"], kind="stable").drop_duplicates("_pos")
    return hit[list(out.columns)].reset_index(drop=True)


def hold_overlapping(grants: pd.DataFrame, granted: pd.DataFrame
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(grants to grant, grants held: HELD_GRANT_COLUMNS) - see `overlapped_by_granted`."""
    hit = overlapped_by_granted(grants, granted)
    if not len(hit):
        return grants, empty_frame(HELD_GRANT_COLUMNS)
    pos = hit["_pos"].to_numpy()
    held = grants.iloc[pos].reset_index(drop=True).assign(
        posted_period_start=hit["posted_period_start"].to_numpy(),
        posted_run_date=hit["posted_run_date"].to_numpy())[HELD_GRANT_COLUMNS]
    keep = np.ones(len(grants), dtype=bool)
    keep[pos] = False
    return grants[keep].reset_index(drop=True), held


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
