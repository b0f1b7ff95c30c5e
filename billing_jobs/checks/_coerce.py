"""Vectorised coercion of loader columns into the contract's types, keeping what was bad.

Each helper returns the coerced values plus a boolean `bad` mask: True where a value was
present but could not be read (a missing value is not "bad" here; the rules decide whether
it is allowed). Nothing here raises on data.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from billing_jobs.core.booleans import parse_bool

INT64_MAX = np.iinfo("int64").max

MIN_DATE = np.datetime64("1900-01-01", "s")
MAX_DATE = np.datetime64("9999-12-31", "s")


def text(s: pd.Series, *, blank_is_missing: bool = True) -> pd.Series:
    """Any column -> pandas `str` dtype, NaN where missing (and where only blanks)."""
    out = s if isinstance(s.dtype, pd.StringDtype) else s.astype("str")
    if blank_is_missing and len(out):
        try:
            arr = pa.array(out.array)
            blank = pc.or_(pc.equal(pc.utf8_length(arr), 0), pc.utf8_is_space(arr))
            blank = blank.to_numpy(zero_copy_only=False)
            blank = np.asarray(pd.Series(blank).fillna(False), dtype=bool)
        except (pa.ArrowException, TypeError):  # pragma: no cover - non-arrow fallback
            blank = (out.str.strip() == "").fillna(False).to_numpy(dtype=bool)
        if blank.any():
            out = out.mask(blank)
    return out


def integers(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Any column -> nullable Int64 (exact), bad mask (present but not a whole int64)."""
    n = len(s)
    dt = s.dtype
    if pd.api.types.is_bool_dtype(dt) and not isinstance(dt, pd.BooleanDtype):
        return s.astype("int64").astype("Int64"), np.zeros(n, dtype=bool)
    if pd.api.types.is_integer_dtype(dt):
        if pd.api.types.is_unsigned_integer_dtype(dt):
            na = s.isna().to_numpy()
            raw = s.to_numpy(dtype="uint64", na_value=0)
            big = (raw > np.uint64(INT64_MAX)) & ~na
            vals = pd.array(np.where(big, 0, raw).astype("int64"), dtype="Int64")
            vals[big | na] = pd.NA
            return pd.Series(vals, index=s.index), big
        return s.astype("Int64"), np.zeros(n, dtype=bool)
    if pd.api.types.is_float_dtype(dt):
        v = s.to_numpy(dtype="float64", na_value=np.nan)
        present = ~np.isnan(v)
        with np.errstate(invalid="ignore"):
            ok = present & np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) < 9.2e18)
        ints = np.where(ok, v, 0).astype("int64")
        vals = pd.array(ints, dtype="Int64")
        vals[~ok] = pd.NA
        return pd.Series(vals, index=s.index), present & ~ok
    # object / string: numbers and numeric text; exact element by element when floats
    # could lose digits.
    obj = s.astype(object)
    missing = obj.isna().to_numpy().copy()
    is_text = obj.map(lambda x: isinstance(x, str)).to_numpy(dtype=bool)
    if is_text.any():
        blank = np.zeros(n, dtype=bool)
        blank[is_text] = obj[is_text].str.strip().eq("").to_numpy()
        missing |= blank
    num = pd.to_numeric(obj.where(~missing), errors="coerce")
    lossy = num.dtype == object or (
        pd.api.types.is_float_dtype(num.dtype) and bool((num.abs() > 2**53).any()))
    if lossy:
        exact = [None if m else _one_int(x) for x, m in zip(obj.tolist(), missing)]
        vals = pd.Series(pd.array(exact, dtype="Int64"), index=s.index)
        return vals, vals.isna().to_numpy() & ~missing
    vals, bad = integers(num)
    return vals, bad | (vals.isna().to_numpy() & ~missing)


def _one_int(x):
    if x is None or x is pd.NA or isinstance(x, bool):
        return None
    if isinstance(x, (int, np.integer)):
        v = int(x)
    elif isinstance(x, (float, np.floating)):
        if not np.isfinite(x) or float(x) != int(x):
            return None
        v = int(x)
    elif isinstance(x, str):
        try:
            v = int(x.strip())
        except ValueError:
            try:
                d = Decimal(x.strip())
            except InvalidOperation:
                return None
            if not d.is_finite() or d != d.to_integral_value():
                return None
            v = int(d)
    else:
        return None
    return v if -INT64_MAX <= v <= INT64_MAX else None


