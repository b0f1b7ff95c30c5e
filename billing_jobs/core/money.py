"""Exact money: integer micro-units (1e-6 of a currency unit), rounding and formatting.

No binary floats anywhere: parsing goes from decimal text to integers, arithmetic is
integer arithmetic, formatting goes from integers back to decimal text.
"""

from __future__ import annotations

import re
from decimal import Decimal

import numpy as np
import pandas as pd

MICROS = 1_000_000
MICRO_DIGITS = 6

# ISO 4217 codes with a minor unit other than 2 digits.
_ZERO_DIGIT = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
               "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"}
_THREE_DIGIT = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
_TWO_DIGIT = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD",
    "BDT", "BGN", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD", "EGP",
    "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR",
    "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON",
    "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD",
    "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD",
    "TZS", "UAH", "USD", "UYU", "UZS", "VES", "WST", "XCD", "YER", "ZAR", "ZMW", "ZWL",
}
KNOWN_CURRENCIES = frozenset(_ZERO_DIGIT | _THREE_DIGIT | _TWO_DIGIT)

# Largest money value accepted anywhere (one trillion units), so every product the engine
# forms stays inside int64.
MAX_MICROS = 10**12 * MICROS
#: A customer balance stays within +/- this (9e9 units): import, validation and posting hold
#: the same bound, so a balance that imports can always be posted to (#17 item 8).
BALANCE_BOUND_MICROS = 9 * 10**15

# ASCII digits only: Python's \d also matches Arabic-Indic, full-width and mathematical digits,
# which must be refused, never read as 0.
_DECIMAL_RE = re.compile(r"^\+?([0-9]+)(?:\.([0-9]*))?$|^\+?\.([0-9]+)$")


def minor_digits(currency: str) -> int:
    """Digits of the currency's minor unit (2 for most, 0 for JPY, 3 for KWD...)."""
    if currency in _ZERO_DIGIT:
        return 0
    if currency in _THREE_DIGIT:
        return 3
    return 2


def minor_digits_series(currencies: pd.Series) -> pd.Series:
    digits = pd.Series(2, index=currencies.index, dtype="int64")
    digits[currencies.isin(_ZERO_DIGIT)] = 0
    digits[currencies.isin(_THREE_DIGIT)] = 3
    return digits


def parse_micros(text: str) -> int:
    """'10.5' -> 10_500_000. Raises ValueError with the reason for anything else."""
    s = str(text).strip()
    if s.startswith("-"):
        raise ValueError(f"negative amount {s!r}")
    m = _DECIMAL_RE.match(s)
    if not m:
        raise ValueError(f"not a decimal number: {s!r}")
    whole = m.group(1) or "0"
    frac = m.group(2) if m.group(1) is not None else m.group(3)
    frac = (frac or "").rstrip("0")
    if len(frac) > MICRO_DIGITS:
        raise ValueError(f"more than {MICRO_DIGITS} decimal places: {s!r}")
    value = int(whole) * MICROS + int(frac.ljust(MICRO_DIGITS, "0") or 0)
    if value > MAX_MICROS:
        raise ValueError(f"amount too large: {s!r} (max 1000000000000)")
    return value


