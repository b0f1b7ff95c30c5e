"""Load the engine's raw inputs (docs/contracts.md, "Engine inputs") from the database.

Set-based reads only: one query per table, frames built column-wise. Usage, the big table,
is read in the fastest way each driver offers: on PostgreSQL a `COPY (SELECT ...) TO STDOUT`
parsed by pyarrow's CSV reader; on SQLite chunked `fetchmany` turned into columns.

The frames are *raw*: `billing_jobs.checks.validate_inputs` rejects bad rows. Money is int64
micros straight from the BIGINT columns; dates are datetime64[s] (NaT when the stored text
does not parse); ids are str.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from operator import itemgetter
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from billing_jobs.core.entities import BOOL_KINDS, DATE_KINDS, ENTITY_KINDS, INT_KINDS

from billing_jobs.core.frames import (
    ASSIGNMENT_COLUMNS,
    CHANGE_COLUMNS,
    CUSTOMER_COLUMNS,
    PACKAGE_COLUMNS,
    USAGE_COLUMNS,
    VERSION_COLUMNS,
    BillingInputs,
)
from billing_jobs.calc.usage import needed_calls, usage_needs, usage_needs_by_kind
from billing_jobs.store import bulk
from billing_jobs.store.db import db_errors, read_connection
from billing_jobs.store.free_minute_state import read_state
from billing_jobs.store.spend_rollup import read_spend
from billing_jobs.store.tables import assignment_changes, package_versions, stored_name

#: Usage older than this many days before the run date is not needed by default (a yearly
#: minimum-spend period is at most 366 days; the rest is margin).
USAGE_LOOKBACK_DAYS = 400
_IN_CHUNK = 5000  # ids per IN (...) list: well under SQLite's variable limit
_FETCH_CHUNK = 250_000
#: Where minimum spend comes from: the calls (summed by the engine) or the `daily_spend`
#: rollup (UTC days only; store/spend_rollup.py)
SPEND_SOURCES = ("calls", "rollup")
_UTC = ("UTC", "Etc/UTC")


def spend_source(tz: str | None) -> str:
    """The spend source a run billed in `tz` uses: the rollup when exact (its days are UTC
    days, so the billing time zone must be UTC), the calls otherwise."""
    return "rollup" if (tz or "UTC") in _UTC else "calls"


def load_inputs(
    engine: sa.Engine,
    run_date: date,
    customer_ids: Sequence[str] | None = None,
    usage_since: date | None = None,
    spend_from: str = "calls",
) -> BillingInputs:
    """Read customers, packages, assignments and usage for billing `run_date`.

    `customer_ids` limits customers, assignments and usage to those customers (packages and
    their versions are all read). An assignment a change moves between customers (a transfer,
    SPEC 10) is read when its base row or any of its changes names one of them, with every
    customer it names on either side (a `change_credit` lands on the old customer) and their
    calls; `versions` and `changes` hold the price versions and the changes of the assignments
    read. Usage is read through the end of `run_date`:

    * by default only the calls the date can use (`calc.usage.usage_needs`): per customer
      with a minimum-spend period ending on the date or a free-minute period holding the day
      before, its calls from the first day that needs them (at most `USAGE_LOOKBACK_DAYS`
      back); customers without such a period get none. One set-based query joining those
      (customer, first instant) pairs to the (customer_id, start_time) index;
    * with `usage_since`, every call (of the selected customers) from that date, as before.

    `spend_from="rollup"` (what a UTC run uses, `spend_source`): minimum spend reads the
    `daily_spend` rollup rows of its periods (`BillingInputs.daily_spend`,
    store/spend_rollup.py) and the calls are read for free minutes only. It needs UTC billing
    days (the engine refuses another time zone) and refuses `usage_since` (an every-call read
    is the calls path).

    Windows are widened by one day on each side so that any billing time zone is covered
    (the engine cuts the calendar days exactly).
    """
    if spend_from not in SPEND_SOURCES:
        raise ValueError(f"spend_from {spend_from!r}: give one of {', '.join(SPEND_SOURCES)}")
    rollup = spend_from == "rollup"
    if rollup and usage_since is not None:
        raise ValueError("usage_since reads every call: minimum spend then sums the calls "
                         "(spend_from='calls')")
    ids = None if customer_ids is None else sorted({str(c) for c in customer_ids})
    hi = datetime.combine(run_date + timedelta(days=2), time(), tzinfo=timezone.utc)
    daily_spend = None
    with db_errors(engine, "loading the billing inputs"), read_connection(engine) as conn:
        book = _book(conn, ids)
        customers, packages, assignments = book.customers, book.packages, book.assignments
        ids = book.customer_ids
        if usage_since is not None:
            lo = datetime.combine(usage_since - timedelta(days=1), time(), tzinfo=timezone.utc)
            usage = _read_usage(conn, lo, hi, ids, None)
        else:
            if rollup:  # the calls are read for free minutes only
                kinds = usage_needs_by_kind(customers, packages, book.held(), _day(run_date),
                                            USAGE_LOOKBACK_DAYS)
                needs = kinds["free_minutes"]
                daily_spend = read_spend(conn, kinds["minimum_spend"], run_date)
            else:
                needs = usage_needs(customers, packages, book.held(), _day(run_date),
                                    USAGE_LOOKBACK_DAYS)
            # the free-minute window alone (9 days): one index range per customer; the dense
            # scan has no start_time index to use and reads the whole table (docs/decisions.md)
            usage = _read_needed(conn, needs, run_date, hi, ids, len(customers),
                                 dense=not rollup)
            lo = _first_instant(needs)
        counters, consumed, granted = read_state(conn, run_date, lo, ids)
    return BillingInputs(customers=customers, packages=packages,
                         assignments=assignments, usage=usage,
                         counters=counters, consumed=consumed, granted=granted,
                         versions=book.versions, changes=book.changes,
                         daily_spend=daily_spend)


def load_range(engine: sa.Engine, first: date, last: date,
               customer_ids: Sequence[str] | None = None) -> BillingInputs:
    """The raw inputs of every billing date from `first` to `last`, read once (a backfill):
    customers, packages and assignments as for one date, and per customer the calls from the
    first day any of those dates needs through the end of `last`. Each date's engine run
    takes from them only the calls it uses (it cuts the days itself), so billing date D from
    these frames gives what `load_inputs(engine, D)` gives.

    A range stays on the calls path (no `daily_spend`): the rollup holds the credits stored
    now, while night D of a backfill must net the credits the earlier nights of the same
    backfill post (or, simulated or forecast, carry in memory) and no later ones."""
    if last < first:
        raise ValueError(f"backfill range ends before it starts: {first} .. {last}")
    ids = None if customer_ids is None else sorted({str(c) for c in customer_ids})
    hi = datetime.combine(last + timedelta(days=2), time(), tzinfo=timezone.utc)
    with db_errors(engine, "loading the billing inputs"), read_connection(engine) as conn:
        book = _book(conn, ids)
        customers, packages, ids = book.customers, book.packages, book.customer_ids
        needs = usage_needs(customers, packages, book.held(), _day(first), USAGE_LOOKBACK_DAYS,
                            last_day=_day(last))
        usage = _read_needed(conn, needs, last, hi, ids, len(customers))
        counters, consumed, granted = read_state(conn, first, _first_instant(needs), ids)
    return BillingInputs(customers=customers, packages=packages,
                         assignments=book.assignments, usage=usage,
                         counters=counters, consumed=consumed, granted=granted,
                         versions=book.versions, changes=book.changes)


@dataclass
class _Book:
    """The definitions a run reads: customers, packages, assignments, the packages' price
    versions and the assignments' changes; `customer_ids` the customers read (None: all)."""

    customers: pd.DataFrame
    packages: pd.DataFrame
    assignments: pd.DataFrame
    versions: pd.DataFrame
    changes: pd.DataFrame
    customer_ids: list[str] | None

    def held(self) -> pd.DataFrame:
        """The assignments as usage needs read them: each row once per (customer, package)
        it holds over time (`held_assignments`)."""
        return held_assignments(self.assignments, self.changes)


