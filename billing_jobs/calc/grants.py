"""Free-minute grants (SPEC section 4): one per billing date of a free-minutes assignment,
and a prorated one (rounded down to whole minutes) on a prorated start."""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing_jobs.calc.book import Book
from billing_jobs.core.money import mul_div_floor
from billing_jobs.calc.calendar import NEVER, from_days, period_opened_on, start_stub
from billing_jobs.core.frames import (GRANT_COLUMNS, GRANT_CUT_COLUMNS, HELD_GRANT_COLUMNS,
                                      empty_frame)

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
    """The grants made on `run_day`: a billing date's (minutes of the terms in force on it),
    a prorated start's, and (SPEC 10) the new grant of a change that splits a period."""
    n = len(book)
    D = np.full(n, run_day, dtype="int64")
    today = period_opened_on(book.cal, D, book.eff_end)
    stub = start_stub(book.cal, book.eff_end)

    regular = today.valid & book.free_minutes_type & (run_day < book.stop)
    stubbed = (book.start == run_day) & stub.valid & book.free_minutes_type
    idx = np.flatnonzero(regular | stubbed)
    terms = book.terms.priced(idx, run_day)
    use_stub = stubbed[idx] & ~regular[idx]
    keep = ~use_stub | terms.prorate  # without prorate a stub grants nothing
    idx, use_stub = idx[keep], use_stub[keep]
    terms = book.terms.priced(idx, run_day)
    minutes = terms.minutes
    stub_minutes = (minutes * stub.days[idx]) // np.maximum(stub.full[idx], 1)
    start = np.where(use_stub, stub.start[idx], today.start[idx])
    end = np.where(use_stub, stub.end[idx], today.end[idx])
    seconds = np.where(use_stub, stub_minutes, minutes).astype("int64") * 60

    split = split_grants_on(book, run_day)
    frame = pd.DataFrame({
        "run_date": from_days(np.full(idx.size + split[0].size, run_day, dtype="int64")),
        "customer_id": np.concatenate([terms.customer_id, split[1].customer_id]),
        "assignment_id": book.rows["assignment_id"].to_numpy()[np.concatenate([idx, split[0]])],
        "package_id": np.concatenate([terms.package_id, split[1].package_id]),
        "period_start": from_days(np.concatenate([start, split[2]])),
        "period_end": from_days(np.concatenate([end, split[3]])),
        "destination": np.concatenate([terms.destination, split[1].destination]),
        "seconds": np.concatenate([seconds, split[4]]).astype("int64"),
    })
    return frame.sort_values(["customer_id", "assignment_id", "period_start"], kind="stable"
                             ).reset_index(drop=True)[GRANT_COLUMNS]


def split_grants_on(book: Book, run_day: int):
    """SPEC 10: on a day D that splits a period [s, e) of a free-minutes assignment (not a
    cancel), a grant of the new terms' seconds x (e - D) / days of the uncut period (rounded
    down), valid [D, e), minutes priced on s: (rows, terms, start, end, seconds)."""
    t = book.terms
    at = t.splits_on(run_day)
    at = at[book.free_minutes_type[t.split_row[at]] & (run_day < book.stop[t.split_row[at]])]
    idx, s, e, full = t.split_row[at], t.split_start[at], t.split_end[at], t.split_full[at]
    new = t.priced(idx, run_day, s)
    seconds = mul_div_floor(new.minutes * 60, e - run_day, np.maximum(full, 1))  # exact
    return idx, new, np.full(idx.size, run_day, dtype="int64"), e, seconds.astype("int64")


def grant_cuts(book: Book) -> pd.DataFrame:
    """Every cut the splits make (SPEC 10), by day: the grant of the piece before a split day
    D of a period [s, e) (keyed by its start p: s, or the split before D in the period) now
    ends on D with old seconds x (D - p) / days of the uncut period, rounded down.
    Columns: GRANT_CUT_COLUMNS (run_date = D, seconds before the used-seconds floor)."""
    t = book.terms
    fm = book.free_minutes_type[t.split_row]
    row, day, s, full = t.split_row[fm], t.split_day[fm], t.split_start[fm], t.split_full[fm]
    same = np.r_[False, (row[1:] == row[:-1]) & (s[1:] == s[:-1])]
    p = np.where(same, np.r_[NEVER, day[:-1]], s)
    old = t.priced(row, day - 1, s)
    seconds = mul_div_floor(old.minutes * 60, day - p, np.maximum(full, 1))  # exact
    return pd.DataFrame({
        "run_date": from_days(day),
        "customer_id": old.customer_id,
        "assignment_id": book.rows["assignment_id"].to_numpy()[row],
        "period_start": from_days(p),
        "period_end": from_days(day),
        "seconds": seconds.astype("int64"),
    }, columns=GRANT_CUT_COLUMNS)


def apply_cuts(granted: pd.DataFrame, cuts: pd.DataFrame, run_day: int) -> pd.DataFrame:
    """The stored grants as they stand after the cuts of days <= run_day (a cut the post of
    its day applies): period_end and seconds replaced."""
    due = cuts[_day_numbers(cuts["run_date"]) <= run_day] if len(cuts) else cuts
    if not len(granted) or not len(due):
        return granted
    key = pd.MultiIndex.from_arrays([due["assignment_id"].astype(str),
                                     pd.to_datetime(due["period_start"])])
    at = key.get_indexer(pd.MultiIndex.from_arrays([
        granted["assignment_id"].astype(str), pd.to_datetime(granted["period_start"])]))
    hit = at >= 0
    out = granted.copy()
    out.loc[hit, "period_end"] = due["period_end"].to_numpy()[at[hit]]
    out.loc[hit, "seconds"] = due["seconds"].to_numpy()[at[hit]]
    return out
