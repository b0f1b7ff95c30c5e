"""Terms that change over time (SPEC 10): price versions, assignment changes, change lines.

* `package_versions`: a package's money terms (cost, retail, setup_cost, setup_retail,
  free_minutes) in force from `effective_from`; the packages row holds the terms before the
  first version. A version that priced a posted ledger line (a line of the package whose period
  starts on or after the version's date) can be neither updated nor deleted: versions are
  append-only once used.
* `assignment_changes`: an assignment's quantity, package, free-minute override or customer
  changed from a date, or the assignment cancelled from a date or voided. Rows are events:
  never updated or deleted, whoever writes; each carries who recorded it, from which file or
  command, and an idempotency key so a retried command records nothing twice.
* ledger: the kinds `change_credit` (a credit, amount <= 0) and `change_charge`.

Self-contained on purpose (does not import tables.py). On SQLite the ledger table is rebuilt
to change its check constraints; its indexes and triggers (0005, 0007) and every view are
saved from sqlite_master first and re-created after the swap.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_jobs.migrations.sqlite_rebuild import rebuild_with_checks

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OLD_KINDS = "'setup', 'recurring', 'prorated', 'minimum_spend', 'free_minutes_credit', 'adjustment'"
NEW_KINDS = OLD_KINDS + ", 'change_credit', 'change_charge'"
OLD_MONEY = ("entry <> 'charge' OR kind = 'free_minutes_credit' OR "
             "(amount_micros >= 0 AND cost_micros >= 0)")
NEW_MONEY = ("entry <> 'charge' OR kind IN ('free_minutes_credit', 'change_credit') OR "
             "(amount_micros >= 0 AND cost_micros >= 0)")

CHANGE_MESSAGE = ("assignment_changes: a recorded change is never edited or deleted - record "
                  "another change from a date")
VERSION_MESSAGE = ("package_versions: this version priced posted lines; versions are "
                   "append-only once used - add a version with a later effective_from")
USED = ("EXISTS (SELECT 1 FROM ledger l WHERE l.package_id = OLD.package_id "
        "AND l.period_start >= OLD.effective_from AND l.assignment_id IS NOT NULL)")


def upgrade() -> None:
    op.create_table(
        "package_versions",
        sa.Column("package_id", sa.Text, nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        sa.Column("cost_micros", sa.BigInteger, nullable=False, comment="micro-units"),
        sa.Column("retail_micros", sa.BigInteger, nullable=False, comment="micro-units"),
        sa.Column("setup_cost_micros", sa.BigInteger, nullable=False, comment="micro-units"),
        sa.Column("setup_retail_micros", sa.BigInteger, nullable=False, comment="micro-units"),
        sa.Column("free_minutes", sa.BigInteger, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False, comment="who: user and host"),
        sa.Column("source", sa.Text, nullable=False, comment="what: the file or the command"),
        sa.PrimaryKeyConstraint("package_id", "effective_from", name="pk_package_versions"),
    )
    op.create_table(
        "assignment_changes",
        sa.Column("change_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("assignment_id", sa.Text, nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=True),
        sa.Column("package_id", sa.Text, nullable=True),
        sa.Column("free_minutes", sa.BigInteger, nullable=True),
        sa.Column("customer_id", sa.Text, nullable=True),
        sa.Column("cancel", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("void", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False, comment="who: user and host"),
        sa.Column("source", sa.Text, nullable=False, comment="what: the file or the command"),
        sa.Column("idempotency_key", sa.Text, nullable=False,
                  comment="a retried command or re-imported file records nothing twice"),
        sa.PrimaryKeyConstraint("change_id", name="pk_assignment_changes"),
        sa.UniqueConstraint("idempotency_key", name="uq_assignment_changes_idempotency_key"),
        sa.CheckConstraint("quantity IS NULL OR quantity >= 1",
                           name="ck_assignment_changes_quantity"),
        sa.CheckConstraint("free_minutes IS NULL OR free_minutes >= 0",
                           name="ck_assignment_changes_free_minutes"),
    )
    op.create_index("ix_assignment_changes_assignment_id_effective_from", "assignment_changes",
                    ["assignment_id", "effective_from"])
    if op.get_bind().dialect.name == "sqlite":
        _sqlite()
    else:
        _postgresql()


def _sqlite() -> None:
    conn = op.get_bind()
    rebuild_with_checks(conn, "ledger", [(f"kind IN ({OLD_KINDS})", f"kind IN ({NEW_KINDS})"),
                                         (OLD_MONEY, NEW_MONEY)], revision)
    for event in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER assignment_changes_no_{event.lower()} BEFORE {event} ON "
                   f"assignment_changes BEGIN SELECT RAISE(ABORT, '{CHANGE_MESSAGE}'); END")
        op.execute(f"CREATE TRIGGER package_versions_no_{event.lower()} BEFORE {event} ON "
                   f"package_versions WHEN {USED} BEGIN "
                   f"SELECT RAISE(ABORT, '{VERSION_MESSAGE}'); END")


def _postgresql() -> None:
    op.drop_constraint("ck_ledger_kind", "ledger", type_="check")
    op.drop_constraint("ck_ledger_money", "ledger", type_="check")
    op.create_check_constraint("ck_ledger_kind", "ledger", f"kind IN ({NEW_KINDS})")
    op.create_check_constraint("ck_ledger_money", "ledger", NEW_MONEY)
    op.execute(f"""
CREATE FUNCTION assignment_changes_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{CHANGE_MESSAGE}: change %', OLD.change_id USING ERRCODE = '23514';
END $$""")
    op.execute("CREATE TRIGGER assignment_changes_immutable BEFORE UPDATE OR DELETE ON "
               "assignment_changes FOR EACH ROW EXECUTE FUNCTION assignment_changes_immutable()")
    op.execute(f"""
CREATE FUNCTION package_versions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {USED} THEN
        RAISE EXCEPTION '{VERSION_MESSAGE}: package %, from %', OLD.package_id,
            OLD.effective_from USING ERRCODE = '23514';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$""")
    op.execute("CREATE TRIGGER package_versions_append_only BEFORE UPDATE OR DELETE ON "
               "package_versions FOR EACH ROW EXECUTE FUNCTION package_versions_append_only()")


def downgrade() -> None:  # pragma: no cover - change lines cannot be folded back
    raise NotImplementedError("0010 is not reversible: restore a backup instead")
