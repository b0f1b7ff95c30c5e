"""The history of an assignment's or a package's terms (SPEC 10), for `billing-jobs history`.

`assignment_history(engine, assignment_id)` and `package_history(engine, package_id)` return
plain dicts (JSON-ready: dates and timestamps as ISO text, money as decimal text): the row as
stored, then its changes / price versions in effective order (date, then the order recorded),
each with what it changed as `{field: {"old": ..., "new": ...}}` - the terms in force the day
before against those from its date - and who recorded it, when and from what (file or
command). An unknown id raises UsageError.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa

from billing_jobs.core.entities import ASSIGNMENT_TERMS, VERSION_TERMS
from billing_jobs.core.errors import UsageError
from billing_jobs.core.money import format_micros
from billing_jobs.store.db import db_errors, read_connection
from billing_jobs.store.tables import assignment_changes, assignments, package_versions, packages
from billing_jobs.store.tables import stored_name

_MONEY = {"cost", "retail", "setup_cost", "setup_retail"}


def _plain(value):
    """A stored value as JSON takes it: ISO text for dates and times."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _money(column: str, value):
    return format_micros(int(value)) if column in _MONEY and value is not None else value


def _recorded(row) -> dict:
    return {"recorded_at": _plain(row["recorded_at"]), "recorded_by": row["recorded_by"],
            "source": row["source"]}


def assignment_history(engine: sa.Engine, assignment_id: str) -> dict:
    """The assignment as stored and its changes in effective order (see the module)."""
    a, c = assignments.c, assignment_changes.c
    with db_errors(engine, "reading the assignment's history"), read_connection(engine) as conn:
        base = conn.execute(sa.select(assignments).where(
            a.assignment_id == assignment_id)).mappings().one_or_none()
        if base is None:
            raise UsageError(f"no assignment {assignment_id!r}")
        changes = conn.execute(sa.select(assignment_changes).where(
            c.assignment_id == assignment_id).order_by(c.effective_from, c.change_id)
        ).mappings().all()
    terms = {f: base[f] for f in ASSIGNMENT_TERMS}
    events = []
    for row in changes:
        changed = {}
        for field in ASSIGNMENT_TERMS:
            if row[field] is not None and row[field] != terms[field]:
                changed[field] = {"old": terms[field], "new": row[field]}
                terms[field] = row[field]
        kind = "void" if row["void"] else "cancel" if row["cancel"] else "change"
        events.append({"change_id": row["change_id"],
                       "effective_from": _plain(row["effective_from"]), "kind": kind,
                       "changes": changed, **_recorded(row)})
    return {"assignment_id": assignment_id,
            "assignment": {k: _plain(v) for k, v in base.items() if k != "assignment_id"},
            "changes": events}


def package_history(engine: sa.Engine, package_id: str) -> dict:
    """The package's money terms as stored (those before its first version) and its price
    versions in effective order (see the module)."""
    p, v = packages.c, package_versions.c
    with db_errors(engine, "reading the package's history"), read_connection(engine) as conn:
        base = conn.execute(sa.select(packages).where(
            p.package_id == package_id)).mappings().one_or_none()
        if base is None:
            raise UsageError(f"no package {package_id!r}")
        versions = conn.execute(sa.select(package_versions).where(
            v.package_id == package_id).order_by(v.effective_from)).mappings().all()
    terms = {t: base[stored_name(t)] for t in VERSION_TERMS}
    events = []
    for row in versions:
        changed = {}
        for term in VERSION_TERMS:
            new = row[stored_name(term)]
            if new != terms[term]:
                changed[term] = {"old": _money(term, terms[term]), "new": _money(term, new)}
                terms[term] = new
        events.append({"effective_from": _plain(row["effective_from"]), "changes": changed,
                       **_recorded(row)})
    package = {k.removesuffix("_micros"): _money(k.removesuffix("_micros"), _plain(val))
               for k, val in base.items() if k != "package_id"}
    return {"package_id": package_id, "package": package, "versions": events}
