"""Call records as arrays: the local calendar day of each call, and spend over day ranges."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from billing_jobs.calc.book import customer_codes
from billing_jobs.calc.calendar import (FREQ_CODES, NEVER, Calendars, effective_end,
                                        parse_match_days, period_ending_on)
from billing_jobs.calc.free_minutes import LATE_CALL_DAYS


def call_days(start_time: pd.Series, tz: str = "UTC") -> np.ndarray:
    """The calendar day (int64 day number) of each call's start in the billing time zone."""
    ts = pd.to_datetime(start_time, utc=True)
    if tz not in ("UTC", "Etc/UTC"):
        ts = ts.dt.tz_convert(tz)
    local = ts.dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    return local.astype("int64")


class SpendIndex:
    """Sum of call charges per customer over [first_day, end_day), by binary search on
    cumulative sums: O(calls log calls) once, then O(log calls) per query, vectorised.

    The one running total spans every customer, so it may pass 2**63 (each customer's charges
    total at most MAX_MICROS, validation's rule; ten such customers pass it). int64 sums wrap
    modulo 2**64 and a customer's spend is a difference of two of them that itself fits, so it
    is exact all the same (tests/calc/test_credit_bounds.py)."""

    _SHIFT = np.int64(1) << np.int64(32)

    def __init__(self, customer_codes: np.ndarray, days: np.ndarray, charges: np.ndarray):
        keys = customer_codes.astype("int64") * self._SHIFT + (days.astype("int64") + (1 << 30))
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        with np.errstate(over="ignore"):  # wraps modulo 2**64: differences stay exact
            self.cum = np.concatenate([[0], np.cumsum(charges.astype("int64")[order])])

    def spend(self, customer_codes: np.ndarray, first_day: np.ndarray, end_day: np.ndarray) -> np.ndarray:
        base = customer_codes.astype("int64") * self._SHIFT + (1 << 30)
        lo = np.searchsorted(self.keys, base + first_day, side="left")
        hi = np.searchsorted(self.keys, base + np.minimum(end_day, np.int64(1) << 29), side="left")
        return self.cum[hi] - self.cum[lo]


# ----------------------------------------------------------------------------- what a date needs

#: The longest period (days) a billing date opens, per frequency; `once` has no bound (its
#: one period runs from the start date).
_MAX_PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "yearly": 366}
_FALSE_TEXT = {"", "false", "0", "no", "n", "f", "off", "none", "nan"}
#: prorate values read as the validator reads them (anything else keeps the wide read)
_PRORATE_TEXT = {"", "false", "0", "no", "n", "f", "true", "1", "yes", "y", "t"}


def _norm(s: pd.Series) -> pd.Series:
    return (s.astype(object).where(s.notna(), "").astype(str).str.strip().str.lower()
            .str.replace(r"[\s\-]+", "_", regex=True))


def _days(s: pd.Series) -> np.ndarray:
    """Dates as day numbers; anything unreadable -> NaT -> the int64 minimum."""
    ts = pd.to_datetime(s, errors="coerce", format="ISO8601") if s.dtype == object else s
    arr = np.asarray(ts, dtype="datetime64[s]").astype("datetime64[D]")
    out = arr.astype("int64")
    out[np.isnat(arr)] = np.iinfo("int64").min
    return out


def usage_needs(customers: pd.DataFrame, packages: pd.DataFrame, assignments: pd.DataFrame,
                run_day: int, lookback_days: int, last_day: int | None = None, *,
                minimum_spend: bool = True, free_minutes: bool = True) -> pd.DataFrame:
    """See `usage_needs_by_kind`: the needs of the kinds asked for, one row per customer."""
    parts = usage_needs_by_kind(customers, packages, assignments, run_day, lookback_days,
                                last_day, minimum_spend=minimum_spend,
                                free_minutes=free_minutes)
    return _per_customer([parts[k] for k in ("minimum_spend", "free_minutes") if k in parts])


def _no_needs() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                         "since_day": pd.Series([], dtype="int64")})


