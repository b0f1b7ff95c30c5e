"""The dataframes passed between stages (see docs/contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd

from billing_jobs.core.entities import columns as _entity_columns  # the one declaration

CUSTOMER_COLUMNS = _entity_columns("customers")
PACKAGE_COLUMNS = _entity_columns("packages")
ASSIGNMENT_COLUMNS = _entity_columns("assignments")
USAGE_COLUMNS = _entity_columns("usage")

DUE_LINE_COLUMNS = [
    "run_date", "customer_id", "assignment_id", "package_id", "kind", "period_start",
    "period_end", "quantity", "unit_price", "amount", "cost", "currency", "auto_decrement",
]
GRANT_COLUMNS = [
    "run_date", "customer_id", "assignment_id", "package_id", "period_start", "period_end",
    "destination", "seconds",
]
UTILISATION_COLUMNS = [
    "customer_id", "assignment_id", "period_start", "period_end", "seconds_granted", "seconds_used",
    "credited",
]
EXTENDED_END_COLUMNS = ["assignment_id", "customer_id", "end_date", "effective_end"]

#: Free minutes (SPEC section 9, docs/free_minutes.md). Stored state as loaded: each grant's
#: counter (grant_usage) and each recorded consumption of a call (call_credits), `covered`
#: in micros; `consumed_on` is the billing date whose post consumed it.
#: Grants the database holds live (not withdrawn) whose period reaches the days a date reads.
GRANTED_COLUMNS = ["run_date", "customer_id", "assignment_id", "period_start", "period_end",
                   "destination", "seconds"]
#: A grant of the current calendar held back: it overlaps a live grant of its assignment under
#: another period_start (a moved start date or changed frequency, #17 item 2).
HELD_GRANT_COLUMNS = GRANT_COLUMNS + ["posted_period_start", "posted_run_date"]
COUNTER_COLUMNS = ["customer_id", "assignment_id", "period_start", "period_end",
                   "seconds_granted", "seconds_used", "credited"]
CONSUMED_COLUMNS = ["call_id", "customer_id", "assignment_id", "period_start", "start_time",
                    "consumed_on", "seconds", "covered", "late"]
#: What a billing date consumes: one row per (call, grant) part (covered micros, unrounded).
CONSUMPTION_COLUMNS = ["run_date", "call_id", "customer_id", "assignment_id", "period_start",
                       "start_time", "seconds", "covered", "late"]
#: Per grant the date touches or reports: counters before and after the date.
#: versions of a package's money terms (SPEC 10), money in micros; effective_from a date
VERSION_COLUMNS = ["package_id", "effective_from", "cost", "retail", "setup_cost", "setup_retail",
                   "free_minutes"]
#: changes of an assignment from a date (SPEC 10): NULL/NA fields are unchanged
CHANGE_COLUMNS = ["change_id", "assignment_id", "effective_from", "quantity", "package_id",
                  "free_minutes", "customer_id", "cancel", "void"]
#: a grant cut by a change from a date (SPEC 10): the grant keyed (assignment_id,
#: period_start) now ends on period_end (the change's day) with `seconds` (never below its
#: used seconds); `run_date` is the change's day, whose post applies it
GRANT_CUT_COLUMNS = ["run_date", "customer_id", "assignment_id", "period_start", "period_end",
                     "seconds"]
#: Minimum spend from the spend rollup (#29, store/spend_rollup.py): per customer and UTC day
#: (int64 day number) the stored calls' charges and their stored free-minute credits that
#: count against them (each call's credit up to its charge), int64 micros.
DAILY_SPEND_COLUMNS = ["customer_id", "day", "charged", "credited"]
GRANT_COUNTER_COLUMNS = ["customer_id", "assignment_id", "period_start", "period_end",
                         "seconds_granted", "seconds_used_before", "seconds_used",
                         "credited_before", "credited"]

ENTITY_COLUMNS = {
    "customers": CUSTOMER_COLUMNS,
    "packages": PACKAGE_COLUMNS,
    "assignments": ASSIGNMENT_COLUMNS,
    "usage": USAGE_COLUMNS,
}
ENTITY_KEYS = {"customers": "customer_id", "packages": "package_id",
               "assignments": "assignment_id", "usage": "call_id"}
MONEY_COLUMNS = {
    "customers": ["balance"],
    "packages": ["cost", "retail", "setup_cost", "setup_retail"],
    "assignments": [],
    "usage": ["charge"],
}


#: Keys posted earlier whose current data differs from what the ledger holds (#17 item 3).
DIFFERENCE_COLUMNS = ["assignment_id", "kind", "period_start", "currency", "ledger_customer_id",
                      "customer_id", "ledger_quantity", "quantity", "ledger_amount", "amount",
                      "correction"]

_DATE_COLUMNS = {"run_date", "period_start", "period_end", "start_date", "end_date",
                 "effective_end", "consumed_on", "posted_period_start", "posted_run_date",
                 "effective_from"}
_INT_COLUMNS = {"quantity", "unit_price", "amount", "cost", "seconds", "seconds_granted",
                "seconds_used", "balance", "charge", "duration_s", "retail", "setup_cost",
                "setup_retail", "minimum_days", "credited", "covered", "seconds_used_before",
                "credited_before", "ledger_quantity", "ledger_amount", "change_id"}
_BOOL_COLUMNS = {"auto_decrement", "minimum_spend", "prorate", "late", "cancel", "void"}


def column_dtype(column: str) -> str:
    """The contract's dtype of a frame column, by its name."""
    if column in _DATE_COLUMNS:
        return "datetime64[s]"
    if column in _INT_COLUMNS:
        return "int64"
    if column in _BOOL_COLUMNS:
        return "bool"
    return "object"