def _book(conn: sa.Connection, ids: list[str] | None) -> _Book:
    """Customers and assignments (of `ids`, or all), every package and version, and the
    changes of the assignments read. With `ids`, an assignment whose changes name one of
    them is read too, and every customer its base row or changes name."""
    packages = _packages(_select(conn, "packages", PACKAGE_COLUMNS, None, None))
    versions = _versions(conn)
    if ids is None:
        assignments = _select(conn, "assignments", ASSIGNMENT_COLUMNS, None, None)
        changes = _changes(conn, None)
        return _Book(_customers(_select(conn, "customers", CUSTOMER_COLUMNS, None, None)),
                     packages, _assignments(assignments), versions, changes, None)
    moved = _moved_to(conn, ids)  # assignments a change moves to one of `ids`
    assignments = _select(conn, "assignments", ASSIGNMENT_COLUMNS, "customer_id", ids)
    extra = sorted(set(moved) - set(assignments["assignment_id"].astype(str)))
    if extra:
        more = _select(conn, "assignments", ASSIGNMENT_COLUMNS, "assignment_id", extra)
        assignments = (pd.concat([assignments, more], ignore_index=True)
                       .sort_values("assignment_id", kind="stable", ignore_index=True))
    assignments = _assignments(assignments)
    changes = _changes(conn, sorted(assignments["assignment_id"].astype(str)))
    named = set(ids) | set(assignments["customer_id"].astype(str))
    named |= {str(c) for c in changes["customer_id"] if c is not None}
    customer_ids = sorted(named)
    customers = _customers(_select(conn, "customers", CUSTOMER_COLUMNS, "customer_id",
                                   customer_ids))
    return _Book(customers, packages, assignments, versions, changes, customer_ids)


