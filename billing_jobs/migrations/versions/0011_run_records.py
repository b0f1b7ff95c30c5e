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
        _rebuild_sqlite_runs(conn)
    else:
        _postgresql(conn)


def _rebuild_sqlite_runs(conn) -> None:
    """SQLite cannot alter a check constraint: rebuild the table from its own CREATE
    statement with the status check replaced, keeping every index, trigger and view."""
    table_sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'").scalar_one()
    if OLD_STATUSES not in table_sql:
        raise RuntimeError(f"0011: runs check not found as expected: {OLD_STATUSES}")
    table_sql = table_sql.replace(OLD_STATUSES, NEW_STATUSES)
    kept = conn.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND ("
        "type = 'view' OR (type IN ('index', 'trigger') AND tbl_name = 'runs'))").all()
    for kind, name, _sql in kept:
        if kind in ("view", "trigger"):
            op.execute(f'DROP {kind.upper()} "{name}"')
    new_sql = table_sql.replace("CREATE TABLE runs", "CREATE TABLE _runs_0011", 1)
    new_sql = new_sql.replace('CREATE TABLE "runs"', "CREATE TABLE _runs_0011", 1)
    if "_runs_0011" not in new_sql:
        raise RuntimeError("0011: the runs table's CREATE statement is not as expected")
    op.execute(new_sql)
    op.execute("INSERT INTO _runs_0011 SELECT * FROM runs")
    op.execute("DROP TABLE runs")
    op.execute("ALTER TABLE _runs_0011 RENAME TO runs")
    for kind, _name, sql in kept:  # indexes first: triggers and views may rely on them
        if kind == "index":
            op.execute(sql)
    for kind, _name, sql in kept:
        if kind != "index":
            op.execute(sql)


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
