"""What the ledger holds for lines a run found `already_posted` (#17 item 3).

A re-run after a re-import (a new price, quantity or customer) computes lines with the new
data; for a key already posted the report must show the ledger's row, not the new amounts.
`held_by_ledger(engine, lines)` replaces, on the `already_posted` lines, amount (the key's net
over all its revisions), customer_id, quantity and unit_price (of its latest row) with what
the ledger holds, and returns the keys where current data differs, with the correction to run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.frames import DIFFERENCE_COLUMNS, empty_frame
from billing_jobs.core.vocab import POSTING_KEY, LineKind, LineStatus
from billing_jobs.store.db import read_connection
from billing_jobs.store.tables import ledger

KEY = list(POSTING_KEY)
_CHUNK = 500


def empty_differences() -> pd.DataFrame:
    return empty_frame(DIFFERENCE_COLUMNS)


def _held(conn: sa.Connection, assignment_ids: list[str]) -> pd.DataFrame:
    t = ledger.c
    rows: list = []
    for i in range(0, len(assignment_ids), _CHUNK):
        rows += conn.execute(sa.select(
            t.assignment_id, t.kind, t.period_start, t.revision, t.customer_id, t.quantity,
            t.unit_price_micros, t.amount_micros,
        ).where(t.assignment_id.in_(assignment_ids[i:i + _CHUNK]))).all()
    frame = pd.DataFrame(rows, columns=["assignment_id", "kind", "period_start", "revision",
                                        "customer_id", "quantity", "unit_price", "amount"])
    frame["period_start"] = pd.to_datetime(frame["period_start"]).astype("datetime64[s]")
    return frame


def held_by_ledger(engine: sa.Engine, lines: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(lines with the ledger's values on already_posted keys, differences)."""
    posted = (lines["status"] == LineStatus.ALREADY_POSTED).to_numpy() if len(lines) else np.zeros(0, bool)
    if not posted.any():
        return lines, empty_differences()
    mine = lines[posted]
    with read_connection(engine) as conn:
        held = _held(conn, sorted(set(mine["assignment_id"].astype(str))))
    if held.empty:
        return lines, empty_differences()
    held = held.sort_values(KEY + ["revision"])
    net = held.groupby(KEY, sort=False)["amount"].sum().astype("int64")
    last = held.groupby(KEY, sort=False)[["customer_id", "quantity", "unit_price"]].last()
    # a key lives on one customer (#28 point 5): held by several (an assignment whose customer
    # an import corrected, rebilled before rebill moved keys whole), it differs, and the
    # ledger's customer is the one holding most of it; rebill moves it whole
    shares = held.groupby(KEY + ["customer_id"], sort=False)["amount"].sum()
    shares = shares[shares != 0].reset_index()
    holders = shares.groupby(KEY, sort=False)["customer_id"].nunique()
    most = (shares.assign(size=shares["amount"].abs()).sort_values("size", kind="stable")
            .groupby(KEY, sort=False)["customer_id"].last())
    last["customer_id"] = most.reindex(last.index).fillna(last["customer_id"])
    key = pd.MultiIndex.from_frame(
        mine[KEY].assign(period_start=pd.to_datetime(mine["period_start"]).astype(
            "datetime64[s]"), assignment_id=mine["assignment_id"].astype(str)))
    found = key.isin(net.index)
    if not found.any():
        return lines, empty_differences()
    idx = mine.index[found]
    k = key[found]
    ledger_amount = net.reindex(k).to_numpy(dtype="int64")
    ledger_customer = last["customer_id"].reindex(k).astype(str).to_numpy(dtype=object)
    ledger_qty = last["quantity"].reindex(k).to_numpy(dtype="int64")
    ledger_price = last["unit_price"].reindex(k).to_numpy(dtype="int64")
    current = lines.loc[idx]
    split = holders.reindex(k).fillna(0).to_numpy(dtype="int64") > 1
    differs = (split | (current["amount"].to_numpy(dtype="int64") != ledger_amount)
               | (current["customer_id"].astype(str).to_numpy(dtype=object) != ledger_customer)
               | (current["quantity"].to_numpy(dtype="int64") != ledger_qty))
    diff = current[differs]
    day = pd.to_datetime(diff["run_date"]).dt.strftime("%Y-%m-%d")
    differences = pd.DataFrame({
        "assignment_id": diff["assignment_id"].astype(str).to_numpy(dtype=object),
        "kind": diff["kind"].astype(str).to_numpy(dtype=object),
        "period_start": diff["period_start"].to_numpy(),
        "currency": diff["currency"].astype(str).to_numpy(dtype=object),
        "ledger_customer_id": ledger_customer[differs],
        "customer_id": diff["customer_id"].astype(str).to_numpy(dtype=object),
        "ledger_quantity": ledger_qty[differs],
        "quantity": diff["quantity"].to_numpy(dtype="int64"),
        "ledger_amount": ledger_amount[differs],
        "amount": diff["amount"].to_numpy(dtype="int64"),
        "correction": ("billing-jobs rebill --from " + day + " --to " + day
                       + " (posts the difference; see docs/ledger.md)").to_numpy(dtype=object),
    }, columns=DIFFERENCE_COLUMNS)
    credit = (differences["kind"] == LineKind.FREE_MINUTES_CREDIT).to_numpy()
    if credit.any():  # rebill leaves credits alone
        differences.loc[credit, "correction"] = ("credits follow the recorded consumption: "
                                                 "reverse the run and post again, or adjust")
    out = lines.copy()
    out.loc[idx, "amount"] = ledger_amount
    out.loc[idx, "customer_id"] = ledger_customer
    out.loc[idx, "quantity"] = ledger_qty
    out.loc[idx, "unit_price"] = ledger_price
    return out, differences.reset_index(drop=True)


