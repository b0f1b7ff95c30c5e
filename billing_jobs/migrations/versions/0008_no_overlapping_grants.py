"""The database never grants one assignment's days twice (#17 item 2, free minutes).

A grant's key is (assignment_id, period_start). Correcting an assignment's start date or a
package's frequency after a grant was posted makes grants under new keys whose periods overlap
the posted one: each would give the overlapping days' minutes again (and its calls would be
credited twice). The engine holds such grants (status `overlaps_posted`, calc/grants.py) and
`rebill` withdraws the old grant before it grants the new one; this migration is the guarantee
behind both, whoever writes:

* BEFORE INSERT on `grants`: a new key is refused while a live (not withdrawn) grant of the same
  assignment under another period_start overlaps its period; an insert of a key that already
  exists live is let through to its ON CONFLICT clause (re-runs);
* BEFORE UPDATE on `grants`: reinstating a withdrawn grant (withdrawn_at set -> NULL) is refused
  the same way;
* on PostgreSQL the check first locks the customer row (as the ledger trigger of 0007 does).

It also indexes `grants.period_end`: each night reads the live grants whose period reaches its
days (store/free_minute_state.py), which must not scan a year of grants.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

MESSAGE = ("grants: this grant would give minutes for days a live grant of the same "
           "assignment already gives under another period_start (moved start date or changed "
           "frequency?) - correct with rebill over both run dates")


def _overlap(new: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM grants o WHERE o.assignment_id = {n}.assignment_id "
        "AND o.period_start <> {n}.period_start AND o.withdrawn_at IS NULL "
        "AND o.period_start < COALESCE({n}.period_end, '9999-12-31') "
        "AND {n}.period_start < COALESCE(o.period_end, '9999-12-31'))"
    ).format(n=new)


def _new_key(new: str) -> str:
    return ("NOT EXISTS (SELECT 1 FROM grants s WHERE s.assignment_id = {n}.assignment_id "
            "AND s.period_start = {n}.period_start)").format(n=new)


def upgrade() -> None:
    op.create_index("ix_grants_period_end", "grants", ["period_end"])
    if op.get_bind().dialect.name == "sqlite":  # one writer at a time: the check is enough
        op.execute(
            "CREATE TRIGGER grants_no_overlap_insert BEFORE INSERT ON grants "
            f"WHEN NEW.withdrawn_at IS NULL AND {_new_key('NEW')} BEGIN "
            f"SELECT RAISE(ABORT, '{MESSAGE}') WHERE {_overlap('NEW')}; END")
        op.execute(
            "CREATE TRIGGER grants_no_overlap_reinstate BEFORE UPDATE OF withdrawn_at ON grants "
            "WHEN OLD.withdrawn_at IS NOT NULL AND NEW.withdrawn_at IS NULL BEGIN "
            f"SELECT RAISE(ABORT, '{MESSAGE}') WHERE {_overlap('NEW')}; END")
        return
    op.execute(f"""
CREATE FUNCTION grants_no_overlap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.withdrawn_at IS NOT NULL THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' AND NOT ({_new_key('NEW')}) THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.withdrawn_at IS NULL THEN
        RETURN NEW;
    END IF;
    PERFORM 1 FROM customers WHERE customer_id = NEW.customer_id FOR UPDATE;
    IF {_overlap('NEW')} THEN
        RAISE EXCEPTION '{MESSAGE}: assignment %, grant from %', NEW.assignment_id,
            NEW.period_start USING ERRCODE = '23P01';
    END IF;
    RETURN NEW;
END $$
SET enable_seqscan = off""")
    op.execute("CREATE TRIGGER grants_no_overlap BEFORE INSERT OR UPDATE OF withdrawn_at "
               "ON grants FOR EACH ROW EXECUTE FUNCTION grants_no_overlap()")


def downgrade() -> None:  # pragma: no cover
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS grants_no_overlap_insert")
        op.execute("DROP TRIGGER IF EXISTS grants_no_overlap_reinstate")
    else:
        op.execute("DROP TRIGGER IF EXISTS grants_no_overlap ON grants")
        op.execute("DROP FUNCTION IF EXISTS grants_no_overlap()")
    op.drop_index("ix_grants_period_end", "grants")
