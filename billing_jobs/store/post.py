"""Settle a computed result: simulate (read-only) or post it exactly once.

Exactly once is enforced by the database, not by this code: the ledger's UNIQUE
(assignment_id, kind, period_start) and the grants' UNIQUE (assignment_id, period_start)
with INSERT ... ON CONFLICT DO NOTHING. Whatever else happens (a re-run, two posters at
once, a retry after a crash, an overlapping backfill) a key is written once, and only the
process that wrote it debits the balance for it.

Posting works in batches of customers (ordered by customer_id): DEFAULT_BATCH_CUSTOMERS_PG
(25,000: a night of 1M assignments is 4 transactions) on PostgreSQL, DEFAULT_BATCH_CUSTOMERS
on SQLite. One batch is one transaction holding all of its customers' ledger rows, balance
debits and grants, so a crash leaves every customer either fully posted for the result or
not at all; the next run completes the rest. Per batch:

1. the batch's lines and grants are staged in temporary tables (PostgreSQL: COPY; SQLite:
   executemany), each row with its position (`seq`) in the result;
2. INSERT INTO ledger ... SELECT ... ORDER BY key ... ON CONFLICT DO NOTHING RETURNING the
   keys actually inserted (a key another run wrote is not returned); PostgreSQL joins them
   back to the staged rows in the same statement (`WITH ins AS (INSERT ...) SELECT t.seq`),
   so only the staged rows' integer `seq` comes back; SQLite's keys are matched vectorised;
3. the customers (locked in customer_id order when the batch began, store/ledger.py) are
   debited by the sum of the auto-decrement amounts of the staged lines at those `seq`
   (summed exactly, in numpy), the balance bound checked for all of them in one query;
4. the grants a change from a date cut (`BillingResult.grant_cuts`, SPEC 10) get their new
   end and seconds (never below the seconds used): only a grant still ending after the cut's
   day is updated, so a cut is applied once however often the date is posted; before
   5. grants likewise (INSERT ... ON CONFLICT DO NOTHING RETURNING), so the new grant of a split
   period never overlaps the old one uncut (migration 0008), then COMMIT.

`post_in(conn, result, run_id)` posts a small result (one assignment's lines of a date) the
same way inside the caller's transaction: the change command records the change and posts the
lines it creates in one transaction (corrections/changes.py).

Fault injection for tests (billing_jobs/core/faults.py): BILLING_CRASH_AT=`<point>:<batch>` with point one of
`mid_batch` (after the ledger insert, before the debits), `before_commit`, `after_commit`,
and batch counted from 1, SIGKILLs the process at that point.
"""

from __future__ import annotations

import time as _time
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from billing_jobs.core.frames import (CONSUMPTION_COLUMNS, GRANT_COLUMNS,
                                      GRANT_COUNTER_COLUMNS, BillingResult, empty_frame)
from billing_jobs.core.faults import crash_point
from billing_jobs.core.errors import GateError
from billing_jobs.core.vocab import GRANT_KEY, POSTING_KEY, LineKind, LineStatus
from billing_jobs.store import bulk, ledger
from billing_jobs.store.db import db_errors, read_connection
from billing_jobs.store.ledger_view import (held_by_ledger, held_grant_differences,
                                           overlap_differences)
from billing_jobs.store.overlaps import Overlaps, overlapping
from billing_jobs.store.tables import stored_name

DEFAULT_BATCH_CUSTOMERS = 2000
#: PostgreSQL: fewer, larger transactions (a batch's fixed cost - temporary tables, ANALYZE,
#: a round trip per statement - dominated at 2000; 1M assignments = 100k customers: 4 batches)
DEFAULT_BATCH_CUSTOMERS_PG = 25_000
_DEADLOCK_RETRIES = 5

ProgressFn = Callable[[int, int], None]

