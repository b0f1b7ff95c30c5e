"""Terms over time at import (SPEC 10): price versions from packages.csv, and the rule that an
import never rewrites terms posted lines were priced with unless told it is a correction.

* **Versions.** A packages.csv row with `effective_from` is a version of the package's money
  terms (`VERSION_TERMS`) from that date (package_versions). The package must exist or be in
  the same file without `effective_from` (its row is written first); the version row's other
  columns that the header has must match the package (`VERSION_FIXED`), else the row is refused
  naming the field. The same version imported again changes nothing; a version with other terms
  for an existing (package, date) replaces it while no posted line used it, and is refused
  ("priced posted lines") once one did - the database's rule (migration 0010) with a message.
* **Corrections stay corrections.** A package row without `effective_from`, or an assignment
  row, whose money terms differ from the stored ones is refused when posted lines were priced
  with the stored ones - the lines of the package / assignment whose period starts before its
  first version / first recorded change - naming the periods it would reprice, unless the
  import is a correction (`correct=True`, the CLI's `--correct`; `rebill` then posts the
  differences).
* **An end moved earlier** on an assignment with posted lines that reach past the new end is a
  cancel from the day after it (a row of assignment_changes, key from the assignment and the
  date: recorded once however often the file is imported); the assignment row keeps its end.
  With `correct=True` the end is written as given (the end was entered wrong).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from billing_jobs.core.entities import (ASSIGNMENT_TERMS, ENTITY_KINDS, VERSION_FIXED,
                                        VERSION_TERMS)
from billing_jobs.core.errors import ImportFailed
from billing_jobs.core.money import format_micros
from billing_jobs.core.vocab import NEW_STATUSES, LedgerEntry, LineKind
from billing_jobs.ingest.changes import record_changes
from billing_jobs.store.tables import assignment_changes as changes_t
from billing_jobs.store.tables import assignments as assignments_t
from billing_jobs.store.tables import ledger as ledger_t
from billing_jobs.store.tables import package_versions as versions_t
from billing_jobs.store.tables import packages as packages_t
from billing_jobs.store.tables import stored_name

_SHOWN = 3  # refused rows named, periods named per row
_IDS = 500
_MONEY = {"cost", "retail", "setup_cost", "setup_retail"}
_AFTER_ALL = date.max


def _chunks(ids):
    ids = sorted({str(i) for i in ids})
    for i in range(0, len(ids), _IDS):
        yield ids[i:i + _IDS]


def _day(value) -> date | None:
    # NaT is a datetime instance: test for it before the date types
    if value is None or value is pd.NaT or (not isinstance(value, (str, date))
                                            and pd.isna(value)):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).date()
    return date.fromisoformat(str(value)[:10])


def _value(value):
    """A cell as compared: None for NULL / NA / NaT, ints as int."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return value


