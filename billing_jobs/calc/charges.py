"""What is due on one billing date (SPEC section 4): setup, recurring, prorated and
minimum-spend lines, vectorised over the assignment book."""

from __future__ import annotations

import dataclasses

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
from billing_jobs.calc.terms import Priced
from billing_jobs.core.frames import DUE_LINE_COLUMNS, empty_frame
from billing_jobs.core.money import prorate_round
from billing_jobs.core.vocab import DUE_KINDS, LineKind
from billing_jobs.calc.usage import SpendIndex

#: a line kind's place in the one order of due lines
KIND_ORDER = {kind: i for i, kind in enumerate(DUE_KINDS)}


def _frame(book: Book, idx: np.ndarray, kind: LineKind, run_day: int, period_start, period_end,
           terms: Priced, unit, amount, cost) -> pd.DataFrame:
    """Due lines of book rows `idx` under `terms` (customer, package, quantity)."""
    rows = book.rows.iloc[idx]
    return pd.DataFrame({
        "run_date": from_days(np.full(len(idx), run_day, dtype="int64")),
        "customer_id": terms.customer_id,
        "assignment_id": rows["assignment_id"].to_numpy(),
        "package_id": terms.package_id,
        "kind": kind,
        "period_start": from_days(period_start),
        "period_end": from_days(period_end),
        "quantity": terms.qty,
        "unit_price": np.asarray(unit, dtype="int64"),
        "amount": np.asarray(amount, dtype="int64"),
        "cost": np.asarray(cost, dtype="int64"),
        "currency": rows["currency"].to_numpy(),
        "auto_decrement": rows["auto_decrement"].to_numpy(dtype=bool),
    })


def _lines(book: Book, idx: np.ndarray, kind: LineKind, run_day: int, period_start, period_end,
           terms: Priced, setup: bool, days, full, minus=0) -> pd.DataFrame:
    unit = terms.setup_retail if setup else terms.retail
    unit_cost = terms.setup_cost if setup else terms.cost
    digits = book.digits[idx]
    return _frame(book, idx, kind, run_day, period_start, period_end, terms, unit,
                  prorate_round(unit * terms.qty, days, full, minus, digits),
                  prorate_round(unit_cost * terms.qty, days, full, 0, digits))


def due_lines_on(book: Book, run_day: int, spend_index: SpendIndex | None,
                 customer_codes: np.ndarray) -> pd.DataFrame:
    """All lines due on `run_day` (a day number), one kind after another. `customer_codes[i]`
    is the code of book row i's customer in `spend_index` (-1 when the customer has no calls);
    a customer a change moved the assignment to has its code in `book.terms`."""
    return sort_lines([
        _setup_lines(book, run_day),
        _recurring_lines(book, run_day),
        _prorated_lines(book, run_day),
        _minimum_spend_lines(book, run_day, spend_index),
        *_change_lines(book, run_day),
    ])


def _setup_lines(book: Book, run_day: int) -> pd.DataFrame | None:
    """setup: on the start date, when there is a setup price or cost (priced on the start)."""
    idx = np.flatnonzero(book.start == run_day)
    terms = book.terms.priced(idx, run_day)
    priced = (terms.setup_retail > 0) | (terms.setup_cost > 0)
    idx = idx[priced]
    if not idx.size:
        return None
    ones = np.ones(idx.size, dtype="int64")
    return _lines(book, idx, LineKind.SETUP, run_day, book.start[idx], np.full(idx.size, OPEN),
                  _take(terms, priced), True, ones, ones)


def _recurring_lines(book: Book, run_day: int) -> pd.DataFrame | None:
    """recurring: run_day is a billing date of a package without minimum spend, priced with the
    terms in force on it. Trailing proration (SPEC section 9): with prorate, a period cut by
    effective_end + 1 is charged kept days / days of the uncut period (rounded once, half up).
    A later cancel never reprices it (SPEC 10: the period stands as billed, the cancel credits)."""
    today = period_opened_on(book.cal, np.full(len(book), run_day, dtype="int64"), book.eff_end)
    idx = np.flatnonzero(today.valid & ~book.minimum_spend & (run_day < book.stop))
    if not idx.size:
        return None
    terms = book.terms.priced(idx, run_day)
    pro = terms.prorate
    days = np.where(pro, today.days[idx], 1).astype("int64")
    full = np.where(pro, today.full[idx], 1).astype("int64")
    end = np.where(pro, today.end[idx], np.minimum(today.end[idx], book.stop[idx]))
    return _lines(book, idx, LineKind.RECURRING, run_day, today.start[idx], end,
                  terms, False, days, full)


def _prorated_lines(book: Book, run_day: int) -> pd.DataFrame | None:
    """prorated: the start is not a billing date, prorate on, no minimum spend."""
    stub = start_stub(book.cal, book.eff_end)
    idx = np.flatnonzero((book.start == run_day) & stub.valid & ~book.minimum_spend)
    terms = book.terms.priced(idx, run_day)
    idx = idx[terms.prorate]
    if not idx.size:
        return None
    return _lines(book, idx, LineKind.PRORATED, run_day, stub.start[idx], stub.end[idx],
                  _take(terms, terms.prorate), False, stub.days[idx], stub.full[idx])


