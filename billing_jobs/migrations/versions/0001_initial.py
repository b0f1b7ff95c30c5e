"""Initial schema: input tables, ledger, grants, runs.

Money columns are BIGINT micro-units (1e-6 of the currency unit): exact on every database.
Timestamps are timezone-aware and hold UTC. See billing_jobs/store/tables.py for the
reasons behind each constraint. This migration is self-contained on purpose (it does not
import tables.py), so later schema changes never rewrite history.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = "micro-units"


def _ts():
    return sa.DateTime(timezone=True)


def _big_id():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default="0",
                  comment="credit left, micro-units (1e-6); may go negative"),
        sa.PrimaryKeyConstraint("customer_id", name="pk_customers"),
    )
    op.create_table(
        "packages",
        sa.Column("package_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("cost", sa.BigInteger, nullable=False, comment=MONEY),
        sa.Column("retail", sa.BigInteger, nullable=False, comment=MONEY),
        sa.Column("setup_cost", sa.BigInteger, nullable=False, server_default="0", comment=MONEY),
        sa.Column("setup_retail", sa.BigInteger, nullable=False, server_default="0", comment=MONEY),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("frequency", sa.Text, nullable=False),
        sa.Column("frequency_match", sa.Text, nullable=True),
        sa.Column("free_minutes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("destination", sa.Text, nullable=True),
        sa.Column("minimum_spend", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("minimum_days", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("prorate", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("package_id", name="pk_packages"),
    )
    op.create_table(
        "assignments",
        sa.Column("assignment_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("package_id", sa.Text, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("end_date", sa.Date, nullable=True, comment="inclusive; NULL = open"),
        sa.Column("auto_decrement", sa.Boolean, nullable=False),
        sa.Column("free_minutes", sa.BigInteger, nullable=True,
                  comment="total minutes per period overriding package minutes x quantity"),
        sa.PrimaryKeyConstraint("assignment_id", name="pk_assignments"),
    )
    op.create_index("ix_assignments_customer_id", "assignments", ["customer_id"])
    op.create_table(
        "usage",
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("start_time", _ts(), nullable=False),
        sa.Column("destination", sa.Text, nullable=False, server_default=""),
        sa.Column("duration_s", sa.BigInteger, nullable=False),
        sa.Column("charge", sa.BigInteger, nullable=False, comment=MONEY),
        sa.PrimaryKeyConstraint("call_id", name="pk_usage"),
    )
    op.create_index("ix_usage_customer_id_start_time", "usage", ["customer_id", "start_time"])
    op.create_table(
        "ledger",
        sa.Column("ledger_id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("run_date", sa.Date, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("assignment_id", sa.Text, nullable=False),
        sa.Column("package_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=True, comment="exclusive; NULL = open"),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("unit_price", sa.BigInteger, nullable=False, comment=MONEY),
        sa.Column("amount", sa.BigInteger, nullable=False, comment="micro-units, debit > 0"),
        sa.Column("cost", sa.BigInteger, nullable=False, comment=MONEY),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("auto_decrement", sa.Boolean, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("posted_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("ledger_id", name="pk_ledger"),
        sa.UniqueConstraint("assignment_id", "kind", "period_start",
                            name="uq_ledger_assignment_id_kind_period_start"),
        sa.CheckConstraint("quantity >= 1", name="ck_ledger_quantity"),
        sa.CheckConstraint("unit_price >= 0 AND amount >= 0 AND cost >= 0", name="ck_ledger_money"),
        sa.CheckConstraint("kind IN ('setup', 'recurring', 'prorated', 'minimum_spend')",
                           name="ck_ledger_kind"),
        sa.CheckConstraint("status IN ('posted', 'invoiced')", name="ck_ledger_status"),
        sa.CheckConstraint("period_end IS NULL OR period_end > period_start", name="ck_ledger_period"),
    )
    op.create_index("ix_ledger_customer_id_run_date", "ledger", ["customer_id", "run_date"])
    op.create_table(
        "grants",
        sa.Column("grant_id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("run_date", sa.Date, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("assignment_id", sa.Text, nullable=False),
        sa.Column("package_id", sa.Text, nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=True, comment="exclusive; NULL = open"),
        sa.Column("destination", sa.Text, nullable=False, server_default=""),
        sa.Column("seconds", sa.BigInteger, nullable=False),
        sa.Column("granted_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("grant_id", name="pk_grants"),
        sa.UniqueConstraint("assignment_id", "period_start",
                            name="uq_grants_assignment_id_period_start"),
        sa.CheckConstraint("seconds >= 0", name="ck_grants_seconds"),
        sa.CheckConstraint("period_end IS NULL OR period_end > period_start", name="ck_grants_period"),
    )
    op.create_index("ix_grants_customer_id_period_start", "grants", ["customer_id", "period_start"])
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Text, nullable=False, comment="uuid4 text"),
        sa.Column("run_date", sa.Date, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("customer_filter", sa.Text, nullable=True,
                  comment="JSON list of customer ids; NULL = all customers"),
        sa.Column("started_by", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("counts", sa.Text, nullable=True, comment="JSON object"),
        sa.Column("totals", sa.Text, nullable=True, comment="JSON object"),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("code_version", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
        sa.CheckConstraint("mode IN ('simulate', 'post')", name="ck_runs_mode"),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="ck_runs_status"),
    )
    op.create_index("ix_runs_run_date_mode_status", "runs", ["run_date", "mode", "status"])


def downgrade() -> None:
    for name in ("runs", "grants", "ledger", "usage", "assignments", "packages", "customers"):
        op.drop_table(name)
