"""Stored values the engine can trust (#17 item 7), SQLite only.

SQLite stores any value in any column: a `charge_micros` of 'x', 1.5 or 1e20 (REAL), or a
`start_time` of 'not a time' written by another tool would reach billing and crash it, be
truncated (1.5 -> 1 micro) or drop the call silently (its text sorts outside every window).
PostgreSQL's column types already refuse such values. On SQLite this migration:

* refuses to upgrade a database that already holds such values, naming table, row id, column
  and value (fix or delete them, then upgrade);
* adds BEFORE INSERT / BEFORE UPDATE triggers that refuse them from then on, whoever writes:
  "usage.charge_micros must be an integer number of micro-units", and so on.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: The stored timestamp form (`YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]`, UTC).
TIME_GLOB = "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9]*"

#: table -> key, [(column, what it must be, SQL condition on NEW.<column> / <column> being bad)]
RULES = {
    "customers": ("customer_id", [
        ("balance_micros", "an integer number of micro-units", "typeof({c}) <> 'integer'"),
        ("opening_balance_micros", "an integer number of micro-units", "typeof({c}) <> 'integer'"),
    ]),
    "packages": ("package_id", [
        (c, "an integer number of micro-units", "typeof({c}) <> 'integer'")
        for c in ("cost_micros", "retail_micros", "setup_cost_micros", "setup_retail_micros")
    ] + [
        ("free_minutes", "a whole number", "typeof({c}) <> 'integer'"),
        ("minimum_days", "a whole number", "typeof({c}) <> 'integer'"),
    ]),
    "assignments": ("assignment_id", [
        ("quantity", "a whole number", "typeof({c}) <> 'integer'"),
        ("free_minutes", "empty or a whole number", "{c} IS NOT NULL AND typeof({c}) <> 'integer'"),
    ]),
    "usage": ("call_id", [
        ("charge_micros", "an integer number of micro-units", "typeof({c}) <> 'integer'"),
        ("duration_s", "a whole number of seconds", "typeof({c}) <> 'integer'"),
        ("start_time", "a timestamp YYYY-MM-DD HH:MM:SS (UTC)",
         "typeof({c}) <> 'text' OR {c} NOT GLOB '" + TIME_GLOB + "'"),
    ]),
    "ledger": ("ledger_id", [
        (c, "an integer number of micro-units", "typeof({c}) <> 'integer'")
        for c in ("amount_micros", "unit_price_micros", "cost_micros")
    ]),
}


def _existing_problems(conn) -> list[str]:
    found = []
    for table, (key, rules) in RULES.items():
        for column, must, bad in rules:
            rows = conn.execute(sa.text(
                f'SELECT "{key}", quote("{column}") FROM "{table}" '
                f"WHERE {bad.format(c=chr(34) + column + chr(34))} LIMIT 3")).all()
            found += [f"{table} {key}={k!r}: {column} = {v} must be {must}" for k, v in rows]
    return found


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return  # PostgreSQL's column types already refuse these values
    problems = _existing_problems(conn)
    if problems:
        raise RuntimeError(
            "the database holds values billing cannot use (written by another tool): "
            + "; ".join(problems[:10]) + " - fix or delete these rows, then upgrade again")
    for table, (_key, rules) in RULES.items():
        for event in ("INSERT", "UPDATE"):
            checks = " ".join(
                f"SELECT RAISE(ABORT, '{table}.{column} must be {must}') "
                f"WHERE {bad.format(c='NEW.' + chr(34) + column + chr(34))};"
                for column, must, bad in rules)
            op.execute(f'CREATE TRIGGER "guard_{table}_{event.lower()}" BEFORE {event} ON '
                       f'"{table}" BEGIN {checks} END')


def downgrade() -> None:  # pragma: no cover
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in RULES:
        for event in ("insert", "update"):
            op.execute(f'DROP TRIGGER IF EXISTS "guard_{table}_{event}"')
