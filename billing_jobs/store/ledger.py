"""The ledger's write rules, in one place: every writer (the poster, the corrections) uses these.

* **Customers are locked once per transaction**, in id order, before their balances are read
  or moved (PostgreSQL `FOR UPDATE`; SQLite's write transaction already excludes every other
  writer): two writers never wait on each other in a cycle, and a balance checked is the
  balance moved.
* **A debit never leaves the balance bound**: `balance -= amount` per customer, refused (the
  caller's transaction rolls back, nothing written) when a balance would go beyond
  `BALANCE_BOUND_MICROS`; the caller words the refusal, the reason is said here.
* **A posting key is posted while its highest revision is not a reversal** (docs/ledger.md): a
  reversed key counts as not posted, and the next post writes it again as the next revision.
* **Rows are written once**: `INSERT ... ON CONFLICT DO NOTHING` on the ledger's unique keys
  ((assignment_id, kind, period_start, revision) and idempotency_key), and only the rows this
  transaction inserted move a balance. The triggers of migrations 0007/0008 stand behind it.

The state of a set of posting keys (net, highest revision, whether reversed, the original row)
is read in one query over a set of keys (`key_states`), never key by key.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date
from typing import Callable, Iterable, Iterator, Mapping

import sqlalchemy as sa

from billing_jobs.core.errors import BillingError
from billing_jobs.core.money import BALANCE_BOUND_MICROS, format_amount
from billing_jobs.core.vocab import LedgerEntry, LineStatus
from billing_jobs.store import bulk
from billing_jobs.store.tables import Money, ledger

#: (assignment_id, kind, period_start) of a ledger row
Key = tuple[str, str, date]
#: words a refusal: gets the reason ("customer C: balance would become ..."), returns the error
Refusal = Callable[[str], BillingError]

_CHUNK = 500  # ids per IN (...) list: far below SQLite's parameter limit


# ----------------------------------------------------------------------------- balances

def lock_customers(conn: sa.Connection, customer_ids: Iterable[str]) -> None:
    """Lock the customers' rows in id order for the rest of the transaction (PostgreSQL), once,
    before anything is read or written for them; `debit` relies on it. SQLite: the write
    transaction (BEGIN IMMEDIATE) already excludes every other writer."""
    if not bulk.is_postgres(conn):
        return
    ids = sorted({str(c) for c in customer_ids})
    if ids:
        with conn.connection.driver_connection.cursor() as cur:
            cur.execute("SELECT 1 FROM customers WHERE customer_id = ANY(%s::text[]) "
                        "ORDER BY customer_id FOR UPDATE", (ids,))


def posted_debits(rows: Iterable[Mapping]) -> dict[str, int]:
    """{customer_id: sum of amount_micros} of the `posted` rows (auto-decrement: they move the
    balance; `invoiced` rows do not)."""
    debits: dict[str, int] = {}
    for row in rows:
        if row["status"] == LineStatus.POSTED and row["amount_micros"]:
            customer = str(row["customer_id"])
            debits[customer] = debits.get(customer, 0) + int(row["amount_micros"])
    return debits


def debit(conn: sa.Connection, debits: Mapping[str, int], refused: Refusal, *,
          must_exist: bool) -> None:
    """balance -= amount for each customer of `debits`, in id order, inside the caller's
    transaction, its customers locked with `lock_customers`. Raises `refused(reason)` (nothing
    moved) when a balance would leave the bound, or, with `must_exist`, when a customer has no
    row (without it, such a customer has no balance to move and the others are debited)."""
    moves = sorted((str(c), int(a)) for c, a in debits.items() if a)
    if not moves:
        return
    raw = conn.connection.driver_connection
    if bulk.is_postgres(conn):
        ids, amounts = [c for c, _ in moves], [a for _, a in moves]
        with raw.cursor() as cur:
            _check_bounds_pg(cur, ids, amounts, refused, must_exist)
            cur.execute(
                "UPDATE customers AS c SET balance_micros = c.balance_micros - d.amount "
                "FROM unnest(%s::text[], %s::bigint[]) AS d(customer_id, amount) "
                "WHERE c.customer_id = d.customer_id", (ids, amounts))
    else:
        _check_bounds(conn, moves, refused, must_exist)
        cur = raw.cursor()
        try:
            cur.executemany("UPDATE customers SET balance_micros = balance_micros - ? "
                            "WHERE customer_id = ?", [(a, c) for c, a in moves])
        finally:
            cur.close()


def _check_bounds_pg(cur, ids: list[str], amounts: list[int], refused: Refusal,
                     must_exist: bool) -> None:
    """PostgreSQL: the bound as one set check (exact: numeric), the first offender in id order
    refused - the same rule and wording as `_check_bounds`."""
    missing = "c.customer_id IS NULL OR " if must_exist else ""
    cur.execute(
        "SELECT d.customer_id, c.customer_id IS NULL, COALESCE(c.balance_micros, 0) - d.amount, "
        "COALESCE(c.currency, '') FROM unnest(%s::text[], %s::numeric[]) AS d(customer_id, amount) "
        "LEFT JOIN customers c ON c.customer_id = d.customer_id "
        f"WHERE {missing}abs(COALESCE(c.balance_micros, 0) - d.amount) > %s "
        "ORDER BY d.customer_id COLLATE \"C\" LIMIT 1", (ids, amounts, BALANCE_BOUND_MICROS))
    row = cur.fetchone()
    if row is None:
        return
    customer, absent, new, cur_code = str(row[0]), bool(row[1]), int(row[2]), str(row[3])
    if must_exist and absent:
        raise refused(f"customer {customer}: not found")
    raise refused(f"customer {customer}: balance would become "
                  f"{format_amount(new, cur_code)} {cur_code}, beyond the bound of "
                  f"{format_amount(BALANCE_BOUND_MICROS, cur_code)} either way")


def _check_bounds(conn: sa.Connection, moves: list[tuple[str, int]], refused: Refusal,
                  must_exist: bool) -> None:
    p = bulk.param(conn)
    for start in range(0, len(moves), _CHUNK):
        chunk = moves[start:start + _CHUNK]
        rows = conn.exec_driver_sql(
            "SELECT customer_id, balance_micros, currency FROM customers WHERE customer_id IN ("
            + ", ".join([p] * len(chunk)) + ")", tuple(c for c, _ in chunk)).all()
        have = {str(c): int(b) for c, b, _ in rows}
        currency = {str(c): str(cur) for c, _, cur in rows}
        for customer, amount in chunk:
            if must_exist and customer not in have:
                raise refused(f"customer {customer}: not found")
            new = have.get(customer, 0) - amount
            if abs(new) > BALANCE_BOUND_MICROS:
                cur = currency.get(customer, "")
                raise refused(f"customer {customer}: balance would become "
                              f"{format_amount(new, cur)} {cur}, beyond the bound of "
                              f"{format_amount(BALANCE_BOUND_MICROS, cur)} either way")


# ----------------------------------------------------------------------------- posted keys

def latest_entry(t: str) -> str:
    """SQL: the entry of the highest revision of the posting key of row alias `t` (NULL: the
    ledger holds no row of it)."""
    return (f"(SELECT z.entry FROM ledger z WHERE z.assignment_id = {t}.assignment_id "
            f"AND z.kind = {t}.kind AND z.period_start = {t}.period_start "
            "ORDER BY z.revision DESC LIMIT 1)")


def is_posted(t: str) -> str:
    """SQL condition (never NULL): the key of row alias `t` is posted (it has rows, the latest
    is not a reversal)."""
    return f"COALESCE({latest_entry(t)}, '{LedgerEntry.REVERSAL}') <> '{LedgerEntry.REVERSAL}'"


def next_revision(t: str) -> str:
    """SQL: the revision the next row of the posting key of row alias `t` takes."""
    return (f"(SELECT MAX(z.revision) + 1 FROM ledger z WHERE z.assignment_id = "
            f"{t}.assignment_id AND z.kind = {t}.kind AND z.period_start = {t}.period_start)")


def is_reversed(t: str) -> str:
    """SQL condition (never NULL): the key of row alias `t` was reversed (its latest row is a
    reversal): it counts as not posted, and posting it again writes the next revision."""
    return f"COALESCE({latest_entry(t)}, '') = '{LedgerEntry.REVERSAL}'"


@dataclass(frozen=True)
class KeyState:
    """What the ledger holds for one posting key."""

    net: int  # sum of amount_micros over its revisions
    revision: int  # its highest revision
    latest: str  # the entry of that revision
    original: dict  # its lowest-revision row (customer, package, currency, dates...)

    @property
    def reversed(self) -> bool:
        """Reversed keys count as not posted (the same rule as `is_reversed`)."""
        return self.latest == LedgerEntry.REVERSAL


_COLUMNS = ", ".join(f"o.{c.name}" for c in ledger.c)
_STATES = (
    f"SELECT {_COLUMNS}, n.net, n.rev, t.entry AS latest FROM (SELECT l.assignment_id, l.kind, "
    "l.period_start, SUM(l.amount_micros) AS net, MAX(l.revision) AS rev, "
    "MIN(l.revision) AS first FROM ledger l JOIN ({keys}) k "
    "ON l.assignment_id = k.assignment_id AND l.kind = k.kind AND l.period_start = k.period_start "
    "GROUP BY l.assignment_id, l.kind, l.period_start) n "
    "JOIN ledger o ON o.assignment_id = n.assignment_id AND o.kind = n.kind "
    "AND o.period_start = n.period_start AND o.revision = n.first "
    "JOIN ledger t ON t.assignment_id = n.assignment_id AND t.kind = n.kind "
    "AND t.period_start = n.period_start AND t.revision = n.rev"
)


def key_states(conn: sa.Connection, keys: str, params: Mapping | None = None
               ) -> dict[Key, KeyState]:
    """{key: state} for every posting key the ledger holds among `keys`: SQL selecting distinct
    (assignment_id, kind, period_start) rows (a staged table, a query of the ledger...), with
    `params` (a list is expanded: `IN :name`). One query; dates are read as dates on both
    databases."""
    params = dict(params or {})
    stmt = sa.text(_STATES.format(keys=keys)).bindparams(
        *(sa.bindparam(k, expanding=True) for k, v in params.items() if isinstance(v, list)))
    stmt = stmt.columns(
        *ledger.c, sa.column("net", Money), sa.column("rev", sa.BigInteger),
        sa.column("latest", sa.Text))
    out: dict[Key, KeyState] = {}
    for row in conn.execute(stmt, params).mappings():
        original = {c.name: row[c.name] for c in ledger.c}
        key = (str(row["assignment_id"]), str(row["kind"]), row["period_start"])
        out[key] = KeyState(int(row["net"]), int(row["rev"]), str(row["latest"]), original)
    return out


@contextlib.contextmanager
def staged_keys(conn: sa.Connection, name: str, keys: Iterable[Key]) -> Iterator[str]:
    """A temporary table `name` (assignment_id, kind, period_start) holding `keys`, for the
    duration of the block, in the caller's transaction; yields its name."""
    table = sa.Table(name, sa.MetaData(), sa.Column("assignment_id", sa.Text),
                     sa.Column("kind", sa.Text), sa.Column("period_start", sa.Date),
                     prefixes=["TEMPORARY"])
    table.create(conn)
    rows = [dict(assignment_id=a, kind=k, period_start=p) for a, k, p in sorted(set(keys))]
    if rows:
        conn.execute(table.insert(), rows)
    yield name
    table.drop(conn)  # not on an error: the transaction rolls back, the table with it