def held_assignments(assignments: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """`assignments` plus, per change of customer or package, a copy of the assignment row
    under the customer and package in force from that change on (each change applied on top
    of the earlier ones, in effective order): what `calc.usage.usage_needs` reads, so the
    calls of every customer and package an assignment holds over time are read (a superset:
    the needs are per customer, from the first day any of its rows needs)."""
    if changes.empty or assignments.empty:
        return assignments
    moves = changes[changes["customer_id"].notna() | changes["package_id"].notna()]
    if moves.empty:
        return assignments
    moves = moves.sort_values(["assignment_id", "effective_from", "change_id"], kind="stable")
    base = assignments.set_index(assignments["assignment_id"].astype(str))
    rows = []
    for aid, group in moves.groupby("assignment_id", sort=False):
        if aid not in base.index:
            continue
        row = base.loc[aid]
        customer, package = row["customer_id"], row["package_id"]
        for change in group.itertuples(index=False):
            customer = change.customer_id if change.customer_id is not None else customer
            package = change.package_id if change.package_id is not None else package
            rows.append((aid, customer, package))
    if not rows:
        return assignments
    held = pd.DataFrame(rows, columns=["assignment_id", "customer_id", "package_id"])
    copies = assignments.drop(columns=["customer_id", "package_id"]).merge(
        held, on="assignment_id", how="inner")[assignments.columns]
    return pd.concat([assignments, copies], ignore_index=True)


def _moved_to(conn: sa.Connection, ids: list[str]) -> list[str]:
    """The assignments a change names one of the customers `ids` on."""
    c = assignment_changes.c
    found: set[str] = set()
    for chunk in _chunks(ids):
        if chunk:
            found.update(conn.execute(sa.select(c.assignment_id).distinct()
                                      .where(c.customer_id.in_(chunk))).scalars())
    return sorted(found)


def _versions(conn: sa.Connection) -> pd.DataFrame:
    """Every package's price versions (VERSION_COLUMNS; money int64 micros), by package and
    date."""
    v = package_versions.c
    rows = conn.execute(sa.select(
        v.package_id, v.effective_from, v.cost_micros, v.retail_micros, v.setup_cost_micros,
        v.setup_retail_micros, v.free_minutes).order_by(v.package_id, v.effective_from)).all()
    raw = pd.DataFrame([tuple(r) for r in rows], columns=VERSION_COLUMNS, dtype=object)
    out = {c: _int(raw[c]) if len(raw) else pd.Series([], dtype="int64")
           for c in VERSION_COLUMNS[2:]}
    return pd.DataFrame({"package_id": _text(raw["package_id"]),
                         "effective_from": _date(raw["effective_from"]), **out},
                        columns=VERSION_COLUMNS)


def _changes(conn: sa.Connection, assignment_ids: list[str] | None) -> pd.DataFrame:
    """The changes of `assignment_ids` (None: all) in effective order (CHANGE_COLUMNS):
    change_id int64, effective_from datetime64[s], quantity and free_minutes Int64 (<NA>:
    unchanged), package_id and customer_id str or None (unchanged), cancel and void bool."""
    c = assignment_changes.c
    query = sa.select(c.change_id, c.assignment_id, c.effective_from, c.quantity, c.package_id,
                      c.free_minutes, c.customer_id, c.cancel, c.void)
    rows: list = []
    for chunk in _chunks(assignment_ids):
        if chunk is None:
            rows += conn.execute(query).all()
        elif chunk:
            rows += conn.execute(query.where(c.assignment_id.in_(chunk))).all()
    raw = pd.DataFrame([tuple(r) for r in rows], columns=CHANGE_COLUMNS, dtype=object)
    frame = pd.DataFrame({
        "change_id": pd.to_numeric(raw["change_id"]).astype("int64"),
        "assignment_id": _text(raw["assignment_id"]),
        "effective_from": _date(raw["effective_from"]),
        "quantity": _nullable_int(raw["quantity"]),
        "package_id": _optional_text(raw["package_id"]),
        "free_minutes": _nullable_int(raw["free_minutes"]),
        "customer_id": _optional_text(raw["customer_id"]),
        "cancel": _bool(raw["cancel"]).astype(bool),
        "void": _bool(raw["void"]).astype(bool),
    }, columns=CHANGE_COLUMNS)
    return frame.sort_values(["assignment_id", "effective_from", "change_id"], kind="stable",
                             ignore_index=True)


def _optional_text(s: pd.Series) -> pd.Series:
    """Text, None where NULL."""
    return pd.Series([None if v is None or v != v else str(v) for v in s],
                     index=s.index, dtype=object)


def _first_instant(needs: pd.DataFrame) -> datetime | None:
    """The first instant any needed call can have (one day of margin), None without needs."""
    if needs.empty:
        return None
    first = int(needs["since_day"].min()) - 1
    return datetime.combine(date(1970, 1, 1) + timedelta(days=first), time(),
                            tzinfo=timezone.utc)


#: When the needed (customer, day) pairs are at least this share of every customer's days
#: from the earliest needed day, one range scan of the time window (then the same cut in
#: memory) reads faster than one index range per customer.
DENSE_SHARE = 0.3
#: The dense scan reads its window this many days at a time.
DENSE_SLICE_DAYS = 31


def _read_needed(conn: sa.Connection, needs: pd.DataFrame, until: date, hi: datetime,
                 ids: list[str] | None, n_customers: int, dense: bool = True) -> pd.DataFrame:
    """The calls of `needs` up to `hi`: per customer index ranges, or (dense needs, unless
    `dense` is False) one scan of the window from the earliest needed day, cut to exactly the
    same calls."""
    if needs.empty:
        return _read_usage(conn, None, hi, None, ([], []))
    end = _day(until) + 1
    first = int(needs["since_day"].min())
    covered = float((end - needs["since_day"].to_numpy(dtype="int64")).sum())
    if not dense or covered < DENSE_SHARE * max(n_customers, 1) * max(end - first, 1):
        return _read_usage(conn, None, hi, None, _need_pairs(needs))
    lo = datetime.combine(date.fromordinal(date(1970, 1, 1).toordinal() + first - 1), time(),
                          tzinfo=timezone.utc)
    # the window in slices, each cut before the next is read: memory holds one slice plus the
    # kept calls, not the whole window (a yearly minimum-spend period reaches a year back)
    parts = []
    while lo < hi:
        upto = min(lo + timedelta(days=DENSE_SLICE_DAYS), hi)
        usage = _read_usage(conn, lo, upto, ids, None)
        keep = needed_calls(usage, needs, until)
        parts.append(usage if keep.all() else usage[keep])
        lo = upto
    if len(parts) == 1:
        return parts[0].reset_index(drop=True)
    return pd.concat(parts, ignore_index=True)


def _day(d: date) -> int:
    return int(np.datetime64(d, "D").astype("int64"))


def _need_pairs(needs: pd.DataFrame) -> tuple[list[str], list[datetime]]:
    """(customer ids, first instants) with one day of margin before each first day."""
    days = needs["since_day"].to_numpy(dtype="int64") - 1
    firsts = (days.astype("datetime64[D]").astype("datetime64[us]")
              .astype(datetime).tolist())
    return ([str(c) for c in needs["customer_id"]],
            [f.replace(tzinfo=timezone.utc) for f in firsts])


def _read_usage(conn: sa.Connection, lo: datetime | None, hi: datetime,
                ids: list[str] | None, pairs) -> pd.DataFrame:
    if bulk.is_postgres(conn):
        return _usage_pg(conn, lo, hi, ids, pairs)
    return _usage_sqlite(conn, lo, hi, ids, pairs)


def reference_tables(engine: sa.Engine, packages: bool = True) -> dict[str, pd.DataFrame]:
    """Customers (and packages) as stored: what imported assignments and calls refer to."""
    with db_errors(engine, "reading customers and packages"), read_connection(engine) as conn:
        out = {"customers": _customers(_select(conn, "customers", CUSTOMER_COLUMNS, None, None))}
        if packages:
            out["packages"] = _packages(_select(conn, "packages", PACKAGE_COLUMNS, None, None))
    return out


# ----------------------------------------------------------------------------- helpers

def _chunks(ids: list[str] | None) -> Iterable[list[str] | None]:
    if ids is None:
        yield None
        return
    for i in range(0, len(ids), _IN_CHUNK):
        yield ids[i:i + _IN_CHUNK]


def _select(conn: sa.Connection, table: str, columns: list[str], id_col: str | None,
            ids: list[str] | None) -> pd.DataFrame:
    """Rows of `table` (all, or those whose `id_col` is in `ids`) as an object-column frame."""
    rows: list = []
    cols = ", ".join(f'"{stored_name(c)}" AS "{c}"' for c in columns)
    order = f'"{columns[0]}"'
    for chunk in _chunks(ids if id_col else None):
        if chunk is None:
            # the whole table: plain driver tuples (no Row objects; values as the driver
            # returns them, exactly what an untyped text() query gives)
            cur = conn.exec_driver_sql(f'SELECT {cols} FROM "{table}" ORDER BY {order}').cursor
            try:
                rows.extend(cur.fetchall())
            finally:
                cur.close()
        elif chunk:
            stmt = sa.text(
                f'SELECT {cols} FROM "{table}" WHERE "{id_col}" IN :ids ORDER BY {order}'
            ).bindparams(sa.bindparam("ids", expanding=True))
            rows.extend(conn.execute(stmt, {"ids": chunk}).all())
    if rows:
        frame = pd.DataFrame(rows, columns=columns, dtype=object)  # tuples -> columns in C
    else:
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in columns}, columns=columns)
    del rows
    if ids is not None and len(ids) > _IN_CHUNK:
        frame = frame.sort_values(columns[0], kind="stable", ignore_index=True)
    return frame


