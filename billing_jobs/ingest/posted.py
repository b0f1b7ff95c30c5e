"""What posted lines and free-minute credits have fixed, that an import may not change silently
(#28 items 4 and 11, docs/decisions.md "Nothing silently wrong, round 3: import").

* **A consumed call** (a usage row with a `call_credits` row: a post credited free minutes for
  it) keeps what its credit was computed from: `customer_id` and `start_time` (as recorded in
  `call_credits`), `charge`, `duration_s` and `destination` (a leading `+` ignored, as
  everywhere). A row changing any of them is refused naming the row, the call, each change
  (old -> new), the run that credited it and what to do: reverse that run (its minutes are
  given back, its credits deleted), import the file, post the date again. The same row
  imported again unchanged (the same instant written another way included) is a no-op.
  A new charge of 0.00 on a consumed call would otherwise make its spend negative (the credit
  stays), another customer would get a call already credited to the first, another day would
  leave the credit in a grant period the call is no longer in.
* **A currency** of a customer or package with posted lines (ledger rows under its id) cannot
  change: its new lines would sit beside the old ones in another currency (495 JPY corrections
  on a 5.00 EUR charge). A change of case only (`eur` -> `EUR`) is not a change: currencies
  are stored upper-case (ingest/parse.py), and the run always read them so.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from billing_jobs.core.errors import ImportFailed
from billing_jobs.ingest.balances import money
from billing_jobs.store import bulk
from billing_jobs.store.tables import call_credits as credits_t
from billing_jobs.store.tables import customers as customers_t
from billing_jobs.store.tables import ledger as ledger_t
from billing_jobs.store.tables import packages as packages_t
from billing_jobs.store.tables import Timestamp

_SHOWN = 3  # refused rows named
_IDS = 5_000  # ids bound per query (SQLite allows 32,766 variables)


def _batches(values: list[str]):
    for i in range(0, len(values), _IDS):
        yield values[i:i + _IDS]


def _refuse(name: str, refused: list[str], advice: str) -> None:
    if not refused:
        return
    shown = "; ".join(refused[:_SHOWN])
    more = f" (and {len(refused) - _SHOWN} more row(s))" if len(refused) > _SHOWN else ""
    raise ImportFailed(f"{name}: {shown}{more}; {advice}; nothing imported")


def _utc(value) -> pd.Timestamp | None:
    if value is None or value is pd.NaT:
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.as_unit("us")


def _number(value: str | None) -> str:
    return (value or "").strip().removeprefix("+")


# ------------------------------------------------------------------------- consumed calls

@dataclass
class ConsumedCalls:
    """The rule on a usage file's consumed calls, chunk by chunk (module docstring). A database
    where no call was ever consumed costs one query per file; otherwise a chunk's call ids are
    bulk-loaded into a temporary table (COPY on PostgreSQL, batches on SQLite) and joined with
    `call_credits` once: never one bound parameter per call."""

    any_consumed: bool | None = None

    def check(self, conn: sa.Connection, frame: pd.DataFrame, ids: pa.Array | pa.ChunkedArray,
              name: str) -> None:
        """Refuse the rows of `frame` (typed usage rows by CSV row; `ids` its call ids as
        written) that change a consumed call."""
        if frame.empty:
            return
        if self.any_consumed is None:
            self.any_consumed = conn.execute(
                sa.select(credits_t.c.call_id).limit(1)).first() is not None
        if not self.any_consumed:
            return
        stored = _consumed(conn, ids)
        if not stored:
            return
        hit = frame[frame["call_id"].astype(str).isin(stored)]
        refused, runs = [], []
        for row, values in zip(hit.index, hit.to_dict("records")):
            old = stored[str(values["call_id"])]
            changes = _call_changes(values, old)
            if changes:
                runs.append(old["run_id"])
                refused.append(
                    f"row {row} (call_id {values['call_id']!r}): a call free minutes already "
                    f"credited (run {old['run_id']}, billing date {_date(old['consumed_on'])}) "
                    f"cannot change: {', '.join(changes)}")
        if refused:
            _refuse(name, refused,
                    "to change a credited call, reverse the run that credited it (billing-jobs "
                    f"reverse --run {runs[0]} --post; its minutes are given back), import the "
                    "file, then post that date again")


_IDS_TABLE = "_import_call_ids"


def _consumed(conn: sa.Connection, ids: pa.Array | pa.ChunkedArray) -> dict[str, dict]:
    """The chunk's consumed calls: per call id what its credit recorded (customer, start, run,
    billing date) and the stored call (charge, duration, destination; None if gone)."""
    rows = pa.table({"call_id": ids})
    raw = conn.connection.driver_connection  # inside the import's transaction
    if bulk.is_postgres(conn):
        with raw.cursor() as cur:
            cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{_IDS_TABLE}" (call_id text)'
                        + bulk.on_commit_drop(conn))
            cur.execute(f'TRUNCATE "{_IDS_TABLE}"')
            bulk.copy_in(cur, f'"{_IDS_TABLE}"', '"call_id"', rows, 200_000)
            cur.execute(f'ANALYZE "{_IDS_TABLE}"')
    else:
        cur = raw.cursor()
        try:
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_IDS_TABLE} (call_id TEXT)")
            cur.execute(f"DELETE FROM temp.{_IDS_TABLE}")
            bulk.insert_many(cur, f"INSERT INTO temp.{_IDS_TABLE} (call_id) VALUES (?)",
                             rows, 50_000)
        finally:
            cur.close()
    query = sa.text(
        "SELECT c.call_id, c.customer_id, c.start_time, c.run_id, c.consumed_on, "
        "u.charge_micros, u.duration_s, u.destination, cu.currency "
        f"FROM {_IDS_TABLE} t JOIN call_credits c ON c.call_id = t.call_id "
        "LEFT JOIN usage u ON u.call_id = c.call_id "
        "LEFT JOIN customers cu ON cu.customer_id = c.customer_id "
        "ORDER BY c.call_id, c.consumed_on, c.run_id"
    ).columns(start_time=Timestamp, consumed_on=sa.Date)
    out: dict[str, dict] = {}
    try:
        for r in conn.execute(query).mappings():
            out.setdefault(str(r["call_id"]), dict(r))  # a call's parts: one run consumed it
    finally:
        bulk.drop_temp(conn, _IDS_TABLE)
    return out


def _date(value) -> str:
    return str(value)[:10]


def _call_changes(values: dict, old: dict) -> list[str]:
    currency = str(old["currency"] or "")
    changes = []
    if str(values["customer_id"]) != str(old["customer_id"]):
        changes.append(f"customer_id {old['customer_id']!r} -> {values['customer_id']!r}")
    before, after = _utc(old["start_time"]), _utc(values["start_time"])
    if before != after:
        changes.append(f"start_time {before.isoformat()} -> {after.isoformat()}")
    if old["charge_micros"] is not None:
        if int(values["charge"]) != int(old["charge_micros"]):
            changes.append(f"charge {money(int(old['charge_micros']), currency)} -> "
                           f"{money(int(values['charge']), currency)}")
        if int(values["duration_s"]) != int(old["duration_s"]):
            changes.append(f"duration_s {int(old['duration_s'])} -> {int(values['duration_s'])}")
        if _number(values["destination"]) != _number(old["destination"]):
            changes.append(f"destination {old['destination']!r} -> {values['destination']!r}")
    return changes


# ------------------------------------------------------------------------------ currency

_CURRENCY_OF = {"customers": (customers_t, "customer_id", ledger_t.c.customer_id),
                "packages": (packages_t, "package_id", ledger_t.c.package_id)}
_CURRENCY_ADVICE = {
    "customers": "a customer's currency is fixed once lines were posted for it (they would sit "
                 "beside lines in another currency): give the business in the new currency a "
                 "new customer_id",
    "packages": "a package's currency is fixed once lines were posted for it (they would sit "
                "beside lines in another currency): create a package with a new package_id in "
                "the new currency and change the assignments to it from a date "
                "(import --changes)",
}


def refuse_currency_changes(conn: sa.Connection, entity: str, frame: pd.DataFrame,
                            name: str) -> None:
    """Refuse customer / package rows whose currency differs from the stored one (case aside)
    when ledger rows were posted under the id."""
    if entity not in _CURRENCY_OF or frame.empty:
        return
    table, key, ledger_key = _CURRENCY_OF[entity]
    ids = frame[key].astype(str).tolist()
    stored: dict[str, str] = {}
    query = (sa.select(table.c[key], table.c.currency)
             .where(table.c[key].in_(sa.bindparam("ids", expanding=True))))
    for batch in _batches(sorted(set(ids))):
        stored.update({str(i): str(cur) for i, cur in conn.execute(query, {"ids": batch})})
    changed = {i: (row, stored[i], str(cur))
               for row, i, cur in zip(frame.index, ids, frame["currency"])
               if i in stored and stored[i].strip().upper() != str(cur).strip().upper()}
    if not changed:
        return
    l = ledger_t.c
    posted = {str(i): (int(n), first, cur) for i, n, first, cur in conn.execute(
        sa.select(ledger_key, sa.func.count(), sa.func.min(l.run_date), sa.func.min(l.currency))
        .where(ledger_key.in_(sorted(changed))).group_by(ledger_key))}
    refused = []
    for i, (row, old, new) in sorted(changed.items(), key=lambda item: item[1][0]):
        if i not in posted:
            continue
        n, first, ledger_currency = posted[i]
        refused.append(
            f"row {row} ({key} {i!r}): currency {old!r} -> {new!r} refused: {n} posted ledger "
            f"line(s) in {str(ledger_currency).upper()} exist for it (from {first})")
    _refuse(name, refused, _CURRENCY_ADVICE[entity])
