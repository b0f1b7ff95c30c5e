"""Vectorised conversion of the result frames into the report's text columns.

Every function takes a whole column and returns a whole column: no per-row Python loops,
so a run with a million lines formats in seconds. Money arrives as int64 micros and leaves
as plain decimal text (see docs/contracts.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing_jobs.core.frames import (DUE_LINE_COLUMNS, GRANT_COLUMNS, UTILISATION_COLUMNS,
                                       column_dtype)
from billing_jobs.core.money import (MICRO_DIGITS, MICROS, format_minor_series,
                                     minor_digits_series, round_to_minor)

CHARGES_COLUMNS = DUE_LINE_COLUMNS + ["status"]
GRANTS_COLUMNS = GRANT_COLUMNS + ["status"]
UTILISATION_CSV_COLUMNS = list(UTILISATION_COLUMNS) + ["minutes_granted", "minutes_used",
                                                       "minutes_left"]
FREE_MINUTES_CSV_COLUMNS = ["run_date", "customer_id", "assignment_id", "period_start",
                            "call_id", "start_time", "seconds", "covered", "late"]
REJECTED_COLUMNS = ["entity", "id", "reason"]

ENTITIES = ("customers", "packages", "assignments", "usage")


def format_dates(values: pd.Series) -> np.ndarray:
    """Dates (datetime64 / date objects / ISO text) -> 'YYYY-MM-DD', '' for NaT/None.

    Formats each distinct date once (a run has few), then spreads them by code.
    """
    if len(values) == 0:
        return np.array([], dtype=object)
    s = values
    if not pd.api.types.is_datetime64_any_dtype(s):
        s = pd.to_datetime(s, errors="coerce")
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    labels = np.append(pd.DatetimeIndex(uniques).strftime("%Y-%m-%d").to_numpy(dtype=object), "")
    return labels[codes]  # code -1 (NaT) picks the trailing ''


def format_micros_series(micros: pd.Series) -> np.ndarray:
    """Vectorised money.format_micros: plain decimal, up to 6 places, zeros trimmed."""
    m = np.asarray(micros, dtype="int64")
    if m.size == 0:
        return np.array([], dtype=object)
    # prices repeat: format each distinct value once, then spread by code
    codes, uniques = pd.factorize(m)
    return _format_micros_unique(np.asarray(uniques, dtype="int64"))[codes]


def _format_micros_unique(m: np.ndarray) -> np.ndarray:
    absval = np.abs(m)
    whole = pd.Series(absval // MICROS).astype(str)
    frac = pd.Series(absval % MICROS).astype(str).str.zfill(MICRO_DIGITS).str.rstrip("0")
    body = whole.where(frac == "", whole + "." + frac)
    sign = np.where(m < 0, "-", "")
    return (sign + body.to_numpy(dtype=object)).astype(object)


def format_money(micros: pd.Series, currencies: pd.Series) -> np.ndarray:
    """int64 micros -> text in the currency's minor unit ('3.00', '334', '1.250').

    Uses money.format_minor_series on each distinct (currency, amount) pair once: a run's
    amounts repeat (same package, same quantity), so a million lines format in well under
    a second. The pairs are found with factorize, not a Python loop over lines.
    """
    m = np.asarray(micros, dtype="int64")
    if m.size == 0:
        return np.array([], dtype=object)
    cur_codes, cur_uniques = pd.factorize(pd.Series(np.asarray(currencies, dtype=object))
                                          .fillna("").astype(str))
    amt_codes, amt_uniques = pd.factorize(m)
    key = amt_codes.astype("int64") * max(1, len(cur_uniques)) + cur_codes
    pair_codes, pair_keys = pd.factorize(key)
    pair_amt, pair_cur = np.divmod(np.asarray(pair_keys, dtype="int64"), max(1, len(cur_uniques)))
    text = format_minor_series(
        pd.Series(np.asarray(amt_uniques, dtype="int64")[pair_amt], dtype="int64"),
        pd.Series(np.asarray(cur_uniques, dtype=object)[pair_cur], dtype=object),
    ).to_numpy(dtype=object)
    return text[pair_codes]


def format_bools(values: pd.Series) -> np.ndarray:
    return np.where(np.asarray(values.fillna(False), dtype=bool), "true", "false").astype(object)


def _text(values: pd.Series) -> pd.Series:
    if not pd.api.types.is_string_dtype(values) or values.dtype == object:
        values = values.astype(object).where(values.notna(), "").astype(str)
    return values.fillna("").reset_index(drop=True)


def _ints(values: pd.Series) -> np.ndarray:
    return np.asarray(values, dtype="int64")


#: money columns shown in the row's currency minor unit, and in plain micros-as-decimal
_IN_CURRENCY = {"amount", "cost", "ledger_amount"}
_AS_DECIMAL = {"unit_price"}  # a price, exact (333.5 JPY a seat stays 333.5)


def _as_text(frame: pd.DataFrame, columns: list[str], **special) -> pd.DataFrame:
    """`frame`'s `columns` as report text, each by its contract type (calc/frames.py):
    dates ISO, integers as they are, booleans true/false, money exact; `special` overrides."""
    out = {}
    for c in columns:
        if c in special:
            out[c] = special[c]
        elif c in _IN_CURRENCY:
            out[c] = format_money(frame[c], frame["currency"].astype(str))
        elif c in _AS_DECIMAL:
            out[c] = format_micros_series(frame[c])
        else:
            kind = column_dtype(c)
            out[c] = (format_dates(frame[c]) if kind == "datetime64[s]" else
                      _ints(frame[c]) if kind == "int64" else
                      format_bools(frame[c]) if kind == "bool" else _text(frame[c]))
    return pd.DataFrame(out, columns=columns)


def charges_text(lines: pd.DataFrame) -> pd.DataFrame:
    """due_lines (+status) -> the charges.csv columns as text."""
    return _as_text(lines, CHARGES_COLUMNS)


def grants_text(grants: pd.DataFrame) -> pd.DataFrame:
    return _as_text(grants, GRANTS_COLUMNS)


def rounded_money(micros, currencies) -> np.ndarray:
    """Amounts that are not yet rounded (covered charge, credited micros), rounded once, half
    up, to the currency's minor unit and written in it, like every amount of the report
    (#30 item 7): 3486295 micros EUR -> '3.49', JPY -> '3'."""
    m = np.asarray(micros, dtype="int64")
    if m.size == 0:
        return np.array([], dtype=object)
    cur = pd.Series(np.asarray(currencies, dtype=object)).fillna("").astype(str)
    digits = minor_digits_series(cur).to_numpy()
    rounded = np.sign(m) * round_to_minor(np.abs(m), digits)
    text = format_money(pd.Series(rounded, dtype="int64"), cur)
    unknown = (cur == "").to_numpy()
    if unknown.any():  # no currency known: the exact value, never a guessed minor unit
        text[unknown] = format_micros_series(pd.Series(m[unknown]))
    return text


def utilisation_text(utilisation: pd.DataFrame, currencies=None) -> pd.DataFrame:
    """`currencies`: each row's currency (its customer's); `credited` is written in its minor
    unit (the covered charge of the period, rounded once)."""
    granted = np.asarray(utilisation["seconds_granted"], dtype="int64")
    used = np.asarray(utilisation["seconds_used"], dtype="int64")
    if currencies is None:
        currencies = np.full(len(utilisation), "", dtype=object)
    return _as_text(utilisation, UTILISATION_CSV_COLUMNS,
                    credited=rounded_money(_credited(utilisation), currencies),
                    minutes_granted=minutes_text(granted), minutes_used=minutes_text(used),
                    minutes_left=minutes_text(np.maximum(granted - used, 0)))


def _credited(utilisation: pd.DataFrame) -> pd.Series:
    if "credited" not in utilisation.columns:
        return pd.Series(np.zeros(len(utilisation), dtype="int64"))
    return pd.to_numeric(utilisation["credited"], errors="coerce").fillna(0).astype("int64")


def minutes_text(seconds) -> np.ndarray:
    """Seconds as minutes with two decimals, rounded half up (720 -> '12.00', 90 -> '1.50')."""
    s = np.asarray(seconds, dtype="int64")
    if s.size == 0:
        return np.array([], dtype=object)
    hundredths = (s * 100 + 30) // 60
    whole = pd.Series(hundredths // 100).astype(str)
    frac = pd.Series(hundredths % 100).astype(str).str.zfill(2)
    return (whole + "." + frac).to_numpy(dtype=object)


DIFFERENCES_CSV_COLUMNS = ["assignment_id", "kind", "period_start", "currency",
                           "ledger_customer_id", "customer_id", "ledger_quantity", "quantity",
                           "ledger_amount", "amount", "correction"]


def differences_text(differences: pd.DataFrame | None) -> pd.DataFrame:
    """Keys posted earlier whose current data differs from the ledger (charges.csv shows the
    ledger's values for them): both sides, money in the currency's minor unit."""
    if differences is None or len(differences) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in DIFFERENCES_CSV_COLUMNS})
    return _as_text(differences, DIFFERENCES_CSV_COLUMNS)