# ----------------------------------------------------------------------------- rows

#: the columns a ledger row is written with (the id is the database's)
ROW_COLUMNS = tuple(c.name for c in ledger.c if c.name != "ledger_id")


def insert_rows(conn: sa.Connection, rows: list[dict]) -> list[bool]:
    """Insert whole ledger rows (each with its idempotency_key) in a few statements, ON
    CONFLICT DO NOTHING on any unique key, stamped now; return which rows this transaction
    inserted. Balances are the caller's (`debit` the inserted posted rows)."""
    stamp = bulk.now_value(conn)
    got: set[str] = set()
    cols = ", ".join(ROW_COLUMNS)
    step = max(1, 30_000 // len(ROW_COLUMNS) // 2)  # parameters per statement, for SQLite
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        params: dict = {}
        values = []
        for i, row in enumerate(chunk):
            for c in ROW_COLUMNS:
                params[f"{c}_{i}"] = stamp if c == "posted_at" else row.get(c)
            values.append("(" + ", ".join(f":{c}_{i}" for c in ROW_COLUMNS) + ")")
        got.update(conn.execute(sa.text(
            f"INSERT INTO ledger ({cols}) VALUES " + ", ".join(values)
            + " ON CONFLICT DO NOTHING RETURNING idempotency_key"), params).scalars())
    return [row["idempotency_key"] in got for row in rows]
