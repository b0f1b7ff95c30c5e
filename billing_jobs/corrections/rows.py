"""What the correction commands share: a correction row, and writing rows once.

Corrections are new ledger rows, never edits (SPEC section 9, docs/ledger.md). Each row carries
an idempotency key (`core.vocab.correction_key`), so a retry or a concurrent twin writes
nothing; the rows a transaction inserted move the balances in the same transaction
(store/ledger.py), so `balance = opening - SUM(posted ledger)` holds after each command.
Fault injection: BILLING_CRASH_AT=`correct_mid:<n>` SIGKILLs after the n-th group of inserts,
before its balance update and the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.errors import BillingError
from billing_jobs.core.faults import crash_point
from billing_jobs.core.vocab import LineStatus
from billing_jobs.store import ledger
from billing_jobs.store.tables import stored_name


@dataclass
class Written:
    """What a correction command did: the rows (as dicts) and which of them this call wrote."""

    rows: list[dict]
    written: list[bool]
    #: what rebill did to free-minute grants, one line each (corrections/grant_moves.py)
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.written)


def line_fields(src: Mapping) -> dict:
    """The fields of a correction row taken from the line it corrects: a ledger row, or a
    computed line in ledger names (`ledger_records`). Its cost is not corrected (0)."""
    auto = bool(src["auto_decrement"])
    return dict(
        customer_id=src["customer_id"], assignment_id=src["assignment_id"],
        package_id=src["package_id"], kind=src["kind"], period_start=src["period_start"],
        period_end=src["period_end"], quantity=int(src["quantity"] or 0),
        unit_price_micros=int(src["unit_price_micros"] or 0), cost_micros=0,
        currency=src["currency"], auto_decrement=auto,
        status=LineStatus.POSTED if auto else LineStatus.INVOICED)


def period_overlaps(start, end, first, last) -> bool:
    """The period [start, end) overlaps the days first..last (dates); an open end (a setup line,
    a grant without end) is the period of its start day only."""
    if end is None:
        return first <= start <= last
    return start <= last and end > first


_DATES = ("run_date", "period_start", "period_end")


def dated_records(frame: pd.DataFrame) -> list[dict]:
    """The rows of a computed frame (lines, grants) as dicts, their dates as `date` (None for
    an open end)."""
    frame = frame.copy()
    for column in _DATES:
        if column in frame.columns:
            days = frame[column].dt.date.astype(object)
            frame[column] = days.where(frame[column].notna(), None)
    return frame.to_dict("records")


def ledger_records(lines: pd.DataFrame) -> list[dict]:
    """Computed lines as dicts in the ledger's names (money columns `..._micros`), dates as
    `date` (None for an open end)."""
    return dated_records(lines.rename(columns=stored_name))


def write(conn: sa.Connection, rows: list[dict], n: int) -> list[bool]:
    """Insert `rows` once each (store/ledger.py) and debit the posted ones this call inserted,
    in the caller's transaction, whose customers it locked; return which rows it inserted."""
    written = ledger.insert_rows(conn, rows)
    crash_point("correct_mid", n)
    ledger.debit(conn, ledger.posted_debits(r for r, w in zip(rows, written) if w), _refused,
                 must_exist=True)
    return written


def _refused(reason: str) -> BillingError:
    return BillingError(f"{reason}; nothing written")
