"""Per-database bulk I/O and SQL differences, in one place (#15).

PostgreSQL streams rows with COPY in CSV that pyarrow writes (in) or parses (out); SQLite takes
large `executemany` batches. Both run inside the caller's transaction, on the driver
connection SQLAlchemy began it on. The small differences every writer needs (the parameter
mark, a temporary table that lives for one transaction, the stored form of a timestamp) are
here too, so no module asks `dialect.name` for them.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.csv as pcsv
import sqlalchemy as sa


def is_postgres(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def param(conn: sa.Connection) -> str:
    """The driver's positional parameter mark."""
    return "%s" if is_postgres(conn) else "?"


def on_commit_drop(conn: sa.Connection) -> str:
    """The clause that drops a temporary table at commit (PostgreSQL; SQLite's callers drop
    theirs, `drop_temp`)."""
    return " ON COMMIT DROP" if is_postgres(conn) else ""


def drop_temp(conn: sa.Connection, *names: str) -> None:
    """Drop SQLite temporary tables (PostgreSQL dropped them ON COMMIT)."""
    if not is_postgres(conn):
        for name in names:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")


def now_value(conn: sa.Connection):
    """This instant as a parameter: a UTC datetime (PostgreSQL), its stored text (SQLite)."""
    now = datetime.now(timezone.utc)
    return now if is_postgres(conn) else now.strftime("%Y-%m-%d %H:%M:%S.%f")


def copy_in(cur, table: str, columns: str, rows: pa.Table, batch_rows: int = 0) -> None:
    """PostgreSQL: COPY `rows` (an arrow table, columns in order) into `table` (`columns`: the
    quoted column list), written as CSV `batch_rows` rows at a time (0: all at once)."""
    step = batch_rows or max(rows.num_rows, 1)
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        for start in range(0, rows.num_rows, step):
            buf = io.BytesIO()
            pcsv.write_csv(rows.slice(start, step), buf, pcsv.WriteOptions(include_header=False))
            copy.write(buf.getvalue())


def copy_out(cur, queries: list[tuple[str, list]], schema: pa.Schema) -> pa.Table:
    """PostgreSQL: the rows of each (query, params) streamed with COPY ... TO STDOUT, parsed by
    pyarrow as `schema` (strings never null: an empty text is '')."""
    buf = io.BytesIO()
    for query, params in queries:
        with cur.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)", params) as copy:
            for block in copy:
                buf.write(block)
    if buf.getbuffer().nbytes == 0:
        return schema.empty_table()
    buf.seek(0)
    return pcsv.read_csv(
        buf,
        read_options=pcsv.ReadOptions(column_names=schema.names),
        convert_options=pcsv.ConvertOptions(column_types=schema, strings_can_be_null=False,
                                            quoted_strings_can_be_null=False),
    )


def insert_many(cur, sql: str, rows: pa.Table, batch_rows: int = 0) -> None:
    """SQLite: `sql` (one row of `?` marks) executed for every row of `rows`, `batch_rows` rows
    per `executemany` (0: all at once)."""
    step = batch_rows or max(rows.num_rows, 1)
    for start in range(0, rows.num_rows, step):
        part = rows.slice(start, step)
        lists = [part.column(i).to_pylist() for i in range(part.num_columns)]
        cur.executemany(sql, list(zip(*lists)))
