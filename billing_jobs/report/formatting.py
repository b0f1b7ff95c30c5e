"""Vectorised conversion of the result frames into the report's text columns.

Every function takes a whole column and returns a whole column: no per-row Python loops,
so a run with a million lines formats in seconds. Money arrives as int64 micros and leaves
as plain decimal text (see docs/contracts.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing_jobs.engine.frames import DUE_LINE_COLUMNS, GRANT_COLUMNS, UTILISATION_COLUMNS
from billing_jobs.engine.money import MICRO_DIGITS, MICROS, format_minor_series

CHARGES_COLUMNS = DUE_LINE_COLUMNS + ["status"]
GRANTS_COLUMNS = GRANT_COLUMNS + ["status"]
UTILISATION_CSV_COLUMNS = list(UTILISATION_COLUMNS) + ["minutes_granted", "minutes_used",
                                                       "minutes_left"]
FREE_MINUTES_CSV_COLUMNS = ["run_date", "customer_id", "assignment_id", "period_start",
                            "call_id", "start_time", "seconds", "covered", "late"]
REJECTED_COLUMNS = ["entity", "id", "reason"]

LINE_STATUSES = ("simulated", "posted", "invoiced", "already_posted", "deferred",
                 "overlaps_posted")
KINDS = ("setup", "recurring", "prorated", "minimum_spend", "free_minutes_credit")
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


def charges_text(lines: pd.DataFrame) -> pd.DataFrame:
    """due_lines (+status) -> the charges.csv columns as text."""
    return pd.DataFrame({
        "run_date": format_dates(lines["run_date"]),
        "customer_id": _text(lines["customer_id"]),
        "assignment_id": _text(lines["assignment_id"]),
        "package_id": _text(lines["package_id"]),
        "kind": _text(lines["kind"]),
        "period_start": format_dates(lines["period_start"]),
        "period_end": format_dates(lines["period_end"]),
        "quantity": _ints(lines["quantity"]),
        "unit_price": format_micros_series(lines["unit_price"]),
        "amount": format_money(lines["amount"], lines["currency"]),
        "cost": format_money(lines["cost"], lines["currency"]),
        "currency": _text(lines["currency"]),
        "auto_decrement": format_bools(lines["auto_decrement"]),
        "status": _text(lines["status"]),
    }, columns=CHARGES_COLUMNS)


def grants_text(grants: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "run_date": format_dates(grants["run_date"]),
        "customer_id": _text(grants["customer_id"]),
        "assignment_id": _text(grants["assignment_id"]),
        "package_id": _text(grants["package_id"]),
        "period_start": format_dates(grants["period_start"]),
        "period_end": format_dates(grants["period_end"]),
        "destination": _text(grants["destination"]),
        "seconds": _ints(grants["seconds"]),
        "status": _text(grants["status"]),
    }, columns=GRANTS_COLUMNS)


def utilisation_text(utilisation: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": _text(utilisation["customer_id"]),
        "assignment_id": _text(utilisation["assignment_id"]),
        "period_start": format_dates(utilisation["period_start"]),
        "period_end": format_dates(utilisation["period_end"]),
        "seconds_granted": _ints(utilisation["seconds_granted"]),
        "seconds_used": _ints(utilisation["seconds_used"]),
        "credited": format_micros_series(_credited(utilisation)),
        "minutes_granted": minutes_text(utilisation["seconds_granted"]),
        "minutes_used": minutes_text(utilisation["seconds_used"]),
        "minutes_left": minutes_text(np.maximum(
            np.asarray(utilisation["seconds_granted"], dtype="int64")
            - np.asarray(utilisation["seconds_used"], dtype="int64"), 0)),
    }, columns=UTILISATION_CSV_COLUMNS)


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
    d = differences
    cur = d["currency"].astype(str)
    return pd.DataFrame({
        "assignment_id": _text(d["assignment_id"]), "kind": _text(d["kind"]),
        "period_start": format_dates(d["period_start"]), "currency": _text(d["currency"]),
        "ledger_customer_id": _text(d["ledger_customer_id"]),
        "customer_id": _text(d["customer_id"]),
        "ledger_quantity": _ints(d["ledger_quantity"]), "quantity": _ints(d["quantity"]),
        "ledger_amount": format_money(d["ledger_amount"], cur),
        "amount": format_money(d["amount"], cur), "correction": _text(d["correction"]),
    }, columns=DIFFERENCES_CSV_COLUMNS)


def free_minutes_text(consumption: pd.DataFrame) -> pd.DataFrame:
    """One row per consumed call part: its grant, seconds, covered charge (exact, before the
    credit line's rounding) and whether it was a late call."""
    if len(consumption) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in FREE_MINUTES_CSV_COLUMNS})
    t = pd.to_datetime(consumption["start_time"], utc=True)
    return pd.DataFrame({
        "run_date": format_dates(consumption["run_date"]),
        "customer_id": _text(consumption["customer_id"]),
        "assignment_id": _text(consumption["assignment_id"]),
        "period_start": format_dates(consumption["period_start"]),
        "call_id": _text(consumption["call_id"]),
        "start_time": t.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object),
        "seconds": _ints(consumption["seconds"]),
        "covered": format_micros_series(consumption["covered"]),
        "late": format_bools(consumption["late"]),
    }, columns=FREE_MINUTES_CSV_COLUMNS)


def rejected_text(rejected: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: _text(rejected[c]) for c in REJECTED_COLUMNS}, columns=REJECTED_COLUMNS)