def booleans(s: pd.Series, default: bool) -> tuple[pd.Series, np.ndarray]:
    """Any column -> bool (missing -> default), bad mask for values that are not a truth value
    (text: the words of core/booleans.py, with a database's single letters)."""
    n = len(s)
    dt = s.dtype
    if pd.api.types.is_bool_dtype(dt) and not isinstance(dt, pd.BooleanDtype):
        return s.astype(bool), np.zeros(n, dtype=bool)
    if isinstance(dt, pd.BooleanDtype):
        return s.fillna(default).astype(bool), np.zeros(n, dtype=bool)
    if pd.api.types.is_numeric_dtype(dt):
        v = s.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(v)
        ok = missing | (v == 0) | (v == 1)
        return pd.Series(np.where(missing, default, v == 1), index=s.index), ~ok

    def one(x):
        if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA:
            return default
        if isinstance(x, (bool, np.bool_)):
            return bool(x)
        if isinstance(x, (int, np.integer)) and int(x) in (0, 1):
            return bool(x)
        if isinstance(x, str):
            return default if not x.strip() else parse_bool(x, stored=True)
        return None

    mapped = s.astype(object).map(one)
    bad = mapped.isna().to_numpy()
    return mapped.where(~bad, default).astype(bool), bad


def dates(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Any column -> datetime64[s] at midnight (NaT where missing/bad), bad mask.

    Text must be `YYYY-MM-DD`; date/datetime objects are accepted as they are (time of day
    dropped). A NaT the loader already produced counts as missing (its text is gone).
    """
    n = len(s)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        v = s
        if getattr(v.dt, "tz", None) is not None:
            v = v.dt.tz_convert("UTC").dt.tz_localize(None)
        return v.dt.floor("D").astype("datetime64[s]"), np.zeros(n, dtype=bool)
    obj = s.astype(object)
    is_text = obj.map(lambda x: isinstance(x, str)).to_numpy(dtype=bool)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[s]")
    bad = np.zeros(n, dtype=bool)
    if is_text.any():
        t = obj[is_text].astype(str).str.strip()
        blank = (t == "").to_numpy()
        parsed = pd.to_datetime(t.where(~blank), format="%Y-%m-%d", errors="coerce")
        out[is_text] = parsed.astype("datetime64[s]")
        bad[np.flatnonzero(is_text)] = parsed.isna().to_numpy() & ~blank
    other = ~is_text & ~obj.isna().to_numpy()
    if other.any():
        def one(x):
            if isinstance(x, (_dt.date, pd.Timestamp, np.datetime64)):
                try:
                    return pd.Timestamp(x)
                except (ValueError, OverflowError):
                    return pd.NaT
            return pd.NaT
        conv = obj[other].map(one)
        conv = pd.to_datetime(conv, errors="coerce", utc=False)
        if getattr(conv.dt, "tz", None) is not None:
            conv = conv.dt.tz_convert("UTC").dt.tz_localize(None)
        out[other] = conv.dt.floor("D").astype("datetime64[s]")
        bad[np.flatnonzero(other)] = conv.isna().to_numpy()
    return out, bad


def timestamps(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Any column -> datetime64[us, UTC] (UTC when no offset), bad mask."""
    n = len(s)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        v = s
        if getattr(v.dt, "tz", None) is None:
            v = v.dt.tz_localize("UTC")
        else:
            v = v.dt.tz_convert("UTC")
        return v.astype("datetime64[us, UTC]"), np.zeros(n, dtype=bool)
    obj = s.astype(object)
    is_text = obj.map(lambda x: isinstance(x, str)).to_numpy(dtype=bool)
    missing = obj.isna().to_numpy().copy()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
    bad = np.zeros(n, dtype=bool)
    if is_text.any():
        t = obj[is_text].astype(str).str.strip()
        blank = (t == "").to_numpy()
        parsed = pd.to_datetime(t.where(~blank), format="ISO8601", utc=True, errors="coerce")
        out[is_text] = parsed.astype("datetime64[us, UTC]")
        bad[np.flatnonzero(is_text)] = parsed.isna().to_numpy() & ~blank
    other = ~is_text & ~missing
    if other.any():
        def one(x):
            if isinstance(x, (_dt.datetime, pd.Timestamp, np.datetime64)):
                try:
                    ts = pd.Timestamp(x)
                except (ValueError, OverflowError):
                    return pd.NaT
                return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            return pd.NaT
        conv = pd.to_datetime(obj[other].map(one), utc=True, errors="coerce")
        out[other] = conv.astype("datetime64[us, UTC]")
        bad[np.flatnonzero(other)] = conv.isna().to_numpy()
    return out, bad


def show(values: pd.Series) -> pd.Series:
    """Values as they appear in a reason: text quoted, missing as 'missing'."""
    def one(x):
        if x is None or x is pd.NA or x is pd.NaT or (isinstance(x, float) and np.isnan(x)):
            return "missing"
        if isinstance(x, str):
            return repr(x)
        return str(x)
    return values.astype(object).map(one).astype(str)
