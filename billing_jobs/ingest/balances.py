"""Re-importing customers never moves money by itself (issues #11 and #30 point 3, SPEC 9).

A customers.csv `balance` is the value the carrier's system exported: the opening balance, not
the balance billing has moved since. So a row for a customer already in the database is compared
with the value the customer's **last import set** (`customers.imported_balance_micros`, migration
0009; NULL reads as the opening balance), never with `balance_micros`:

* unchanged: nothing happens (no refusal, no ledger row) - whatever billing posted since stays;
* changed, without `--set-balances`: the whole file is refused (nothing written), naming each
  such row, customer, the file's value and the value the last import set;
* changed, with `--set-balances`: per changed customer one `adjustment` ledger row of exactly
  the change (ledger amount = last imported value - file value: a raise credits), the balance
  moved by that row and the imported value set to the file's, in the import's transaction.

Exactly once: the update of the customer row is a compare-and-set on the imported value (a
concurrent import of the same customer waits for the row lock, then finds the value changed and
the file fails, nothing written), and the row's idempotency key `import:set:<customer>:<n>`
(n = the customer's import adjustments so far, this one included) is unique in the ledger. The
same file imported again finds nothing changed and writes nothing; yesterday's file after
today's writes the difference back (what an operator importing it asks for).

The upsert itself never writes the balance, opening balance or imported balance of an existing
customer (ingest/write.py): a post committing meanwhile is never overwritten, and
    balance_micros = opening_balance_micros - SUM(posted ledger amount_micros)
holds after every import.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.errors import ImportFailed
from billing_jobs.core.money import MICRO_DIGITS, format_micros, format_minor, minor_digits
from billing_jobs.core.vocab import KeySpace, LedgerEntry, LineKind, LineStatus, correction_key
from billing_jobs.store.tables import customers as customers_t
from billing_jobs.store.tables import ledger as ledger_t

_SHOWN = 5
_IDS_PER_QUERY = 500


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def money(micros: int, currency: str) -> str:
    """The amount in the currency's minor unit ('10.00'), or exactly when it has more digits."""
    micros = int(micros)
    if micros % 10 ** (MICRO_DIGITS - minor_digits(currency)) == 0:
        return format_minor(micros, currency)
    return format_micros(micros)


@dataclass(frozen=True)
class BalanceChange:
    """One existing customer whose `balance` in the file differs from the value its last import
    set. `key` is the idempotency key of the adjustment row written for it (None: not written)."""

    file: str
    row: int
    customer_id: str
    currency: str
    imported_micros: int  # the value the customer's last import set
    file_micros: int  # the value in this file
    key: str | None = None

    @property
    def change_micros(self) -> int:
        """How much the balance moves (> 0: raised); the ledger row's amount is its negation."""
        return self.file_micros - self.imported_micros

    def described(self) -> str:
        """'customer 'C1' (row 3): last import set 100.00, file 110.00'."""
        return (f"customer {self.customer_id!r} (row {self.row}): last import set "
                f"{money(self.imported_micros, self.currency)}, file "
                f"{money(self.file_micros, self.currency)}")

    def sentence(self) -> str:
        """What the CLI prints for a change written by --set-balances."""
        sign = "+" if self.change_micros > 0 else ""
        return (f"{self.file} row {self.row}: customer {self.customer_id!r} balance adjusted by "
                f"{sign}{money(self.change_micros, self.currency)} {self.currency} (last import "
                f"set {money(self.imported_micros, self.currency)}, file "
                f"{money(self.file_micros, self.currency)}; ledger adjustment {self.key})")


def _changed(conn: sa.Connection, frame: pd.DataFrame, name: str) -> list[BalanceChange]:
    """The file's existing customers whose balance differs from the value their last import set."""
    imported = sa.func.coalesce(customers_t.c.imported_balance_micros,
                                customers_t.c.opening_balance_micros)
    stored = pd.DataFrame(
        conn.execute(sa.select(customers_t.c.customer_id, customers_t.c.currency,
                               imported)).all(),
        columns=["customer_id", "stored_currency", "imported"])
    if stored.empty or frame.empty:
        return []
    rows = frame[["customer_id", "balance"]].rename_axis("row").reset_index()
    both = rows.merge(stored, on="customer_id", how="inner")
    changed = both[both["balance"].astype("int64") != both["imported"].astype("int64")]
    return [BalanceChange(name, int(r.row), str(r.customer_id), str(r.stored_currency),
                          int(r.imported), int(r.balance))
            for r in changed.sort_values("row").itertuples()]


