"""The billing calendar (SPEC section 3), vectorised over assignments.

Dates are int64 day numbers (days since 1970-01-01). Every assignment has a calendar
(its frequency, match days and anchor); two primitives answer everything else:

- `on_or_before(cal, x)`: the latest calendar date <= x
- `after(cal, x)`: the earliest calendar date > x

Calendars extend before the start date too ("the billing date before the start, on the
same calendar"). `OPEN` stands for "no end"; `NEVER` for "no such date".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

OPEN = np.int64(10_000_000)  # a day far in the future: an open end
NEVER = np.int64(-10_000_000)  # a day far in the past: no such date

FREQ_CODES = {"once": 0, "daily": 1, "weekly": 2, "monthly": 3, "yearly": 4}
ONCE, DAILY, WEEKLY, MONTHLY, YEARLY = range(5)


# ---------------------------------------------------------------- day arithmetic

def to_days(values) -> np.ndarray:
    """datetime64 (any unit; NaT allowed) -> int64 day numbers, NaT -> NEVER."""
    arr = np.asarray(values).astype("datetime64[D]")
    out = arr.astype("int64")
    out[np.isnat(arr)] = NEVER
    return out


def from_days(days: np.ndarray) -> np.ndarray:
    """int64 day numbers -> datetime64[s]; OPEN/NEVER -> NaT."""
    d = np.asarray(days, dtype="int64")
    out = d.astype("datetime64[D]").astype("datetime64[s]")
    out[(d >= OPEN) | (d <= NEVER)] = np.datetime64("NaT")
    return out


def ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dt = np.asarray(days, dtype="int64").astype("datetime64[D]")
    months = dt.astype("datetime64[M]")
    y = months.astype("datetime64[Y]").astype("int64") + 1970
    m = months.astype("int64") % 12 + 1
    d = (dt - months.astype("datetime64[D]")).astype("int64") + 1
    return y, m, d


def month_first_day(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    months = (np.asarray(y, dtype="int64") - 1970) * 12 + (np.asarray(m, dtype="int64") - 1)
    return months.astype("datetime64[M]").astype("datetime64[D]").astype("int64")


def days_in_month(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    months = (np.asarray(y, dtype="int64") - 1970) * 12 + (np.asarray(m, dtype="int64") - 1)
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype("int64")
    nxt = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype("int64")
    return nxt - first


def iso_weekday(days: np.ndarray) -> np.ndarray:
    """1 = Monday ... 7 = Sunday (1970-01-01 was a Thursday)."""
    return (np.asarray(days, dtype="int64") + 3) % 7 + 1


def add_months(y, m, k):
    total = np.asarray(y, dtype="int64") * 12 + (np.asarray(m, dtype="int64") - 1) + k
    return total // 12, total % 12 + 1


# ---------------------------------------------------------------- match days

def parse_match_days(values: pd.Series) -> pd.Series:
    """'1|3,5' -> bitmask with bit (n-1) set for each listed day; '' or None -> 0.

    Assumes validated input (integers separated by | or ,). Each distinct text is parsed once
    (a night's assignments share a few patterns)."""
    codes, uniques = pd.factorize(values.fillna("").astype(str).to_numpy(dtype=object))
    masks = _parse_distinct(pd.Series(uniques, dtype=object)).to_numpy()
    return pd.Series(masks[codes], index=values.index, dtype="int64")


def _parse_distinct(values: pd.Series) -> pd.Series:
    s = values.str.replace(" ", "", regex=False)
    parts = s.str.replace(",", "|", regex=False).str.split("|").explode()
    parts = parts[parts != ""]
    if parts.empty:
        return pd.Series(0, index=values.index, dtype="int64")
    bits = np.left_shift(np.int64(1), parts.astype("int64") - 1)
    mask = pd.Series(bits, index=parts.index).groupby(level=0).agg(np.bitwise_or.reduce)
    return mask.reindex(values.index, fill_value=0).astype("int64")


def _weekly_tables():
    """back[mask, wd]: days back to the nearest matching weekday (0..6, 7 = none);
    fwd[mask, wd]: days forward to the next matching weekday strictly after (1..7)."""
    back = np.full((128, 8), 7, dtype="int64")
    fwd = np.full((128, 8), 8, dtype="int64")
    for mask in range(1, 128):
        for wd in range(1, 8):
            for k in range(7):
                if mask >> ((wd - k - 1) % 7) & 1:
                    back[mask, wd] = k
                    break
            for k in range(1, 8):
                if mask >> ((wd + k - 1) % 7) & 1:
                    fwd[mask, wd] = k
                    break
    return back, fwd


_WEEK_BACK, _WEEK_FWD = _weekly_tables()


def _monthly_tables(masks: np.ndarray):
    """For each distinct day mask and month length L (28..31), indexed [mask, L-28, day]:
    prev: the largest effective billing day <= day (0 if none); nxt: the smallest > day (0 if none);
    first/last: the month's first/last billing day. Effective day = min(listed day, L)."""
    n = len(masks)
    prev = np.zeros((n, 4, 33), dtype="int64")
    nxt = np.zeros((n, 4, 33), dtype="int64")
    first = np.zeros((n, 4), dtype="int64")
    last = np.zeros((n, 4), dtype="int64")
    for li, L in enumerate(range(28, 32)):
        low = masks & ((1 << L) - 1)
        clamp = (masks >> (L - 1)) != 0  # a listed day >= L lands on L
        eff = low | np.where(clamp, 1 << (L - 1), 0)
        has = np.stack([(eff >> (d - 1)) & 1 for d in range(1, 32)], axis=1).astype(bool)
        cur = np.zeros(n, dtype="int64")
        for d in range(1, 32):
            cur = np.where(has[:, d - 1], d, cur)
            prev[:, li, d] = cur
        cur = np.zeros(n, dtype="int64")
        for d in range(31, -1, -1):
            nxt[:, li, d] = cur
            if d >= 1:
                cur = np.where(has[:, d - 1], d, cur)
        last[:, li] = prev[:, li, 31]
        first[:, li] = nxt[:, li, 0]
    return prev, nxt, first, last


# ---------------------------------------------------------------- calendars

@dataclass
class Calendars:
    """One calendar per assignment (arrays of equal length)."""

    freq: np.ndarray  # int codes, FREQ_CODES
    start: np.ndarray  # day numbers
    week_mask: np.ndarray  # 7-bit ISO weekday mask; 0 = every 7 days from the start
    month_mask_id: np.ndarray  # index into the monthly tables
    anchor_month: np.ndarray
    anchor_day: np.ndarray
    _tables: tuple

    @classmethod
    def build(cls, freq: np.ndarray, start: np.ndarray, match_mask: np.ndarray) -> "Calendars":
        freq = np.asarray(freq, dtype="int64")
        start = np.asarray(start, dtype="int64")
        match_mask = np.asarray(match_mask, dtype="int64")
        _, sm, sd = ymd(start)
        week_mask = np.where(freq == WEEKLY, match_mask & 127, 0)
        month_mask = np.where(
            freq == MONTHLY, np.where(match_mask != 0, match_mask, np.left_shift(1, sd - 1)), 1
        )
        uniq, mask_id = np.unique(month_mask, return_inverse=True)
        return cls(freq, start, week_mask, mask_id.astype("int64"), sm, sd,
                   _monthly_tables(uniq.astype("int64")))

    def subset(self, idx) -> "Calendars":
        return Calendars(self.freq[idx], self.start[idx], self.week_mask[idx],
                         self.month_mask_id[idx], self.anchor_month[idx],
                         self.anchor_day[idx], self._tables)

    def __len__(self) -> int:
        return len(self.freq)


def _anniversary(cal: Calendars, idx, years):
    am, ad = cal.anchor_month[idx], cal.anchor_day[idx]
    return month_first_day(years, am) + np.minimum(ad, days_in_month(years, am)) - 1



def _monthly(cal: Calendars, sel: np.ndarray, x: np.ndarray, step: int) -> np.ndarray:
    """Monthly calendars `sel`: the latest calendar day <= x (step -1) or the earliest > x
    (step +1): in x's month if there is one, else the last (first) of the month before (after)."""
    prev_t, next_t, first_t, last_t = cal._tables
    in_month, edge = (prev_t, last_t) if step < 0 else (next_t, first_t)
    mid = cal.month_mask_id[sel]
    y, m, d = ymd(x)
    hit = in_month[mid, days_in_month(y, m) - 28, d]
    oy, om = add_months(y, m, step)
    other = edge[mid, days_in_month(oy, om) - 28]
    return np.where(hit > 0, month_first_day(y, m) + hit - 1, month_first_day(oy, om) + other - 1)

def on_or_before(cal: Calendars, x) -> np.ndarray:
    """The latest calendar date <= x (NEVER if none)."""
    x = np.broadcast_to(np.asarray(x, dtype="int64"), cal.freq.shape).copy()
    out = np.full_like(x, NEVER)
    f = cal.freq

    sel = f == ONCE
    out[sel] = np.where(x[sel] >= cal.start[sel], cal.start[sel], NEVER)

    sel = f == DAILY
    out[sel] = x[sel]

    sel = (f == WEEKLY) & (cal.week_mask == 0)
    out[sel] = x[sel] - (x[sel] - cal.start[sel]) % 7
    sel = (f == WEEKLY) & (cal.week_mask != 0)
    out[sel] = x[sel] - _WEEK_BACK[cal.week_mask[sel], iso_weekday(x[sel])]

    sel = np.flatnonzero(f == MONTHLY)
    if sel.size:
        out[sel] = _monthly(cal, sel, x[sel], -1)

    sel = np.flatnonzero(f == YEARLY)
    if sel.size:
        y, _, _ = ymd(x[sel])
        this = _anniversary(cal, sel, y)
        out[sel] = np.where(this <= x[sel], this, _anniversary(cal, sel, y - 1))
    return out


def after(cal: Calendars, x) -> np.ndarray:
    """The earliest calendar date > x (OPEN if none)."""
    x = np.broadcast_to(np.asarray(x, dtype="int64"), cal.freq.shape).copy()
    out = np.full_like(x, OPEN)
    f = cal.freq

    sel = f == ONCE
    out[sel] = np.where(x[sel] < cal.start[sel], cal.start[sel], OPEN)

    sel = f == DAILY
    out[sel] = x[sel] + 1

    sel = (f == WEEKLY) & (cal.week_mask == 0)
    out[sel] = x[sel] - (x[sel] - cal.start[sel]) % 7 + 7
    sel = (f == WEEKLY) & (cal.week_mask != 0)
    out[sel] = x[sel] + _WEEK_FWD[cal.week_mask[sel], iso_weekday(x[sel])]

    sel = np.flatnonzero(f == MONTHLY)
    if sel.size:
        out[sel] = _monthly(cal, sel, x[sel], 1)

    sel = np.flatnonzero(f == YEARLY)
    if sel.size:
        y, _, _ = ymd(x[sel])
        this = _anniversary(cal, sel, y)
        out[sel] = np.where(this > x[sel], this, _anniversary(cal, sel, y + 1))
    return out


def effective_end(start: np.ndarray, end: np.ndarray, minimum_days: np.ndarray) -> np.ndarray:
    """max(end_date, start + minimum_days - 1); OPEN when there is no end date."""
    floor = start + np.maximum(np.asarray(minimum_days, dtype="int64"), 1) - 1
    return np.where(end <= NEVER, OPEN, np.maximum(end, floor))


@dataclass
class Period:
    """A period per assignment: [start, end) with `full` = days of the uncut period.
    `valid` marks the assignments that have such a period."""

    valid: np.ndarray
    start: np.ndarray
    end: np.ndarray
    full: np.ndarray

    @property
    def days(self) -> np.ndarray:
        return self.end - self.start


def period_opened_on(cal: Calendars, d: np.ndarray, eff_end: np.ndarray) -> Period:
    """The period a billing date d opens: [d, next), cut at effective_end + 1."""
    nxt = after(cal, d)
    end = np.minimum(nxt, np.where(eff_end >= OPEN, OPEN, eff_end + 1))
    full = np.where(cal.freq == ONCE, end - d, nxt - d)
    valid = (d >= cal.start) & (d <= eff_end) & (on_or_before(cal, d) == d)
    return Period(valid, d, end, full)


def start_stub(cal: Calendars, eff_end: np.ndarray) -> Period:
    """The stub from a start date that is not a billing date to the first billing date
    (or effective_end + 1 when sooner); `full` = days of the calendar period holding it."""
    before = on_or_before(cal, cal.start)
    first = after(cal, cal.start)
    end = np.minimum(first, np.where(eff_end >= OPEN, OPEN, eff_end + 1))
    valid = before != cal.start
    return Period(valid, cal.start.copy(), end, first - before)


def period_ending_on(cal: Calendars, d, eff_end: np.ndarray, with_stub: np.ndarray) -> Period:
    """The period that held day d - 1 and ends on d (a minimum-spend period that billing date
    d closes); `valid` where there is one."""
    held = period_containing(cal, np.asarray(d, dtype="int64") - 1, eff_end, with_stub)
    return Period(held.valid & (held.end == d), held.start, held.end, held.full)


def period_containing(cal: Calendars, x, eff_end: np.ndarray, with_stub: np.ndarray) -> Period:
    """The period (opened by a billing date, or the start stub where `with_stub`) that holds day x."""
    x = np.broadcast_to(np.asarray(x, dtype="int64"), cal.freq.shape)
    p = on_or_before(cal, x)
    opened = period_opened_on(cal, np.where(p >= cal.start, p, cal.start), eff_end)
    stub = start_stub(cal, eff_end)
    in_stub = (p < cal.start) & stub.valid & with_stub
    start = np.where(in_stub, stub.start, opened.start)
    end = np.where(in_stub, stub.end, opened.end)
    full = np.where(in_stub, stub.full, opened.full)
    inside = (x >= cal.start) & (x <= eff_end) & (x >= start) & (x < end)
    valid = inside & (in_stub | ((p >= cal.start) & opened.valid))
    return Period(valid, start, end, full)
