"""A small valid set of raw input frames (as the loader hands them) for the checks tests."""

from __future__ import annotations

import pandas as pd

from billing_jobs.core.frames import BillingInputs

M = 1_000_000  # micros per unit


def raw_customers() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["C1", "C2", "C3"],
        "name": ["Acme Telecom", "Beta VoIP", "Gamma KK"],
        "currency": ["EUR", "USD", "JPY"],
        "balance": [100 * M, -50 * M, 0],  # a balance may be negative
    })


def raw_packages() -> pd.DataFrame:
    return pd.DataFrame({
        "package_id": ["P1", "P2", "P3", "P4"],
        "name": ["DID rental", "UK bundle", "PBX seat", "Setup JP"],
        "type": ["standard", "free_minutes", "standard", "standard"],
        "cost": [4 * M, 1 * M, 2 * M, 0],
        "retail": [10 * M, 5 * M, 3 * M, 1000 * M],
        "setup_cost": [0, 0, 0, 100 * M],
        "setup_retail": [0, 0, 0, 500 * M],
        "currency": ["EUR", "EUR", "USD", "JPY"],
        "frequency": ["monthly", "weekly", "daily", "once"],
        "frequency_match": [None, "1|3", None, None],
        "free_minutes": [None, 100, None, None],
        "destination": [None, "^44|^91|^1", None, None],
        "minimum_spend": [False, False, False, False],
        "minimum_days": [0, 0, 30, 0],
        "prorate": [True, False, False, False],
        "description": ["", "minutes to UK, India, NANP", None, ""],
    })


def raw_assignments() -> pd.DataFrame:
    return pd.DataFrame({
        "assignment_id": ["A1", "A2", "A3", "A4"],
        "customer_id": ["C1", "C1", "C2", "C3"],
        "package_id": ["P1", "P2", "P3", "P4"],
        "quantity": [1, 2, 3, 1],
        "start_date": ["2027-01-01", "2027-01-04", "2027-01-10", "2027-02-01"],
        "end_date": [None, "2027-06-30", None, None],
        "auto_decrement": [True, False, True, False],
        "free_minutes": pd.array([None, None, None, None], dtype="Int64"),
    })


def raw_usage() -> pd.DataFrame:
    return pd.DataFrame({
        "call_id": ["U1", "U2", "U3"],
        "customer_id": ["C1", "C2", "C3"],
        "start_time": pd.to_datetime(["2027-01-05T10:00:00Z", "2027-01-11T08:30:00Z",
                                      "2027-02-02T23:59:59Z"], utc=True),
        "destination": ["+441234567", "15551234", None],
        "duration_s": [60, 0, 3600],
        "charge": [12_500, 0, 1_000 * M],
    })


def raw_inputs() -> BillingInputs:
    return BillingInputs(customers=raw_customers(), packages=raw_packages(),
                         assignments=raw_assignments(), usage=raw_usage())


ALL_IDS = {
    "customers": {"C1", "C2", "C3"},
    "packages": {"P1", "P2", "P3", "P4"},
    "assignments": {"A1", "A2", "A3", "A4"},
    "usage": {"U1", "U2", "U3"},
}
KEY = {"customers": "customer_id", "packages": "package_id", "assignments": "assignment_id",
       "usage": "call_id"}


def add_row(df: pd.DataFrame, **values) -> pd.DataFrame:
    """A copy of df with one more row: the first row's values updated with `values`."""
    row = df.iloc[[0]].copy()
    for k, v in values.items():
        row[k] = pd.Series([v], index=row.index, dtype=object)
    out = pd.concat([df.astype(object), row.astype(object)], ignore_index=True)
    return out


def set_value(df: pd.DataFrame, row_id: str, column: str, value) -> pd.DataFrame:
    out = df.astype(object).copy()
    key = out.columns[0]
    out.loc[out[key] == row_id, column] = value
    return out
