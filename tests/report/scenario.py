"""A hand-built run for the report tests: known lines, grants, utilisation and rejects."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from billing_jobs.core.frames import BillingResult

M = 1_000_000  # micros per unit
RUN_DATE = date(2026, 3, 1)


def _d(text):
    return pd.Timestamp(text) if text else pd.NaT


def _dates(values) -> pd.Series:
    return pd.Series([_d(v) for v in values], dtype="datetime64[s]")


def due_lines() -> pd.DataFrame:
    rows = [
        # customer, assignment, package, kind, start, end, qty, unit_price, amount, cost, cur, auto, status
        ("C-EUR-1", "A1", "P-DID", "recurring", "2026-03-01", "2026-04-01", 1, 10_500_000,
         10_500_000, 4_000_000, "EUR", True, "posted"),
        # 3 × 0.125 = 0.375 -> 0.38 (half up); cost 3 × 0.0125 = 0.0375 -> 0.04
        ("C-EUR-1", "A2", "P-CHEAP", "prorated", "2026-03-01", "2026-03-15", 3, 125_000,
         380_000, 40_000, "EUR", True, "posted"),
        ("C-EUR-1", "A3", "P-SEAT", "setup", "2026-03-01", "", 1, 25_000_000,
         25_000_000, 5_000_000, "EUR", True, "already_posted"),
        # a met minimum-spend commitment: written as 0
        ("C-EUR-2", "A4", "P-MIN", "minimum_spend", "2026-02-01", "2026-03-01", 1, 12_500,
         0, 0, "EUR", False, "invoiced"),
        ("C-JPY", "A5", "P-JP", "recurring", "2026-03-01", "2026-04-01", 2, 167_000_000,
         334_000_000, 200_000_000, "JPY", True, "posted"),
        ("C-JPY", "A6", "P-JP-SETUP", "setup", "2026-03-01", "", 1, 1_000_000_000,
         1_000_000_000, 600_000_000, "JPY", False, "invoiced"),
        ("C-KWD", "A7", "P-KW", "recurring", "2026-03-01", "2026-04-01", 1, 1_250_000,
         1_250_000, 500_000, "KWD", True, "posted"),
    ]
    cols = ["customer_id", "assignment_id", "package_id", "kind", "period_start", "period_end",
            "quantity", "unit_price", "amount", "cost", "currency", "auto_decrement", "status"]
    df = pd.DataFrame(rows, columns=cols)
    df.insert(0, "run_date", _dates([RUN_DATE.isoformat()] * len(df)))
    df["period_start"] = _dates(df["period_start"])
    df["period_end"] = _dates(df["period_end"])
    for c in ("quantity", "unit_price", "amount", "cost"):
        df[c] = df[c].astype("int64")
    return df


def grants() -> pd.DataFrame:
    df = pd.DataFrame({
        "run_date": _dates([RUN_DATE.isoformat()] * 2),
        "customer_id": ["C-EUR-1", "C-JPY"],
        "assignment_id": ["A8", "A9"],
        "package_id": ["P-FM-UK", "P-FM-ALL"],
        "period_start": _dates(["2026-03-01", "2026-03-01"]),
        "period_end": _dates(["2026-04-01", ""]),
        "destination": ["^44|^91", ""],
        "seconds": np.array([6000, 3000], dtype="int64"),
        "status": ["posted", "already_posted"],
    })
    return df


def utilisation() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["C-EUR-1", "C-JPY"],
        "assignment_id": ["A8", "A9"],
        "period_start": _dates(["2026-02-01", "2026-02-15"]),
        "period_end": _dates(["2026-03-01", "2026-03-15"]),
        "seconds_granted": np.array([6000, 3000], dtype="int64"),
        "seconds_used": np.array([1800, 3000], dtype="int64"),
    })


def extended_ends() -> pd.DataFrame:
    return pd.DataFrame({
        "assignment_id": ["A3"],
        "customer_id": ["C-EUR-1"],
        "end_date": _dates(["2026-03-05"]),
        "effective_end": _dates(["2026-03-31"]),
    })


EVIL_REASON = 'quantity < 1, got "0" <script>alert(1)</script>'


def rejected() -> pd.DataFrame:
    return pd.DataFrame({
        "entity": ["assignments", "packages", "usage"],
        "id": ["A-BAD", "P-BAD", "call,42"],
        "reason": [EVIL_REASON, "destination pattern uses a back-reference: (a)\\1",
                   "unparsable start_time 'yesterday'"],
    })


def run_info(mode: str = "post", status: str = "succeeded") -> dict:
    return {
        "run_id": 17,
        "run_date": RUN_DATE,
        "mode": mode,
        "status": status,
        "started_by": "cli:test",
        "customer_ids": None,
        "started_at": "2026-03-02T01:00:00+00:00",
        "finished_at": "2026-03-02T01:00:09+00:00",
        "message": "",
        "unposted_dates": ["2026-02-27", "2026-02-28"],
        "code_version": "0.1.0+test",
    }


def result() -> BillingResult:
    return BillingResult(due_lines=due_lines(), grants=grants(), utilisation=utilisation(),
                         extended_ends=extended_ends())


TIMINGS = {"load": 0.25, "validate": 0.125, "compute": 1.5, "gate": 0.0625, "settle": 0.5}


def big_result(n: int, seed: int = 7) -> BillingResult:
    """A synthetic run with `n` lines over 50k customers, 300 packages, three currencies."""
    rng = np.random.default_rng(seed)
    n_customers = 50_000
    cust = rng.integers(0, n_customers, n)
    currencies = np.array(["EUR", "USD", "JPY"], dtype=object)
    cur = currencies[cust % 3]
    pkg = rng.integers(0, 300, n)
    kinds = np.array(["setup", "recurring", "prorated", "minimum_spend"], dtype=object)
    kind = kinds[rng.choice(4, n, p=[0.05, 0.8, 0.05, 0.1])]
    qty = rng.integers(1, 5, n).astype("int64")
    unit = rng.integers(1, 5_000_000, n).astype("int64") // 12_500 * 12_500  # n × 0.0125
    step = np.where(cur == "JPY", M, 10_000).astype("int64")  # minor unit in micros
    amount = (unit * qty + step // 2) // step * step
    cost = (amount * 2 // 5) // step * step
    start = np.datetime64("2026-03-01", "s")
    statuses = np.array(["posted", "invoiced", "already_posted"], dtype=object)
    order = np.lexsort((pkg, cust))
    lines = pd.DataFrame({
        "run_date": np.full(n, start),
        "customer_id": np.char.add("C", cust.astype(str)).astype(object),
        "assignment_id": np.char.add("A", np.arange(n).astype(str)).astype(object),
        "package_id": np.char.add("P", pkg.astype(str)).astype(object),
        "kind": kind,
        "period_start": np.full(n, start),
        "period_end": np.where(kind == "setup", np.datetime64("NaT", "s"),
                               np.datetime64("2026-04-01", "s")),
        "quantity": qty,
        "unit_price": unit,
        "amount": amount,
        "cost": cost,
        "currency": cur,
        "auto_decrement": rng.random(n) < 0.8,
        "status": statuses[rng.choice(3, n, p=[0.7, 0.2, 0.1])],
    }).iloc[order].reset_index(drop=True)
    g = n // 20
    gc = rng.integers(0, n_customers, g)
    grants_ = pd.DataFrame({
        "run_date": np.full(g, start),
        "customer_id": np.char.add("C", gc.astype(str)).astype(object),
        "assignment_id": np.char.add("F", np.arange(g).astype(str)).astype(object),
        "package_id": "P-FM",
        "period_start": np.full(g, start),
        "period_end": np.full(g, np.datetime64("2026-04-01", "s")),
        "destination": "^44",
        "seconds": np.full(g, 6000, dtype="int64"),
        "status": "posted",
    })
    granted = np.full(g, 6000, dtype="int64")
    util = pd.DataFrame({
        "customer_id": grants_["customer_id"],
        "assignment_id": grants_["assignment_id"],
        "period_start": np.full(g, np.datetime64("2026-02-01", "s")),
        "period_end": np.full(g, start),
        "seconds_granted": granted,
        "seconds_used": rng.integers(0, 6001, g).astype("int64"),
    })
    return BillingResult(due_lines=lines, grants=grants_, utilisation=util,
                         extended_ends=extended_ends())