def _text(s: pd.Series, empty_for_null: bool = True) -> pd.Series:
    s = s.astype(object)
    if empty_for_null:
        s = s.where(s.notna(), "")
    return s.astype(str)


def _int(s: pd.Series) -> pd.Series:
    """Integers as stored; a NULL or unreadable value is passed on as it is, for
    `validate_inputs` to reject with the value in the reason (never silently 0)."""
    num = pd.to_numeric(s, errors="coerce")
    if len(s) and num.notna().all() and (num == num.round()).all():
        return num.astype("int64")
    return s.astype(object)


def _bool(s: pd.Series) -> pd.Series:
    """Booleans as stored (0/1 or text); validation reads and checks them."""
    if s.empty:
        return s.astype(bool)
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().all() and num.isin([0, 1]).all():
        return num.astype(bool)
    return s.astype(object)


def _date(s: pd.Series) -> pd.Series:
    """DATE values -> datetime64[s]; when some stored text does not parse, the column is
    passed on as ISO text so validation can name the bad value (never a silent NaT)."""
    if s.empty:
        return pd.Series(pd.array([], dtype="datetime64[s]"), index=s.index)
    vals = s.astype(object).where(s.notna(), None)
    kind = pd.api.types.infer_dtype(vals, skipna=True)
    if kind == "date":  # datetime.date objects (PostgreSQL DATE): numpy converts them in C
        days = np.array(vals.to_numpy(), dtype="datetime64[D]")
        ok = days[~np.isnat(days)]
        if not ok.size or (ok.min() >= _NS_MIN and ok.max() <= _NS_MAX):
            return pd.Series(days.astype("datetime64[s]"), index=s.index)
    if kind != "string":  # text needs no conversion; anything else goes through ISO text
        vals = vals.map(lambda v: v.isoformat() if isinstance(v, date) else v)
    out = pd.to_datetime(vals, format="ISO8601", errors="coerce")
    if (out.isna() & vals.notna()).any():
        return vals
    return out.astype("datetime64[s]")


