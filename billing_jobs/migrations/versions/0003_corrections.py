"""Corrections (#11): withdrawn grants and reversed runs.

* grants.withdrawn_at / withdrawn_by_run: a grant of a reversed run is withdrawn (kept for the
  audit trail); posting treats a withdrawn grant as not posted and re-grants it.
* runs.reversed_at / reversed_by_run: the run a `reverse --run` compensated.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("withdrawn_by_run", sa.Text, nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reversed_by_run", sa.Text, nullable=True))


def downgrade() -> None:  # pragma: no cover
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("reversed_by_run")
        batch.drop_column("reversed_at")
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("withdrawn_by_run")
        batch.drop_column("withdrawn_at")