# Staged columns: (name, SQL type on PostgreSQL). SQLite gets the same names, untyped.
_LINE_STAGE = [
    ("seq", "bigint"), ("run_date", "date"), ("customer_id", "text"),
    ("assignment_id", "text"), ("package_id", "text"), ("kind", "text"),
    ("period_start", "date"), ("period_end", "date"), ("quantity", "bigint"),
    ("unit_price", "bigint"), ("amount", "bigint"), ("cost", "bigint"), ("currency", "text"),
    ("auto_decrement", "boolean"),
]
_GRANT_STAGE = [
    ("seq", "bigint"), ("run_date", "date"), ("customer_id", "text"),
    ("assignment_id", "text"), ("package_id", "text"), ("period_start", "date"),
    ("period_end", "date"), ("destination", "text"), ("seconds", "bigint"),
]
#: free minutes (docs/free_minutes.md): the calls consumed and each touched grant's counters
_CONSUMPTION_STAGE = [
    ("seq", "bigint"), ("call_id", "text"), ("customer_id", "text"), ("assignment_id", "text"),
    ("period_start", "date"), ("start_time", "timestamptz"), ("seconds", "bigint"),
    ("covered", "bigint"), ("late", "boolean"),
]
_COUNTER_STAGE = [
    ("seq", "bigint"), ("customer_id", "text"), ("assignment_id", "text"),
    ("period_start", "date"), ("period_end", "date"), ("seconds_granted", "bigint"),
    ("seconds_used_before", "bigint"), ("seconds_used", "bigint"), ("credited", "bigint"),
]
#: a grant cut by a change from a date (SPEC 10): `customer_id` is the batch it goes with (the
#: customer of the new grant of the split, so both are in one transaction)
_CUT_STAGE = [
    ("seq", "bigint"), ("customer_id", "text"), ("assignment_id", "text"),
    ("period_start", "date"), ("period_end", "date"), ("seconds", "bigint"),
]
_LINE_OUT = [c for c, _ in _LINE_STAGE if c != "seq"]
#: the ledger columns the staged line columns go to (money columns say "_micros")
_LEDGER_COLS = [stored_name(c) for c in _LINE_OUT]
_GRANT_OUT = [c for c, _ in _GRANT_STAGE if c != "seq"]


def post_result(
    engine: sa.Engine,
    result: BillingResult,
    simulate: bool,
    run_id: str,
    *,
    batch_customers: int | None = None,
    progress: ProgressFn | None = None,
) -> BillingResult:
    """Return `result` with a `status` column on due_lines and grants.

    simulate=True reads only: 'already_posted' for keys already in the database, else
    'simulated'. simulate=False posts: lines 'posted' (auto_decrement, balance debited) or
    'invoiced' (balance untouched), grants 'posted'; keys written earlier 'already_posted'.
    `batch_customers`: customers per transaction (default: DEFAULT_BATCH_CUSTOMERS_PG on
    PostgreSQL, DEFAULT_BATCH_CUSTOMERS on SQLite).
    """
    if batch_customers is None:
        batch_customers = (DEFAULT_BATCH_CUSTOMERS_PG if bulk.is_postgres(engine)
                           else DEFAULT_BATCH_CUSTOMERS)
    lines = result.due_lines
    grants = result.grants
    _check_unique(lines, list(POSTING_KEY), "due lines")
    _check_unique(grants, list(GRANT_KEY), "grants")
    line_tab = _line_table(lines)
    grant_tab = _grant_table(grants)
    moved = result.grant_counters
    if len(moved):  # only the grants whose counters this date moves
        moved = moved[(moved["seconds_used"] != moved["seconds_used_before"])
                      | (moved["credited"] != moved["credited_before"])]
    use_tab = _stage_table(result.consumption, _CONSUMPTION_STAGE)
    counter_tab = _stage_table(moved, _COUNTER_STAGE)
    cut_tab = _stage_table(_cuts_by_batch(result.grant_cuts, grants), _CUT_STAGE)
    run_date = lines["run_date"].iloc[0] if len(lines) else (
        result.consumption["run_date"].iloc[0] if len(result.consumption) else None)
    deferred: set[str] = set()
    if simulate:
        with db_errors(engine, "simulating the posting"):
            line_done, grant_done, held = _simulate(engine, line_tab, grant_tab)
        line_status = np.where(line_done, LineStatus.ALREADY_POSTED, LineStatus.SIMULATED)
        grant_status = np.where(grant_done, LineStatus.ALREADY_POSTED, LineStatus.SIMULATED)
    else:
        with db_errors(engine, "posting"):
            line_new, grant_new, deferred, held = _post(engine, line_tab, grant_tab, run_id,
                                        max(1, int(batch_customers)), progress,
                                        use_tab, counter_tab, run_date, cut_tab)
        auto = (lines["auto_decrement"].to_numpy(dtype=bool) if len(lines)
                else np.zeros(0, dtype=bool))
        line_status = np.where(line_new, np.where(auto, LineStatus.POSTED, LineStatus.INVOICED),
                               LineStatus.ALREADY_POSTED)
        if deferred and len(lines):  # free minutes another run consumed meanwhile
            late = ((lines["kind"] == LineKind.FREE_MINUTES_CREDIT)
                    & lines["customer_id"].astype(str).isin(deferred)).to_numpy()
            line_status = np.where(late & ~line_new, LineStatus.DEFERRED, line_status)
        grant_status = np.where(grant_new, LineStatus.POSTED, LineStatus.ALREADY_POSTED)
    if held:
        line_status = np.asarray(line_status, dtype=object)
        line_status[sorted(held)] = LineStatus.OVERLAPS_POSTED
    lines = lines.assign(status=pd.Series(line_status, index=lines.index, dtype=str))
    grants = grants.assign(status=pd.Series(grant_status, index=grants.index, dtype=str))
    with db_errors(engine, "reading what the ledger holds"):
        lines, differences = held_by_ledger(engine, lines)  # already_posted: the ledger's row
    if held:
        differences = pd.concat([differences, overlap_differences(lines, held)],
                                ignore_index=True)
    if len(result.held_grants):  # never grant an assignment's days twice (#17 item 2)
        held_rows = result.held_grants[GRANT_COLUMNS].assign(status=LineStatus.OVERLAPS_POSTED)
        grants = pd.concat([g for g in (grants, held_rows) if len(g)], ignore_index=True)
        differences = pd.concat([d for d in (differences,
                                             held_grant_differences(result.held_grants))
                                 if len(d)], ignore_index=True)
    consumption = result.consumption
    if not simulate and deferred and len(consumption):  # not what this run consumed
        consumption = consumption[~consumption["customer_id"].astype(str).isin(deferred)]
    return BillingResult(due_lines=lines, grants=grants, utilisation=result.utilisation,
                         extended_ends=result.extended_ends,
                         consumption=consumption.reset_index(drop=True),
                         grant_counters=result.grant_counters, differences=differences,
                         held_grants=result.held_grants, grant_cuts=result.grant_cuts)