# dates numpy converts exactly as the ISO-text path does (inside pandas' nanosecond range)
_NS_MIN = np.datetime64("1678-01-01", "D")
_NS_MAX = np.datetime64("2261-12-31", "D")


def _typed(raw: pd.DataFrame, entity: str, **special) -> pd.DataFrame:
    """Stored rows of `entity` typed by their declared kinds (billing_jobs/core/entities.py);
    `special` gives a column its own conversion."""
    out = {}
    for col, kind in ENTITY_KINDS[entity].items():
        if col in special:
            out[col] = special[col](raw[col])
        elif kind in INT_KINDS:
            out[col] = _int(raw[col])
        elif kind in DATE_KINDS:
            out[col] = _date(raw[col])
        elif kind in BOOL_KINDS:
            out[col] = _bool(raw[col])
        else:
            out[col] = _text(raw[col])
    return pd.DataFrame(out, columns=list(ENTITY_KINDS[entity]))


def _customers(raw: pd.DataFrame) -> pd.DataFrame:
    return _typed(raw, "customers")


def _frequency_match(s: pd.Series) -> pd.Series:
    fm = s.astype(object)
    return fm.where(fm.notna() & (fm.astype(str).str.strip() != ""), None)


def _packages(raw: pd.DataFrame) -> pd.DataFrame:
    return _typed(raw, "packages", frequency_match=_frequency_match)


