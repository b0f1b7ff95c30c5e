"""Changes of an assignment from a date (SPEC 10): checked like a command checks them, and
recorded once. Shared by `import --changes FILE` (ingest/importer.py) and the change, cancel
and void commands.

* `check_changes(conn, frame)`: every problem of the changes in `frame` (one row per change:
  assignment_id, effective_from, and any of quantity, package_id, free_minutes, customer_id,
  cancel, void; None/<NA> = unchanged), each naming its row (the frame's index), assignment and
  rule. A change is checked against the terms in force on its date: the assignment's row, its
  recorded changes and the frame's earlier-dated rows, applied in effective order.
* `record_changes(conn, rows, source, by)`: inserts the changes, each under its idempotency key
  (`change_key`: from the change's content unless the row brings its own), ON CONFLICT DO
  NOTHING; returns how many were new. The same file imported twice records nothing the second
  time; a retried command likewise.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Iterable

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from billing_jobs.core.entities import ASSIGNMENT_TERMS
from billing_jobs.core.text import text_problem
from billing_jobs.store.tables import assignment_changes as changes_t
from billing_jobs.store.tables import assignments as assignments_t
from billing_jobs.store.tables import customers as customers_t
from billing_jobs.store.tables import packages as packages_t

#: the namespace of a change's idempotency key (`change:<assignment>:<date>:<digest>`)
CHANGE_KEY_SPACE = "change"
#: what a new package must share with the one in force (a change keeps the billing calendar
#: and the kind of product; SPEC 10)
SAME_AS_CURRENT = ("currency", "frequency", "frequency_match", "type", "minimum_spend")
_IDS = 500


def recorded_by() -> str:
    """Who records: `user@host` (the OS login, as runs record who started them)."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in the environment
        user = "unknown"
    by = f"{user}@{socket.gethostname() or 'localhost'}"
    # the login comes from the environment ($LOGNAME, $USER): stored only as readable text, a
    # control or bidirectional character escaped (the text rules, core/text.py)
    return by if text_problem(by, one_line=True) is None else by.encode("unicode_escape").decode("ascii")


@dataclass(frozen=True)
class ChangeProblem:
    row: object  # the frame's index label: the CSV row number for a file
    assignment_id: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row} (assignment_id {self.assignment_id!r}): {self.message}"


def _day(value) -> date | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _given(value) -> bool:
    return value is not None and not (not isinstance(value, str) and pd.isna(value))


def _norm(value):
    """A field's value as compared and stored: None when not given, else int or str."""
    if not _given(value):
        return None
    if isinstance(value, str):
        return value
    return int(value)


def change_key(change: dict) -> str:
    """The idempotency key of a change, from its content: the same change (same assignment,
    date and fields) always gets the same key, so it is recorded once."""
    content = {"assignment_id": str(change["assignment_id"]),
               "effective_from": _day(change["effective_from"]).isoformat(),
               **{f: _norm(change.get(f)) for f in ASSIGNMENT_TERMS},
               "cancel": bool(change.get("cancel") or False),
               "void": bool(change.get("void") or False)}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:24]
    return ":".join([CHANGE_KEY_SPACE, content["assignment_id"], content["effective_from"],
                     digest])


def _rows_of(conn: sa.Connection, table: sa.Table, key: sa.Column, ids: Iterable[str]) -> dict:
    ids = sorted({str(i) for i in ids})
    found: dict = {}
    for i in range(0, len(ids), _IDS):
        for row in conn.execute(sa.select(table).where(key.in_(ids[i:i + _IDS]))).mappings():
            found[str(row[key.name])] = dict(row)
    return found


def _recorded(conn: sa.Connection, ids: list[str]) -> dict[str, list[dict]]:
    """Each assignment's recorded changes in effective order."""
    out: dict[str, list[dict]] = {}
    c = changes_t.c
    for i in range(0, len(ids), _IDS):
        q = (sa.select(changes_t).where(c.assignment_id.in_(ids[i:i + _IDS]))
             .order_by(c.assignment_id, c.effective_from, c.change_id))
        for row in conn.execute(q).mappings():
            out.setdefault(row["assignment_id"], []).append(dict(row))
    return out


