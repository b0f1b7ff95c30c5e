"""Spend rollups (#29): `daily_spend`, one row per (customer, UTC day of the call's start) with
the sum of the calls' charges, the sum of their free-minute credits and the number of calls.

Minimum spend then sums O(customer-days) of rollup rows instead of every call of every open
period. The rollup is kept equal to `usage` and `call_credits` by triggers, so every writer
(the importer's upserts, a re-imported call that moved or changed price, a post's credits, a
reverse, a void, a rebill's credit moves) moves it in its own transaction, and no writer has to
remember to:

* PostgreSQL: statement-level AFTER INSERT / UPDATE / DELETE triggers with transition tables,
  one set-based upsert of the statement's net change per (customer, day), in key order (so
  concurrent writers lock rollup rows in the same order);
* SQLite: row-level AFTER triggers (SQLite has no statement triggers), each an upsert of the
  row's change; an UPDATE that leaves customer, time and amount as they were moves nothing.

The day is the UTC day (`substr(start_time, 1, 10)` of SQLite's stored UTC text; `start_time AT
TIME ZONE 'UTC'` on PostgreSQL). A run billed in another time zone reads the calls instead
(docs/decisions.md). The upgrade fills the table from the rows already stored.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

#: (source table, rollup column it feeds, its amount column, whether it counts calls)
SOURCES = [("usage", "charged_micros", "charge_micros", True),
           ("call_credits", "credited_micros", "covered_micros", False)]


def upgrade() -> None:
    op.create_table(
        "daily_spend",
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False, comment="the UTC day of the calls' start"),
        sa.Column("charged_micros", sa.BigInteger, nullable=False, server_default="0",
                  comment="sum of usage.charge_micros, micro-units"),
        sa.Column("credited_micros", sa.BigInteger, nullable=False, server_default="0",
                  comment="sum of call_credits.covered_micros, micro-units"),
        sa.Column("calls", sa.BigInteger, nullable=False, server_default="0",
                  comment="number of usage rows"),
        sa.PrimaryKeyConstraint("customer_id", "day", name="pk_daily_spend"),
    )
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    day = "substr(start_time, 1, 10)" if sqlite else "(start_time AT TIME ZONE 'UTC')::date"
    for table, column, amount, counts in SOURCES:
        n = "COUNT(*)" if counts else "0"
        op.execute(
            f"INSERT INTO daily_spend AS d (customer_id, day, {column}, calls) "
            f"SELECT customer_id, {day}, SUM({amount}), {n} FROM {table} WHERE true "
            f"GROUP BY 1, 2 ON CONFLICT (customer_id, day) DO UPDATE SET "
            f"{column} = d.{column} + excluded.{column}, calls = d.calls + excluded.calls")
    for table, column, amount, counts in SOURCES:
        if sqlite:
            _sqlite_triggers(table, column, amount, counts)
        else:
            _postgresql_triggers(table, column, amount, counts)


def _sqlite_upsert(row: str, sign: str, column: str, amount: str, counts: bool) -> str:
    calls = f"{sign}1" if counts else "0"
    return (f"INSERT INTO daily_spend (customer_id, day, {column}, calls) VALUES "
            f"({row}.customer_id, substr({row}.start_time, 1, 10), {sign}{row}.{amount}, "
            f"{calls}) ON CONFLICT (customer_id, day) DO UPDATE SET "
            f"{column} = {column} + excluded.{column}, calls = calls + excluded.calls;")


def _sqlite_triggers(table: str, column: str, amount: str, counts: bool) -> None:
    name = f"daily_spend_{table}"
    op.execute(f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} BEGIN "
               f"{_sqlite_upsert('NEW', '', column, amount, counts)} END")
    op.execute(f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} BEGIN "
               f"{_sqlite_upsert('OLD', '-', column, amount, counts)} END")
    op.execute(f"CREATE TRIGGER {name}_update AFTER UPDATE OF customer_id, start_time, {amount} "
               f"ON {table} WHEN OLD.customer_id IS NOT NEW.customer_id "
               f"OR OLD.start_time IS NOT NEW.start_time OR OLD.{amount} IS NOT NEW.{amount} "
               f"BEGIN {_sqlite_upsert('OLD', '-', column, amount, counts)} "
               f"{_sqlite_upsert('NEW', '', column, amount, counts)} END")


def _pg_delta(parts: list[tuple[str, str]], column: str, amount: str, counts: bool) -> str:
    """The upsert of the net change of transition tables `parts` [(table, sign)]."""
    rows = " UNION ALL ".join(
        f"SELECT customer_id, (start_time AT TIME ZONE 'UTC')::date AS day, "
        f"{sign}{amount} AS amount, {sign + '1' if counts else '0'} AS calls FROM {t}"
        for t, sign in parts)
    return (f"INSERT INTO daily_spend AS d (customer_id, day, {column}, calls) "
            f"SELECT customer_id, day, SUM(amount), SUM(calls) FROM ({rows}) x "
            f"GROUP BY customer_id, day HAVING SUM(amount) <> 0 OR SUM(calls) <> 0 "
            f"ORDER BY customer_id, day "
            f"ON CONFLICT (customer_id, day) DO UPDATE SET "
            f"{column} = d.{column} + excluded.{column}, calls = d.calls + excluded.calls")


def _postgresql_triggers(table: str, column: str, amount: str, counts: bool) -> None:
    events = {"insert": ("REFERENCING NEW TABLE AS new_rows", [("new_rows", "")]),
              "delete": ("REFERENCING OLD TABLE AS old_rows", [("old_rows", "-")]),
              "update": ("REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
                         [("new_rows", ""), ("old_rows", "-")])}
    for event, (referencing, parts) in events.items():
        name = f"daily_spend_{table}_{event}"
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   f"{_pg_delta(parts, column, amount, counts)}; RETURN NULL; END $$")
        op.execute(f"CREATE TRIGGER {name} AFTER {event.upper()} ON {table} {referencing} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()")


def downgrade() -> None:  # pragma: no cover - exercised by tests/store/test_schema.py
    conn = op.get_bind()
    for table, *_ in SOURCES:
        for event in ("insert", "delete", "update"):
            name = f"daily_spend_{table}_{event}"
            op.execute(f"DROP TRIGGER IF EXISTS {name}"
                       + ("" if conn.dialect.name == "sqlite" else f" ON {table}"))
            if conn.dialect.name != "sqlite":
                op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("daily_spend")
