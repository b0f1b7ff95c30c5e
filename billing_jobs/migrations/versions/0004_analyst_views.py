"""Readable views for analysts (#11): money as exact decimals next to the currency.

`v_balances` and `v_ledger` show every `*_micros` column as a decimal of the currency unit
(`balance` 87.660000 for balance_micros 87660000): on PostgreSQL an exact NUMERIC(24,6), on
SQLite exact text (SQLite has no exact decimal type; its NUMERIC arithmetic is binary floating
point, so the view formats the integer micros instead of dividing them).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LEDGER_MONEY = ("unit_price", "amount", "cost")


def _decimal(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"CAST(CAST({column} AS NUMERIC(24,6)) / 1000000 AS NUMERIC(24,6))"
    return (f"printf('%s%d.%06d', CASE WHEN {column} < 0 THEN '-' ELSE '' END, "
            f"abs({column}) / 1000000, abs({column}) % 1000000)")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute(
        "CREATE VIEW v_balances AS SELECT customer_id, name, currency, "
        f"{_decimal('balance_micros', dialect)} AS balance, "
        f"{_decimal('opening_balance_micros', dialect)} AS opening_balance "
        "FROM customers")
    money = ", ".join(f"{_decimal(c + '_micros', dialect)} AS {c}" for c in LEDGER_MONEY)
    op.execute(
        "CREATE VIEW v_ledger AS SELECT ledger_id, run_id, run_date, customer_id, "
        "assignment_id, package_id, kind, entry, revision, period_start, period_end, quantity, "
        f"{money}, currency, auto_decrement, status, posted_at, reason, reverses_run_id "
        "FROM ledger")


def downgrade() -> None:  # pragma: no cover
    op.execute("DROP VIEW IF EXISTS v_ledger")
    op.execute("DROP VIEW IF EXISTS v_balances")
