"""What is due on one billing date (SPEC section 4): setup, recurring, prorated and
minimum-spend lines, vectorised over the assignment book."""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing_jobs.calc.book import Book
from billing_jobs.calc.calendar import (
    OPEN,
    from_days,
    period_ending_on,
    period_opened_on,
    start_stub,
)
from billing_jobs.core.frames import DUE_LINE_COLUMNS, empty_frame
from billing_jobs.core.money import prorate_round
from billing_jobs.core.vocab import DUE_KINDS, LineKind
from billing_jobs.calc.usage import SpendIndex

#: a line kind's place in the one order of due lines
KIND_ORDER = {kind: i for i, kind in enumerate(DUE_KINDS)}


def _lines(book: Book, idx: np.ndarray, kind: LineKind, run_day: int, period_start, period_end,
           unit_col: str, cost_col: str, days, full, minus=0) -> pd.DataFrame:
    rows = book.rows.iloc[idx]
    unit = rows[unit_col].to_numpy(dtype="int64")
    unit_cost = rows[cost_col].to_numpy(dtype="int64")
    qty = book.qty[idx]
    digits = book.digits[idx]
    return pd.DataFrame({
        "run_date": from_days(np.full(len(idx), run_day, dtype="int64")),
        "customer_id": rows["customer_id"].to_numpy(),
        "assignment_id": rows["assignment_id"].to_numpy(),
        "package_id": rows["package_id"].to_numpy(),
        "kind": kind,
        "period_start": from_days(period_start),
        "period_end": from_days(period_end),
        "quantity": qty,
        "unit_price": unit,
        "amount": prorate_round(unit * qty, days, full, minus, digits),
        "cost": prorate_round(unit_cost * qty, days, full, 0, digits),
        "currency": rows["currency"].to_numpy(),
        "auto_decrement": rows["auto_decrement"].to_numpy(dtype=bool),
    })


def due_lines_on(book: Book, run_day: int, spend_index: SpendIndex | None,
                 customer_codes: np.ndarray) -> pd.DataFrame:
    """All lines due on `run_day` (a day number), one kind after another. `customer_codes[i]`
    is the code of book row i's customer in `spend_index` (-1 when the customer has no calls)."""
    return sort_lines([
        _setup_lines(book, run_day),
        _recurring_lines(book, run_day),
        _prorated_lines(book, run_day),
        _minimum_spend_lines(book, run_day, spend_index, customer_codes),
    ])


def _setup_lines(book: Book, run_day: int) -> pd.DataFrame | None:
    """setup: on the start date, when there is a setup price or cost."""
    setup_priced = (book.rows["setup_retail"].to_numpy(dtype="int64") > 0) | (
        book.rows["setup_cost"].to_numpy(dtype="int64") > 0)
    idx = np.flatnonzero((book.start == run_day) & setup_priced)
    if not idx.size:
        return None
    ones = np.ones(idx.size, dtype="int64")
    return _lines(book, idx, LineKind.SETUP, run_day, book.start[idx], np.full(idx.size, OPEN),
                  "setup_retail", "setup_cost", ones, ones)


def _recurring_lines(book: Book, run_day: int) -> pd.DataFrame | None:
    """recurring: run_day is a billing date of a package without minimum spend. Trailing
    proration (SPEC section 9): with prorate, a period cut by effective_end + 1 is charged
    kept days / days of the uncut period (rounded once, half up)."""
    today = period_opened_on(book.cal, np.full(len(book), run_day, dtype="int64"), book.eff_end)
    idx = np.flatnonzero(today.valid & ~book.minimum_spend)
    if not idx.size:
        return None
    pro = book.prorate[idx]
    days = np.where(pro, today.days[idx], 1).astype("int64")
    full = np.where(pro, today.full[idx], 1).astype("int64")
    return _lines(book, idx, LineKind.RECURRING, run_day, today.start[idx], today.end[idx],
                  "retail", "cost", days, full)


def _prorated_lines(book: Book, run_day: int) -> pd.DataFrame | None:
    """prorated: the start is not a billing date, prorate on, no minimum spend."""
    stub = start_stub(book.cal, book.eff_end)
    idx = np.flatnonzero((book.start == run_day) & stub.valid & book.prorate & ~book.minimum_spend)
    if not idx.size:
        return None
    return _lines(book, idx, LineKind.PRORATED, run_day, stub.start[idx], stub.end[idx],
                  "retail", "cost", stub.days[idx], stub.full[idx])


def _minimum_spend_lines(book: Book, run_day: int, spend_index: SpendIndex | None,
                         customer_codes: np.ndarray) -> pd.DataFrame | None:
    """minimum spend: a period that held yesterday ends today; the customer's spend over it
    (net of free-minute credits) is subtracted before rounding."""
    ms = np.flatnonzero(book.minimum_spend)
    if not ms.size:
        return None
    sub = book.cal.subset(ms)
    held = period_ending_on(sub, run_day, book.eff_end[ms], book.prorate[ms])
    ends = held.valid
    idx = ms[ends]
    if not idx.size:
        return None
    ps, pe = held.start[ends], held.end[ends]
    codes = customer_codes[idx]
    spend = np.zeros(idx.size, dtype="int64")
    if spend_index is not None:
        known = codes >= 0
        spend[known] = spend_index.spend(codes[known], ps[known], pe[known])
    return _lines(book, idx, LineKind.MINIMUM_SPEND, run_day, ps, pe, "retail", "cost",
                  held.days[ends], held.full[ends], spend)


def sort_lines(parts: list[pd.DataFrame | None]) -> pd.DataFrame:
    """Due lines in their one order: customer, assignment, kind (KIND_ORDER), period start."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return empty_frame(DUE_LINE_COLUMNS)
    lines = pd.concat(parts, ignore_index=True)
    lines["_k"] = lines["kind"].map(KIND_ORDER)
    lines = lines.sort_values(["customer_id", "assignment_id", "_k", "period_start"], kind="stable")
    return lines.drop(columns="_k").reset_index(drop=True)[DUE_LINE_COLUMNS]