def _shown(column: str, value) -> str:
    if value is None:
        return "empty"
    if column in _MONEY:
        return format_micros(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _stored(conn: sa.Connection, table: sa.Table, key: str, ids) -> dict[str, dict]:
    """Stored rows by id, under the SPEC's column names (money without "_micros")."""
    out: dict[str, dict] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(sa.select(table).where(table.c[key].in_(chunk))).mappings():
            out[str(row[key])] = {c.removesuffix("_micros"): v for c, v in row.items()}
    return out


def _first_dates(conn: sa.Connection, column: sa.Column, day: sa.Column, ids) -> dict[str, date]:
    """Per id, the first date of its versions / recorded changes."""
    out: dict[str, date] = {}
    for chunk in _chunks(ids):
        q = sa.select(column, sa.func.min(day)).where(column.in_(chunk)).group_by(column)
        out.update({str(i): _day(d) for i, d in conn.execute(q).all()})
    return out


def _posted(conn: sa.Connection, column: sa.Column, ids, *extra) -> dict[str, list[tuple]]:
    """Per id, its posted lines as (period_start, period_end, kind), by period."""
    out: dict[str, list[tuple]] = defaultdict(list)
    l = ledger_t.c
    for chunk in _chunks(ids):
        q = (sa.select(column, l.period_start, l.period_end, l.kind)
             .where(column.in_(chunk), l.assignment_id.is_not(None),
                    l.entry == LedgerEntry.CHARGE, l.status.in_(list(NEW_STATUSES)), *extra)
             .order_by(column, l.period_start))
        for i, start, end, kind in conn.execute(q).all():
            out[str(i)].append((_day(start), _day(end), kind))
    return out


def _periods(starts: list[date]) -> str:
    distinct = sorted(set(starts))
    shown = ", ".join(d.isoformat() for d in distinct[:_SHOWN])
    more = f" ... ({len(distinct)} in all)" if len(distinct) > _SHOWN else ""
    return f"{len(distinct)} posted period(s) from {shown}{more}"


def _refuse(name: str, refused: list[str], advice: str) -> None:
    if not refused:
        return
    shown = "; ".join(refused[:_SHOWN])
    more = f" (and {len(refused) - _SHOWN} more row(s))" if len(refused) > _SHOWN else ""
    raise ImportFailed(f"{name}: {shown}{more}; {advice}")


_CORRECT = ("if the terms were entered wrong, import the file as a correction (--correct) and "
            "then rebill the periods")


def _term_differences(row: dict, stored: dict, terms) -> list[str]:
    return [f"{t} {_shown(t, _value(stored[t]))} -> {_shown(t, _value(row[t]))}"
            for t in terms if _value(row[t]) != _value(stored[t])]


def refuse_repriced_packages(conn: sa.Connection, frame: pd.DataFrame, name: str) -> None:
    """Refuse package rows (without effective_from) whose money terms differ from the stored
    ones that posted lines were priced with."""
    if frame.empty:
        return
    stored = _stored(conn, packages_t, "package_id", frame["package_id"])
    changed: dict[str, tuple[int, list[str]]] = {}
    for row, values in zip(frame.index, frame.to_dict("records")):
        old = stored.get(str(values["package_id"]))
        if old is not None and (diff := _term_differences(values, old, VERSION_TERMS)):
            changed[str(values["package_id"])] = (row, diff)
    if not changed:
        return
    firsts = _first_dates(conn, versions_t.c.package_id, versions_t.c.effective_from, changed)
    posted = _posted(conn, ledger_t.c.package_id, changed)
    refused = []
    for pid, (row, diff) in changed.items():
        starts = [s for s, _e, _k in posted.get(pid, []) if s < firsts.get(pid, _AFTER_ALL)]
        if starts:
            refused.append(f"row {row} (package_id {pid!r}): {', '.join(diff)} would reprice "
                           f"{_periods(starts)}")
    _refuse(name, refused, "a change from a date is a version: give the row an effective_from; "
            + _CORRECT)


def assignment_terms(conn: sa.Connection, frame: pd.DataFrame, name: str, correct: bool
                     ) -> tuple[dict[str, date | None], list[dict], list[str]]:
    """The assignment rows' rule (see the module): refuse repriced terms unless `correct`; for
    an end moved earlier over posted lines, (the ends to keep by assignment, the cancel changes
    to record, one sentence per cancel)."""
    if frame.empty or correct:
        return {}, [], []
    stored = _stored(conn, assignments_t, "assignment_id", frame["assignment_id"])
    rows = {str(v["assignment_id"]): (row, v) for row, v in zip(frame.index,
                                                                 frame.to_dict("records"))}
    rows = {aid: (row, v) for aid, (row, v) in rows.items()
            if aid in stored and (_term_differences(v, stored[aid], ASSIGNMENT_TERMS)
                                  or _end_earlier(v, stored[aid]))}
    if not rows:  # no posted line to read for rows that change no term and no end
        return {}, [], []
    firsts = _first_dates(conn, changes_t.c.assignment_id, changes_t.c.effective_from, rows)
    posted = _posted(conn, ledger_t.c.assignment_id, rows)
    refused = []
    for aid, (row, values) in rows.items():
        diff = _term_differences(values, stored[aid], ASSIGNMENT_TERMS)
        starts = [s for s, _e, _k in posted.get(aid, []) if s < firsts.get(aid, _AFTER_ALL)]
        if diff and starts:
            refused.append(f"row {row} (assignment_id {aid!r}): {', '.join(diff)} would reprice "
                           f"{_periods(starts)}")
    _refuse(name, refused, "a change from a date is a change (import --changes, or the change "
            "command); " + _CORRECT)
    return _ends_moved_earlier(conn, rows, stored, posted, name)


def _ends_moved_earlier(conn, rows, stored, posted, name):
    keep: dict[str, date | None] = {}
    cancels: list[dict] = []
    said: list[str] = []
    cancelled = _first_cancels(conn, rows)
    for aid, (row, values) in rows.items():
        if not _end_earlier(values, stored[aid]):
            continue
        new_end, old_end = _day(values["end_date"]), _day(stored[aid]["end_date"])
        cancel_from = new_end + timedelta(days=1)
        after = [(s, e) for s, e, k in posted.get(aid, [])
                 if k != LineKind.SETUP and (_day(e) is None or _day(e) > cancel_from)]
        if not after:
            continue  # nothing posted after the new end: the row is updated as before
        keep[aid] = old_end
        earlier = cancelled.get(aid)
        if earlier is not None and earlier <= cancel_from:
            continue  # already cancelled from that date or before
        cancels.append({"assignment_id": aid, "effective_from": cancel_from, "cancel": True})
        said.append(f"{name} row {row}: assignment {aid!r} end moved from "
                    f"{old_end or 'open'} to {new_end} with posted lines after it: recorded as "
                    f"a cancel from {cancel_from} (the assignment keeps its end)")
    return keep, cancels, said


def _end_earlier(values: dict, stored: dict) -> bool:
    new_end, old_end = _day(values["end_date"]), _day(stored["end_date"])
    return new_end is not None and (old_end is None or new_end < old_end)


def _first_cancels(conn: sa.Connection, ids) -> dict[str, date]:
    c = changes_t.c
    out: dict[str, date] = {}
    for chunk in _chunks(ids):
        q = (sa.select(c.assignment_id, sa.func.min(c.effective_from))
             .where(c.assignment_id.in_(chunk), c.cancel.is_(True)).group_by(c.assignment_id))
        out.update({str(a): _day(d) for a, d in conn.execute(q).all()})
    return out


def record_cancels(conn: sa.Connection, cancels: list[dict], said: list[str], source: str,
                   by: str) -> list[str]:
    """Record the cancels of ends moved earlier, each once: the sentences of those recorded
    now (a file imported again records none)."""
    return [sentence for cancel, sentence in zip(cancels, said)
            if record_changes(conn, [cancel], source, by)]


# ----------------------------------------------------------------------------- versions

def _fixed_equal(column: str, a, b) -> bool:
    a, b = _value(a), _value(b)
    if column in ("name", "frequency_match", "destination"):
        return (a or "").strip() == (b or "").strip()
    if column in ("minimum_spend", "prorate"):
        return bool(a) == bool(b)
    if column == "currency":  # stored upper-case since #28 item 12; older rows may not be
        return str(a or "").upper() == str(b or "").upper()
    return a == b


def import_versions(conn: sa.Connection, versions: pd.DataFrame, header: set[str],
                    name: str, by: str, validate, correct: bool = False) -> int:
    """Check and write the version rows `versions` (typed packages.csv rows with
    effective_from, indexed by CSV row) after the file's package rows were written; return
    how many versions were added or changed. `validate(frame) -> [messages]` is the file's
    business rules for package rows."""
    if versions.empty:
        return 0
    stored = _stored(conn, packages_t, "package_id", versions["package_id"])
    refused: list[str] = []
    for row, v in zip(versions.index, versions.to_dict("records")):
        pid = str(v["package_id"])
        package = stored.get(pid)
        if package is None:
            refused.append(f"row {row} (package_id {pid!r}): a version of a package that does "
                           "not exist (import the package first, or give it a row without "
                           "effective_from in this file)")
            continue
        for column in VERSION_FIXED:
            if column in header and not _fixed_equal(column, v[column], package[column]):
                refused.append(
                    f"row {row} (package_id {pid!r}), column {column}: "
                    f"{_shown(column, _value(v[column]))} differs from the package's "
                    f"{_shown(column, _value(package[column]))}; a version sets only "
                    f"{', '.join(VERSION_TERMS)}")
    _refuse(name, refused, "nothing imported")
    # the package with this version's terms passes the package rules (bounds, free minutes)
    checked = versions.copy()
    for column in ENTITY_KINDS["packages"]:
        if column not in VERSION_TERMS and column != "package_id":
            checked[column] = [stored[str(p)][column] for p in checked["package_id"]]
    for _day_, group in checked.groupby("effective_from", sort=True):
        _refuse(name, validate(group), "nothing imported")
    return _write_versions(conn, versions, name, by, correct)


def _write_versions(conn: sa.Connection, versions: pd.DataFrame, name: str, by: str,
                    correct: bool) -> int:
    existing: dict[tuple[str, date], dict] = {}
    for chunk in _chunks(versions["package_id"]):
        for r in conn.execute(sa.select(versions_t).where(
                versions_t.c.package_id.in_(chunk))).mappings():
            existing[(r["package_id"], _day(r["effective_from"]))] = dict(r)
    now = datetime.now(timezone.utc)
    values, refused = [], []
    for row, v in zip(versions.index, versions.to_dict("records")):
        pid, day = str(v["package_id"]), _day(v["effective_from"])
        terms = {stored_name(t): int(v[t]) for t in VERSION_TERMS}
        old = existing.get((pid, day))
        if old is not None and all(int(old[k]) == terms[k] for k in terms):
            continue  # the same version again: nothing to do
        used = _posted(conn, ledger_t.c.package_id, [pid],
                       ledger_t.c.period_start >= day).get(pid, [])
        if old is None and used and not correct:
            # a new version dated before posted periods would reprice them: a correction
            later = [d for (p, d) in existing if p == pid and d > day]
            repriced = [s for s, _e, _k in used if not later or s < min(later)]
            if repriced:
                refused.append(
                    f"row {row} (package_id {pid!r}): a version from {day} would reprice "
                    f"{_periods(repriced)}; a change from a date starts after the posted "
                    f"periods - {_CORRECT}")
                continue
        if old is not None:
            if used:
                refused.append(
                    f"row {row} (package_id {pid!r}): the version from {day} priced "
                    f"{_periods([s for s, _e, _k in used])}; versions are append-only once "
                    "used - add a version with a later effective_from (or rebill a correction)")
                continue
        values.append({"package_id": pid, "effective_from": day, **terms, "recorded_at": now,
                       "recorded_by": by, "source": name})
    _refuse(name, refused, "nothing imported")
    insert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(versions_t)
    upsert = insert.on_conflict_do_update(
        index_elements=["package_id", "effective_from"],
        set_={c: insert.excluded[c] for c in (*(stored_name(t) for t in VERSION_TERMS),
                                               "recorded_at", "recorded_by", "source")})
    try:
        for value in values:
            conn.execute(upsert, value)
    except sa.exc.DBAPIError as exc:  # a post committed meanwhile: the database's rule
        if "package_versions" not in str(exc):
            raise
        raise ImportFailed(f"{name}: a version of this file priced posted lines (posted while "
                           "the import ran); versions are append-only once used - add a "
                           "version with a later effective_from; nothing imported") from None
    return len(values)