def _import_counts(conn: sa.Connection, ids: list[str]) -> dict[str, int]:
    """Per customer, its import adjustment rows so far (the customer_id index finds them)."""
    counts: dict[str, int] = {}
    query = (sa.select(ledger_t.c.customer_id, sa.func.count())
             .where(ledger_t.c.customer_id.in_(sa.bindparam("ids", expanding=True)),
                    ledger_t.c.run_id.like(f"{KeySpace.IMPORT}:%"),
                    ledger_t.c.entry == LedgerEntry.ADJUSTMENT)
             .group_by(ledger_t.c.customer_id))
    for i in range(0, len(ids), _IDS_PER_QUERY):
        counts.update(conn.execute(query, {"ids": ids[i:i + _IDS_PER_QUERY]}).all())
    return {c: int(n) for c, n in counts.items()}


def existing_balance_rule(conn: sa.Connection, frame: pd.DataFrame, path: Path,
                          set_balances: bool) -> list[BalanceChange]:
    """Refuse, or with `set_balances` adjust, the existing customers of `frame` whose balance
    differs from the value their last import set; return the changes written (none: [])."""
    name = path.name
    changed = _changed(conn, frame, name)
    if not changed:
        return []
    if not set_balances:
        shown = "; ".join(c.described() for c in changed[:_SHOWN])
        more = f" (and {len(changed) - _SHOWN} more)" if len(changed) > _SHOWN else ""
        raise ImportFailed(
            f"{name}: {len(changed)} existing customer(s) whose balance in the file differs from "
            f"the value their last import set: {shown}{more}; an import sets a balance only "
            "through the ledger - re-run with --set-balances to adjust each of these customers "
            "by the difference (what billing posted since is kept)")
    # compare-and-set first: on PostgreSQL this locks the customer rows, so a concurrent import
    # of the same customers waits, then finds their imported value changed and fails
    result = conn.execute(
        sa.update(customers_t)
        .where(customers_t.c.customer_id == sa.bindparam("c"),
               sa.func.coalesce(customers_t.c.imported_balance_micros,
                                customers_t.c.opening_balance_micros) == sa.bindparam("old"))
        .values(balance_micros=customers_t.c.balance_micros + sa.bindparam("change"),
                imported_balance_micros=sa.bindparam("new")),
        [{"c": c.customer_id, "old": c.imported_micros, "new": c.file_micros,
          "change": c.change_micros} for c in changed])
    if result.rowcount != len(changed):
        raise ImportFailed(
            f"{name}: the balance another import set for {len(changed) - result.rowcount} of "
            f"these customer(s) changed while this import ran; nothing written - run it again")
    counts = _import_counts(conn, [c.customer_id for c in changed])
    digest = file_hash(path)
    now = datetime.now(timezone.utc)
    today = now.date()
    written = [replace(c, key=correction_key(KeySpace.IMPORT, "set", c.customer_id,
                                             counts.get(c.customer_id, 0) + 1))
               for c in changed]
    conn.execute(ledger_t.insert(), [
        dict(run_id=correction_key(KeySpace.IMPORT, digest[:16]), run_date=today,
             customer_id=c.customer_id, assignment_id=None, package_id=None,
             kind=LineKind.ADJUSTMENT, period_start=today,
             period_end=None, quantity=0, unit_price_micros=0,
             # balance = opening - sum(amount): a raise of the balance is a credit (< 0)
             amount_micros=-c.change_micros, cost_micros=0,
             currency=c.currency, auto_decrement=True, status=LineStatus.POSTED,
             posted_at=now, revision=0, entry=LedgerEntry.ADJUSTMENT,
             reason=f"import of {name} row {c.row}: balance set to "
                    f"{money(c.file_micros, c.currency)} (last import set "
                    f"{money(c.imported_micros, c.currency)})",
             idempotency_key=c.key)
        for c in written])
    return written
