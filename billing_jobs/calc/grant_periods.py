"""The free-minute grant periods of assignments over a window of days (SPEC section 4):
every period of each assignment overlapping the window, with the seconds it grants (a
prorated start stub rounded down to whole minutes). calc/free_minutes.py consumes calls
against them; the utilisation report reads the counters that consumption keeps.
"""

from __future__ import annotations

import numpy as np

from billing_jobs.calc.book import Book
from billing_jobs.core.money import mul_div_floor
from billing_jobs.calc.calendar import (OPEN, after, on_or_before, period_containing,
                                        start_stub)


def grant_seconds(book: Book, idx: np.ndarray, pstart: np.ndarray) -> np.ndarray:
    """Seconds a period's grant gives: the minutes of the terms in force on its first day
    (SPEC 10), a start stub's prorated and rounded down to whole minutes."""
    stub = start_stub(book.cal.subset(idx), book.eff_end[idx])
    is_stub = stub.valid & (pstart == book.start[idx])
    minutes = book.terms.priced(idx, pstart).minutes
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


def grant_pieces(book: Book, g_a: np.ndarray, g_start: np.ndarray, g_end: np.ndarray,
                 run_day: int):
    """The grants that stand on `run_day` for grant periods (g_a, [g_start, g_end)), cut at
    the splits of changes (SPEC 10): a piece [a, b) of a period [s, e) whose split day b has
    come (b <= run_day) ends on b with its terms' seconds x (b - a) / days of the uncut
    period; a later piece was granted [a, e) with seconds x (e - a) / uncut days; an uncut
    period's grant is as without changes. Pieces from a cancel's day on, or not begun by
    run_day, are left out. Returns (rows, starts, ends, seconds, cut, terms)."""
    live = g_start < book.stop[g_a]
    g_a, g_start, g_end = g_a[live], g_start[live], g_end[live]
    base = grant_seconds(book, g_a, g_start)
    parent, a, b = book.terms.pieces(g_a, g_start, g_end)
    row, s, e = g_a[parent], g_start[parent], g_end[parent]
    keep = (a < run_day) & (a < book.stop[row])
    parent, a, b, row, s, e = parent[keep], a[keep], b[keep], row[keep], s[keep], e[keep]
    terms = book.terms.priced(row, a, s)
    split = (a > s) | (b < e)
    cut = (b < e) & (b <= run_day)
    end = np.where(cut, b, e)
    seconds = base[parent]
    if split.any():
        cal = book.cal.subset(row)
        full = np.maximum(after(cal, s) - on_or_before(cal, s), 1)
        part = mul_div_floor(terms.minutes * 60, end - a, full)  # exact (#28 item 2)
        seconds = np.where(cut | (a > s), part, seconds)
    return row, a, end, seconds.astype("int64"), cut, terms
