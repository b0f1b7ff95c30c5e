"""Money columns named with their unit; the ledger explains every balance.

* Every money column gets the suffix `_micros` (it holds integer micro-units, 1e-6 of the
  currency unit), so `SELECT balance_micros` can never be read as an amount.
* customers.opening_balance_micros: the balance at first import. Existing databases get
  `balance + posted ledger sum`, so the invariant
  `balance_micros = opening_balance_micros - SUM(posted ledger amount_micros)` holds at once.
* ledger: revisions per posting key (corrections, reversals, re-posts are new rows, never
  edits), signed amounts for credits and corrections, manual adjustments (no assignment),
  idempotency keys, reasons.

Self-contained on purpose (does not import tables.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RENAMES = {
    "customers": ["balance"],
    "packages": ["cost", "retail", "setup_cost", "setup_retail"],
    "usage": ["charge"],
    "ledger": ["unit_price", "amount", "cost"],
}
KINDS = "'setup', 'recurring', 'prorated', 'minimum_spend', 'free_minutes_credit', 'adjustment'"
ENTRIES = "'charge', 'correction', 'reversal', 'adjustment'"
MONEY_CHECK = ("entry <> 'charge' OR kind = 'free_minutes_credit' OR "
               "(amount_micros >= 0 AND cost_micros >= 0)")
NEW_COLUMNS = ["revision", "entry", "reason", "reverses_run_id", "idempotency_key"]


def _ledger_v2(name: str) -> sa.Table:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("ledger_id", big_id, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("run_date", sa.Date, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("assignment_id", sa.Text, nullable=True),
        sa.Column("package_id", sa.Text, nullable=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=True),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("unit_price_micros", sa.BigInteger, nullable=False),
        sa.Column("amount_micros", sa.BigInteger, nullable=False),
        sa.Column("cost_micros", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("auto_decrement", sa.Boolean, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("entry", sa.Text, nullable=False, server_default="charge"),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("reverses_run_id", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("ledger_id", name="pk_ledger"),
        sa.UniqueConstraint("assignment_id", "kind", "period_start", "revision",
                            name="uq_ledger_assignment_id_kind_period_start_revision"),
        sa.UniqueConstraint("idempotency_key", name="uq_ledger_idempotency_key"),
        sa.CheckConstraint("quantity >= 0", name="ck_ledger_quantity"),
        sa.CheckConstraint("unit_price_micros >= 0", name="ck_ledger_unit_price"),
        sa.CheckConstraint(MONEY_CHECK, name="ck_ledger_money"),
        sa.CheckConstraint(f"kind IN ({KINDS})", name="ck_ledger_kind"),
        sa.CheckConstraint(f"entry IN ({ENTRIES})", name="ck_ledger_entry"),
        sa.CheckConstraint("status IN ('posted', 'invoiced')", name="ck_ledger_status"),
        sa.CheckConstraint("period_end IS NULL OR period_end > period_start",
                           name="ck_ledger_period"),
    )


def upgrade() -> None:
    bind = op.get_bind()
    for table, columns in RENAMES.items():
        for column in columns:
            op.execute(f'ALTER TABLE "{table}" RENAME COLUMN "{column}" TO "{column}_micros"')
    op.add_column("customers", sa.Column(
        "opening_balance_micros", sa.BigInteger, nullable=False, server_default="0",
        comment="balance at first import, micro-units; balance = this - posted ledger"))
    op.execute(
        "UPDATE customers SET opening_balance_micros = balance_micros + coalesce(("
        "SELECT sum(l.amount_micros) FROM ledger l WHERE l.customer_id = customers.customer_id "
        "AND l.status = 'posted'), 0)"
    )
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite_ledger()
    else:
        _alter_pg_ledger()
    op.create_index("ix_ledger_run_id", "ledger", ["run_id"])


def _rebuild_sqlite_ledger() -> None:
    """SQLite cannot alter constraints: build the new table, copy, swap."""
    new = _ledger_v2("_ledger_v2")
    new.create(op.get_bind())
    old_cols = [c.name for c in new.columns if c.name not in NEW_COLUMNS]
    cols = ", ".join(old_cols)
    op.execute(f"INSERT INTO _ledger_v2 ({cols}) SELECT {cols} FROM ledger")
    op.execute("DROP TABLE ledger")
    op.execute("ALTER TABLE _ledger_v2 RENAME TO ledger")
    op.create_index("ix_ledger_customer_id_run_date", "ledger", ["customer_id", "run_date"])


def _alter_pg_ledger() -> None:
    op.alter_column("ledger", "assignment_id", nullable=True,
                    comment="NULL: customer-level adjustment")
    op.alter_column("ledger", "amount_micros", comment="micro-units, debit > 0, credit < 0")
    op.alter_column("ledger", "package_id", nullable=True)
    op.add_column("ledger", sa.Column(
        "revision", sa.BigInteger, nullable=False, server_default="0",
        comment="0 = original line of the posting key; 1.. = later rows for the key"))
    op.add_column("ledger", sa.Column("entry", sa.Text, nullable=False,
                                      server_default="charge"))
    for name in ("reason", "reverses_run_id", "idempotency_key"):
        op.add_column("ledger", sa.Column(name, sa.Text, nullable=True))
    op.drop_constraint("uq_ledger_assignment_id_kind_period_start", "ledger", type_="unique")
    for name in ("ck_ledger_quantity", "ck_ledger_money", "ck_ledger_kind"):
        op.drop_constraint(name, "ledger", type_="check")
    op.create_unique_constraint("uq_ledger_assignment_id_kind_period_start_revision", "ledger",
                                ["assignment_id", "kind", "period_start", "revision"])
    op.create_unique_constraint("uq_ledger_idempotency_key", "ledger", ["idempotency_key"])
    op.create_check_constraint("ck_ledger_quantity", "ledger", "quantity >= 0")
    op.create_check_constraint("ck_ledger_unit_price", "ledger", "unit_price_micros >= 0")
    op.create_check_constraint("ck_ledger_money", "ledger", MONEY_CHECK)
    op.create_check_constraint("ck_ledger_kind", "ledger", f"kind IN ({KINDS})")
    op.create_check_constraint("ck_ledger_entry", "ledger", f"entry IN ({ENTRIES})")


def downgrade() -> None:  # pragma: no cover - corrections cannot be folded back into 0001
    raise NotImplementedError("0002 is not reversible: restore a backup instead")