def empty_frame(columns: list[str]) -> pd.DataFrame:
    """A frame with no rows and the contract's dtype for each column."""
    return pd.DataFrame({c: pd.Series(dtype=column_dtype(c)) for c in columns})


def _typed(values: pd.Series, column: str) -> pd.Series:
    if column == "start_time":  # datetimes, or stored text with or without an offset (UTC)
        return pd.to_datetime(values, utc=True, format="ISO8601")
    kind = column_dtype(column)
    if kind == "datetime64[s]":
        # few distinct dates among many rows: convert each distinct value once
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        days = pd.to_datetime(pd.Series(uniques, dtype=object).map(
            lambda v: v.isoformat() if hasattr(v, "isoformat") else v)).astype("datetime64[s]")
        taken = np.append(days.to_numpy(), np.datetime64("NaT", "s"))[codes]
        return pd.Series(taken, dtype="datetime64[s]")
    return values.astype(kind if kind != "object" else str)


def as_date(value) -> date:
    """A frame cell (Timestamp, datetime64, datetime, date) or ISO text as a date: for values
    out of a dataframe or a hand-off file, where no typed database read applies."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def frame_of_rows(rows: list, columns: list[str]) -> pd.DataFrame:
    """Database rows (tuples in `columns` order) as a frame with the contract's dtypes
    (dates from DATE values or ISO text, timestamps from datetimes or stored text, integers,
    booleans from 0/1, text)."""
    if not rows:
        return empty_frame(columns)
    values = list(zip(*rows))  # one tuple per column
    return pd.DataFrame({c: _typed(pd.Series(v, dtype=object), c)
                         for c, v in zip(columns, values)}, columns=columns)


@dataclass
class BillingInputs:
    customers: pd.DataFrame
    packages: pd.DataFrame
    assignments: pd.DataFrame
    usage: pd.DataFrame
    #: free-minute state from the database (empty: nothing consumed yet)
    counters: pd.DataFrame = field(default_factory=lambda: empty_frame(COUNTER_COLUMNS))
    consumed: pd.DataFrame = field(default_factory=lambda: empty_frame(CONSUMED_COLUMNS))
    granted: pd.DataFrame = field(default_factory=lambda: empty_frame(GRANTED_COLUMNS))
    #: terms over time (empty: every package and assignment has one set of terms)
    versions: pd.DataFrame = field(default_factory=lambda: empty_frame(VERSION_COLUMNS))
    changes: pd.DataFrame = field(default_factory=lambda: empty_frame(CHANGE_COLUMNS))
    #: the spend rollup rows minimum spend sums (DAILY_SPEND_COLUMNS, UTC days); None: the
    #: engine sums the calls in `usage` (another time zone, an every-call read, a backfill)
    daily_spend: pd.DataFrame | None = None


@dataclass
class BillingResult:
    due_lines: pd.DataFrame
    grants: pd.DataFrame
    utilisation: pd.DataFrame
    extended_ends: pd.DataFrame = field(default_factory=lambda: empty_frame(EXTENDED_END_COLUMNS))
    consumption: pd.DataFrame = field(default_factory=lambda: empty_frame(CONSUMPTION_COLUMNS))
    grant_counters: pd.DataFrame = field(
        default_factory=lambda: empty_frame(GRANT_COUNTER_COLUMNS))
    differences: pd.DataFrame = field(default_factory=lambda: empty_frame(DIFFERENCE_COLUMNS))
    held_grants: pd.DataFrame = field(default_factory=lambda: empty_frame(HELD_GRANT_COLUMNS))
    grant_cuts: pd.DataFrame = field(default_factory=lambda: empty_frame(GRANT_CUT_COLUMNS))


@dataclass
class Forecast:
    """Upcoming charges of a range of billing dates (run.forecast), as the report reads them."""
    first: date
    last: date
    tz: str
    lines: pd.DataFrame  # DUE_LINE_COLUMNS + status (upcoming | already_posted) + provisional
    grants: pd.DataFrame  # GRANT_COLUMNS + status
    rejected: pd.DataFrame  # entity, id, reason: input rows left out of the forecast
    customers: pd.DataFrame  # customer_id, name, currency, balance (micros, as stored now)
    packages: pd.DataFrame  # package_id, name, description
    #: the validated inputs of the range, for the explanations of terms over time (#27)
    inputs: BillingInputs | None = None
