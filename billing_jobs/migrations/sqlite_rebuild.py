"""What SQLite migrations share (a migration may import this module: it holds no table
definitions of the live code):

* `rebuild_with_checks`: SQLite cannot alter a check constraint, so the table is rebuilt from its
  own CREATE statement with the checks replaced, keeping every index, trigger and view (saved
  from sqlite_master, dropped, re-created after the swap). Migrations 0010 and 0011.
* `replace_guards`: the value guard triggers of a table (`guard_<table>_insert|update`, first
  written by 0005) re-created from a list of (column, what it must be, SQL that is true when a
  value is bad). Migrations 0009 and 0012."""

from __future__ import annotations

from alembic import op


def rebuild_with_checks(conn, table: str, replacements: list[tuple[str, str]],
                        revision: str) -> None:
    """Rebuild `table` with each `old` text of its CREATE statement replaced by `new`."""
    table_sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).scalar_one()
    for old, new in replacements:
        if old not in table_sql:
            raise RuntimeError(f"{revision}: {table} check not found as expected: {old}")
        table_sql = table_sql.replace(old, new)
    kept = conn.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND ("
        "type = 'view' OR (type IN ('index', 'trigger') AND tbl_name = ?))", (table,)).all()
    for kind, name, _sql in kept:
        if kind in ("view", "trigger"):
            op.execute(f'DROP {kind.upper()} "{name}"')
    temp = f"_{table}_{revision}"
    new_sql = table_sql.replace(f"CREATE TABLE {table}", f"CREATE TABLE {temp}", 1)
    new_sql = new_sql.replace(f'CREATE TABLE "{table}"', f"CREATE TABLE {temp}", 1)
    if temp not in new_sql:
        raise RuntimeError(f"{revision}: the {table} table's CREATE statement is not as expected")
    op.execute(new_sql)
    op.execute(f"INSERT INTO {temp} SELECT * FROM {table}")
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE {temp} RENAME TO {table}")
    for kind, _name, sql in kept:  # indexes first: triggers and views may rely on them
        if kind == "index":
            op.execute(sql)
    for kind, _name, sql in kept:
        if kind != "index":
            op.execute(sql)


def replace_guards(table: str, rules) -> None:
    """Re-create `table`'s guard triggers: one RAISE per (column, must, bad) rule, where `bad`
    is an SQL condition with `{c}` standing for the new value's column."""
    for event in ("insert", "update"):
        op.execute(f'DROP TRIGGER IF EXISTS "guard_{table}_{event}"')
        checks = " ".join(
            f"SELECT RAISE(ABORT, '{table}.{column} must be {must}') "
            f"WHERE {bad.format(c='NEW.' + chr(34) + column + chr(34))};"
            for column, must, bad in rules)
        op.execute(f'CREATE TRIGGER "guard_{table}_{event}" BEFORE {event.upper()} ON '
                   f'"{table}" BEGIN {checks} END')
