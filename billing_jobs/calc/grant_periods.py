"""The free-minute grant periods of assignments over a window of days (SPEC section 4):
every period of each assignment overlapping the window, with the seconds it grants (a
prorated start stub rounded down to whole minutes). calc/free_minutes.py consumes calls
against them; the utilisation report reads the counters that consumption keeps.
"""

from __future__ import annotations

import numpy as np

from billing_jobs.calc.book import Book
from billing_jobs.calc.calendar import OPEN, after, period_containing, start_stub


def grant_seconds(book: Book, idx: np.ndarray, pstart: np.ndarray) -> np.ndarray:
    stub = start_stub(book.cal.subset(idx), book.eff_end[idx])
    is_stub = stub.valid & (pstart == book.start[idx])
    minutes = book.minutes[idx]
    prorated = (minutes * stub.days) // np.maximum(stub.full, 1)
    return np.where(is_stub, prorated, minutes).astype("int64") * 60


def grant_periods(book: Book, idx: np.ndarray, window_start: np.ndarray, stop):
    """Every grant period of assignments `idx` overlapping [window_start, stop) (`stop` a day
    or one day per assignment): (assignment rows, period starts, period ends)."""
    out_a, out_s, out_e = [], [], []
    stop = np.broadcast_to(np.asarray(stop, dtype="int64"), idx.shape)
    pos = np.maximum(window_start, book.start[idx])
    # the period holding the window's first day (it may be a start stub)
    cal = book.cal.subset(idx)
    per = period_containing(cal, pos, book.eff_end[idx], book.prorate[idx])
    keep = per.valid & (per.start < stop)
    out_a.append(idx[keep])
    out_s.append(per.start[keep])
    out_e.append(per.end[keep])
    nxt = after(cal, np.where(per.valid, per.start, pos))
    live = (nxt < stop) & (nxt <= book.eff_end[idx])
    a, d, stop = idx[live], nxt[live], stop[live]
    # then the periods opened by each following billing date d (d >= start, on the
    # calendar): [d, min(next date, effective_end + 1))
    while a.size:
        cal = book.cal.subset(a)
        nxt = after(cal, d)
        eff = book.eff_end[a]
        out_a.append(a)
        out_s.append(d)
        out_e.append(np.minimum(nxt, np.where(eff >= OPEN, OPEN, eff + 1)))
        live = (nxt < stop) & (nxt <= eff)
        a, d, stop = a[live], nxt[live], stop[live]
    return np.concatenate(out_a), np.concatenate(out_s), np.concatenate(out_e)