_TWO_DIGITS = np.array([[48 + i // 10, 48 + i % 10] for i in range(100)], dtype=np.uint8)


def utc_second_text(values: pd.Series) -> np.ndarray:
    """Instants as 'YYYY-MM-DDTHH:MM:SSZ' (UTC, whole seconds, truncated), object array.

    The digits are computed as integer arrays and laid into a fixed-width byte buffer, instead
    of `Series.dt.strftime`, which formats element by element (1.4M consumed call parts at 1M
    assignments: 2.0 s; numpy's and arrow's own formatting were as slow). The same text as
    strftime for years 1000-9999; anything else (a missing instant, a year outside) goes
    through strftime as before."""
    t = pd.to_datetime(values, utc=True)
    if len(t) and not t.isna().any():
        v = t.dt.tz_convert(None).to_numpy().astype("datetime64[s]")
        year = v.astype("datetime64[Y]").astype("int64") + 1970
        if year.min() >= 1000 and year.max() <= 9999:
            month_start = v.astype("datetime64[M]")
            day_start = v.astype("datetime64[D]")
            second = (v - day_start.astype("datetime64[s]")).astype("int64")
            pairs = [year // 100, year % 100, month_start.astype("int64") % 12 + 1,
                     (day_start - month_start.astype("datetime64[D]")).astype("int64") + 1,
                     second // 3600, second // 60 % 60, second % 60]
            # 'YYYY-MM-DDTHH:MM:SSZ': each pair of digits from a table of "00".."99"
            parts = [_TWO_DIGITS[pairs[0]], _TWO_DIGITS[pairs[1]]]
            for sep, number in zip("--T::", pairs[2:]):
                parts += [np.full((len(v), 1), ord(sep), dtype=np.uint8), _TWO_DIGITS[number]]
            parts.append(np.full((len(v), 1), ord("Z"), dtype=np.uint8))
            buf = np.ascontiguousarray(np.hstack(parts))
            return buf.view("S20").ravel().astype("U20").astype(object)
    return t.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object)


def free_minutes_text(consumption: pd.DataFrame, currencies=None) -> pd.DataFrame:
    """One row per consumed call part: its grant, seconds, covered charge (in the currency's
    minor unit, rounded once per part; the credit line rounds the exact sum of the parts once)
    and whether it was a late call. `currencies`: each row's currency."""
    if len(consumption) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in FREE_MINUTES_CSV_COLUMNS})
    if currencies is None:
        currencies = np.full(len(consumption), "", dtype=object)
    return _as_text(consumption, FREE_MINUTES_CSV_COLUMNS,
                    start_time=utc_second_text(consumption["start_time"]),
                    covered=rounded_money(consumption["covered"], currencies))


def rejected_text(rejected: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: _text(rejected[c]) for c in REJECTED_COLUMNS}, columns=REJECTED_COLUMNS)