def parse_micros_series(texts: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Vectorised parse. Returns (micros int64 with 0 where bad, bad mask)."""
    s = texts.astype("string").str.strip()
    parts = s.str.extract(r"^\+?(?P<whole>[0-9]*)(?:\.(?P<frac>[0-9]*))?$")
    whole = parts["whole"].fillna("")
    frac = parts["frac"].fillna("").str.rstrip("0")
    bad = (
        s.isna()
        | parts["whole"].isna()
        | ~s.fillna("").str.contains("[0-9]", regex=True)  # ".", "+.", "+": no digit at all
        | (frac.str.len() > MICRO_DIGITS)
        | (whole.str.len() > 13)
    ).fillna(True)
    ok = ~bad
    w = pd.to_numeric(whole.where(ok & (whole != ""), "0"), errors="coerce").fillna(0).astype("int64")
    f = pd.to_numeric(frac.where(ok, "").str.pad(MICRO_DIGITS, side="right", fillchar="0"),
                      errors="coerce").fillna(0).astype("int64")
    micros = w * MICROS + f
    too_big = micros > MAX_MICROS
    bad = (bad | too_big).astype(bool)
    micros = micros.where(~bad, 0).astype("int64")
    return micros, bad


def round_to_minor(micros: np.ndarray | pd.Series, digits) -> np.ndarray:
    """Round non-negative micros half up to the minor unit given by `digits` (scalar or array)."""
    step = 10 ** (MICRO_DIGITS - np.asarray(digits, dtype="int64"))
    m = np.asarray(micros, dtype="int64")
    return ((m + step // 2) // step) * step


def prorate_round(full_micros, days, period_days, minus_micros, digits) -> np.ndarray:
    """round_half_up(max(0, full × days / period_days − minus)) to the minor unit, in micros.

    Exact integer arithmetic in int64 for every input the validation admits
    (full ≤ 1e18 micros, days ≤ period_days ≤ 400, minus ≤ 1e18): the product
    full × days is never formed.
    """
    a = np.asarray(full_micros, dtype="int64")
    n = np.asarray(days, dtype="int64")
    p = np.asarray(period_days, dtype="int64")
    minus = np.asarray(minus_micros, dtype="int64")
    step = 10 ** (MICRO_DIGITS - np.asarray(digits, dtype="int64"))
    q1, r1 = np.divmod(a, p)
    extra, rem = np.divmod(r1 * n, p)  # r1 < p, so r1 * n is small
    whole = q1 * n + extra - minus  # exact value = whole + rem / p
    # whole < 0 means the exact value is negative (rem / p < 1): amount 0.
    pos = np.maximum(whole, 0)
    units, below = np.divmod(pos, step)  # value / step = units + (below + rem/p) / step
    round_up = 2 * (below * p + rem) >= step * p
    result = (units + round_up.astype("int64")) * step
    return np.where(whole < 0, 0, result).astype("int64")


def mul_div_round(amount, part, whole) -> np.ndarray:
    """round_half_up(amount × part / whole) in micros, exactly, in int64 (no rounding to the
    minor unit: the covered charge of a call part keeps sub-minor precision).

    Exact for every input the validation admits: 0 ≤ amount ≤ MAX_MICROS (1e18),
    0 ≤ part ≤ whole ≤ MAX_DURATION_S (1e9), whole > 0. The product amount × part (up to
    1e27) is never formed: amount = q × whole + r with r < whole, so
    amount × part / whole = q × part + r × part / whole, where q × part ≤ amount and
    r × part < whole² ≤ 1e18 (tests/calc/test_credit_bounds.py checks it against Python
    integers at the bounds)."""
    a = np.asarray(amount, dtype="int64")
    n = np.asarray(part, dtype="int64")
    d = np.asarray(whole, dtype="int64")
    q, r = np.divmod(a, d)
    extra, rem = np.divmod(r * n, d)
    return (q * n + extra + (2 * rem >= d)).astype("int64")


def mul_div_floor(amount, part, whole) -> np.ndarray:
    """floor(amount × part / whole), exactly, in int64, for 0 ≤ amount, 0 ≤ part ≤ whole,
    whole > 0 and whole² < 9e18 (whole ≤ 3e9): the product amount × part is never formed.
    Used for seconds of a prorated grant (minutes × 60 up to 6e13, × days up to 2e7 for the
    open period of a `once` package, would overflow)."""
    a = np.asarray(amount, dtype="int64")
    n = np.asarray(part, dtype="int64")
    d = np.asarray(whole, dtype="int64")
    q, r = np.divmod(a, d)
    return (q * n + (r * n) // d).astype("int64")


def format_micros(micros: int) -> str:
    """Plain decimal with trailing zeros trimmed: 10_500_000 -> '10.5'."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(int(micros)), MICROS)
    frac_s = f"{frac:06d}".rstrip("0")
    return f"{sign}{whole}.{frac_s}" if frac_s else f"{sign}{whole}"


def format_minor(micros: int, currency: str) -> str:
    """Plain decimal in the currency's minor unit: (3_000_000, 'EUR') -> '3.00'."""
    digits = minor_digits(currency)
    q = Decimal(int(micros)).scaleb(-MICRO_DIGITS)
    return str(q.quantize(Decimal(1).scaleb(-digits)))


def format_minor_series(micros: pd.Series, currencies: pd.Series) -> pd.Series:
    """Vectorised format_minor: integer micros -> '3.00' / '334' / '1.250'."""
    m = micros.astype("int64")
    digits = minor_digits_series(currencies).to_numpy()
    sign = np.where(m.to_numpy() < 0, "-", "")
    absval = np.abs(m.to_numpy())
    whole = (absval // MICROS).astype(str)
    frac6 = pd.Series(absval % MICROS, index=m.index).astype(str).str.zfill(MICRO_DIGITS)
    out = pd.Series(whole, index=m.index, dtype="object")
    for d in (2, 3):
        sel = digits == d
        if sel.any():
            out[sel] = whole[sel] + "." + frac6[sel].str[:d]
    return (pd.Series(sign, index=m.index) + out).astype(str)


def format_amount(micros: int, currency: str) -> str:
    """An amount as an operator reads it in a message: a plain decimal in the currency's minor
    unit (`-5.00`, `334`), every digit kept when it is finer than that unit (never rounded
    away, so a message never hides a wrong amount)."""
    step = 10 ** max(0, MICRO_DIGITS - minor_digits(currency))
    return format_minor(micros, currency) if int(micros) % step == 0 else format_micros(micros)
