"""Writing an imported file's parsed rows: INSERT ... ON CONFLICT (id) DO UPDATE, inside the
import's one transaction. SQLite uses large `executemany` batches; PostgreSQL streams the rows
with COPY into a temporary table and upserts from it with one INSERT ... SELECT. A customer's
opening balance, balance and imported balance are written on insert only; an existing
customer's imported balance changes only through ingest/balances.py."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from billing_jobs.core.entities import ENTITY_KINDS
from billing_jobs.core.frames import ENTITY_KEYS
from billing_jobs.store import bulk
from billing_jobs.store.tables import stored_name

#: the value a customer's last import set (migration 0009)
IMPORTED_BALANCE = "imported_balance_micros"
_SQLITE_BATCH = 50_000
_COPY_BATCH = 200_000


def write_rows(conn: sa.Connection, entity: str, table: pa.Table) -> None:
    """Insert or update the parsed rows of `entity` by id, on the connection's transaction."""
    if bulk.is_postgres(conn):
        _write_pg(conn, entity, table)
    else:
        _write_sqlite(conn, entity, table)


def _sqlite_values(table: pa.Table) -> pa.Table:
    """Arrow columns as SQLite stores them: dates and timestamps as text, booleans 0/1."""
    out = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_date32(col.type):
            col = pc.strftime(col, "%Y-%m-%d")
        elif pa.types.is_timestamp(col.type):  # timestamp[us]: %S prints the microseconds
            col = pc.strftime(col, "%Y-%m-%d %H:%M:%S")
        elif pa.types.is_boolean(col.type):
            col = pc.cast(col, pa.int64())
        out[name] = col
    return pa.table(out)


def _stored_layout(entity: str, table: pa.Table) -> tuple[pa.Table, list[str], list[str]]:
    """The parsed columns under their stored names (money + "_micros"), the column list and the
    columns written on insert only. A new customer's opening balance and imported balance (the
    value its last import set) are its first balance; an existing customer's balance changes
    only through the ledger, its imported balance only through `ingest/balances.py`."""
    columns = list(ENTITY_KINDS[entity])
    table = table.select(columns)
    insert_only: list[str] = []
    if entity == "customers":
        table = table.append_column("opening_balance", table.column("balance"))
        insert_only += [stored_name("opening_balance"), stored_name("balance")]
    table = table.rename_columns([stored_name(c) for c in table.column_names])
    if entity == "customers":
        table = table.append_column(IMPORTED_BALANCE, table.column(stored_name("balance")))
        insert_only.append(IMPORTED_BALANCE)
    return table, table.column_names, insert_only


def _upsert_sql(table: str, columns: list[str], key: str, source: str,
                insert_only: list[str] = ()) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in columns
                     if c != key and c not in insert_only)
    return (f'INSERT INTO "{table}" ({cols}) {source} '
            f'ON CONFLICT ("{key}") DO UPDATE SET {sets}')


def _write_sqlite(conn: sa.Connection, entity: str, table: pa.Table) -> None:
    table, columns, insert_only = _stored_layout(entity, table)
    key = ENTITY_KEYS[entity]
    values = _sqlite_values(table)
    sql = _upsert_sql(entity, columns, key,
                      f"VALUES ({', '.join('?' * len(columns))})", insert_only)
    raw = conn.connection.driver_connection  # inside the transaction SQLAlchemy began
    cur = raw.cursor()
    try:
        bulk.insert_many(cur, sql, values.select(columns), _SQLITE_BATCH)
    finally:
        cur.close()


def _write_pg(conn: sa.Connection, entity: str, table: pa.Table) -> None:
    table, columns, insert_only = _stored_layout(entity, table)
    key = ENTITY_KEYS[entity]
    tmp = f"_import_{entity}"
    cols = ", ".join(f'"{c}"' for c in columns)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(f'CREATE TEMP TABLE "{tmp}" (LIKE "{entity}" INCLUDING DEFAULTS) '
                    "ON COMMIT DROP")
        bulk.copy_in(cur, f'"{tmp}"', cols, table, _COPY_BATCH)
        cur.execute(_upsert_sql(entity, columns, key, f'SELECT {cols} FROM "{tmp}"', insert_only))
        cur.execute(f'DROP TABLE "{tmp}"')