def _recorded_keys(conn: sa.Connection, keys: list[str]) -> set[str]:
    found: set[str] = set()
    c = changes_t.c
    for i in range(0, len(keys), _IDS):
        found.update(conn.execute(sa.select(c.idempotency_key).where(
            c.idempotency_key.in_(keys[i:i + _IDS]))).scalars())
    return found


def terms_on(base: dict, events: list[dict], day: date) -> dict:
    """The assignment's terms in force on `day`: its row with the changes dated on or before
    `day` applied in effective order (`events` sorted so), plus `cancelled` (the first cancel
    date, None) and `voided`."""
    terms = {f: base[f] for f in ASSIGNMENT_TERMS}
    terms.update(cancelled=None, voided=False)
    for event in events:
        if event.get("void"):
            terms["voided"] = True
        when = _day(event["effective_from"])
        if event.get("cancel") and (terms["cancelled"] is None or when < terms["cancelled"]):
            terms["cancelled"] = when
        if when > day:
            continue
        for f in ASSIGNMENT_TERMS:
            if _given(event.get(f)):
                terms[f] = _norm(event[f])
    return terms


def _fields(change: dict) -> dict:
    """A change as compared and stored: the date a date, unchanged fields None."""
    return {"assignment_id": str(change["assignment_id"]),
            "effective_from": _day(change["effective_from"]),
            **{f: _norm(change.get(f)) for f in ASSIGNMENT_TERMS},
            "cancel": bool(_norm(change.get("cancel")) or False),
            "void": bool(_norm(change.get("void")) or False)}


def _records(frame: pd.DataFrame) -> list[dict]:
    return [dict(zip(frame.columns, values)) for values in frame.itertuples(index=False)]


def check_changes(conn: sa.Connection, frame: pd.DataFrame) -> list[ChangeProblem]:
    """Every problem of the changes in `frame` (see the module), in row order."""
    if frame.empty:
        return []
    rows = [(label, _fields(r)) for label, r in zip(frame.index, _records(frame))]
    ids = sorted({c["assignment_id"] for _, c in rows})
    bases = _rows_of(conn, assignments_t, assignments_t.c.assignment_id, ids)
    events = _recorded(conn, ids)
    packages = _rows_of(conn, packages_t, packages_t.c.package_id,
                        {b["package_id"] for b in bases.values()}
                        | {c["package_id"] for _, c in rows if c["package_id"]}
                        | {e["package_id"] for es in events.values() for e in es
                           if e["package_id"]})
    customers = _rows_of(conn, customers_t, customers_t.c.customer_id,
                         {c["customer_id"] for _, c in rows if c["customer_id"]})
    problems: list[ChangeProblem] = []
    seen: dict[tuple[str, date], object] = {}
    # in effective order per assignment, so a row is checked on the terms the earlier rows set
    order = sorted(range(len(rows)), key=lambda i: (rows[i][1]["assignment_id"],
                                                    rows[i][1]["effective_from"], i))
    recorded = _recorded_keys(conn, [change_key(c) for _, c in rows])
    for i in order:
        label, change = rows[i]
        aid, day = change["assignment_id"], change["effective_from"]
        if change_key(change) in recorded:
            continue  # recorded before (the same file again): nothing to check or record
        said = [str(m) for m in _problems(change, bases.get(aid), events.get(aid, []),
                                          packages, customers, seen.get((aid, day)))]
        problems += [ChangeProblem(label, aid, m) for m in said]
        seen.setdefault((aid, day), label)
        if not said:
            events.setdefault(aid, []).append(change)
            events[aid].sort(key=lambda e: _day(e["effective_from"]))
    position = {label: i for i, label in enumerate(frame.index)}
    return sorted(problems, key=lambda p: position[p.row])


