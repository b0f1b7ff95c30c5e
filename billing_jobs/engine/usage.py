"""Call records as arrays: the local calendar day of each call, and spend over day ranges."""

from __future__ import annotations

import numpy as np
import pandas as pd


def call_days(start_time: pd.Series, tz: str = "UTC") -> np.ndarray:
    """The calendar day (int64 day number) of each call's start in the billing time zone."""
    ts = pd.to_datetime(start_time, utc=True)
    if tz not in ("UTC", "Etc/UTC"):
        ts = ts.dt.tz_convert(tz)
    local = ts.dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    return local.astype("int64")


class SpendIndex:
    """Sum of call charges per customer over [first_day, end_day), by binary search on
    cumulative sums: O(calls log calls) once, then O(log calls) per query, vectorised."""

    _SHIFT = np.int64(1) << np.int64(32)

    def __init__(self, customer_codes: np.ndarray, days: np.ndarray, charges: np.ndarray):
        keys = customer_codes.astype("int64") * self._SHIFT + (days.astype("int64") + (1 << 30))
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.cum = np.concatenate([[0], np.cumsum(charges.astype("int64")[order])])

    def spend(self, customer_codes: np.ndarray, first_day: np.ndarray, end_day: np.ndarray) -> np.ndarray:
        base = customer_codes.astype("int64") * self._SHIFT + (1 << 30)
        lo = np.searchsorted(self.keys, base + first_day, side="left")
        hi = np.searchsorted(self.keys, base + np.minimum(end_day, np.int64(1) << 29), side="left")
        return self.cum[hi] - self.cum[lo]
