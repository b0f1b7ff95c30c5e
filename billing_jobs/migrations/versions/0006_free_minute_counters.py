"""Free minutes that reduce the bill (#12): per-grant counters and per-call consumption.

* `grant_usage`: one row per grant (assignment_id, period_start): seconds granted, seconds
  used so far and the covered charge credited (micros). Updated in the posting transaction
  that writes the credit lines, so it always equals the sum of its `call_credits` rows.
* `call_credits`: which call consumed which grant, on which billing date (`consumed_on`), by
  which run: seconds taken and covered charge (micros, before rounding). A call is consumed
  once (any row for its call_id means it is done); a late call is one whose local day was
  before the day the consuming post covers.
* `packages.free_minutes_mode`: 'credit' (NULL or empty: the default) or 'report' (the
  switch already zero-rates covered calls; counters are kept, no credit line).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("packages", sa.Column(
        "free_minutes_mode", sa.Text, nullable=True,
        comment="'credit' (NULL/empty: free minutes credit the bill) or 'report'"))
    op.create_table(
        "grant_usage",
        sa.Column("assignment_id", sa.Text, nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("period_end", sa.Date, nullable=True, comment="exclusive; NULL = open"),
        sa.Column("seconds_granted", sa.BigInteger, nullable=False),
        sa.Column("seconds_used", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("credited_micros", sa.BigInteger, nullable=False, server_default="0",
                  comment="covered charge credited, micro-units (>= 0)"),
        sa.Column("updated_by_run", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("assignment_id", "period_start", name="pk_grant_usage"),
        sa.CheckConstraint("seconds_used >= 0", name="ck_grant_usage_seconds_used"),
        sa.CheckConstraint("credited_micros >= 0", name="ck_grant_usage_credited"),
    )
    op.create_index("ix_grant_usage_customer_id", "grant_usage", ["customer_id"])
    op.create_table(
        "call_credits",
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("assignment_id", sa.Text, nullable=False),
        sa.Column("period_start", sa.Date, nullable=False, comment="the grant's period start"),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("start_time", Timestamp, nullable=False),
        sa.Column("consumed_on", sa.Date, nullable=False,
                  comment="the billing date that consumed it"),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("seconds", sa.BigInteger, nullable=False),
        sa.Column("covered_micros", sa.BigInteger, nullable=False,
                  comment="0 for a report-only package"),
        sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("call_id", "assignment_id", "period_start",
                                name="pk_call_credits"),
        sa.CheckConstraint("seconds > 0", name="ck_call_credits_seconds"),
        sa.CheckConstraint("covered_micros >= 0", name="ck_call_credits_covered"),
    )
    op.create_index("ix_call_credits_customer_id_start_time", "call_credits",
                    ["customer_id", "start_time"])
    op.create_index("ix_call_credits_customer_id_consumed_on", "call_credits",
                    ["customer_id", "consumed_on"])
    op.create_index("ix_call_credits_run_id", "call_credits", ["run_id"])


def downgrade() -> None:  # pragma: no cover
    op.drop_table("call_credits")
    op.drop_table("grant_usage")
    with op.batch_alter_table("packages") as batch:
        batch.drop_column("free_minutes_mode")
