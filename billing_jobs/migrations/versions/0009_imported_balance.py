"""The balance value each customer's last import set (#30 point 3).

A customers.csv `balance` is the opening balance the carrier's system exported, not the balance
billing moved since. Re-importing a file is compared with the value the last import set
(`customers.imported_balance_micros`), never with `balance_micros`: an unchanged file is a
no-op, a changed value is refused or, with `--set-balances`, adjusted by exactly the change
(ingest/balances.py).

The backfill gives each existing customer the value its imports left:

* a customer no `--set-balances` import ever adjusted: `opening_balance_micros` (the balance
  its first import set; a re-import could not change it);
* a customer an earlier `--set-balances` import adjusted (ledger rows of run `import:<hash>`,
  entry `adjustment`): the balance that import set, i.e. the file's value. That import moved the
  balance from the stored value to the file's value in one transaction, so right after its row
  the ledger explained the file's value: opening - SUM(posted rows up to and including the
  latest import row, by ledger_id). (The row's reason holds the value only rounded to the
  currency's minor unit, so it is not used.)

NULL (a customer written by another tool than the import) reads as the opening balance.
On SQLite the value guard of 0005 is extended to the new column (an integer or NULL).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_jobs.migrations.sqlite_rebuild import replace_guards

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COMMENT = ("balance value the customer's last import set, micro-units (NULL: the opening "
           "balance); a re-import is compared with this, not with the balance")

_LAST_IMPORT_ROW = (
    "SELECT MAX(i.ledger_id) FROM ledger i WHERE i.customer_id = customers.customer_id "
    "AND i.run_id LIKE 'import:%' AND i.entry = 'adjustment' AND i.status = 'posted'")

BACKFILL = (
    "UPDATE customers SET imported_balance_micros = opening_balance_micros - COALESCE(("
    "SELECT SUM(l.amount_micros) FROM ledger l WHERE l.customer_id = customers.customer_id "
    f"AND l.status = 'posted' AND l.ledger_id <= ({_LAST_IMPORT_ROW})), 0)"
)

#: the 0005 guard of customers, extended with the new column
_GUARD_RULES = [
    ("balance_micros", "an integer number of micro-units", "typeof({c}) <> 'integer'"),
    ("opening_balance_micros", "an integer number of micro-units", "typeof({c}) <> 'integer'"),
    ("imported_balance_micros", "empty or an integer number of micro-units",
     "{c} IS NOT NULL AND typeof({c}) <> 'integer'"),
]


def upgrade() -> None:
    op.add_column("customers", sa.Column("imported_balance_micros", sa.BigInteger,
                                         nullable=True, comment=COMMENT))
    op.execute(BACKFILL)
    if op.get_bind().dialect.name == "sqlite":
        replace_guards("customers", _GUARD_RULES)


def downgrade() -> None:  # pragma: no cover
    if op.get_bind().dialect.name == "sqlite":
        replace_guards("customers", _GUARD_RULES[:2])
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("imported_balance_micros")
