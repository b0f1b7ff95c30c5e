"""Minimum spend from the spend rollup (#29): the `daily_spend` rows (migration 0013) of the
(customer, first day) minimum-spend needs of a billing date, instead of every call of every
period ending on it.

One set-based query per database, like the needed-calls read (store/load.py): the needs are
one parameter (a JSON document on SQLite, two arrays on PostgreSQL) joined to the rollup's
primary key (customer_id, day). The frame (core.frames.DAILY_SPEND_COLUMNS) holds per
customer and UTC day `charged` (the calls' charges) and `credited` (their stored free-minute
credits), int64 micros, `day` an int64 day number.

`credited` counts each call's credit up to its charge, as the calls path nets each call
(`max(charge - covered, 0)`, #28 item 4): a call split over several grants can be covered a
micro more than its charge (each part is rounded half up). The rollup holds the plain sum, so
the read takes that excess back off, from the few calls credited in more than one part (one
more query on the call_credits index (customer_id, start_time)). docs/decisions.md, "Minimum
spend from the spend rollup".
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from billing_jobs.core.frames import DAILY_SPEND_COLUMNS
from billing_jobs.store import bulk

_EPOCH = date(1970, 1, 1)
_SCHEMA = pa.schema([("customer_id", pa.string()), ("day", pa.int64()),
                     ("charged", pa.int64()), ("credited", pa.int64())])


def empty_spend() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                         "day": pd.Series([], dtype="int64"),
                         "charged": pd.Series([], dtype="int64"),
                         "credited": pd.Series([], dtype="int64")}, columns=DAILY_SPEND_COLUMNS)


def read_spend(conn: sa.Connection, needs: pd.DataFrame, until: date) -> pd.DataFrame:
    """The rollup rows of `needs` (customer_id, since_day), from the day before each
    since_day (the calls path's margin) through `until` + 1 (the calls path's last day),
    as DAILY_SPEND_COLUMNS, sorted by customer and day."""
    if needs.empty:
        return empty_spend()
    ids = [str(c) for c in needs["customer_id"]]
    first = needs["since_day"].to_numpy(dtype="int64") - 1
    end = until + timedelta(days=2)  # exclusive
    if bulk.is_postgres(conn):
        rows, excess = _read_pg(conn, ids, first, end)
    else:
        rows, excess = _read_sqlite(conn, ids, first, end)
    if len(excess):
        key = ["customer_id", "day"]
        rows = rows.merge(excess, on=key, how="left")
        rows["credited"] = (rows["credited"].to_numpy(dtype="int64")
                            - rows["excess"].fillna(0).to_numpy(dtype="int64"))
        rows = rows.drop(columns="excess")
    rows = rows.sort_values(["customer_id", "day"], kind="stable", ignore_index=True)
    return rows[DAILY_SPEND_COLUMNS]


def _dates(days: np.ndarray) -> list[date]:
    return days.astype("datetime64[D]").astype(object).tolist()


def _instants(days: np.ndarray) -> list[datetime]:
    return [datetime.combine(d, time(), tzinfo=timezone.utc) for d in _dates(days)]


# ----------------------------------------------------------------------------- PostgreSQL

_PG_ROWS = (
    "SELECT d.customer_id, (d.day - DATE '1970-01-01')::bigint, d.charged_micros, "
    "d.credited_micros FROM unnest(%s::text[], %s::date[]) AS n(cid, lo) "
    "JOIN daily_spend d ON d.customer_id = n.cid AND d.day >= n.lo AND d.day < %s")
# calls credited in more than one part whose parts add up to more than the charge
_PG_EXCESS = (
    "SELECT g.customer_id, ((g.start_time AT TIME ZONE 'UTC')::date - DATE '1970-01-01')::bigint, "
    "SUM(g.covered - u.charge_micros)::bigint, 0::bigint FROM ("
    "SELECT c.call_id, c.customer_id, c.start_time, SUM(c.covered_micros) AS covered "
    "FROM unnest(%s::text[], %s::timestamptz[]) AS n(cid, lo) "
    "JOIN call_credits c ON c.customer_id = n.cid AND c.start_time >= n.lo AND c.start_time < %s "
    "GROUP BY c.call_id, c.customer_id, c.start_time HAVING COUNT(*) > 1) g "
    "JOIN usage u ON u.call_id = g.call_id AND u.customer_id = g.customer_id "
    "WHERE g.covered > u.charge_micros GROUP BY 1, 2")


def _read_pg(conn: sa.Connection, ids: list[str], first: np.ndarray, end: date):
    raw = conn.connection.driver_connection  # psycopg.Connection, inside our transaction
    hi = datetime.combine(end, time(), tzinfo=timezone.utc)
    with raw.cursor() as cur:
        rows = bulk.copy_out(cur, [(_PG_ROWS, [ids, _dates(first), end])], _SCHEMA)
        excess = bulk.copy_out(cur, [(_PG_EXCESS, [ids, _instants(first), hi])], _SCHEMA)
    return _frame(rows), _excess(_frame(excess))


# ----------------------------------------------------------------------------- SQLite

_SQLITE_NEEDS = ("WITH n(cid, lo) AS MATERIALIZED (SELECT json_extract(value, '$[0]'), "
                 "json_extract(value, '$[1]') FROM json_each(?)) ")
# the day as stored ('YYYY-MM-DD', the UTC day: migration 0013) -> its day number
_SQLITE_ROWS = (
    _SQLITE_NEEDS + "SELECT d.customer_id, CAST(julianday(d.day) - 2440587.5 AS INTEGER), "
    "d.charged_micros, d.credited_micros FROM n CROSS JOIN daily_spend AS d "
    "WHERE d.customer_id = n.cid AND d.day >= n.lo AND d.day < ?")
_SQLITE_EXCESS = (
    _SQLITE_NEEDS + "SELECT g.customer_id, "
    "CAST(julianday(substr(g.start_time, 1, 10)) - 2440587.5 AS INTEGER), "
    "SUM(g.covered - u.charge_micros) FROM ("
    "SELECT c.call_id, c.customer_id, c.start_time, SUM(c.covered_micros) AS covered "
    "FROM n CROSS JOIN call_credits AS c WHERE c.customer_id = n.cid AND c.start_time >= n.lo "
    "AND c.start_time < ? GROUP BY c.call_id, c.customer_id, c.start_time "
    "HAVING COUNT(*) > 1) AS g "
    "JOIN usage AS u ON u.call_id = g.call_id AND u.customer_id = g.customer_id "
    "WHERE g.covered > u.charge_micros GROUP BY 1, 2")


def _read_sqlite(conn: sa.Connection, ids: list[str], first: np.ndarray, end: date):
    days = [d.isoformat() for d in _dates(first)]
    doc = json.dumps([[c, d] for c, d in zip(ids, days)])
    cur = conn.exec_driver_sql(_SQLITE_ROWS, (doc, end.isoformat())).cursor
    try:
        rows = cur.fetchall()
    finally:
        cur.close()
    # call_credits times are stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text: a day's
    # 'YYYY-MM-DD' sorts before every instant of it
    cur = conn.exec_driver_sql(_SQLITE_EXCESS, (doc, end.isoformat())).cursor
    try:
        excess = cur.fetchall()
    finally:
        cur.close()
    frame = pd.DataFrame(rows, columns=DAILY_SPEND_COLUMNS, dtype=object)
    ex = pd.DataFrame(excess, columns=["customer_id", "day", "excess"], dtype=object)
    return _typed(frame), _excess(_typed(ex.assign(credited=0).rename(
        columns={"excess": "charged"})[DAILY_SPEND_COLUMNS]))


# ----------------------------------------------------------------------------- frames

def _frame(table: pa.Table) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": pd.Series(table.column("customer_id").to_pandas(), dtype=object),
        "day": table.column("day").to_numpy().astype("int64"),
        "charged": table.column("charged").to_numpy().astype("int64"),
        "credited": table.column("credited").to_numpy().astype("int64"),
    }, columns=DAILY_SPEND_COLUMNS)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return empty_spend()
    return pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str).astype(object),
        "day": np.array(frame["day"].tolist(), dtype="int64"),
        "charged": np.array(frame["charged"].tolist(), dtype="int64"),
        "credited": np.array(frame["credited"].tolist(), dtype="int64"),
    }, columns=DAILY_SPEND_COLUMNS)


def _excess(frame: pd.DataFrame) -> pd.DataFrame:
    """(customer_id, day, excess) from a frame carrying the excess in `charged`."""
    return pd.DataFrame({"customer_id": frame["customer_id"].to_numpy(dtype=object),
                         "day": frame["day"].to_numpy(dtype="int64"),
                         "excess": frame["charged"].to_numpy(dtype="int64")})