def _minimum_spend_lines(book: Book, run_day: int, spend_index: SpendIndex | None
                         ) -> pd.DataFrame | None:
    """minimum spend: a period that held yesterday ends today (a cancel ends it on its day);
    the customer's spend over it (net of free-minute credits) is subtracted before rounding.

    A period a change split (SPEC 10) commits the sum over its pieces of each piece's terms x
    its days / days of the uncut period (priced on the period's first day), and spends the calls
    of the customer holding each piece: the sum is exact (whole micros + remainder / days) and
    rounded once with the shortfall."""
    ms = np.flatnonzero(book.minimum_spend)
    if not ms.size:
        return None
    sub = book.cal.subset(ms)
    cut = np.minimum(book.eff_end[ms], book.stop[ms] - 1)
    held = period_ending_on(sub, run_day, cut, book.prorate[ms])
    ends = held.valid
    idx = ms[ends]
    if not idx.size:
        return None
    ps, pe, full = held.start[ends], held.end[ends], held.full[ends]
    parent, a, b = book.terms.pieces(idx, ps, pe)
    piece = book.terms.priced(idx[parent], a, ps[parent])
    spent = np.zeros(parent.size, dtype="int64")
    if spend_index is not None:
        known = piece.customer_code >= 0
        spent[known] = spend_index.spend(piece.customer_code[known], a[known], b[known])
    retail_w, retail_r = _exact_sum(piece.retail * piece.qty, b - a, full, parent, idx.size)
    cost_w, cost_r = _exact_sum(piece.cost * piece.qty, b - a, full, parent, idx.size)
    spend = np.zeros(idx.size, dtype="int64")
    np.add.at(spend, parent, spent)
    digits = book.digits[idx]
    last = book.terms.priced(idx, pe - 1, ps)  # the terms holding the period's last day
    ones = np.ones(idx.size, dtype="int64")
    return _frame(book, idx, LineKind.MINIMUM_SPEND, run_day, ps, pe, last, last.retail,
                  prorate_round(retail_r, ones, full, spend - retail_w, digits),
                  prorate_round(cost_r, ones, full, -cost_w, digits))


def _exact_sum(full_micros, days, period_days, parent, n):
    """sum over pieces of full x days / period_days (one period_days per parent) exactly, as
    (whole micros, remainder < period_days): the value is whole + remainder / period_days."""
    p = period_days[parent]
    q, r = np.divmod(np.asarray(full_micros, dtype="int64"), p)
    extra, rem = np.divmod(r * days, p)
    whole = np.zeros(n, dtype="int64")
    rest = np.zeros(n, dtype="int64")
    np.add.at(whole, parent, q * days + extra)
    np.add.at(rest, parent, rem)
    carry, rest = np.divmod(rest, period_days)
    return whole + carry, rest


def _change_lines(book: Book, run_day: int) -> list[pd.DataFrame]:
    """SPEC 10: on a day D that splits a period [s, e) of a prorating package (not a
    minimum-spend one), the old terms' unused part is credited and the new terms' rest
    charged, each x (e - D) / days of the uncut period, both priced on s; a cancel writes
    only the credit. Keyed (assignment, kind, D); nothing when the terms are the same."""
    t = book.terms
    at = t.splits_on(run_day)
    at = at[~book.minimum_spend[t.split_row[at]]]
    if not at.size:
        return []
    idx, s, e, full = t.split_row[at], t.split_start[at], t.split_end[at], t.split_full[at]
    old = t.priced(idx, run_day - 1, s)
    new = t.priced(idx, run_day, s)
    cancelled = run_day >= book.stop[idx]
    same = ((old.customer_id == new.customer_id) & (old.package_id == new.package_id)
            & (old.qty == new.qty) & (old.retail == new.retail) & (old.cost == new.cost))
    days = e - run_day
    digits = book.digits[idx]
    start = np.full(idx.size, run_day, dtype="int64")
    out = []
    k = np.flatnonzero(cancelled | ~same)
    if k.size:
        o = _take(old, k)
        out.append(_frame(book, idx[k], LineKind.CHANGE_CREDIT, run_day, start[k], e[k], o,
                          o.retail,
                          -prorate_round(o.retail * o.qty, days[k], full[k], 0, digits[k]),
                          -prorate_round(o.cost * o.qty, days[k], full[k], 0, digits[k])))
    k = np.flatnonzero(~cancelled & ~same)
    if k.size:
        n = _take(new, k)
        out.append(_frame(book, idx[k], LineKind.CHANGE_CHARGE, run_day, start[k], e[k], n,
                          n.retail,
                          prorate_round(n.retail * n.qty, days[k], full[k], 0, digits[k]),
                          prorate_round(n.cost * n.qty, days[k], full[k], 0, digits[k])))
    return out


def _take(terms: Priced, sel) -> Priced:
    return Priced(**{f.name: getattr(terms, f.name)[sel] for f in dataclasses.fields(terms)})


def sort_lines(parts: list[pd.DataFrame | None]) -> pd.DataFrame:
    """Due lines in their one order: customer, assignment, kind (KIND_ORDER), period start."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return empty_frame(DUE_LINE_COLUMNS)
    lines = pd.concat(parts, ignore_index=True)
    lines["_k"] = lines["kind"].map(KIND_ORDER)
    lines = lines.sort_values(["customer_id", "assignment_id", "_k", "period_start"], kind="stable")
    return lines.drop(columns="_k").reset_index(drop=True)[DUE_LINE_COLUMNS]
