"""The no-overlapping-charges guard of 0007, once per statement on PostgreSQL (#29).

0007's guard on PostgreSQL was a BEFORE INSERT trigger FOR EACH ROW: per ledger row a lock of
its customer and two index lookups, 7.4 s of a 9.0 s ledger insert of 30,671 lines (100k
assignments, EXPLAIN ANALYZE). It becomes an AFTER INSERT trigger FOR EACH STATEMENT over the
statement's inserted rows (a transition table), with the same rule and the same message:

* it looks only at rows the statement inserted, so 0007's "a row that will conflict with an
  existing (key, revision) is let through" needs no test: ON CONFLICT DO NOTHING rows are not
  in the transition table;
* "the row leaves its key's net non-zero" is now read after the insert: the key's sum, this
  row included, is not 0;
* it first locks the customers of those rows in customer_id order (the poster already holds
  them), then looks (READ COMMITTED: the check's snapshot is taken after the locks), so two
  transactions still cannot each pass the check for overlapping keys of one customer;
* rows of one statement see each other, as rows inserted earlier in a statement did under
  the row trigger; a refusal aborts the whole statement either way.

SQLite keeps 0007's row trigger (one writer at a time; no statement triggers).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: 0007's message, word for word
MESSAGE = ("ledger: this row would charge days of an assignment that a live posting key of the "
           "same kind already charged under another period_start (moved start date or changed "
           "frequency?) - correct with rebill over both run dates")

_GUARDED = ("n.assignment_id IS NOT NULL "
            "AND n.kind IN ('setup', 'recurring', 'prorated', 'minimum_spend') "
            "AND n.amount_micros <> 0")
_FAMILY = "(CASE WHEN {a}.kind IN ('recurring', 'prorated') THEN 'rental' ELSE {a}.kind END)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS ledger_no_overlapping_charges ON ledger")
    op.execute("DROP FUNCTION IF EXISTS ledger_no_overlapping_charges()")
    op.execute(f"""
CREATE FUNCTION ledger_no_overlapping_charges() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- serialise writers of these customers (id order), then look (READ COMMITTED: new snapshot)
    PERFORM 1 FROM customers WHERE customer_id IN (
        SELECT n.customer_id FROM new_rows n WHERE {_GUARDED})
        ORDER BY customer_id FOR UPDATE;
    SELECT n.assignment_id, n.kind, n.period_start INTO bad FROM new_rows n
    WHERE {_GUARDED}
      AND (SELECT SUM(k.amount_micros) FROM ledger k WHERE k.assignment_id = n.assignment_id
           AND k.kind = n.kind AND k.period_start = n.period_start) <> 0
      AND EXISTS (SELECT 1 FROM ledger l WHERE l.assignment_id = n.assignment_id
        AND l.revision = 0 AND l.period_start <> n.period_start
        AND {_FAMILY.format(a="l")} = {_FAMILY.format(a="n")}
        AND (n.kind = 'setup' OR (l.period_start < COALESCE(n.period_end, '9999-12-31')
             AND n.period_start < COALESCE(l.period_end, '9999-12-31')))
        AND (SELECT SUM(x.amount_micros) FROM ledger x WHERE x.assignment_id = l.assignment_id
             AND x.kind = l.kind AND x.period_start = l.period_start) <> 0)
    ORDER BY n.customer_id, n.assignment_id, n.kind, n.period_start
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '{MESSAGE}: assignment %, % from %', bad.assignment_id, bad.kind,
            bad.period_start USING ERRCODE = '23P01';
    END IF;
    RETURN NULL;
END $$""")
    op.execute("CREATE TRIGGER ledger_no_overlapping_charges AFTER INSERT ON ledger "
               "REFERENCING NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION ledger_no_overlapping_charges()")


def downgrade() -> None:  # pragma: no cover - back to 0007's row trigger
    if op.get_bind().dialect.name == "sqlite":
        return
    import importlib.util  # a migration file is not an importable module (name starts with a digit)
    from pathlib import Path

    path = Path(__file__).with_name("0007_no_overlapping_charges.py")
    spec = importlib.util.spec_from_file_location("_v0007", path)
    v0007 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(v0007)
    op.execute("DROP TRIGGER IF EXISTS ledger_no_overlapping_charges ON ledger")
    op.execute("DROP FUNCTION IF EXISTS ledger_no_overlapping_charges()")
    v0007.upgrade()
