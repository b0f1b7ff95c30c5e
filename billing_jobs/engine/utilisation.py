"""Free-minute utilisation (report only, SPEC section 4).

Calls consume grant seconds in start_time order; a call matching several grants uses the
one that ends first, then the lowest assignment_id, and spills into the next.

Vectorised form of that greedy rule: rank each customer's grants by (period_end,
assignment_id). The highest-ranked grant's consumption never depends on the lower ones, so
grants can be settled rank by rank; within a rank every customer has at most one grant,
and its consumption is a waterfall (cumulative sum) over the remaining seconds of its
eligible calls in time order. The loop runs over ranks, never over calls or assignments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing_jobs.engine.book import Book
from billing_jobs.engine.calendar import OPEN, after, from_days, period_containing, start_stub
from billing_jobs.engine.frames import UTILISATION_COLUMNS, empty_frame
from billing_jobs.engine.patterns import destination_matches


def _empty() -> pd.DataFrame:
    return empty_frame(UTILISATION_COLUMNS)


def _grant_seconds(book: Book, idx: np.ndarray, pstart: np.ndarray) -> np.ndarray:
    stub = start_stub(book.cal.subset(idx), book.eff_end[idx])
    is_stub = stub.valid & (pstart == book.start[idx])
    minutes = book.minutes[idx]
    prorated = (minutes * stub.days) // np.maximum(stub.full, 1)
    return np.where(is_stub, prorated, minutes).astype("int64") * 60


def _grant_periods(book: Book, idx: np.ndarray, window_start: np.ndarray, run_day: int):
    """Every grant period of assignments `idx` overlapping [window_start, run_day)."""
    out_a, out_s, out_e = [], [], []
    pos = np.maximum(window_start, book.start[idx])
    active = np.arange(idx.size)
    while active.size:
        a = idx[active]
        cal = book.cal.subset(a)
        per = period_containing(cal, pos[active], book.eff_end[a], book.prorate[a])
        keep = per.valid & (per.start < run_day)
        out_a.append(a[keep])
        out_s.append(per.start[keep])
        out_e.append(per.end[keep])
        nxt = after(cal, np.where(per.valid, per.start, pos[active]))
        pos[active] = nxt
        active = active[(nxt < run_day) & (nxt <= book.eff_end[a])]
    return np.concatenate(out_a), np.concatenate(out_s), np.concatenate(out_e)


def utilisation_on(book: Book, run_day: int, usage: pd.DataFrame, call_day: np.ndarray,
                   call_customer: np.ndarray) -> pd.DataFrame:
    """Free-minute periods that hold the day before `run_day`, with the seconds their
    customer's calls (up to the end of that day) used. `call_customer` holds each call's
    customer code (as in `book.customer_code`)."""
    fm = np.flatnonzero(book.free_minutes_type)
    if fm.size == 0:
        return _empty()
    x = run_day - 1
    held = period_containing(book.cal.subset(fm), x, book.eff_end[fm], book.prorate[fm])
    rep = fm[held.valid]
    if rep.size == 0:
        return _empty()
    rep_start, rep_end = held.start[held.valid], held.end[held.valid]

    # each involved customer's window starts with its earliest reported period
    n_codes = int(max(book.customer_code.max(initial=-1), call_customer.max(initial=-1))) + 1
    window = np.full(n_codes, OPEN, dtype="int64")
    np.minimum.at(window, book.customer_code[rep], rep_start)

    # every competing grant period of those customers inside their window; a period that
    # overlaps the window's start pulls the window back to its own start (calls there may
    # have used it up), until the window stops moving
    cand = fm[window[book.customer_code[fm]] < OPEN]
    while True:
        g_a, g_start, g_end = _grant_periods(book, cand, window[book.customer_code[cand]], run_day)
        earlier = window.copy()
        np.minimum.at(earlier, book.customer_code[g_a], g_start)
        if np.array_equal(earlier, window):
            break
        window = earlier
    g_cust = book.customer_code[g_a]
    g_secs = _grant_seconds(book, g_a, g_start)
    g_pattern = book.rows["destination"].fillna("").to_numpy(dtype=object)[g_a]

    # rank grants per customer: period_end first (open last), then assignment_id
    # (book rows are sorted by assignment_id, so the row position orders them)
    order = np.lexsort((g_a, g_end, g_cust))
    g_a, g_start, g_end, g_cust, g_secs, g_pattern = (
        v[order] for v in (g_a, g_start, g_end, g_cust, g_secs, g_pattern))
    g_rank = np.arange(order.size) - np.searchsorted(g_cust, g_cust, side="left")
    used = np.zeros(order.size, dtype="int64")

    # the calls that matter: those customers, from their window start up to the end of x
    safe = np.where(call_customer >= 0, call_customer, 0)
    sel = np.flatnonzero((call_customer >= 0) & (call_day >= window[safe]) & (call_day < run_day))
    calls = usage.iloc[sel]
    c_cust, c_day = call_customer[sel], call_day[sel]
    c_time = pd.to_datetime(calls["start_time"], utc=True).array.asi8
    c_order = np.lexsort((calls["call_id"].to_numpy(dtype=object), c_time, c_cust))
    calls = calls.iloc[c_order]
    c_cust, c_day = c_cust[c_order], c_day[c_order]
    remaining = calls["duration_s"].to_numpy(dtype="int64").copy()

    patterns, g_pid = np.unique(g_pattern, return_inverse=True)
    matches = np.stack([destination_matches(calls["destination"], p) for p in patterns]) \
        if len(calls) else np.zeros((len(patterns), 0), dtype=bool)

    grant_of = np.full(n_codes, -1, dtype="int64")
    group_first = np.searchsorted(c_cust, c_cust, side="left")  # first call of each call's customer
    need = np.zeros(remaining.size, dtype="int64")
    for r in range(int(g_rank.max()) + 1 if g_rank.size else 0):
        at_r = np.flatnonzero(g_rank == r)
        grant_of[:] = -1
        grant_of[g_cust[at_r]] = at_r
        g = grant_of[c_cust]
        live = np.flatnonzero((g >= 0) & (remaining > 0))
        if live.size == 0:
            continue
        gl = g[live]
        eligible = (c_day[live] >= g_start[gl]) & (c_day[live] < g_end[gl]) & matches[g_pid[gl], live]
        need[:] = 0
        need[live] = np.where(eligible, remaining[live], 0)
        before = np.cumsum(need) - need  # running total of earlier needs, all customers
        used_before = (before - before[group_first])[live]  # ... of this customer only
        taken = np.clip(g_secs[gl] - used_before, 0, need[live])
        remaining[live] -= taken
        np.add.at(used, gl, taken)

    # report the periods that hold x
    key = pd.MultiIndex.from_arrays([g_a, g_start])
    used_by_key = pd.Series(used, index=key)
    secs_by_key = pd.Series(g_secs, index=key)
    rep_key = pd.MultiIndex.from_arrays([rep, rep_start])
    rows = book.rows.iloc[rep]
    out = pd.DataFrame({
        "customer_id": rows["customer_id"].to_numpy(),
        "assignment_id": rows["assignment_id"].to_numpy(),
        "period_start": from_days(rep_start),
        "period_end": from_days(rep_end),
        "seconds_granted": secs_by_key.reindex(rep_key).to_numpy(dtype="int64"),
        "seconds_used": used_by_key.reindex(rep_key).to_numpy(dtype="int64"),
    })
    return out.sort_values(["customer_id", "assignment_id"], kind="stable").reset_index(drop=True)
