"""Realistic synthetic data for a VoIP carrier, in the import CSV format (SPEC section 2).

Used by `billing-jobs demo` (small) and by the benchmark (`python -m bench.generate`, huge).

    frames = generate(customers=50, assignments=300, calls=5_000, seed=7, as_of=date(2026, 1, 31))
    write_csv(frames, "data/")                      # customers.csv, packages.csv, ...

Every column of every frame is a string exactly as it appears in the CSV: money as plain
decimal strings built from integer micro-units (never through float formatting), dates
`YYYY-MM-DD`, timestamps `YYYY-MM-DDTHH:MM:SSZ`, booleans `true`/`false`, optional fields `""`.

What is in it:

- customers in EUR, USD, GBP, JPY (0 decimals) and KWD (3 decimals), a few with a negative
  balance;
- a package catalogue per currency (the same products, priced in each currency): DID rental,
  PBX seats, SIP channels, free-minute bundles (`^44`, `^44|^91|^1`, all destinations...),
  minimum-spend commitments, one-off fees; every frequency, weekly with and without
  `frequency_match` (`1|3|5`), monthly with and without (`1`, `1,15`, `5|20`, `29`, `30`, `31`),
  yearly; setup fees, `minimum_days`, `prorate`;
- assignments: each package only to customers of its currency, quantity mostly 1 (up to 50),
  start dates over the 13 months before `as_of` (some on or after it, some yearly ones on
  the last 29 February), ~20 % with an end date (some inside the minimum term),
  `auto_decrement` mostly true, some `free_minutes` overrides. The first assignments cover
  every package once, so even a small sample has every feature;
- calls: the 30 days up to `as_of` inclusive, time-ordered with a day/night and weekday
  profile, E.164 destinations per the customer's region (some with a leading `+`),
  log-normal durations (some 0), charge = duration × per-minute rate of the destination.

Everything is vectorised (numpy + pyarrow compute) and reproducible by `seed` (and `as_of`).
Calls are generated in chunks of `USAGE_CHUNK_ROWS`; `generate(..., lazy_usage=True)` gives
them as an iterator so `write_csv` can stream tens of millions of rows in bounded memory.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from billing_jobs.core.frames import (
    ASSIGNMENT_COLUMNS,
    CUSTOMER_COLUMNS,
    PACKAGE_COLUMNS,
    USAGE_COLUMNS,
)
from billing_jobs.core.money import MICROS, minor_digits

__all__ = ["generate", "write_csv", "write_sample", "USAGE_CHUNK_ROWS", "CURRENCIES"]

# Calls are generated (and written) in chunks of this many rows. It is part of the
# reproducibility contract: each chunk has its own random stream.
USAGE_CHUNK_ROWS = 1_000_000

CALL_DAYS = 30  # calls cover the 30 days up to as_of inclusive
HISTORY_DAYS = 395  # assignment starts spread over ~13 months before as_of

# --------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------

# code, share of customers, units of the currency per 100 EUR (integer), company suffixes
_CURRENCY_TABLE = [
    ("EUR", 38, 100, ("GmbH", "SAS", "B.V.", "S.L.", "S.r.l.", "Oy")),
    ("USD", 27, 108, ("Inc.", "LLC", "Corp.")),
    ("GBP", 20, 85, ("Ltd", "Ltd", "PLC", "LLP")),
    ("JPY", 10, 16_200, ("K.K.", "G.K.")),
    ("KWD", 5, 33, ("W.L.L.", "K.S.C.C.")),
]
CURRENCIES: tuple[str, ...] = tuple(c[0] for c in _CURRENCY_TABLE)


@dataclass(frozen=True)
class _Template:
    """A product priced in EUR; the catalogue has one package per template and currency."""

    name: str
    weight: float  # share among assignments
    frequency: str
    match: str = ""
    cost: str = "0"
    retail: str = "0"
    setup_cost: str = "0"
    setup_retail: str = "0"
    type: str = "standard"
    free_minutes: int = 0
    destination: str = ""
    minimum_spend: bool = False
    minimum_days: int = 0
    prorate: bool = False
    fine: bool = False  # price keeps two extra decimals below the minor unit
    description: str = ""


_TEMPLATES: tuple[_Template, ...] = (
    # DID numbers
    _Template("DID rental", 30, "monthly", cost="0.5", retail="1.5", setup_retail="5",
              description="Geographic DID number, billed on the start-date anniversary"),
    _Template("DID rental (billed on the 1st)", 10, "monthly", "1", cost="0.6", retail="2",
              setup_cost="1", setup_retail="5", prorate=True,
              description="DID number, calendar-month billing, first month prorated"),
    _Template("Toll-free number", 3, "monthly", "31", cost="3", retail="8", setup_retail="20",
              description="Freephone number, billed on the last day of the month"),
    _Template("Premium DID", 2, "monthly", "30", cost="1", retail="3.5",
              description="Golden number, billed on the 30th (last day in February)"),
    _Template("DID block of 10", 2, "monthly", "29", cost="4", retail="12", setup_retail="15",
              minimum_days=90, description="Ten consecutive numbers"),
    # PBX and trunks
    _Template("Hosted PBX seat", 15, "monthly", cost="4", retail="9.99", prorate=True,
              minimum_days=90, description="Cloud PBX extension with voicemail"),
    _Template("Hosted PBX seat (semi-monthly)", 4, "monthly", "1,15", cost="2", retail="4.95",
              prorate=True, description="PBX extension billed on the 1st and 15th"),
    _Template("Hosted PBX seat (annual)", 3, "yearly", cost="40", retail="99",
              setup_cost="5", setup_retail="25", minimum_days=365,
              description="PBX extension, one year paid up front"),
    _Template("Managed SBC", 1, "monthly", "5|20", cost="15", retail="39.5",
              setup_cost="50", setup_retail="150", minimum_days=180,
              description="Session border controller, billed on the 5th and 20th"),
    _Template("SIP trunk channel", 6, "daily", cost="0.005", retail="0.0125", fine=True,
              description="Concurrent call channel, per day"),
    _Template("Call recording", 3, "weekly", cost="0.5", retail="1.25",
              description="Call recording storage, weekly from the start date"),
    _Template("Fax-to-email", 2, "weekly", "1|3|5", cost="0.1", retail="0.3",
              description="Fax-to-email, billed Monday, Wednesday and Friday"),
    _Template("Weekend IVR", 1, "weekly", "6|7", cost="0.2", retail="0.75",
              description="Out-of-hours IVR, billed Saturday and Sunday"),
    # one-off
    _Template("Number porting", 3, "once", cost="10", retail="25",
              description="Port-in of an existing number"),
    _Template("Onboarding", 2, "once", cost="15", retail="49", setup_retail="10",
              description="Account set-up and provisioning"),
    _Template("TLS certificate", 1, "yearly", cost="8", retail="30",
              description="SIP-TLS certificate, renewed yearly"),
    # free-minute bundles
    _Template("UK 100 minutes", 6, "monthly", cost="0.8", retail="2.5", type="free_minutes",
              free_minutes=100, destination="^44", description="100 minutes to UK numbers"),
    _Template("UK, India & NANP 500 minutes", 4, "monthly", "1", cost="4", retail="10",
              type="free_minutes", free_minutes=500, destination="^44|^91|^1", prorate=True,
              description="500 minutes to the UK, India, US and Canada"),
    _Template("World 1000 minutes", 3, "monthly", cost="10", retail="25", type="free_minutes",
              free_minutes=1000, minimum_days=90, description="1000 minutes, any destination"),
    _Template("UK mobile 200 minutes", 1, "monthly", "31", cost="3", retail="6.5",
              type="free_minutes", free_minutes=200, destination="^447",
              description="200 minutes to UK mobiles"),
    _Template("Europe 300 minutes", 2, "monthly", "15", cost="3", retail="7.5",
              type="free_minutes", free_minutes=300, destination="^49|^33|^34|^39",
              description="300 minutes to DE, FR, ES, IT"),
    _Template("India 250 weekly minutes", 2, "weekly", "1", cost="1", retail="3",
              type="free_minutes", free_minutes=250, destination="^91",
              description="250 minutes to India, every Monday"),
    _Template("NANP 30 daily minutes", 1, "daily", cost="0.05", retail="0.15",
              type="free_minutes", free_minutes=30, destination="^1",
              description="30 minutes a day to the US and Canada"),
    # minimum-spend commitments (retail = the commitment)
    _Template("Monthly commitment 100", 3, "monthly", retail="100", minimum_spend=True,
              minimum_days=90, description="Minimum monthly call spend"),
    _Template("Monthly commitment 500 (1st)", 1, "monthly", "1", retail="500",
              minimum_spend=True, minimum_days=180, description="Calendar-month call commitment"),
    _Template("Weekly commitment 25", 1, "weekly", "1", retail="25", minimum_spend=True,
              description="Minimum weekly call spend, Monday to Sunday"),
    _Template("Annual commitment 5000", 0.5, "yearly", retail="5000", minimum_spend=True,
              minimum_days=365, description="Yearly call commitment"),
)

# Destinations: country code, national number length, landline prefixes, mobile prefixes,
# share of mobile calls, rate per minute in EUR micros (landline, mobile).
_COUNTRIES = [
    ("44", 10, (1, 2), (7,), 0.45, 8_500, 12_500),
    ("1", 10, tuple(range(201, 990, 37)), (), 0.0, 6_500, 6_500),
    ("91", 10, (11, 22, 33, 40, 80), (9, 8, 7), 0.70, 19_500, 21_000),
    ("49", 11, (30, 40, 69, 89), (151, 160, 170, 176), 0.40, 11_000, 45_000),
    ("33", 9, (1, 4, 5), (6, 7), 0.45, 10_500, 38_000),
    ("34", 9, (91, 93, 96), (6,), 0.50, 9_800, 31_000),
    ("39", 10, (2, 6), (3,), 0.50, 12_000, 29_500),
    ("31", 9, (20, 10, 70), (6,), 0.45, 9_900, 47_000),
    ("353", 9, (1, 21), (8,), 0.40, 12_500, 40_000),
    ("81", 10, (3, 6), (90, 80, 70), 0.55, 24_000, 98_000),
    ("61", 9, (2, 3), (4,), 0.50, 15_000, 36_500),
    ("234", 10, (1,), (80, 81, 70, 90), 0.85, 145_000, 168_000),
    ("86", 11, (10, 21), (13, 15, 18), 0.75, 14_000, 14_000),
    ("55", 11, (11, 21), (119, 219), 0.60, 33_000, 115_000),
    ("965", 8, (2,), (5, 6, 9), 0.70, 95_000, 125_000),
]
# Call mix per customer currency (weights over _COUNTRIES, same order).
_DEST_WEIGHTS = {
    "EUR": (8, 10, 6, 25, 18, 10, 9, 7, 2, 1, 1, 1, 1, 1, 0.2),
    "USD": (8, 45, 12, 4, 3, 2, 2, 1, 2, 2, 2, 2, 3, 4, 0.2),
    "GBP": (50, 12, 12, 5, 4, 3, 2, 2, 4, 1, 2, 2, 1, 0.5, 0.2),
    "JPY": (4, 12, 3, 3, 2, 1, 1, 1, 0.5, 60, 4, 0.5, 8, 1, 0.1),
    "KWD": (12, 10, 25, 3, 3, 1, 1, 1, 0.5, 1, 1, 1, 2, 0.5, 40),
}
# Relative call volume per hour of day (UTC; mostly European and American customers).
_HOURLY = np.array([2, 1.5, 1, 1, 1, 1.5, 3, 6, 9, 11, 12, 12, 10, 11, 12, 12, 11, 10,
                    8, 6, 5, 4, 3, 2.5], dtype="float64")
_WEEKEND_FACTOR = 0.45
# Customer price tiers (percent of the base rate).
_TIERS = np.array([100, 120, 150], dtype="int64")
_TIER_P = np.array([0.5, 0.35, 0.15])

_NAME_FIRST = ("Acme", "Nordic", "Atlas", "Blue", "Cedar", "Delta", "Echo", "Falcon", "Granite",
               "Harbour", "Iris", "Juniper", "Kestrel", "Lumen", "Meridian", "Northgate",
               "Orion", "Pioneer", "Quartz", "Riverside", "Summit", "Tidal", "Unity", "Vertex",
               "Willow", "Zenith", "O'Neill", "Smith, Jones &", "Sakura", "Al Noor")
_NAME_SECOND = ("Telecom", "Networks", "Voice", "Communications", "Connect", "Solutions",
                "Systems", "Logistics", "Dental", "Legal", "Hotels", "Consulting", "Partners",
                "Retail", "Health", "Media", "Energy", "Foods", "Motors", "Travel")


# --------------------------------------------------------------------------------------
# Vectorised text helpers (integers -> strings, no floats)
# --------------------------------------------------------------------------------------

def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _ids(prefix: str, first: int, n: int, width: int) -> pa.Array:
    nums = pc.cast(pa.array(np.arange(first, first + n, dtype="int64")), pa.string())
    return _join(prefix, pc.utf8_lpad(nums, width=width, padding="0"))


def _id_width(minimum: int, n: int) -> int:
    return max(minimum, len(str(max(n, 1))))


def _fmt_micros(micros: np.ndarray) -> pa.Array:
    """Integer micros -> plain decimal text, trailing zeros trimmed ('10.5', '0.0125', '-3')."""
    m = np.asarray(micros, dtype="int64")
    a = np.abs(m)
    whole = pc.cast(pa.array(a // MICROS), pa.string())
    frac = a % MICROS
    frac_txt = pc.utf8_rtrim(pc.utf8_lpad(pc.cast(pa.array(frac), pa.string()), width=6,
                                          padding="0"), characters="0")
    frac_txt = pc.if_else(pa.array(frac == 0), "", _join(".", frac_txt))
    sign = pc.if_else(pa.array(m < 0), "-", "")
    return _join(sign, whole, frac_txt)


def _fmt_int(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(values, dtype="int64")), pa.string())


def _fmt_bool(values: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(np.asarray(values, dtype=bool)), "true", "false")


def _fmt_dates(days: np.ndarray) -> pa.Array:
    """datetime64[D] -> 'YYYY-MM-DD'."""
    return pa.array(np.datetime_as_string(np.asarray(days, dtype="datetime64[D]"), unit="D"))


@lru_cache(maxsize=1)
def _times_of_day() -> pa.Array:
    """'THH:MM:SSZ' for every second of a day (looked up by index)."""
    s = np.arange(86_400)
    hh, mm, ss = s // 3600, s // 60 % 60, s % 60
    two = lambda x: pc.utf8_lpad(pc.cast(pa.array(x), pa.string()), width=2, padding="0")  # noqa: E731
    return _join("T", two(hh), ":", two(mm), ":", two(ss), "Z")


def _frame(columns: list[str], arrays: dict[str, pa.Array]) -> pd.DataFrame:
    """The entity's columns (calc/frames.py lists, from billing_jobs/core/entities.py) as strings.
    A column the generator does not fill is written empty (the import's default), so a new
    entity column needs no change here."""
    n = max((len(a) for a in arrays.values()), default=0)
    blank = pa.array([""] * n, pa.string())
    table = pa.table({c: arrays.get(c, blank) for c in columns})
    df = table.to_pandas()
    for c in columns:  # guarantee the default string dtype whatever pandas infers
        if df[c].dtype != "str":
            df[c] = df[c].astype("str")
    return df


def _to_step(micros: np.ndarray | int, step: int) -> np.ndarray:
    """Round non-negative integer micros half up to a multiple of `step`."""
    m = np.asarray(micros, dtype="int64")
    return (m + step // 2) // step * step


def _parse_eur(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * MICROS + int(frac.ljust(6, "0") or 0)


def _last_feb29(on_or_before: date) -> date:
    y = on_or_before.year
    while True:
        if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0:
            d = date(y, 2, 29)
            if d <= on_or_before:
                return d
        y -= 1


# --------------------------------------------------------------------------------------
# The four entities
# --------------------------------------------------------------------------------------

def _packages(currencies: tuple[str, ...]) -> pd.DataFrame:
    """The catalogue: every template priced in every currency (currency-major order)."""
    rows: dict[str, list] = {c: [] for c in PACKAGE_COLUMNS}
    money: dict[str, list[int]] = {k: [] for k in ("cost", "retail", "setup_cost", "setup_retail")}
    fx = {c[0]: c[2] for c in _CURRENCY_TABLE}
    n_templates = len(_TEMPLATES)
    width = _id_width(4, len(currencies) * n_templates)
    for ci, cur in enumerate(currencies):
        digits = minor_digits(cur)
        for ti, t in enumerate(_TEMPLATES):
            step = 10 ** (6 - digits - (2 if t.fine else 0))
            if cur == "JPY" and not t.fine:
                step = 10 * MICROS  # yen prices in tens
            for key in money:
                eur = _parse_eur(getattr(t, key))
                money[key].append(int(_to_step((eur * fx[cur] + 50) // 100, step)))
            rows["package_id"].append(f"P{ci * n_templates + ti + 1:0{width}d}")
            rows["name"].append(f"{t.name} - {cur}")
            rows["type"].append(t.type)
            rows["currency"].append(cur)
            rows["frequency"].append(t.frequency)
            rows["frequency_match"].append(t.match)
            rows["free_minutes"].append(str(t.free_minutes))
            rows["destination"].append(t.destination)
            rows["minimum_spend"].append("true" if t.minimum_spend else "false")
            rows["minimum_days"].append(str(t.minimum_days))
            rows["prorate"].append("true" if t.prorate else "false")
            rows["description"].append(t.description)
    # a column no template fills (e.g. free_minutes_mode) is left to _frame's blank
    arrays = {c: pa.array(v, pa.string()) for c, v in rows.items() if v and c not in money}
    for key, vals in money.items():
        arrays[key] = _fmt_micros(np.array(vals, dtype="int64"))
    return _frame(PACKAGE_COLUMNS, arrays)


@dataclass
class _Base:
    """What the call generator needs from the customers and assignments."""

    currency_idx: np.ndarray  # per customer, index into currencies
    tier_pct: np.ndarray  # per customer
    assignment_customer: np.ndarray  # per assignment, customer index
    customer_ids: pa.Array


def _customers(rng: np.random.Generator, n: int, currencies: tuple[str, ...]):
    shares = np.array([c[1] for c in _CURRENCY_TABLE[: len(currencies)]], dtype="float64")
    cur_idx = rng.choice(len(currencies), size=n, p=shares / shares.sum())
    cur_idx[: min(n, len(currencies))] = np.arange(min(n, len(currencies)))  # each currency once
    ids = _ids("C", 1, n, _id_width(6, n))

    first = rng.integers(0, len(_NAME_FIRST), n)
    second = rng.integers(0, len(_NAME_SECOND), n)
    suffix_tables = [c[3] for c in _CURRENCY_TABLE[: len(currencies)]]
    suffix_flat = [s for tab in suffix_tables for s in tab]
    suffix_off = np.cumsum([0] + [len(t) for t in suffix_tables])[:-1]
    suffix_len = np.array([len(t) for t in suffix_tables])
    suffix = suffix_off[cur_idx] + rng.integers(0, 1 << 30, n) % suffix_len[cur_idx]
    names = _join(pa.array(_NAME_FIRST).take(pa.array(first)), " ",
                  pa.array(_NAME_SECOND).take(pa.array(second)), " ",
                  pa.array(suffix_flat).take(pa.array(suffix)))

    # Balance: log-normal credit around 250 EUR-equivalent, ~3 % in debt; minor-unit exact.
    fx = np.array([c[2] for c in _CURRENCY_TABLE[: len(currencies)]], dtype="int64")[cur_idx]
    digits = np.array([minor_digits(c) for c in currencies], dtype="int64")[cur_idx]
    eur_cents = np.minimum(np.round(rng.lognormal(np.log(25_000), 1.2, n)), 10**9).astype("int64")
    minor_units = eur_cents * fx * 10**digits // 10_000  # EUR cents -> currency minor units
    negative = rng.random(n) < 0.03
    minor_units = np.where(negative, -(minor_units // 20), minor_units)
    balance = minor_units * 10 ** (6 - digits)

    tier = _TIERS[rng.choice(len(_TIERS), size=n, p=_TIER_P)]
    frame = _frame(CUSTOMER_COLUMNS, {
        "customer_id": ids,
        "name": names,
        "currency": pa.array(currencies).take(pa.array(cur_idx)),
        "balance": _fmt_micros(balance),
    })
    return frame, cur_idx, tier, ids


def _assignments(rng: np.random.Generator, n: int, cust_cur: np.ndarray, cust_ids: pa.Array,
                 currencies: tuple[str, ...], package_ids: pa.Array, as_of: date):
    n_cust = len(cust_cur)
    n_cur = len(currencies)
    n_tpl = len(_TEMPLATES)
    if n and not n_cust:
        raise ValueError("assignments need at least one customer")

    # Customers grouped by currency, to draw "a customer of currency c".
    order = np.argsort(cust_cur, kind="stable")
    counts = np.bincount(cust_cur, minlength=n_cur)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    # 1. Coverage: the first assignments take every (template, currency) pair once, in an
    #    order where the first n_tpl assignments already cover every template and currency.
    r = np.repeat(np.arange(n_cur), n_tpl)
    t_cov = np.tile(np.arange(n_tpl), n_cur)
    c_cov = (t_cov + r) % n_cur
    n_cov = min(n, n_tpl * n_cur)
    t_cov, c_cov = t_cov[:n_cov], c_cov[:n_cov]
    cust_cov = order[starts[c_cov] + rng.integers(0, 1 << 40, n_cov) % np.maximum(counts[c_cov], 1)]

    # 2. The rest: busy customers hold many packages (log-normal activity), products by weight.
    n_rest = n - n_cov
    activity = rng.lognormal(0.0, 1.0, n_cust)
    cust_rest = (rng.choice(n_cust, size=n_rest, p=activity / activity.sum()) if n_cust
                 else np.zeros(0, dtype="int64"))
    weights = np.array([t.weight for t in _TEMPLATES])
    t_rest = rng.choice(n_tpl, size=n_rest, p=weights / weights.sum())

    cust = np.concatenate([cust_cov, cust_rest]).astype("int64")
    tpl = np.concatenate([t_cov, t_rest]).astype("int64")
    pkg = cust_cur[cust] * n_tpl + tpl  # package of the customer's currency

    # Start dates: 13 months of history, 3 % on as_of, 5 % in the month after.
    as_of64 = np.datetime64(as_of, "D")
    u = rng.random(n)
    offset = -rng.integers(1, HISTORY_DAYS + 1, n)
    offset = np.where(u < 0.03, 0, offset)
    offset = np.where((u >= 0.03) & (u < 0.08), rng.integers(1, 31, n), offset)
    start = as_of64 + offset.astype("timedelta64[D]")
    freq = np.array([t.frequency for t in _TEMPLATES])[tpl]
    first_pass = np.arange(n) < min(n, n_tpl)  # coverage rows with every template once
    feb29 = (freq == "yearly") & ((rng.random(n) < 0.25) | first_pass)
    start = np.where(feb29, np.datetime64(_last_feb29(as_of), "D"), start)

    # End dates on ~20 %; half of those with a minimum term end inside it.
    min_days = np.array([t.minimum_days for t in _TEMPLATES], dtype="int64")[tpl]
    has_end = rng.random(n) < 0.20
    end_off = rng.integers(0, 400, n)
    has_end |= first_pass & (min_days > 1)  # ended inside the minimum term, always present
    inside = has_end & (min_days > 1) & ((rng.random(n) < 0.5) | first_pass)
    end_off = np.where(inside, rng.integers(0, 1 << 40, n) % np.maximum(min_days - 1, 1), end_off)
    end = start + end_off.astype("timedelta64[D]")

    # Quantities: mostly 1; DIDs and seats in bigger blocks.
    q_big = np.minimum(1 + rng.geometric(0.12, n), 50)
    quantity = np.where(rng.random(n) < 0.75, 1, q_big)
    once_or_commit = np.isin(freq, ["once"]) | np.array([t.minimum_spend for t in _TEMPLATES])[tpl]
    quantity = np.where(once_or_commit & (rng.random(n) < 0.9), 1, quantity)

    auto_decrement = rng.random(n) < 0.9
    is_fm = np.array([t.type == "free_minutes" for t in _TEMPLATES])[tpl]
    override = is_fm & (rng.random(n) < 0.10)
    fm_value = np.array([50, 200, 300, 750, 2000])[rng.integers(0, 5, n)]

    # Ids in order of start date (the order a carrier would have created them).
    o = np.argsort(start, kind="stable")
    cust, pkg, start, end, has_end = cust[o], pkg[o], start[o], end[o], has_end[o]
    quantity, auto_decrement, override, fm_value = quantity[o], auto_decrement[o], override[o], fm_value[o]

    end_txt = pc.if_else(pa.array(has_end), _fmt_dates(end), "")
    fm_txt = pc.if_else(pa.array(override), _fmt_int(fm_value), "")
    frame = _frame(ASSIGNMENT_COLUMNS, {
        "assignment_id": _ids("A", 1, n, _id_width(7, n)),
        "customer_id": cust_ids.take(pa.array(cust)),
        "package_id": package_ids.take(pa.array(pkg)),
        "quantity": _fmt_int(quantity),
        "start_date": _fmt_dates(start),
        "end_date": end_txt,
        "auto_decrement": _fmt_bool(auto_decrement),
        "free_minutes": fm_txt,
    })
    return frame, cust


# --------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------

@dataclass
class _CallPlan:
    n: int
    seed: int
    first_day: np.datetime64  # as_of - 29
    slot_end: np.ndarray  # cumulative call counts per hourly slot
    slot_count: np.ndarray
    day_text: pa.Array  # 'YYYY-MM-DD' per day of the window
    base: _Base
    currencies: tuple[str, ...]
    stream: tuple[int, ...] = (1,)  # random stream of the chunks (older months: (2, k))
    id_prefix: str = "K"


def _call_plan(rng: np.random.Generator, n: int, seed: int, as_of: date, base: _Base,
               currencies: tuple[str, ...], months_back: int = 0) -> _CallPlan:
    """The calls of the 30 days up to `as_of` (months_back=0), or of the 30 days ending
    30 x months_back days earlier (an older month of history: own random stream and ids)."""
    first_day = (np.datetime64(as_of, "D") - np.timedelta64(CALL_DAYS * months_back, "D")
                 - np.timedelta64(CALL_DAYS - 1, "D"))
    days = first_day + np.arange(CALL_DAYS).astype("timedelta64[D]")
    weekday = (days.astype("int64") + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    day_w = np.where(weekday >= 5, _WEEKEND_FACTOR, 1.0)
    w = (day_w[:, None] * _HOURLY[None, :]).ravel()
    counts = rng.multinomial(n, w / w.sum()).astype("int64")
    return _CallPlan(n=n, seed=seed, first_day=first_day, slot_end=np.cumsum(counts),
                     slot_count=counts, day_text=_fmt_dates(days), base=base,
                     currencies=currencies,
                     stream=(1,) if months_back == 0 else (2, months_back),
                     id_prefix="K" if months_back == 0 else f"H{months_back:02d}-")


@lru_cache(maxsize=1)
def _country_arrays():
    k = len(_COUNTRIES)
    cc_text = pa.array([c[0] for c in _COUNTRIES])
    nat_len = np.array([c[1] for c in _COUNTRIES], dtype="int64")
    mobile_share = np.array([c[4] for c in _COUNTRIES])
    rates = np.array([[c[5], c[6]] for c in _COUNTRIES], dtype="int64")
    pools = []  # (country, mobile) -> prefixes
    for c in _COUNTRIES:
        pools.append(c[2])
        pools.append(c[3] or c[2])
    pool_flat = np.array([p for pool in pools for p in pool], dtype="int64")
    pool_len = np.array([len(p) for p in pools], dtype="int64")
    pool_off = np.concatenate([[0], np.cumsum(pool_len)[:-1]])
    assert len(pools) == 2 * k
    return cc_text, nat_len, mobile_share, rates, pool_flat, pool_len, pool_off


def _usage_chunk(plan: _CallPlan, chunk: int) -> pd.DataFrame:
    lo = chunk * USAGE_CHUNK_ROWS
    hi = min(plan.n, lo + USAGE_CHUNK_ROWS)
    m = hi - lo
    rng = np.random.default_rng([plan.seed, *plan.stream, chunk])
    base = plan.base

    # Time: calls are numbered in time order; call g is in the hourly slot holding g, and
    # its second inside the slot is stratified by its rank, so the order holds across chunks.
    g = np.arange(lo, hi, dtype="int64")
    slot = np.searchsorted(plan.slot_end, g, side="right")
    rank = g - (plan.slot_end[slot] - plan.slot_count[slot])
    sec = ((rank + rng.random(m)) * 3600 / plan.slot_count[slot]).astype("int64")
    sec = np.minimum(sec, 3599)
    offset = slot * 3600 + sec
    day = offset // 86_400
    start_time = _join(plan.day_text.take(pa.array(day)), _times_of_day().take(pa.array(offset % 86_400)))

    # Who: a customer picked through a random assignment (busy customers call more).
    if len(base.assignment_customer):
        cust = base.assignment_customer[rng.integers(0, len(base.assignment_customer), m)]
    else:
        cust = rng.integers(0, len(base.currency_idx), m)
    cur = base.currency_idx[cust]

    # Where: country by the customer's region, mobile or landline, an E.164 number.
    cc_text, nat_len, mobile_share, rates, pool_flat, pool_len, pool_off = _country_arrays()
    country = np.empty(m, dtype="int64")
    for ci, code in enumerate(plan.currencies):
        sel = np.flatnonzero(cur == ci)
        if len(sel):
            w = np.asarray(_DEST_WEIGHTS[code], dtype="float64")
            country[sel] = rng.choice(len(w), size=len(sel), p=w / w.sum())
    mobile = rng.random(m) < mobile_share[country]
    pool = country * 2 + mobile
    prefix = pool_flat[pool_off[pool] + rng.integers(0, 1 << 40, m) % pool_len[pool]]
    plen = np.where(prefix >= 100, 3, np.where(prefix >= 10, 2, 1))
    rest_len = nat_len[country] - plen
    national = prefix * 10**rest_len + rng.integers(0, 1 << 62, m) % (10**rest_len)
    plus = pc.if_else(pa.array(rng.random(m) < 0.3), "+", "")
    destination = _join(plus, cc_text.take(pa.array(country)), _fmt_int(national))

    # How long: log-normal (median 2 min), 7 % unanswered (0 s), at most 2 hours.
    duration = np.clip(np.round(rng.lognormal(np.log(120), 0.85, m)), 1, 7200).astype("int64")
    duration = np.where(rng.random(m) < 0.07, 0, duration)

    # Charge: duration / 60 × per-minute rate (EUR micros × tier × fx), half up, integers.
    fx = np.array([c[2] for c in _CURRENCY_TABLE[: len(plan.currencies)]], dtype="int64")
    rate = rates[country, mobile.astype("int64")] * base.tier_pct[cust] * fx[cur] // 10_000
    charge = (duration * rate * 2 + 60) // 120

    return _frame(USAGE_COLUMNS, {
        "call_id": _ids(plan.id_prefix, lo + 1, m, _id_width(8, plan.n)),
        "customer_id": base.customer_ids.take(pa.array(cust)),
        "start_time": start_time,
        "destination": destination,
        "duration_s": _fmt_int(duration),
        "charge": _fmt_micros(charge),
    })


def _usage_chunks(plan: _CallPlan) -> Iterator[pd.DataFrame]:
    for chunk in range(-(-plan.n // USAGE_CHUNK_ROWS)):
        yield _usage_chunk(plan, chunk)


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------

def generate(customers: int, assignments: int, calls: int, seed: int, as_of: date,
             *, lazy_usage: bool = False, months: int = 1) -> dict[str, pd.DataFrame]:
    """A realistic sample: {'customers', 'packages', 'assignments', 'usage'} of string columns.

    `calls` are the calls of the 30 days up to `as_of`; `months` > 1 adds `calls` more for
    each earlier 30-day month of history (written oldest first, call ids `Hkk-...`), so the
    last month is identical whatever `months` is.

    Same arguments -> identical frames. With `lazy_usage=True`, 'usage' is an iterator of
    DataFrame chunks (at most USAGE_CHUNK_ROWS rows each; the same rows, in the same order)
    for streaming with `write_csv`.
    """
    for label, v in (("customers", customers), ("assignments", assignments), ("calls", calls)):
        if v < 0:
            raise ValueError(f"{label} must be >= 0, got {v}")
    if (assignments or calls) and not customers:
        raise ValueError("assignments and calls need at least one customer")
    if isinstance(as_of, pd.Timestamp):
        as_of = as_of.date()
    rng = np.random.default_rng(seed)
    currencies = CURRENCIES[: max(1, min(len(CURRENCIES), customers))]

    packages = _packages(currencies)
    cust_frame, cur_idx, tier, cust_ids = _customers(rng, customers, currencies)
    pkg_ids = pa.array(packages["package_id"].to_numpy(dtype=object), pa.string())
    assign_frame, assign_cust = _assignments(rng, assignments, cur_idx, cust_ids, currencies,
                                             pkg_ids, as_of)

    base = _Base(currency_idx=cur_idx, tier_pct=tier, assignment_customer=assign_cust,
                 customer_ids=cust_ids)
    if months < 1:
        raise ValueError(f"months must be >= 1, got {months}")
    plan = _call_plan(rng, calls, seed, as_of, base, currencies)
    older = [_call_plan(np.random.default_rng([seed, 2, k]), calls, seed, as_of, base,
                        currencies, months_back=k) for k in range(months - 1, 0, -1)]
    chunks = itertools.chain(*(_usage_chunks(p) for p in older), _usage_chunks(plan))
    if lazy_usage:
        usage = chunks
    else:
        parts = list(chunks)
        usage = (pd.concat(parts, ignore_index=True) if parts
                 else _frame(USAGE_COLUMNS, {c: pa.array([], pa.string()) for c in USAGE_COLUMNS}))
    return {"customers": cust_frame, "packages": packages, "assignments": assign_frame,
            "usage": usage}


_QUOTE_BYTES = (ord(","), ord('"'), ord("\r"), ord("\n"))


def _needs_quotes(column: pa.ChunkedArray) -> bool:
    """Whether any value may contain a character that CSV must quote.

    Scans the raw UTF-8 data buffers (fast); a false positive only means the slower writer.
    """
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return True
    for chunk in column.chunks:
        data = chunk.buffers()[2]
        if data is None:
            continue
        b = np.frombuffer(data, dtype=np.uint8)
        hit = b == _QUOTE_BYTES[0]
        for code in _QUOTE_BYTES[1:]:
            hit |= b == code
        if hit.any():
            return True
    return False


def _write_frame(df: pd.DataFrame, fh, header: bool) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    needs_quotes = any(_needs_quotes(table[c]) for c in table.column_names)
    if needs_quotes:  # csv-module quoting only where a value needs it
        buf = io.StringIO()
        df.to_csv(buf, index=False, header=header, lineterminator="\n")
        fh.write(buf.getvalue().encode("utf-8"))
    else:  # fast path: plain values, nothing to quote
        if header:  # (pyarrow quotes header names even with quoting_style="none")
            fh.write((",".join(table.column_names) + "\n").encode("utf-8"))
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def write_csv(frames: dict[str, pd.DataFrame | Iterable[pd.DataFrame]],
              out_dir: str | Path) -> dict[str, Path]:
    """Write each frame to `<out_dir>/<name>.csv` (customers.csv, packages.csv, ...).

    A value may be a DataFrame or an iterable of DataFrame chunks (same columns), which are
    streamed to the file one after another. Returns {name: path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, data in frames.items():
        path = out / f"{name}.csv"
        chunks = [data] if isinstance(data, pd.DataFrame) else data
        with open(path, "wb") as fh:
            header = True
            for chunk in chunks:
                if header or len(chunk):
                    _write_frame(chunk, fh, header)
                header = False
            if header:  # an empty iterable: header only
                cols = {"usage": USAGE_COLUMNS}.get(name, [])
                fh.write((",".join(cols) + "\n").encode())
        paths[name] = path
    return paths


def write_sample(out_dir: str | Path, customers: int, assignments: int, calls: int, seed: int,
                 as_of: date, months: int = 1) -> dict[str, Path]:
    """generate() + write_csv(), streaming the calls chunk by chunk (bounded memory)."""
    return write_csv(generate(customers, assignments, calls, seed, as_of, lazy_usage=True,
                              months=months), out_dir)


def as_of_default() -> date:
    """Today (UTC): the default 'as of' date for samples."""
    return datetime.now(timezone.utc).date()

