"""Import never changes an existing customer's balance silently (issue #11, SPEC section 9).

A customers.csv row for a customer already in the database whose `balance` differs from the
stored `balance_micros` is refused (the whole file, nothing written), unless the import is
run with `--set-balances`: then the difference is written as one manual adjustment ledger
row per customer and the balance moved by exactly that row, in the import's transaction, so
that
    balance_micros = opening_balance_micros - SUM(posted ledger amount_micros)
holds after every import. The upsert itself never writes the balance of an existing customer
(`balance_micros` is insert-only, like `opening_balance_micros`): a post committing between
this check and the upsert can never be overwritten. The adjustment's idempotency key is
derived from the file's content hash and the customer id: the same file can never write
the same adjustment twice.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.money import format_minor
from billing_jobs.core.errors import ImportFailed
from billing_jobs.core.vocab import KeySpace, LedgerEntry, LineKind, LineStatus, correction_key
from billing_jobs.store.tables import customers as customers_t
from billing_jobs.store.tables import ledger as ledger_t

_SHOWN = 5


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def existing_balance_rule(conn: sa.Connection, frame: pd.DataFrame, path: Path,
                          set_balances: bool) -> int:
    """Refuse or adjust changed balances of existing customers; return adjustments written."""
    stored = pd.DataFrame(
        conn.execute(sa.select(customers_t.c.customer_id, customers_t.c.currency,
                               customers_t.c.balance_micros)).all(),
        columns=["customer_id", "stored_currency", "stored"])
    if stored.empty or frame.empty:
        return 0
    rows = frame[["customer_id", "balance"]].rename_axis("row").reset_index()
    both = rows.merge(stored, on="customer_id", how="inner")
    changed = both[both["balance"].astype("int64") != both["stored"].astype("int64")]
    if changed.empty:
        return 0
    name = path.name
    if not set_balances:
        shown = "; ".join(
            f"row {r.row} customer {r.customer_id!r}: file balance "
            f"{format_minor(r.balance, r.stored_currency)}, stored "
            f"{format_minor(r.stored, r.stored_currency)}"
            for r in changed.head(_SHOWN).itertuples())
        more = f" (and {len(changed) - _SHOWN} more)" if len(changed) > _SHOWN else ""
        raise ImportFailed(
            f"{name}: {len(changed)} existing customer(s) with a balance different from the "
            f"stored one: {shown}{more}; balances change only through the ledger - re-run "
            "with --set-balances to write each difference as an adjustment")
    digest = file_hash(path)
    now = datetime.now(timezone.utc)
    today = now.date()
    values = [
        dict(run_id=correction_key(KeySpace.IMPORT, digest[:16]), run_date=today,
             customer_id=r.customer_id, assignment_id=None, package_id=None,
             kind=LineKind.ADJUSTMENT, period_start=today,
             period_end=None, quantity=0, unit_price_micros=0,
             # balance = opening - sum(amount): moving it from stored to the file's value
             amount_micros=int(r.stored) - int(r.balance), cost_micros=0,
             currency=r.stored_currency, auto_decrement=True, status=LineStatus.POSTED,
             posted_at=now, revision=0, entry=LedgerEntry.ADJUSTMENT,
             reason=f"import of {name}: balance set to "
                    f"{format_minor(r.balance, r.stored_currency)}",
             idempotency_key=correction_key(KeySpace.IMPORT, digest, r.customer_id))
        for r in changed.itertuples()
    ]
    keys = [v["idempotency_key"] for v in values]
    done = set(conn.execute(sa.select(ledger_t.c.idempotency_key)
                            .where(ledger_t.c.idempotency_key.in_(keys))).scalars())
    if done:
        again = sorted(k.rsplit(":", 1)[1] for k in done)
        raise ImportFailed(
            f"{name}: this file already set the balance of {len(again)} customer(s) "
            f"({', '.join(again[:_SHOWN])}) and their balance has moved since; "
            "an import file sets a balance once - export a new file to set it again")
    conn.execute(ledger_t.insert(), values)
    conn.execute(sa.text("UPDATE customers SET balance_micros = balance_micros - :a "
                         "WHERE customer_id = :c"),
                 [{"a": v["amount_micros"], "c": v["customer_id"]} for v in values])
    return len(values)
