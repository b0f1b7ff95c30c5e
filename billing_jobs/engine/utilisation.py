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
import pyarrow as pa
import pyarrow.compute as pc

from billing_jobs.engine.book import Book
from billing_jobs.engine.calendar import OPEN, after, from_days, period_containing, start_stub
from billing_jobs.engine.frames import UTILISATION_COLUMNS, empty_frame
from billing_jobs.engine.patterns import destination_matches


_SHIFT = np.int64(1) << np.int64(32)  # (customer code, day) packed in one int64
_LIMIT = np.int64(1) << np.int64(30)  # days are clipped into (-2**30, 2**30)


def _epoch_ticks(start_time: pd.Series) -> np.ndarray:
    """Call start times as int64 ticks since the epoch (UTC; the column's unit), without a
    copy when the column already is tz-aware datetime64."""
    ts = start_time
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = pd.to_datetime(ts, utc=True)
    return ts.array.asi8  # any unit: only the order of the times is used


def _arrow_text(s: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A text column as arrow strings (no copy when it is arrow-backed already)."""
    try:
        return pa.array(s.array, from_pandas=True)
    except (pa.ArrowException, TypeError):
        return pa.array(s.astype(object).to_numpy(), type=pa.large_string(), from_pandas=True)


def _call_order(cust: np.ndarray, time: np.ndarray, call_ids: pd.Series,
                sel: np.ndarray) -> np.ndarray:
    """Order of the selected calls by (customer, start_time, call_id); call ids are only
    compared where customer and start_time tie."""
    order = np.lexsort((time, cust))
    c, t = cust[order], time[order]
    tie = np.zeros(order.size, dtype=bool)
    if order.size > 1:
        same = (c[1:] == c[:-1]) & (t[1:] == t[:-1])
        tie[1:] |= same
        tie[:-1] |= same
    if tie.any():
        at = np.flatnonzero(tie)
        ids = call_ids.iloc[sel[order[at]]].to_numpy(dtype=object)
        sub = np.lexsort((ids, t[at], c[at]))
        order[at] = order[at][sub]
    return order


def _empty() -> pd.DataFrame:
    return empty_frame(UTILISATION_COLUMNS)


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


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The positions lo[i]..hi[i]-1 of every range (lo <= hi), concatenated; with the
    length of each range and where it starts in the result."""
    lens = hi - lo
    first = np.cumsum(lens) - lens
    pos = np.arange(int(lens.sum()), dtype="int64")
    pos += np.repeat(lo - first, lens)
    return pos, lens, first


def _covered(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask over 0..n-1 of the positions inside any of the ranges [lo, hi)."""
    depth = np.bincount(lo, minlength=n + 1)[:n + 1] - np.bincount(hi, minlength=n + 1)[:n + 1]
    return np.cumsum(depth[:n]) > 0


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
    # have used it up), until the window stops moving. Each pass only adds the periods of
    # the stretch the window grew by: [new window start, previous window start).
    cand = fm[window[book.customer_code[fm]] < OPEN]
    parts = [grant_periods(book, cand, window[book.customer_code[cand]], run_day)]
    while True:
        earlier = window.copy()
        np.minimum.at(earlier, book.customer_code[parts[-1][0]], parts[-1][1])
        moved = earlier < window
        if not moved.any():
            break
        grow = cand[moved[book.customer_code[cand]]]
        parts.append(grant_periods(book, grow, earlier[book.customer_code[grow]],
                                    window[book.customer_code[grow]]))
        window = earlier
    g_a = np.concatenate([p[0] for p in parts])
    g_start = np.concatenate([p[1] for p in parts])
    g_end = np.concatenate([p[2] for p in parts])
    if len(parts) > 1:  # a period across a former window start was found twice
        key = g_a.astype("int64") * _SHIFT + np.clip(g_start, -_LIMIT, _LIMIT)
        _, first = np.unique(key, return_index=True)
        g_a, g_start, g_end = g_a[first], g_start[first], g_end[first]
    g_cust = book.customer_code[g_a]
    g_secs = grant_seconds(book, g_a, g_start)
    g_pattern = book.rows["destination"].fillna("").to_numpy(dtype=object)[g_a]

    # rank grants per customer: period_end first (open last), then assignment_id
    # (book rows are sorted by assignment_id, so the row position orders them)
    order = np.lexsort((g_a, g_end, g_cust))
    g_a, g_start, g_end, g_cust, g_secs, g_pattern = (
        v[order] for v in (g_a, g_start, g_end, g_cust, g_secs, g_pattern))
    g_rank = np.arange(order.size) - np.searchsorted(g_cust, g_cust, side="left")
    used = np.zeros(order.size, dtype="int64")

    # the calls that matter: those customers, from their window start up to the end of x,
    # in (customer, start_time, call_id) order
    safe = np.where(call_customer >= 0, call_customer, 0)
    sel = np.flatnonzero((call_customer >= 0) & (call_day >= window[safe]) & (call_day < run_day))
    c_order = _call_order(call_customer[sel], _epoch_ticks(usage["start_time"])[sel],
                          usage["call_id"], sel)
    sel = sel[c_order]
    del c_order
    remaining = usage["duration_s"].to_numpy(dtype="int64")[sel]

    # a grant's candidate calls are one contiguous run of its customer's calls: those
    # with a day in [period_start, period_end)
    c_key = call_customer[sel] * _SHIFT + call_day[sel]
    g_lo = np.searchsorted(c_key, g_cust * _SHIFT + np.clip(g_start, -_LIMIT, _LIMIT), "left")
    g_hi = np.searchsorted(c_key, g_cust * _SHIFT + np.clip(g_end, -_LIMIT, _LIMIT), "left")
    del c_key

    # destination matches, evaluated once per (pattern, call that some grant with that
    # pattern could take)
    g_pid, patterns = pd.factorize(g_pattern)
    g_pid = np.asarray(g_pid, dtype="int64")
    matches = np.zeros((len(patterns), sel.size), dtype=bool)
    for k in range(len(patterns)):
        gk = np.flatnonzero(g_pid == k)
        matches[k] = _covered(g_lo[gk], g_hi[gk], sel.size)  # the calls to match, once each
    wanted = np.flatnonzero(matches.any(axis=0))
    if wanted.size and (patterns != "").any():
        destinations = pc.take(_arrow_text(usage["destination"]), sel[wanted])
        for k, pattern in enumerate(patterns):
            if pattern == "":
                continue
            pos = np.flatnonzero(matches[k, wanted])
            if pos.size:
                matches[k, wanted[pos]] = destination_matches(destinations.take(pos), pattern)
        del destinations

    # only calls that some grant of their customer matches, with seconds to give, can
    # take anything: drop the others (the runs stay contiguous, in the same order)
    useful = matches.any(axis=0) & (remaining > 0)
    if not useful.all():
        shift = np.concatenate([[0], np.cumsum(useful)])
        g_lo, g_hi = shift[g_lo], shift[g_hi]
        matches = matches[:, useful]
        remaining = remaining[useful]

    # rank by rank: within a rank each customer has at most one grant, so the grants' call
    # runs are disjoint and each grant's take is a waterfall over its run
    by_rank = np.argsort(g_rank, kind="stable")
    bounds = np.searchsorted(g_rank[by_rank], np.arange(int(g_rank.max(initial=-1)) + 2))
    n_calls = remaining.size
    matches = matches.reshape(-1)  # pattern k, call i at k * n_calls + i
    for r in range(bounds.size - 1):
        at_r = by_rank[bounds[r]:bounds[r + 1]]
        at_r = at_r[g_hi[at_r] > g_lo[at_r]]
        if at_r.size == 0:
            continue
        pos, lens, first = _expand(g_lo[at_r], g_hi[at_r])
        need = remaining[pos]
        need *= matches[np.repeat(g_pid[at_r] * n_calls, lens) + pos]
        run_total = np.cumsum(need)
        before = run_total - need
        before -= np.repeat(before[first], lens)  # seconds the grant's earlier calls needed
        taken = np.repeat(g_secs[at_r], lens) - before
        np.clip(taken, 0, need, out=taken)
        remaining[pos] -= taken
        used[at_r] = np.add.reduceat(taken, first)

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