def _nullable_int(s: pd.Series):
    num = pd.to_numeric(s, errors="coerce")
    if (num.isna() & s.notna()).any():  # unreadable: validation names the value
        return s.astype(object)
    return pd.array(num.astype(object).where(num.notna(), None), dtype="Int64")


def _assignments(raw: pd.DataFrame) -> pd.DataFrame:
    return _typed(raw, "assignments", free_minutes=_nullable_int)


# ----------------------------------------------------------------------------- usage

_USAGE_SCHEMA = pa.schema([
    ("call_id", pa.string()), ("customer_id", pa.string()), ("start_us", pa.int64()),
    ("destination", pa.string()), ("duration_s", pa.int64()), ("charge", pa.int64()),
])


def _usage_frame(call_id, customer_id, start_time, destination, duration_s, charge) -> pd.DataFrame:
    return pd.DataFrame({
        "call_id": call_id,
        "customer_id": customer_id,
        "start_time": start_time,
        "destination": destination,
        "duration_s": duration_s,
        "charge": charge,
    }, columns=USAGE_COLUMNS)


_PG_COLUMNS = ("u.call_id, u.customer_id, (extract(epoch FROM u.start_time) * 1000000)::bigint, "
               "coalesce(u.destination, ''), u.duration_s, u.charge_micros")


def _usage_pg(conn: sa.Connection, lo: datetime | None, hi: datetime, ids: list[str] | None,
              pairs=None) -> pd.DataFrame:
    raw = conn.connection.driver_connection  # psycopg.Connection, inside our transaction
    queries: list[tuple[str, list]] = []
    if pairs is not None:
        if pairs[0]:
            queries.append((
                f"SELECT {_PG_COLUMNS} FROM unnest(%s::text[], %s::timestamptz[]) AS n(cid, lo) "
                "JOIN usage u ON u.customer_id = n.cid AND u.start_time >= n.lo "
                "AND u.start_time < %s", [pairs[0], pairs[1], hi]))
    else:
        for chunk in _chunks(ids):
            if chunk is not None and not chunk:
                continue
            where = "u.start_time >= %s AND u.start_time < %s"
            params: list = [lo, hi]
            if chunk is not None:
                where += " AND u.customer_id = ANY(%s::text[])"
                params.append(chunk)
            queries.append((f"SELECT {_PG_COLUMNS} FROM usage u WHERE {where}", params))
    with raw.cursor() as cur:
        table = bulk.copy_out(cur, queries, _USAGE_SCHEMA)
    return _usage_from_arrow(table)


def _usage_from_arrow(table: pa.Table) -> pd.DataFrame:
    start = pd.Series(
        table.column("start_us").to_numpy().astype("int64"), dtype="int64"
    ).astype("datetime64[us]").dt.tz_localize("UTC")
    return _usage_frame(
        pd.Series(table.column("call_id").to_pandas(), dtype=str).reset_index(drop=True),
        pd.Series(table.column("customer_id").to_pandas(), dtype=str).reset_index(drop=True),
        start,
        pd.Series(table.column("destination").to_pandas(), dtype=str).reset_index(drop=True),
        pd.Series(table.column("duration_s").to_numpy(), dtype="int64"),
        pd.Series(table.column("charge").to_numpy(), dtype="int64"),
    )