def _problems(change: dict, base: dict | None, events: list[dict], packages: dict,
              customers: dict, same_day_row) -> list[str]:
    aid, day = change["assignment_id"], change["effective_from"]
    if base is None:
        return [f"assignment {aid!r} does not exist"]
    if same_day_row is not None:
        return [f"a second change of the assignment from {day} (row {same_day_row} has one): "
                "put both in one row"]
    given = [f for f in ASSIGNMENT_TERMS if change[f] is not None]
    if change["cancel"] and change["void"]:
        return ["cancel and void together: a void withdraws the assignment from its start, "
                "choose one"]
    if (change["cancel"] or change["void"]) and given:
        return [f"{'cancel' if change['cancel'] else 'void'} with {', '.join(given)}: record "
                "them as separate changes"]
    if not (given or change["cancel"] or change["void"]):
        return ["no field to change (give quantity, package_id, free_minutes, customer_id, "
                "cancel or void)"]
    terms = terms_on(base, events, day)
    if terms["voided"]:
        return [f"assignment {aid!r} is voided: nothing changes it any more"]
    start = _day(base["start_date"])
    if change["void"]:
        return []
    out: list[str] = []
    if start is not None and day < start:
        out.append(f"effective_from {day} is before the assignment's start_date {start}")
    if terms["cancelled"] is not None and day >= terms["cancelled"]:
        out.append(f"the assignment is cancelled from {terms['cancelled']}: a change from "
                   f"{day} comes after its end")
    if change["cancel"]:
        return out
    if change["quantity"] is not None and change["quantity"] < 1:
        out.append(f"quantity must be at least 1 (got {change['quantity']})")
    if change["free_minutes"] is not None and change["free_minutes"] < 0:
        out.append(f"free_minutes must be 0 or more (got {change['free_minutes']})")
    current = packages.get(str(terms["package_id"]))
    new_pid = change["package_id"]
    if new_pid is not None:
        new = packages.get(new_pid)
        if new is None:
            out.append(f"package {new_pid!r} does not exist")
        elif current is not None:
            for field in SAME_AS_CURRENT:
                if (new[field] or None) != (current[field] or None):
                    out.append(f"package {new_pid!r} {field} {new[field]!r} differs from "
                               f"{current['package_id']!r}'s {current[field]!r} (a change keeps "
                               f"the {field}; end this assignment and start another)")
    new_cid = change["customer_id"]
    if new_cid is not None:
        customer = customers.get(new_cid)
        if customer is None:
            out.append(f"customer {new_cid!r} does not exist")
        else:
            package = packages.get(new_pid) if new_pid else current
            if package is not None and customer["currency"] != package["currency"]:
                out.append(f"customer {new_cid!r} currency {customer['currency']!r} differs "
                           f"from package {package['package_id']!r}'s "
                           f"{package['currency']!r}")
    if not out and all(change[f] == terms[f] for f in given):
        shown = ", ".join(f"{f} {terms[f]!r}" for f in given)
        out.append(f"changes nothing: {shown} already in force on {day}")
    return out


def record_changes(conn: sa.Connection, rows, source: str, by: str) -> int:
    """Insert the changes `rows` (a frame or dicts: assignment_id, effective_from, any of
    quantity, package_id, free_minutes, customer_id, cancel, void, and optionally their own
    idempotency_key), each once; return how many were new."""
    if isinstance(rows, pd.DataFrame):
        rows = _records(rows)
    now = datetime.now(timezone.utc)
    insert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(changes_t)
    once = insert.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(
        changes_t.c.change_id)
    inserted = 0
    for row in rows:
        fields = _fields(row)
        value = {**fields, "idempotency_key": row.get("idempotency_key") or change_key(fields),
                 "recorded_at": now, "recorded_by": by, "source": source}
        inserted += len(conn.execute(once, value).all())
    return inserted
