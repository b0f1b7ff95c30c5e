"""`adjust`: a manual debit (> 0) or credit (< 0) of a customer, once per idempotency key
(SPEC section 9, docs/ledger.md)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone

import sqlalchemy as sa

from billing_jobs.core.errors import UsageError
from billing_jobs.core.vocab import KeySpace, LedgerEntry, LineKind, LineStatus, correction_key
from billing_jobs.corrections.rows import Written, write
from billing_jobs.store import ledger
from billing_jobs.store.db import db_errors, read_connection


def adjust(engine: sa.Engine, customer_id: str, amount_micros: int, reason: str,
           idempotency_key: str | None = None, post: bool = False,
           on: date | None = None) -> Written:
    """A manual debit (amount > 0) or credit (< 0). Simulate (default) returns the row only."""
    if not reason or not reason.strip():
        raise UsageError("adjust: --reason must say why")
    if amount_micros == 0:
        raise UsageError("adjust: --amount must not be 0")
    key = idempotency_key or correction_key(KeySpace.ADJUST, uuid.uuid4())
    day = on or datetime.now(timezone.utc).date()
    with db_errors(engine, "adjusting"), engine.begin() as conn:
        cust = conn.execute(sa.text("SELECT currency FROM customers WHERE customer_id = :c"),
                            {"c": customer_id}).first()
        if cust is None:
            raise UsageError(f"adjust: customer {customer_id!r} does not exist")
        row = dict(run_id=correction_key(KeySpace.ADJUST, key), run_date=day,
                   customer_id=customer_id, assignment_id=None, package_id=None,
                   kind=LineKind.ADJUSTMENT, period_start=day, period_end=None, quantity=0,
                   unit_price_micros=0, amount_micros=amount_micros, cost_micros=0,
                   currency=cust[0], auto_decrement=True, status=LineStatus.POSTED,
                   revision=0, entry=LedgerEntry.ADJUSTMENT, reason=reason.strip(),
                   reverses_run_id=None, idempotency_key=key)
        if not post:
            conn.rollback()
            return Written([row], [False])
        ledger.lock_customers(conn, [customer_id])
        written = write(conn, [row], 1)
    if not written[0]:
        with read_connection(engine) as conn:
            old = conn.execute(sa.text("SELECT customer_id, amount_micros FROM ledger "
                                       "WHERE idempotency_key = :k"), {"k": key}).first()
        if old is not None and (old[0] != customer_id or int(old[1]) != amount_micros):
            raise UsageError(f"adjust: key {key!r} was already used for customer {old[0]} "
                             f"amount {int(old[1])} micros; nothing written")
    return Written([row], written)