def post_in(conn: sa.Connection, result: BillingResult, run_id: str) -> BillingResult:
    """Post `result` (lines, grants and grant cuts; no consumption) inside the caller's
    transaction, as one batch under the same exactly-once rules as `post_result`; the caller
    locked its customers (store/ledger.py `lock_customers`) and commits. Returns the result
    with a `status` per line and grant (posted | invoiced | already_posted | overlaps_posted)."""
    lines, grants = result.due_lines, result.grants
    _check_unique(lines, list(POSTING_KEY), "due lines")
    _check_unique(grants, list(GRANT_KEY), "grants")
    line_tab, grant_tab = _line_table(lines), _grant_table(grants)
    empty_uses = _stage_table(empty_frame(CONSUMPTION_COLUMNS), _CONSUMPTION_STAGE)
    empty_counters = _stage_table(empty_frame(GRANT_COUNTER_COLUMNS), _COUNTER_STAGE)
    cut_tab = _stage_table(_cuts_by_batch(result.grant_cuts, grants), _CUT_STAGE)
    now = datetime.now(timezone.utc)
    stamp = now if bulk.is_postgres(conn) else now.strftime("%Y-%m-%d %H:%M:%S.%f")
    new_lines, new_grants, _deferred, held = _post_rows(
        conn, 1, line_tab, grant_tab, run_id, empty_uses, empty_counters, None, stamp, cut_tab)
    line_new = np.zeros(len(lines), dtype=bool)
    line_new[new_lines] = True
    grant_new = np.zeros(len(grants), dtype=bool)
    grant_new[new_grants] = True
    auto = (lines["auto_decrement"].to_numpy(dtype=bool) if len(lines)
            else np.zeros(0, dtype=bool))
    line_status = np.asarray(np.where(line_new, np.where(auto, LineStatus.POSTED,
                                                         LineStatus.INVOICED),
                                      LineStatus.ALREADY_POSTED), dtype=object)
    if held:
        line_status[sorted(held)] = LineStatus.OVERLAPS_POSTED
    grant_status = np.where(grant_new, LineStatus.POSTED, LineStatus.ALREADY_POSTED)
    return BillingResult(
        due_lines=lines.assign(status=pd.Series(line_status, index=lines.index, dtype=str)),
        grants=grants.assign(status=pd.Series(grant_status, index=grants.index, dtype=str)),
        utilisation=result.utilisation, grant_cuts=result.grant_cuts)


def _cuts_by_batch(cuts: pd.DataFrame, grants: pd.DataFrame) -> pd.DataFrame:
    """The grant cuts with `customer_id` replaced by the customer of the new grant the same
    split gives (same assignment, period_start = the cut's day), so that the cut is applied in
    the transaction that grants it (a transfer moves the new grant to another customer)."""
    if not len(cuts) or not len(grants):
        return cuts
    key = pd.MultiIndex.from_arrays([grants["assignment_id"].astype(str),
                                     pd.to_datetime(grants["period_start"])])
    at = key.get_indexer(pd.MultiIndex.from_arrays([cuts["assignment_id"].astype(str),
                                                    pd.to_datetime(cuts["period_end"])]))
    new_customer = grants["customer_id"].astype(object).to_numpy()[np.maximum(at, 0)]
    return cuts.assign(customer_id=np.where(at >= 0, new_customer,
                                            cuts["customer_id"].astype(object).to_numpy()))


# ----------------------------------------------------------------------------- frames -> arrow

def _check_unique(frame: pd.DataFrame, key: list[str], what: str) -> None:
    if len(frame) and frame.duplicated(subset=key).any():
        dup = frame.loc[frame.duplicated(subset=key, keep=False), key].head(3)
        raise GateError(
            f"refusing to post: {what} repeat a posting key {tuple(key)}: "
            + "; ".join(str(tuple(map(str, r))) for r in dup.itertuples(index=False))
        )


