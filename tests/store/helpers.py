"""Shared helpers for the store tests: synthetic inputs/results and full table dumps."""

from __future__ import annotations

from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.frames import (
    DUE_LINE_COLUMNS,
    EXTENDED_END_COLUMNS,
    GRANT_COLUMNS,
    UTILISATION_COLUMNS,
    BillingResult,
    empty_frame,
)
from billing_jobs.store.db import make_engine, upgrade
from billing_jobs.store.tables import customers as customers_t
from billing_jobs.store.tables import metadata

RUN_DATE = date(2027, 3, 1)
INITIAL_BALANCE = 100_000_000  # 100.00 in micros


def fresh_engine(db_url: str) -> sa.Engine:
    engine = make_engine(db_url)
    upgrade(engine)
    return engine


def customer_ids(n: int) -> list[str]:
    return [f"C{i:04d}" for i in range(1, n + 1)]


def seed_customers(engine: sa.Engine, n: int, balance: int = INITIAL_BALANCE,
                   currency: str = "EUR") -> None:
    with engine.begin() as conn:
        conn.execute(customers_t.insert(), [
            {"customer_id": c, "name": f"Customer {c}", "currency": currency, "balance_micros": balance,
             "opening_balance_micros": balance}
            for c in customer_ids(n)
        ])


def synthetic_result(n_customers: int, run_date: date = RUN_DATE) -> BillingResult:
    """A deterministic result: per customer 3 lines (two auto-decrement, one invoiced) and,
    for every other customer, one free-minute grant. Amounts exercise sub-cent micros."""
    ts = pd.Timestamp(run_date)
    rows = []
    grants = []
    for i, c in enumerate(customer_ids(n_customers), start=1):
        a_did, a_seat, a_min = f"A{i:04d}-did", f"A{i:04d}-seat", f"A{i:04d}-min"
        rows.append((ts, c, a_did, "P-DID", "recurring", ts, ts + pd.Timedelta(days=31),
                     2, 1_250_000, 2_500_000, 1_000_000, "EUR", True))
        rows.append((ts, c, a_seat, "P-SEAT", "setup", ts, pd.NaT,
                     1, 125_000 * i, 125_000 * i, 0, "EUR", True))
        rows.append((ts, c, a_min, "P-MIN", "minimum_spend", ts - pd.Timedelta(days=28), ts,
                     1, 10_000_000, 3_330_000, 0, "EUR", False))
        if i % 2:
            grants.append((ts, c, f"A{i:04d}-fm", "P-FM", ts, ts + pd.Timedelta(days=31),
                           "^44|^91", 6000 * i))
    lines = pd.DataFrame(rows, columns=DUE_LINE_COLUMNS)
    lines = lines.astype({"run_date": "datetime64[s]", "period_start": "datetime64[s]",
                          "period_end": "datetime64[s]", "quantity": "int64",
                          "unit_price": "int64", "amount": "int64", "cost": "int64",
                          "auto_decrement": bool})
    grant_frame = pd.DataFrame(grants, columns=GRANT_COLUMNS).astype(
        {"run_date": "datetime64[s]", "period_start": "datetime64[s]",
         "period_end": "datetime64[s]", "seconds": "int64"})
    return BillingResult(due_lines=lines, grants=grant_frame,
                         utilisation=empty_frame(UTILISATION_COLUMNS),
                         extended_ends=empty_frame(EXTENDED_END_COLUMNS))


def expected_debits(result: BillingResult) -> dict[str, int]:
    lines = result.due_lines
    auto = lines[lines["auto_decrement"]]
    return auto.groupby("customer_id")["amount"].sum().astype(int).to_dict()


VOLATILE = {"ledger_id", "grant_id", "run_id", "posted_at", "granted_at"}


def dump(engine: sa.Engine, *, stable: bool = False) -> dict[str, list[tuple]]:
    """Every row of every table, sorted. stable=True drops per-run columns (ids, run ids,
    timestamps) so that two runs' outcomes can be compared."""
    out: dict[str, list[tuple]] = {}
    with engine.connect() as conn:
        for name, table in metadata.tables.items():
            cols = [c for c in table.columns if not (stable and c.name in VOLATILE)]
            rows = conn.execute(sa.select(*cols)).all()
            out[name] = sorted((tuple(_plain(v) for v in r) for r in rows), key=repr)
    return out


def _plain(v):
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).isoformat() if v.tzinfo else v.isoformat()
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    return v


def balances(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {c: int(b) for c, b in conn.execute(
            sa.text("SELECT customer_id, balance_micros FROM customers")).all()}


def ledger_keys(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [(a, k, str(p)) for a, k, p in conn.execute(sa.text(
            "SELECT assignment_id, kind, period_start FROM ledger "
            "ORDER BY assignment_id, kind, period_start")).all()]


def per_customer_counts(engine: sa.Engine, table: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {c: int(n) for c, n in conn.execute(sa.text(
            f"SELECT customer_id, count(*) FROM {table} GROUP BY customer_id")).all()}