def _per_customer(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return _no_needs()
    needs = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    needs = needs.groupby("customer_id", sort=True, as_index=False)["since_day"].min()
    needs["since_day"] = needs["since_day"].astype("int64")
    return needs


def usage_needs_by_kind(customers: pd.DataFrame, packages: pd.DataFrame,
                        assignments: pd.DataFrame, run_day: int, lookback_days: int,
                        last_day: int | None = None, *, minimum_spend: bool = True,
                        free_minutes: bool = True) -> dict[str, pd.DataFrame]:
    """Per customer, the first calendar day of calls that billing date `run_day` (or any
    date from `run_day` to `last_day`, for a backfill) can use:
    `customer_id, since_day` (customers absent need no calls). Computed from the *raw* input
    frames (before validation), so it is a superset of what the engine reads:

    * minimum spend: an assignment of a minimum-spend package whose period holds the day
      before `run_day` (ends on it) sums the calls from that period's start, which is no
      earlier than max(start_date, run_day - longest period of its frequency);
    * free minutes: a free-minute assignment active on a day of [run_day - 1 -
      LATE_CALL_DAYS, last day - 1] needs the calls from the later of its start and that
      first day (what a post consumes; the stored counters hold what came before).

    Anything unreadable counts as needing more (a free-minute type, a minimum-spend flag, an
    open end, a start `lookback_days` back), never less: a row validation rejects only widens
    the read.

    Returned per kind (`minimum_spend`, `free_minutes`: the kinds asked for), each one row
    per customer, so one pass gives the calls only free minutes consume and the minimum-spend
    needs minimum spend reads from the `daily_spend` rollup (store/spend_rollup.py).
    """
    kinds = ([] if not minimum_spend else ["minimum_spend"]) + (
        [] if not free_minutes else ["free_minutes"])
    x = run_day - 1
    x_last = (run_day if last_day is None else max(run_day, last_day)) - 1
    floor = run_day - lookback_days
    never = np.iinfo("int64").min
    a = assignments
    if a.empty or packages.empty:
        return {k: _no_needs() for k in kinds}
    p = pd.DataFrame({
        "package_id": packages["package_id"].astype(object),
        "fm": (_norm(packages["type"]) != "standard").to_numpy(),
        "ms": (~_norm(packages["minimum_spend"]).isin(_FALSE_TEXT)).to_numpy(),
        "freq": _norm(packages["frequency"]).to_numpy(),
        "min_days": pd.to_numeric(packages["minimum_days"], errors="coerce").to_numpy(),
        "prorate": _norm(packages["prorate"]).to_numpy(),
        "match": packages["frequency_match"].astype(object).to_numpy(),
    })
    rows = pd.DataFrame({
        "customer_id": a["customer_id"].astype(object).to_numpy(),
        "package_id": a["package_id"].astype(object).to_numpy(),
        "start": _days(a["start_date"]),
        "end": _days(a["end_date"]),
        "end_raw_null": a["end_date"].isna().to_numpy(),
    }).merge(p, on="package_id", how="inner")
    if rows.empty:
        return {k: _no_needs() for k in kinds}
    start = rows["start"].to_numpy()
    bad_start = start == never
    start = np.where(bad_start, floor, start)
    end = rows["end"].to_numpy()
    min_days = rows["min_days"].to_numpy(dtype="float64")
    min_end = np.where(np.isfinite(min_days), start + np.nan_to_num(min_days).astype("int64") - 1,
                       np.iinfo("int64").max // 4)
    open_end = (end == never)  # NULL, or unreadable: open either way (never narrower)
    eff_end = np.where(open_end, np.iinfo("int64").max // 4, np.maximum(end, min_end))
    active = (start <= x_last) & (eff_end >= x)

    out = {}

    def per_customer(cust: np.ndarray, since: np.ndarray) -> pd.DataFrame:
        return _per_customer([pd.DataFrame({"customer_id": cust,
                                            "since_day": np.maximum(since, floor)})])

    # minimum spend
    if minimum_spend:
        ms = rows["ms"].to_numpy(dtype=bool) & active
        out["minimum_spend"] = _no_needs()
        if ms.any():
            since = _minimum_spend_since(rows[ms].reset_index(drop=True), start[ms],
                                         bad_start[ms], run_day, x_last + 1)
            wanted = since != _NO_NEED
            out["minimum_spend"] = per_customer(rows["customer_id"].to_numpy()[ms][wanted],
                                                since[wanted])
    # free minutes: the calls a post consumes, those of the day before and the late calls
    # of the LATE_CALL_DAYS before it (calc/free_minutes.py); counters hold the rest
    if free_minutes:
        lo = x - LATE_CALL_DAYS
        fm = rows["fm"].to_numpy(dtype=bool) & (start <= x_last) & (eff_end >= lo)
        out["free_minutes"] = _no_needs()
        if fm.any():
            out["free_minutes"] = per_customer(rows["customer_id"].to_numpy()[fm],
                                               np.maximum(start[fm], lo))
    return out


_NO_NEED = np.iinfo("int64").max
_MATCH_TEXT = r"^\d{1,2}([|,]\d{1,2})*$"


def _minimum_spend_since(rows: pd.DataFrame, start: np.ndarray, bad_start: np.ndarray,
                         first_day: int, last_day: int) -> np.ndarray:
    """Per minimum-spend row (raw values): the first day of calls the dates first_day ..
    last_day can sum, or _NO_NEED when none of its periods ends on one of those dates.

    A row whose calendar values all read cleanly gets the engine's own periods
    (`calendar.period_containing` of the day before each date, as `calc.charges` bills them):
    only a period that ends on a date sums calls. Any other row keeps the wide need (the
    longest period of its frequency back from first_day): validation may reject it, never
    may the read be narrower than what the engine sums."""
    span = rows["freq"].map(_MAX_PERIOD_DAYS).to_numpy(dtype="float64")
    never = np.iinfo("int64").min
    wide = np.where(np.isfinite(span), first_day - np.nan_to_num(span).astype("int64"), never)
    since = np.maximum(start, wide)
    match_text = (rows["match"].astype(object).where(rows["match"].notna(), "").astype(str)
                  .str.replace(" ", "", regex=False))
    exact = (~bad_start & rows["freq"].isin(list(FREQ_CODES)).to_numpy()
             & np.isfinite(rows["min_days"].to_numpy(dtype="float64"))
             & ((rows["end"].to_numpy() != never) | rows["end_raw_null"].to_numpy(dtype=bool))
             & rows["prorate"].isin(sorted(_PRORATE_TEXT)).to_numpy()
             & ((match_text == "") | match_text.str.fullmatch(_MATCH_TEXT)).to_numpy(dtype=bool))
    if not exact.any():
        return since
    sub = rows[exact]
    s_start = start[exact]
    s_end = np.where(sub["end"].to_numpy() == never, NEVER, sub["end"].to_numpy())
    cal = Calendars.build(sub["freq"].map(FREQ_CODES).to_numpy(dtype="int64"), s_start,
                          parse_match_days(match_text[exact].reset_index(drop=True)).to_numpy())
    eff_end = effective_end(s_start, s_end, sub["min_days"].to_numpy(dtype="float64")
                            .astype("int64"))
    prorate = sub["prorate"].isin(sorted(_PRORATE_TEXT - _FALSE_TEXT)).to_numpy()
    first = np.full(len(sub), _NO_NEED, dtype="int64")
    for d in range(first_day, last_day + 1):  # one vectorised pass per billing date
        held = period_ending_on(cal, d, eff_end, prorate)
        first = np.where(held.valid, np.minimum(first, held.start), first)
    since[exact] = first
    return since


# ----------------------------------------------------------------------------- spend per period

#: The minimum-spend input of a billing date: one row per (assignment, period ending on the
#: date) with the customer's call `spend` over the period (micros) and the free-minute
#: `credited` micros to take off it (SPEC section 9: spend is net of free-minute credits;
#: 0 until the free-minute consumption provides it).
SPEND_COLUMNS = ["customer_id", "assignment_id", "period_start", "period_end", "spend",
                 "credited"]


def spend_frame(customer_ids: np.ndarray, assignment_ids: np.ndarray, period_start: np.ndarray,
                period_end: np.ndarray, spend: np.ndarray,
                credited: np.ndarray | None = None) -> pd.DataFrame:
    """A SPEND_COLUMNS frame (periods as day numbers)."""
    n = len(assignment_ids)
    return pd.DataFrame({
        "customer_id": np.asarray(customer_ids, dtype=object),
        "assignment_id": np.asarray(assignment_ids, dtype=object),
        "period_start": np.asarray(period_start, dtype="int64"),
        "period_end": np.asarray(period_end, dtype="int64"),
        "spend": np.asarray(spend, dtype="int64"),
        "credited": (np.zeros(n, dtype="int64") if credited is None
                     else np.asarray(credited, dtype="int64")),
    }, columns=SPEND_COLUMNS)


class PeriodSpend:
    """Net spend (`max(0, spend - credited)`) looked up per (customer code, period start, period
    end) from a SPEND_COLUMNS frame; the same `spend()` interface as SpendIndex, so the
    charges take either. A period missing from the frame spent 0."""

    def __init__(self, frame: pd.DataFrame, customer_ids: np.ndarray):
        codes = pd.Categorical(frame["customer_id"].astype(object),
                               categories=customer_ids).codes.astype("int64")
        # net spend is never below 0 (#28 item 4): more credited than spent (a consumed call
        # re-imported cheaper) spends 0, never raises the shortfall above the commitment
        net = np.maximum(frame["spend"].to_numpy(dtype="int64")
                         - frame["credited"].to_numpy(dtype="int64"), 0)
        key = pd.MultiIndex.from_arrays([codes, frame["period_start"].to_numpy(dtype="int64"),
                                         frame["period_end"].to_numpy(dtype="int64")])
        self.net = pd.Series(net, index=key).groupby(level=[0, 1, 2]).first()

    def spend(self, customer_codes: np.ndarray, first_day: np.ndarray, end_day: np.ndarray
              ) -> np.ndarray:
        key = pd.MultiIndex.from_arrays([np.asarray(customer_codes, dtype="int64"),
                                         np.asarray(first_day, dtype="int64"),
                                         np.asarray(end_day, dtype="int64")])
        return self.net.reindex(key).fillna(0).to_numpy(dtype="int64")


def spend_from_calls(book, run_day: int, spend_index: "SpendIndex | None") -> pd.DataFrame:
    """The SPEND_COLUMNS frame of billing date `run_day` from the calls: every
    minimum-spend period ending on it (the one holding the day before), its customer's call
    spend over it, credited 0. The free-minute credits go into `credited`."""
    ms = np.flatnonzero(book.minimum_spend)
    held = period_ending_on(book.cal.subset(ms), run_day, book.eff_end[ms], book.prorate[ms])
    ends = held.valid
    idx = ms[ends]
    ps, pe = held.start[ends], held.end[ends]
    codes = book.customer_code[idx]
    spend = np.zeros(idx.size, dtype="int64")
    if spend_index is not None and idx.size:
        known = codes >= 0
        spend[known] = spend_index.spend(codes[known], ps[known], pe[known])
    rows = book.rows.iloc[idx]
    return spend_frame(rows["customer_id"].to_numpy(dtype=object),
                       rows["assignment_id"].to_numpy(dtype=object), ps, pe, spend)


def needed_calls(usage: pd.DataFrame, needs: pd.DataFrame, day: date) -> np.ndarray:
    """Mask of the calls `store.load.load_inputs(engine, day)` reads: customer in `needs`
    (customer_id, since_day), start from the day before its first day up to the end of the
    day after `day` (the loader's margins)."""
    if usage.empty or needs.empty:
        return np.zeros(len(usage), dtype=bool)
    order = np.argsort(needs["customer_id"].astype(str).to_numpy(dtype=object), kind="stable")
    ids = needs["customer_id"].astype(str).to_numpy(dtype=object)[order]
    since = needs["since_day"].to_numpy(dtype="int64")[order] - 1
    codes = customer_codes(usage["customer_id"], ids)
    known = codes >= 0
    ts = usage["start_time"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = pd.to_datetime(ts, utc=True, errors="coerce")
    us = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    lo = np.where(known, since[np.maximum(codes, 0)], 0).astype("datetime64[D]").astype(
        "datetime64[us]")
    hi = np.datetime64(day + timedelta(days=2), "D").astype("datetime64[us]")
    # a call whose time did not parse stays with its customer, for validation to reject
    return known & (np.isnat(us) | ((us >= lo) & (us < hi)))
