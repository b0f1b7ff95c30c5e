"""Run records an operator can trust (#30): interrupted runs, their process, their folder.

* runs.status may be `interrupted`: a run stopped by SIGINT (Ctrl-C) or SIGTERM, its record
  closed on the way out (what it posted before the stop stands, each customer whole).
* runs.host, runs.pid: the host and process that run it (pid only when one process runs the
  whole run, as `billing-jobs run`; an Airflow run spans several tasks), so `runs` can say
  when a `running` record's process is gone.
* runs.report_dir: the report folder the run wrote (an `--out` folder included).

Self-contained on purpose (does not import tables.py). On SQLite the runs table is rebuilt to
change its status check; its indexes and triggers and every view are saved from
sqlite_master first and re-created after the swap (as 0010 does for the ledger).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_jobs.migrations.sqlite_rebuild import rebuild_with_checks

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('running', 'succeeded', 'failed')"
NEW_STATUSES = "status IN ('running', 'succeeded', 'failed', 'interrupted')"
CHECK_NAME = "ck_runs_status"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite: ALTER TABLE ADD COLUMN, no rebuild
        batch.add_column(sa.Column("host", sa.Text, nullable=True,
                                   comment="the host whose process runs it"))
        batch.add_column(sa.Column("pid", sa.Integer, nullable=True,
                                   comment="its process id, when one process runs it all "
                                           "(not Airflow)"))
        batch.add_column(sa.Column("report_dir", sa.Text, nullable=True,
                                   comment="the report folder written"))
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        rebuild_with_checks(conn, "runs", [(OLD_STATUSES, NEW_STATUSES)], revision)
    else:
        _postgresql(conn)


def _postgresql(conn) -> None:
    """Drop the status check whatever its name (the naming convention may have doubled the
    prefix) and add the wider one."""
    names = conn.execute(sa.text(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'runs'::regclass AND contype = 'c' "
        "AND strpos(pg_get_constraintdef(oid), 'status') > 0")).scalars().all()
    if not names:
        raise RuntimeError("0011: the runs status check was not found")
    for name in names:
        op.execute(f'ALTER TABLE runs DROP CONSTRAINT "{name}"')
    op.execute(f'ALTER TABLE runs ADD CONSTRAINT "{names[0]}" CHECK ({NEW_STATUSES})')


def downgrade() -> None:  # pragma: no cover - interrupted records cannot be folded back
    raise NotImplementedError("0011 is not reversible: restore a backup instead")
