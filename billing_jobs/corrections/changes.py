"""`change` and `cancel --from`: a change of an assignment from a date D (SPEC 10), previewed or
recorded, exactly once.

* **Checked** by the rules the bulk import uses (`ingest.changes.check_changes`, one function):
  a refusal is one line naming the rule (exit 2).
* **Preview** (the default): the engine runs date D for the customers involved through the run's
  own stages (`run.stages.load_stage` / `compute_stage`), with the change added to
  `inputs.changes` in memory, and the lines of D the change creates are shown (change_credit /
  change_charge, the new grant, the old grant's cut), with what the next billing date will
  charge. Nothing is written.
* **Post**: in one transaction, the customers locked, the change row is recorded under its
  idempotency key (`change_key`: assignment, D and the fields) and, when D was posted already (a
  posted run of D or later, or ledger lines of the assignment dated D or later), the lines of D
  the change creates are posted through the poster (`store.post.post_in`: the posting keys,
  ON CONFLICT DO NOTHING); otherwise the nightly post of D writes them. A retry (the key is
  recorded) is computed from the database as it is and writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
import sqlalchemy as sa

from billing_jobs.calc.billing import day_number
from billing_jobs.calc.book import build_book
from billing_jobs.calc.calendar import after, from_days
from billing_jobs.core.errors import UsageError
from billing_jobs.core.frames import CHANGE_COLUMNS, BillingInputs, BillingResult
from billing_jobs.core.money import format_minor
from billing_jobs.core.vocab import NEW_STATUSES, LedgerEntry, LineKind, RunMode, RunStatus
from billing_jobs.ingest.changes import (change_key, check_changes, record_changes,
                                         recorded_by)
from billing_jobs.run.request import RunRequest
from billing_jobs.run.stages import compute_stage, gate_stage, load_stage, rule_evaluator
from billing_jobs.store import ledger
from billing_jobs.store.db import db_errors, read_connection
from billing_jobs.store.history import assignment_history, package_history
from billing_jobs.store.post import post_in
from billing_jobs.store.tables import assignment_changes as changes_t
from billing_jobs.store.tables import assignments as assignments_t

CHANGE_KINDS = (LineKind.CHANGE_CREDIT, LineKind.CHANGE_CHARGE)
#: a change_id no stored change has: the proposed change, in memory only
_PROPOSED_ID = 2**62


@dataclass
class ChangeOutcome:
    """What a change command showed or did."""

    change: dict  # assignment_id, effective_from, quantity, package_id, free_minutes,
    #               customer_id, cancel, void (None: unchanged)
    key: str  # the change row's idempotency key
    lines: pd.DataFrame  # the change lines of D for the assignment (+ status, explanation)
    grants: pd.DataFrame  # the new grant(s) of D (+ status)
    cuts: pd.DataFrame  # the grant cut(s) of D (GRANT_CUT_COLUMNS)
    next_date: date | None  # the next billing date after D (None: no more)
    next_lines: pd.DataFrame  # what it will charge the assignment (+ explanation)
    date_posted: bool  # D was posted already: --post posts the lines of D itself
    retry: bool  # the change was recorded before this call
    recorded: bool = False  # this call recorded the change row
    posted: int = 0  # lines this call wrote
    notes: list[str] = field(default_factory=list)


def change(engine: sa.Engine, assignment_id: str, day: date, *, quantity: int | None = None,
           package_id: str | None = None, free_minutes: int | None = None,
           customer_id: str | None = None, cancel: bool = False, post: bool = False,
           tz: str | None = None, command: str = "change") -> ChangeOutcome:
    """Preview (default) or record and post a change of `assignment_id` from `day` (see the
    module). Raises UsageError naming the rule when the change is refused."""
    fields = {"assignment_id": str(assignment_id), "effective_from": day,
              "quantity": quantity, "package_id": package_id, "free_minutes": free_minutes,
              "customer_id": customer_id, "cancel": bool(cancel), "void": False}
    key = change_key(fields)
    with db_errors(engine, f"{command}: reading the assignment"), read_connection(engine) as conn:
        retry = _is_recorded(conn, key)
        if not retry:
            problems = check_changes(conn, pd.DataFrame([fields], dtype=object))
            if problems:
                raise UsageError(f"{command}: assignment {assignment_id!r} from {day}: "
                                 f"{problems[0].message}")
        involved = _customers_of(conn, str(assignment_id)) | ({customer_id} if customer_id
                                                              else set())
    req = RunRequest(run_date=day, customer_ids=tuple(sorted(involved)), tz=tz)
    with rule_evaluator(req.customer_ids):
        inputs = _inputs(engine, req, None if retry else fields)
        result = compute_stage(inputs, req)
        if post:
            gate_stage(result, inputs)  # what the post of D would gate
        mine = _of_assignment(result, str(assignment_id), day)
        next_date, next_lines = _next_charge(engine, inputs, req, str(assignment_id), day,
                                             None if retry else fields)
    uncut = _uncut_days(inputs, str(assignment_id), day)
    with db_errors(engine, f"{command}: reading the ledger"), read_connection(engine) as conn:
        posted_before = _date_posted(conn, str(assignment_id), day, involved)
    outcome = ChangeOutcome(change=fields, key=key, lines=mine.due_lines, grants=mine.grants,
                            cuts=mine.grant_cuts, next_date=next_date, next_lines=next_lines,
                            date_posted=posted_before, retry=retry)
    if post:
        outcome = _record_and_post(engine, outcome, mine, involved, command)
    outcome.lines = _explained(outcome.lines, uncut)
    outcome.next_lines = _explained(outcome.next_lines, {})
    return outcome


def _record_and_post(engine: sa.Engine, outcome: ChangeOutcome, mine: BillingResult,
                     involved: set[str], command: str) -> ChangeOutcome:
    """One transaction: the customers locked, the change recorded once, and the lines of D
    posted once when D was posted already (re-checked under the locks)."""
    aid, day = outcome.change["assignment_id"], outcome.change["effective_from"]
    with db_errors(engine, f"{command}: recording"), engine.begin() as conn:
        ledger.lock_customers(conn, involved | set(mine.due_lines["customer_id"].astype(str)))
        outcome.recorded = bool(record_changes(conn, [dict(outcome.change,
                                                           idempotency_key=outcome.key)],
                                               command, recorded_by()))
        outcome.date_posted = _date_posted(conn, aid, day, involved)
        if outcome.date_posted and (len(mine.due_lines) or len(mine.grants)
                                    or len(mine.grant_cuts)):
            settled = post_in(conn, mine, run_id=outcome.key)
            outcome.lines, outcome.grants = settled.due_lines, settled.grants
            outcome.posted = int(settled.due_lines["status"].isin(
                [str(s) for s in NEW_STATUSES]).sum())
    return outcome


# ----------------------------------------------------------------------------- helpers

def _is_recorded(conn: sa.Connection, key: str) -> bool:
    c = changes_t.c
    return conn.execute(sa.select(c.change_id).where(c.idempotency_key == key)).first() \
        is not None


def _customers_of(conn: sa.Connection, assignment_id: str) -> set[str]:
    """The customers the assignment is or was with: its row's and every change's."""
    found = set(conn.execute(sa.select(assignments_t.c.customer_id).where(
        assignments_t.c.assignment_id == assignment_id)).scalars())
    found |= {c for c in conn.execute(sa.select(changes_t.c.customer_id).where(
        changes_t.c.assignment_id == assignment_id)).scalars() if c is not None}
    return {str(c) for c in found}


def _inputs(engine: sa.Engine, req: RunRequest, proposed: dict | None) -> BillingInputs:
    """The run's validated inputs of the date, with the proposed change (when not recorded
    yet) added to `changes` in memory."""
    inputs, _rejected = load_stage(engine, req)
    if proposed is not None:
        inputs.changes = with_change(inputs.changes, proposed)
    return inputs


def with_change(changes: pd.DataFrame, proposed: dict) -> pd.DataFrame:
    """`changes` (CHANGE_COLUMNS, as loaded) plus the proposed change, typed the same way."""
    row = pd.DataFrame({
        "change_id": pd.Series([_PROPOSED_ID], dtype="int64"),
        "assignment_id": pd.Series([proposed["assignment_id"]], dtype=changes[
            "assignment_id"].dtype if len(changes) else object),
        "effective_from": pd.Series([pd.Timestamp(proposed["effective_from"])],
                                    dtype="datetime64[s]"),
        "quantity": pd.array([proposed.get("quantity")], dtype="Int64"),
        "package_id": pd.Series([proposed.get("package_id")], dtype=object),
        "free_minutes": pd.array([proposed.get("free_minutes")], dtype="Int64"),
        "customer_id": pd.Series([proposed.get("customer_id")], dtype=object),
        "cancel": pd.Series([bool(proposed.get("cancel"))], dtype=bool),
        "void": pd.Series([bool(proposed.get("void"))], dtype=bool),
    }, columns=CHANGE_COLUMNS)
    if not len(changes):
        return row
    out = pd.concat([changes, row.astype({c: changes[c].dtype for c in CHANGE_COLUMNS
                                          if c in ("assignment_id",)})], ignore_index=True)
    return out.sort_values(["assignment_id", "effective_from", "change_id"], kind="stable",
                           ignore_index=True)


def _of_assignment(result: BillingResult, assignment_id: str, day: date) -> BillingResult:
    """The lines of D the change creates: the assignment's change lines, its grants starting
    on D and its grant cuts of D."""
    ts = pd.Timestamp(day)
    lines = result.due_lines
    lines = lines[(lines["assignment_id"].astype(str) == assignment_id)
                  & lines["kind"].astype(str).isin([str(k) for k in CHANGE_KINDS])]
    grants = result.grants
    grants = grants[(grants["assignment_id"].astype(str) == assignment_id)
                    & (pd.to_datetime(grants["period_start"]) == ts)]
    cuts = result.grant_cuts
    cuts = cuts[cuts["assignment_id"].astype(str) == assignment_id]
    return BillingResult(due_lines=lines.reset_index(drop=True),
                         grants=grants.reset_index(drop=True),
                         utilisation=result.utilisation.iloc[0:0],
                         grant_cuts=cuts.reset_index(drop=True))


def _row_of(book, assignment_id: str) -> int | None:
    hit = np.flatnonzero(book.rows["assignment_id"].astype(str).to_numpy() == assignment_id)
    return int(hit[0]) if hit.size else None


def _uncut_days(inputs: BillingInputs, assignment_id: str, day: date) -> dict[str, int]:
    """{assignment_id: days of the uncut period} of the split on `day` (none: {})."""
    book = build_book(inputs.assignments, inputs.packages, inputs.customers, inputs.versions,
                      inputs.changes)
    row = _row_of(book, assignment_id)
    if row is None:
        return {}
    t = book.terms
    at = t.splits_on(day_number(day))
    at = at[t.split_row[at] == row]
    return {assignment_id: int(t.split_full[at[0]])} if at.size else {}


def _next_charge(engine: sa.Engine, inputs: BillingInputs, req: RunRequest,
                 assignment_id: str, day: date, proposed: dict | None
                 ) -> tuple[date | None, pd.DataFrame]:
    """The first billing date after D while the assignment is served, and its lines there."""
    book = build_book(inputs.assignments, inputs.packages, inputs.customers, inputs.versions,
                      inputs.changes)
    row = _row_of(book, assignment_id)
    empty = inputs.assignments.iloc[0:0]
    if row is None:
        return None, empty
    nxt = int(after(book.cal.subset([row]), day_number(day))[0])
    if nxt >= int(book.stop[row]):
        return None, empty
    when = pd.Timestamp(from_days(np.array([nxt]))[0]).date()
    later = RunRequest(run_date=when, customer_ids=req.customer_ids, tz=req.tz)
    result = compute_stage(_inputs(engine, later, proposed), later)
    lines = result.due_lines
    return when, lines[lines["assignment_id"].astype(str) == assignment_id].reset_index(
        drop=True)


def _date_posted(conn: sa.Connection, assignment_id: str, day: date,
                 customers: set[str]) -> bool:
    """D was posted: a succeeded post run of D or later (for every customer, or naming one of
    `customers`), or a ledger line of the assignment dated D or later."""
    rows = conn.execute(sa.text(
        "SELECT customer_filter FROM runs WHERE mode = :m AND status = :s AND run_date >= :d"),
        {"m": str(RunMode.POST), "s": str(RunStatus.SUCCEEDED), "d": day}).scalars().all()
    for text in rows:
        if text is None or set(json.loads(text) or []) & customers:
            return True
    return conn.execute(sa.text(
        "SELECT 1 FROM ledger WHERE assignment_id = :a AND run_date >= :d AND entry = :e "
        "LIMIT 1"), {"a": assignment_id, "d": day, "e": str(LedgerEntry.CHARGE)}).first() \
        is not None


def _explained(lines: pd.DataFrame, uncut: dict[str, int]) -> pd.DataFrame:
    """The lines with an `explanation`: a change line says the terms, from when, and the days
    of its period it covers ("8 x P2 at 4.00 from 2026-11-10: 21 of 30 days")."""
    if not len(lines):
        return lines.assign(explanation=pd.Series([], dtype=object))
    said = []
    for r in lines.to_dict("records"):
        start, end = pd.Timestamp(r["period_start"]).date(), r["period_end"]
        price = format_minor(int(r["unit_price"]), str(r["currency"]))
        terms = f"{int(r['quantity'])} x {r['package_id']} at {price}"
        if r["kind"] in CHANGE_KINDS and not pd.isna(end):
            days = (pd.Timestamp(end).date() - start).days
            full = uncut.get(str(r["assignment_id"]))
            of = f"{days} of {full} days" if full else f"{days} days"
            verb = "given back" if r["kind"] == LineKind.CHANGE_CREDIT else "charged"
            said.append(f"{terms} {verb} from {start}: {of}")
        else:
            until = "open" if pd.isna(end) else pd.Timestamp(end).date().isoformat()
            said.append(f"{r['kind']}: {terms} for {start} to {until} (end exclusive)")
    return lines.assign(explanation=said)


# ----------------------------------------------------------------------------- history

#: the fields of a history entry, in order (`history --json` prints these keys)
HISTORY_FIELDS = ("effective_from", "event", "assignment_id", "package_id", "customer_id",
                  "quantity", "free_minutes", "retail", "cost", "setup_retail", "setup_cost",
                  "recorded_at", "recorded_by", "source")
_EVENT_ORDER = {"start": 0, "version": 1, "change": 2, "cancel": 3, "void": 4}


def history(engine: sa.Engine, assignment_id: str | None = None,
            package_id: str | None = None) -> list[dict]:
    """The terms over time of an assignment (its start, its changes, the price versions of the
    packages it holds) or of a package (its price versions), in effective order: one flat dict
    per entry (HISTORY_FIELDS: the values an entry sets; money as decimal text, dates ISO),
    read through `store.history`. Raises UsageError for an unknown id."""
    if (assignment_id is None) == (package_id is None):
        raise UsageError("history: give one of --assignment ID or --package ID")
    out: list[dict] = []
    if assignment_id is not None:
        held = assignment_history(engine, assignment_id)
        base = held["assignment"]
        out.append(_entry(base["start_date"], "start", assignment_id=assignment_id,
                          **{f: base.get(f) for f in ("package_id", "customer_id", "quantity",
                                                      "free_minutes")}))
        packages = {base["package_id"]}
        for e in held["changes"]:
            new = {f: v["new"] for f, v in e["changes"].items()}
            packages |= {new["package_id"]} if new.get("package_id") else set()
            out.append(_entry(e["effective_from"], e["kind"], assignment_id=assignment_id,
                              _id=e["change_id"], **new, **_who(e)))
    else:
        packages = {package_id}
    for pid in sorted(packages):
        for v in package_history(engine, pid)["versions"]:
            out.append(_entry(v["effective_from"], "version", package_id=pid,
                              **{f: c["new"] for f, c in v["changes"].items()}, **_who(v)))
    out.sort(key=lambda e: (e["effective_from"], _EVENT_ORDER[e["event"]], e.get("_id") or 0))
    for e in out:
        e.pop("_id", None)
    return out


def _who(event: dict) -> dict:
    return {k: event.get(k) for k in ("recorded_at", "recorded_by", "source")}


def _entry(day, event: str, **values) -> dict:
    entry = {f: None for f in HISTORY_FIELDS}
    entry.update({k: v for k, v in values.items() if k in HISTORY_FIELDS or k == "_id"})
    entry["effective_from"] = pd.Timestamp(day).date().isoformat()
    entry["event"] = event
    if entry.get("recorded_at") is not None:
        entry["recorded_at"] = pd.Timestamp(entry["recorded_at"]).isoformat()
    for f in ("quantity", "free_minutes"):
        if entry[f] is not None:
            entry[f] = int(entry[f])
    return entry