def overlap_differences(lines: pd.DataFrame, held: dict[int, tuple[str, str, str]]
                        ) -> pd.DataFrame:
    """The lines held as `overlaps_posted` (positions in `lines`, with the live key each would
    charge again): what current data asks for, that the ledger holds 0 for this key, and the
    correction: a rebill over both run dates moves the charge (reverses the old key, posts the
    new one) in one transaction (docs/ledger.md)."""
    pos = sorted(held)
    rows = lines.iloc[pos]
    day = pd.to_datetime(rows["run_date"]).dt.strftime("%Y-%m-%d").tolist()
    old = [held[p] for p in pos]
    first = [min(d, o[2]) for d, o in zip(day, old)]
    last = [max(d, o[2]) for d, o in zip(day, old)]
    return pd.DataFrame({
        "assignment_id": rows["assignment_id"].astype(str).to_numpy(dtype=object),
        "kind": rows["kind"].astype(str).to_numpy(dtype=object),
        "period_start": rows["period_start"].to_numpy(),
        "currency": rows["currency"].astype(str).to_numpy(dtype=object),
        "ledger_customer_id": rows["customer_id"].astype(str).to_numpy(dtype=object),
        "customer_id": rows["customer_id"].astype(str).to_numpy(dtype=object),
        "ledger_quantity": np.zeros(len(pos), dtype="int64"),
        "quantity": rows["quantity"].to_numpy(dtype="int64"),
        "ledger_amount": np.zeros(len(pos), dtype="int64"),
        "amount": rows["amount"].to_numpy(dtype="int64"),
        "correction": [f"not posted: overlaps the posted {o[0]} from {o[1]} (run date {o[2]}) "
                       f"of the same assignment (moved start date or changed frequency?); "
                       f"billing-jobs rebill --from {f} --to {t} moves the charge"
                       for o, f, t in zip(old, first, last)],
    }, columns=DIFFERENCE_COLUMNS)


GRANT_KIND = "free_minutes_grant"  # a grant's row in differences.csv (quantity = seconds)


def held_grant_differences(held: pd.DataFrame) -> pd.DataFrame:
    """The grants held as `overlaps_posted` (calc.frames.HELD_GRANT_COLUMNS): current data
    asks for them, a live grant of the same assignment under another period_start already
    gives minutes for some of their days; a rebill over both run dates moves the grant and
    the minutes it used (store/corrections.py)."""
    day = pd.to_datetime(held["run_date"]).dt.strftime("%Y-%m-%d")
    old_day = pd.to_datetime(held["posted_run_date"]).dt.strftime("%Y-%m-%d")
    old_start = pd.to_datetime(held["posted_period_start"]).dt.strftime("%Y-%m-%d")
    first = [min(a, b) for a, b in zip(day, old_day)]
    last = [max(a, b) for a, b in zip(day, old_day)]
    n = len(held)
    return pd.DataFrame({
        "assignment_id": held["assignment_id"].astype(str).to_numpy(dtype=object),
        "kind": np.full(n, GRANT_KIND, dtype=object),
        "period_start": held["period_start"].to_numpy(),
        "currency": np.full(n, "", dtype=object),
        "ledger_customer_id": held["customer_id"].astype(str).to_numpy(dtype=object),
        "customer_id": held["customer_id"].astype(str).to_numpy(dtype=object),
        "ledger_quantity": np.zeros(n, dtype="int64"),
        "quantity": held["seconds"].to_numpy(dtype="int64"),
        "ledger_amount": np.zeros(n, dtype="int64"),
        "amount": np.zeros(n, dtype="int64"),
        "correction": [f"not granted: overlaps the live grant from {s} (run date {o}) of the "
                       "same assignment (moved start date or changed frequency?); "
                       f"billing-jobs rebill --from {f} --to {t} moves the grant and the "
                       "minutes it used"
                       for s, o, f, t in zip(old_start, old_day, first, last)],
    }, columns=DIFFERENCE_COLUMNS)