def _sqlite_ts(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _int_array(values: list) -> np.ndarray:
    try:
        return np.array(values, dtype="int64")
    except (TypeError, ValueError, OverflowError):  # text or NULL stored another way
        return _int(pd.Series(values, dtype=object)).to_numpy()


_SQLITE_COLUMNS = ("u.call_id, u.customer_id, u.start_time, coalesce(u.destination, ''), "
                   "u.duration_s, u.charge_micros")


def _usage_sqlite(conn: sa.Connection, lo: datetime | None, hi: datetime,
                  ids: list[str] | None, pairs=None) -> pd.DataFrame:
    text_cols: dict[int, list[pa.Array]] = {0: [], 1: [], 2: [], 3: []}
    int_cols: dict[int, list[np.ndarray]] = {4: [], 5: []}
    queries: list[tuple[str, tuple]] = []
    if pairs is not None:
        if pairs[0]:
            # the (customer, first instant) pairs as one JSON parameter; the CROSS JOIN keeps
            # them the outer loop, each a range scan of the (customer_id, start_time) index
            doc = json.dumps([[c, _sqlite_ts(f)] for c, f in zip(*pairs)])
            queries.append((
                "WITH n(cid, lo) AS MATERIALIZED (SELECT json_extract(value, '$[0]'), "
                "json_extract(value, '$[1]') FROM json_each(?)) "
                f"SELECT {_SQLITE_COLUMNS} FROM n CROSS JOIN usage AS u "
                "WHERE u.customer_id = n.cid AND u.start_time >= n.lo AND u.start_time < ?",
                (doc, _sqlite_ts(hi))))
    else:
        for chunk in _chunks(ids):
            if chunk is not None and not chunk:
                continue
            where = "u.start_time >= ? AND u.start_time < ?"
            params: list = [_sqlite_ts(lo), _sqlite_ts(hi)]
            if chunk is not None:
                where += f" AND u.customer_id IN ({', '.join('?' * len(chunk))})"
                params.extend(chunk)
            queries.append((f"SELECT {_SQLITE_COLUMNS} FROM usage AS u WHERE {where}",
                            tuple(params)))
    for query, params in queries:
        cur = conn.exec_driver_sql(query, params).cursor
        while rows := cur.fetchmany(_FETCH_CHUNK):
            for i in text_cols:
                text_cols[i].append(pa.array(list(map(itemgetter(i), rows)), type=pa.string()))
            for i in int_cols:
                int_cols[i].append(_int_array(list(map(itemgetter(i), rows))))
        cur.close()

    def text(i: int) -> pd.Series:
        return pd.Series(pa.chunked_array(text_cols[i], type=pa.string()).to_pandas(), dtype=str)

    def ints(i: int) -> pd.Series:
        parts = int_cols[i]
        return pd.Series(np.concatenate(parts) if parts else np.array([], dtype="int64"),
                         dtype="int64")

    return _usage_frame(text(0), text(1), _sqlite_times(text_cols[2]), text(3), ints(4), ints(5))


def _sqlite_times(chunks: list[pa.Array]) -> pd.Series:
    """Stored timestamp text (UTC, 'YYYY-MM-DD HH:MM:SS.ffffff') -> datetime64[us, UTC].

    Arrow's ISO-8601 cast reads the stored form ~10x faster than pandas and gives the same
    instant; when any value is in another form (or unreadable) the whole column goes through
    pandas' ISO-8601 parser as before, where an unreadable value becomes NaT for
    validation to reject."""
    arr = pa.chunked_array(chunks, type=pa.string())
    try:
        ts = arr.cast(pa.timestamp("us"))
        if ts.null_count == arr.null_count == 0:
            values = ts.to_numpy() if ts.num_chunks != 1 else ts.chunk(0).to_numpy()
            return pd.Series(values.astype("datetime64[us]"), dtype="datetime64[us]"
                             ).dt.tz_localize("UTC")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = pd.Series(arr.to_pandas(), dtype=str)
    return pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce").dt.as_unit("us")