def _dates(s: pd.Series) -> pa.Array:
    values = pd.to_datetime(s, errors="coerce").to_numpy().astype("datetime64[s]")
    return pc.cast(pa.array(values, from_pandas=True), pa.date32())


def _texts(s: pd.Series) -> pa.Array:
    return pa.array(s.astype(object).to_numpy(), type=pa.string(), from_pandas=True)


def _ints(s: pd.Series) -> pa.Array:
    return pa.array(s.to_numpy(dtype="int64"))


def _instants(s: pd.Series) -> pa.Array:
    """UTC timestamps as text in the stored form (SQLite) / ISO with offset (PostgreSQL):
    arrow's cast of a naive microsecond timestamp (always 6 decimals), then the offset."""
    t = pd.to_datetime(s, utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    text = pc.cast(pa.array(t, from_pandas=True), pa.string())
    return pc.binary_join_element_wise(text, pa.scalar("+00:00"), "")


_TO_ARROW = {"date": _dates, "text": _texts, "bigint": _ints, "timestamptz": _instants,
             "boolean": lambda s: pa.array(s.to_numpy(dtype=bool))}


def _stage_table(frame: pd.DataFrame, spec: list[tuple[str, str]]) -> pa.Table:
    """The rows of `frame` as an arrow table in the staging layout `spec` (`seq` = row order)."""
    if len(frame) == 0:
        return pa.schema([(c, _arrow_type(t)) for c, t in spec]).empty_table()
    columns = {"seq": pa.array(np.arange(len(frame), dtype="int64"))}
    for column, sql_type in spec:
        if column != "seq":
            columns[column] = _TO_ARROW[sql_type](frame[column])
    return pa.table(columns)


def _line_table(lines: pd.DataFrame) -> pa.Table:
    return _stage_table(lines, _LINE_STAGE)


def _grant_table(grants: pd.DataFrame) -> pa.Table:
    dest = grants["destination"].astype(object).where(grants["destination"].notna(), "")
    return _stage_table(grants.assign(destination=dest), _GRANT_STAGE)


def _arrow_type(sql_type: str) -> pa.DataType:
    return {"bigint": pa.int64(), "date": pa.date32(), "text": pa.string(),
            "boolean": pa.bool_(), "timestamptz": pa.string()}[sql_type]


# ----------------------------------------------------------------------------- staging

def _stage(conn: sa.Connection, name: str, spec: list[tuple[str, str]], table: pa.Table) -> None:
    """Create temp table `name` in the current transaction and fill it with `table`."""
    raw = conn.connection.driver_connection
    cols = ", ".join(c for c, _ in spec)
    if bulk.is_postgres(conn):
        with raw.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE {name} ("
                        + ", ".join(f"{c} {t}" for c, t in spec) + ") ON COMMIT DROP")
            if table.num_rows:
                bulk.copy_in(cur, name, cols, table.select([c for c, _ in spec]))
            cur.execute(f"ANALYZE {name}")
    else:
        cur = raw.cursor()
        try:
            cur.execute(f"CREATE TEMP TABLE {name} ("
                        + ", ".join(f"{c} {_sqlite_type(t)}" for c, t in spec) + ")")
            if table.num_rows:
                stored = []
                for c, t in spec:
                    col = table.column(c)
                    if t == "date":
                        col = pc.strftime(col, "%Y-%m-%d")
                    elif t == "boolean":
                        col = pc.cast(col, pa.int64())
                    elif t == "timestamptz":  # the stored form: UTC, no offset
                        col = pc.utf8_slice_codeunits(col, 0, 26)
                    stored.append(col)
                marks = ", ".join("?" * len(spec))
                bulk.insert_many(cur, f"INSERT INTO temp.{name} ({cols}) VALUES ({marks})",
                                 pa.table(stored, names=[c for c, _ in spec]))
        finally:
            cur.close()


def _sqlite_type(sql_type: str) -> str:
    return {"bigint": "INTEGER", "date": "DATE", "text": "TEXT", "boolean": "INTEGER",
            "timestamptz": "TEXT"}[sql_type]


def _seqs(conn: sa.Connection, sql: str, params: tuple = ()) -> np.ndarray:
    rows = conn.exec_driver_sql(sql, params).all()
    return np.fromiter((r[0] for r in rows), dtype="int64", count=len(rows))


# ----------------------------------------------------------------------------- simulate

def _simulate(engine: sa.Engine, lines: pa.Table, grants: pa.Table
              ) -> tuple[np.ndarray, np.ndarray, Overlaps]:
    line_done = np.zeros(lines.num_rows, dtype=bool)
    grant_done = np.zeros(grants.num_rows, dtype=bool)
    if not lines.num_rows and not grants.num_rows:
        return line_done, grant_done, {}
    with read_connection(engine) as conn:
        cols = ["seq", "assignment_id", "kind", "period_start", "period_end", "amount"]
        _stage(conn, "_sim_lines", [c for c in _LINE_STAGE if c[0] in cols], lines.select(cols))
        _stage(conn, "_sim_grants", [("seq", "bigint"), ("assignment_id", "text"),
                                     ("period_start", "date")],
               grants.select(["seq", "assignment_id", "period_start"]))
        line_done[_seqs(conn, _EXISTING_LINES.format(t="_sim_lines"))] = True
        grant_done[_seqs(conn, _EXISTING_GRANTS.format(t="_sim_grants"))] = True
        held = overlapping(conn, "_sim_lines")
        bulk.drop_temp(conn, "_sim_lines", "_sim_grants")
    return line_done, grant_done, held


# "already posted": store/ledger.py's rule
_EXISTING_LINES = "SELECT t.seq FROM {t} t WHERE " + ledger.is_posted("t")
_EXISTING_GRANTS = (
    "SELECT t.seq FROM {t} t JOIN grants g ON g.assignment_id = t.assignment_id "
    "AND g.period_start = t.period_start AND g.withdrawn_at IS NULL"
)


# ----------------------------------------------------------------------------- post

def _customers(tables: list[pa.Table]) -> pa.Array:
    """The distinct customer ids of `tables`, sorted (code point order, as Python sorts)."""
    chunks = [c.cast(pa.string()) for t in tables for c in t.column("customer_id").chunks]
    if not chunks:
        return pa.array([], type=pa.string())
    ids = pc.unique(pa.chunked_array(chunks, type=pa.string()))
    return ids.take(pc.array_sort_indices(ids))


def _batches(tables: list[pa.Table], size: int):
    """Yield (batch number from 1, [rows of each table]) for groups of `size` customers, the
    customers taken in id order (a customer's rows of every table are in one batch)."""
    ids = _customers(tables)
    orders, bounds = [], []
    for t in tables:
        cust = t.column("customer_id").cast(pa.string())
        batch = (pc.index_in(cust, value_set=ids).to_numpy(zero_copy_only=False)
                 .astype("int64") // size if t.num_rows else np.zeros(0, dtype="int64"))
        order = np.argsort(batch, kind="stable")
        orders.append(order)
        bounds.append(np.searchsorted(batch[order], np.arange(0, len(ids) // size + 2)))
    for k in range((len(ids) + size - 1) // size):
        yield k + 1, [t.take(o[b[k]:b[k + 1]]) for t, o, b in zip(tables, orders, bounds)]


def _post(engine: sa.Engine, lines: pa.Table, grants: pa.Table, run_id: str, size: int,
          progress: ProgressFn | None, uses: pa.Table, counters: pa.Table, run_date,
          cuts: pa.Table) -> tuple[np.ndarray, np.ndarray, set[str], Overlaps]:
    deferred: set[str] = set()
    held: Overlaps = {}
    line_new = np.zeros(lines.num_rows, dtype=bool)
    grant_new = np.zeros(grants.num_rows, dtype=bool)
    total = lines.num_rows + grants.num_rows
    done = 0
    for number, (line_rows, grant_rows, use_rows, counter_rows, cut_rows) in _batches(
            [lines, grants, uses, counters, cuts], size):
        for attempt in range(_DEADLOCK_RETRIES + 1):
            try:
                new_lines, new_grants, moved, held_here = _post_batch(
                    engine, number, line_rows, grant_rows, run_id, use_rows, counter_rows,
                    run_date, cut_rows)
                break
            except sa.exc.OperationalError as exc:
                if attempt == _DEADLOCK_RETRIES or not _retryable(exc):
                    raise
                _time.sleep(0.05 * (attempt + 1))
        line_new[new_lines] = True
        grant_new[new_grants] = True
        deferred.update(moved)
        held.update(held_here)
        done += line_rows.num_rows + grant_rows.num_rows
        if progress is not None:
            progress(done, total)
    return line_new, grant_new, deferred, held


def _retryable(exc: sa.exc.OperationalError) -> bool:
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return code in ("40P01", "40001")  # deadlock detected, serialization failure


def _key_values(values, date: bool) -> pd.Index:
    """One key column (staged arrow column or returned values) as comparable text; a date
    column as 'YYYY-MM-DD'."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_date32(values.type):
            values = pc.cast(values, pa.string())
        return pd.Index(values.to_numpy(zero_copy_only=False).astype(object)).astype(str)
    out = pd.Series(values, dtype=object)
    return pd.Index((out.map(_iso) if date else out).astype(str))


def _iso(value) -> str:
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.strftime("%Y-%m-%d")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)[:10]


def _returned_seqs(returned: list, table: pa.Table, key: list[str]) -> np.ndarray:
    """Positions (seq) of the staged rows whose key came back from RETURNING (SQLite; the
    PostgreSQL statements return the staged `seq` themselves, `_insert_seqs`)."""
    if not returned or table.num_rows == 0:
        return np.zeros(0, dtype="int64")
    dates = [pa.types.is_date32(table.column(c).type) for c in key]
    staged = pd.MultiIndex.from_arrays([_key_values(table.column(c), d)
                                        for c, d in zip(key, dates)])
    got = pd.MultiIndex.from_arrays([_key_values([r[i] for r in returned], d)
                                     for i, d in enumerate(dates)])
    hit = staged.isin(got)
    return table.column("seq").to_numpy()[hit].astype("int64")


def _insert_seqs(conn: sa.Connection, insert: str, params: tuple, stage: str, table: pa.Table,
                 key: list[str]) -> np.ndarray:
    """Run `insert` (INSERT ... SELECT FROM `stage` ... RETURNING the `key` columns) and return
    the `seq` of the staged rows it inserted. PostgreSQL: one statement joins the returned keys
    back to the staged table, so only integers come back; SQLite: the keys, matched here."""
    if bulk.is_postgres(conn):
        on = " AND ".join(f"t.{c} = ins.{c}" for c in key)
        return _seqs(conn, f"WITH ins AS ({insert}) SELECT t.seq FROM ins JOIN {stage} t ON {on}",
                     params)
    return _returned_seqs(conn.exec_driver_sql(insert, params).all(), table, key)


def _line_debits(lines: pa.Table, seqs: np.ndarray) -> dict[str, int]:
    """{customer_id: sum of amount} of the staged auto-decrement lines at `seqs` (the rows this
    transaction inserted as `posted`), exact: summed as 32-bit halves, joined as Python ints."""
    if not len(seqs) or lines.num_rows == 0:
        return {}
    rows = pd.Index(lines.column("seq").to_numpy()).get_indexer(seqs)
    amount = lines.column("amount").to_numpy()[rows]
    moves = lines.column("auto_decrement").to_numpy(zero_copy_only=False)[rows] & (amount != 0)
    if not moves.any():
        return {}
    amount = amount[moves]
    frame = pd.DataFrame({
        "customer": lines.column("customer_id").to_numpy(zero_copy_only=False)[rows][moves],
        "hi": amount >> 32, "lo": amount & 0xFFFFFFFF})
    sums = frame.groupby("customer", sort=True)[["hi", "lo"]].sum()
    return {str(c): (int(h) << 32) + int(lo)
            for c, h, lo in zip(sums.index, sums["hi"].to_numpy(), sums["lo"].to_numpy())}


#: a staged line's ledger status: auto-decrement lines move the balance, the others are invoiced
_STATUS = (f"CASE WHEN {{t}}.auto_decrement THEN '{LineStatus.POSTED}' "
           f"ELSE '{LineStatus.INVOICED}' END")
#: exactly once: a key (and revision) another run wrote is not inserted and not returned
_ONCE = ("ON CONFLICT (assignment_id, kind, period_start, revision) DO NOTHING "
         "RETURNING " + ", ".join(POSTING_KEY))


def _refused(reason: str) -> GateError:
    return GateError(f"refusing to post: {reason}; nothing posted for its batch")


def _post_batch(engine: sa.Engine, number: int, lines: pa.Table, grants: pa.Table,
                run_id: str, uses: pa.Table, counters: pa.Table, run_date, cuts: pa.Table
                ) -> tuple[np.ndarray, np.ndarray, list[str], Overlaps]:
    now = datetime.now(timezone.utc)
    with engine.connect() as conn:
        pg = bulk.is_postgres(conn)
        stamp = now if pg else now.strftime("%Y-%m-%d %H:%M:%S.%f")
        trans = conn.begin()  # SQLite: BEGIN IMMEDIATE, concurrent posters queue here
        try:
            # PostgreSQL: the batch's customers, before anything else, so that the
            # free-minute state read below cannot change under this transaction
            ledger.lock_customers(conn, _customers([lines, grants, uses]).to_pylist())
            if pg:  # a large batch's sorts (ORDER BY key of each insert) in memory, not on
                # disk (64MB still spilled the 474k consumed call parts of a 1M batch); no JIT:
                # compiling each statement's plan cost more than it saved (auto_explain, 1M)
                conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
                conn.exec_driver_sql("SET LOCAL jit = off")
            result = _post_rows(conn, number, lines, grants, run_id, uses, counters, run_date,
                                stamp, cuts)
            crash_point("before_commit", number)
            trans.commit()
        except BaseException:
            if trans.is_active:
                trans.rollback()
            raise
    crash_point("after_commit", number)
    return result


def _post_rows(conn: sa.Connection, number: int, lines: pa.Table, grants: pa.Table,
               run_id: str, uses: pa.Table, counters: pa.Table, run_date, stamp,
               cuts: pa.Table) -> tuple[np.ndarray, np.ndarray, list[str], Overlaps]:
    """One batch's writes inside the caller's transaction, its customers locked."""
    p = bulk.param(conn)
    deferred: list[str] = []
    _stage(conn, "_post_lines", _LINE_STAGE, lines)
    held = overlapping(conn, "_post_lines")
    if held:  # never charge an assignment's days twice (#17 item 2)
        conn.exec_driver_sql("DELETE FROM _post_lines WHERE seq IN ("
                             + ", ".join(str(q) for q in sorted(held)) + ")")
    _stage(conn, "_post_grants", _GRANT_STAGE, grants)
    consuming = uses.num_rows or counters.num_rows
    if consuming:
        _stage(conn, "_post_uses", _CONSUMPTION_STAGE, uses)
        _stage(conn, "_post_counters", _COUNTER_STAGE, counters)
        deferred += _settle_consumption_checks(conn, run_date)
    out = ", ".join(_LINE_OUT)
    into = ", ".join(_LEDGER_COLS)
    key = list(POSTING_KEY)
    new_lines = _insert_seqs(
        conn,
        f"INSERT INTO ledger (run_id, {into}, status, posted_at) "
        f"SELECT {p}, {out}, {_STATUS.format(t='_post_lines')}, "
        f"{p} FROM _post_lines WHERE true "
        "ORDER BY customer_id, assignment_id, kind, period_start "
        f"{_ONCE}",
        (run_id, stamp), "_post_lines", lines, key)
    # a key whose latest row is a reversal counts as not posted: post it again as
    # the next revision (docs/ledger.md); concurrent re-posters collide on the revision
    new_lines = np.concatenate([new_lines, _insert_seqs(
        conn,
        f"INSERT INTO ledger (run_id, {into}, status, posted_at, revision) "
        f"SELECT {p}, " + ", ".join(f"t.{c}" for c in _LINE_OUT) + ", "
        f"{_STATUS.format(t='t')}, {p}, {ledger.next_revision('t')} "
        f"FROM _post_lines t WHERE {ledger.is_reversed('t')} "
        "ORDER BY t.customer_id, t.assignment_id, t.kind, t.period_start "
        f"{_ONCE}",
        (run_id, stamp), "_post_lines", lines, key)])
    crash_point("mid_batch", number)
    # the inserted lines move the balance as staged: `posted` = auto_decrement (_STATUS)
    ledger.debit(conn, _line_debits(lines, new_lines), _refused,
                 must_exist=False)  # a customer without a row: the others go on
    if cuts.num_rows:  # before the grants: the new grant of a split follows the cut
        _stage(conn, "_post_cuts", _CUT_STAGE, cuts)
        _apply_cuts(conn)
        bulk.drop_temp(conn, "_post_cuts")
    gout = ", ".join(_GRANT_OUT)
    new_grants = _insert_seqs(
        conn,
        f"INSERT INTO grants (run_id, {gout}, granted_at) "
        f"SELECT {p}, {gout}, {p} FROM _post_grants WHERE true "
        "ORDER BY customer_id, assignment_id, period_start "
        "ON CONFLICT (assignment_id, period_start) DO UPDATE SET "
        "run_id = excluded.run_id, run_date = excluded.run_date, "
        "seconds = excluded.seconds, period_end = excluded.period_end, "
        "destination = excluded.destination, granted_at = excluded.granted_at, "
        "withdrawn_at = NULL, withdrawn_by_run = NULL "
        "WHERE grants.withdrawn_at IS NOT NULL "
        "RETURNING assignment_id, period_start",
        (run_id, stamp), "_post_grants", grants, list(GRANT_KEY))
    if consuming:
        _write_consumption(conn, run_id, run_date, stamp)
        bulk.drop_temp(conn, "_post_uses", "_post_counters", "_post_done")
    bulk.drop_temp(conn, "_post_lines", "_post_grants")
    return new_lines, new_grants, deferred, held


#: the seconds a cut grant keeps: the cut's, never below what its calls used
_CUT_SECONDS = ("CASE WHEN c.seconds >= COALESCE(u.seconds_used, 0) THEN c.seconds "
                "ELSE u.seconds_used END")


def _apply_cuts(conn: sa.Connection) -> None:
    """Cut the staged grants: period_end = the cut's day, seconds = the cut's (never below the
    seconds used), on the live grant and its counter; only where the grant still ends after
    that day, so a cut is applied once (a re-post of the date changes nothing)."""
    conn.exec_driver_sql(
        f"UPDATE grants SET period_end = (SELECT c.period_end FROM _post_cuts c WHERE "
        "c.assignment_id = grants.assignment_id AND c.period_start = grants.period_start), "
        f"seconds = (SELECT {_CUT_SECONDS} FROM _post_cuts c LEFT JOIN grant_usage u ON "
        "u.assignment_id = c.assignment_id AND u.period_start = c.period_start WHERE "
        "c.assignment_id = grants.assignment_id AND c.period_start = grants.period_start) "
        "WHERE withdrawn_at IS NULL AND EXISTS (SELECT 1 FROM _post_cuts c WHERE "
        "c.assignment_id = grants.assignment_id AND c.period_start = grants.period_start "
        "AND (grants.period_end IS NULL OR grants.period_end > c.period_end))")
    conn.exec_driver_sql(
        "UPDATE grant_usage SET period_end = (SELECT g.period_end FROM grants g WHERE "
        "g.assignment_id = grant_usage.assignment_id AND g.period_start = "
        "grant_usage.period_start), seconds_granted = (SELECT g.seconds FROM grants g WHERE "
        "g.assignment_id = grant_usage.assignment_id AND g.period_start = "
        "grant_usage.period_start) WHERE EXISTS (SELECT 1 FROM _post_cuts c WHERE "
        "c.assignment_id = grant_usage.assignment_id AND c.period_start = "
        "grant_usage.period_start AND (grant_usage.period_end IS NULL OR "
        "grant_usage.period_end > c.period_end))")


_NOT_DONE = "customer_id NOT IN (SELECT customer_id FROM _post_done)"


def _day_param(conn: sa.Connection, run_date):
    d = pd.Timestamp(run_date).date()
    return d if bulk.is_postgres(conn) else d.isoformat()


def _settle_consumption_checks(conn: sa.Connection, run_date) -> list[str]:
    """Under the customers' locks, decide whose free minutes this transaction consumes.

    * done: a post of this date already consumed the customer's calls: nothing of it is
      consumed again and its credit lines are not inserted (they are `already_posted`);
    * moved: the state this result was computed from no longer holds (another run, posting
      another date at the same time, consumed some of its calls or moved a counter since):
      nothing of it is consumed or credited by this run - that run consumed those calls, and
      any still left are late calls of the next post. Returned, so that the lines are marked
      `deferred`.
    Everyone else's consumption is written as computed."""
    p = bulk.param(conn)
    drop = bulk.on_commit_drop(conn)
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE _post_done{drop} AS SELECT DISTINCT customer_id FROM call_credits "
        f"WHERE consumed_on = {p} AND customer_id IN (SELECT customer_id FROM _post_uses "
        "UNION SELECT customer_id FROM _post_counters)", (_day_param(conn, run_date),))
    moved = conn.exec_driver_sql(
        "SELECT t.customer_id FROM _post_uses t JOIN call_credits c ON c.call_id = t.call_id "
        f"WHERE t.{_NOT_DONE} UNION "
        "SELECT t.customer_id FROM _post_counters t LEFT JOIN grant_usage g "
        "ON g.assignment_id = t.assignment_id AND g.period_start = t.period_start "
        f"WHERE t.{_NOT_DONE} AND COALESCE(g.seconds_used, 0) <> t.seconds_used_before").all()
    moved_ids = sorted({str(r[0]) for r in moved})
    for start in range(0, len(moved_ids), 500):
        chunk = moved_ids[start:start + 500]
        conn.exec_driver_sql("INSERT INTO _post_done (customer_id) VALUES "
                             + ", ".join([f"({p})"] * len(chunk)), tuple(chunk))
    conn.exec_driver_sql(
        f"DELETE FROM _post_lines WHERE kind = '{LineKind.FREE_MINUTES_CREDIT}' AND customer_id IN "
        "(SELECT customer_id FROM _post_done)")
    return moved_ids


def _write_consumption(conn: sa.Connection, run_id: str, run_date, stamp) -> None:
    """Record each consumed call part and move each grant's counters, for the customers
    this transaction consumes (not the done ones), in the posting transaction."""
    p = bulk.param(conn)
    conn.exec_driver_sql(
        "INSERT INTO call_credits (call_id, assignment_id, period_start, customer_id, "
        "start_time, consumed_on, run_id, seconds, covered_micros, late) "
        f"SELECT call_id, assignment_id, period_start, customer_id, start_time, {p}, {p}, "
        f"seconds, covered, late FROM _post_uses WHERE {_NOT_DONE} "
        "ORDER BY customer_id, call_id, assignment_id, period_start",
        (_day_param(conn, run_date), run_id))
    conn.exec_driver_sql(
        "INSERT INTO grant_usage (assignment_id, period_start, customer_id, period_end, "
        "seconds_granted, seconds_used, credited_micros, updated_by_run) "
        "SELECT assignment_id, period_start, customer_id, period_end, seconds_granted, "
        f"seconds_used, credited, {p} FROM _post_counters WHERE {_NOT_DONE} "
        "ORDER BY assignment_id, period_start "
        "ON CONFLICT (assignment_id, period_start) DO UPDATE SET "
        "seconds_used = excluded.seconds_used, credited_micros = excluded.credited_micros, "
        "seconds_granted = excluded.seconds_granted, period_end = excluded.period_end, "
        "updated_by_run = excluded.updated_by_run", (run_id,))
