"""`cancel --void`: an assignment entered by mistake is withdrawn from its start (SPEC 10).

In one transaction, its customers locked (store/ledger.py):

1. a `void` change row is recorded (ingest/changes.py, idempotency key from the assignment and
   its start): the engine leaves the assignment out from then on (no line, grant, consumption),
   so nightly posts and `rebill` compute nothing for it;
2. every posting key the assignment holds (setup, recurring, prorated, minimum spend, change
   lines and its free-minute credits) is corrected to net 0: one `correction` row of -net at
   the key's next revision, idempotency key `void:<assignment>:<kind>:<period_start>`;
3. its live grants are withdrawn (`withdrawn_by_run` = `void:<assignment>`), and the calls its
   grants consumed are given back: their `call_credits` rows deleted and its counters
   (`grant_usage`) set to 0, so a later post may consume those calls against other grants
   (the credits they gave are reversed by step 2).

Exactly once: a retry finds every key at net 0 (and each row's idempotency key taken), its
grants withdrawn and its calls given back, and writes nothing. A preview does the same in a
transaction it rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from billing_jobs.core.errors import UsageError
from billing_jobs.core.vocab import KeySpace, LedgerEntry, correction_key
from billing_jobs.corrections.rows import Written, line_fields, write
from billing_jobs.ingest.changes import record_changes, recorded_by
from billing_jobs.store import bulk, ledger
from billing_jobs.store.db import db_errors
from billing_jobs.store.tables import assignment_changes as changes_t
from billing_jobs.store.tables import assignments as assignments_t


@dataclass
class Voided(Written):
    """The correction rows (and which this call wrote), plus what happened to grants/calls."""

    recorded: bool = False  # this call recorded the void change row
    already: bool = False  # the assignment was voided before this call
    grants_withdrawn: int = 0
    calls_given_back: int = 0
    notes: list[str] = field(default_factory=list)


def void(engine: sa.Engine, assignment_id: str, post: bool = False) -> Voided:
    """Withdraw `assignment_id` from its start (see the module); `post` False: show only."""
    aid = str(assignment_id)
    tag = correction_key(KeySpace.VOID, aid)
    with db_errors(engine, "voiding"), engine.begin() as conn:
        base = conn.execute(sa.select(assignments_t.c.customer_id, assignments_t.c.start_date)
                            .where(assignments_t.c.assignment_id == aid)).first()
        if base is None:
            raise UsageError(f"cancel --void: assignment {aid!r} does not exist")
        states = ledger.key_states(
            conn, "SELECT DISTINCT assignment_id, kind, period_start FROM ledger "
                  "WHERE assignment_id = :a", {"a": aid})
        rows = [dict(line_fields(s.original), run_id=tag, run_date=s.original["run_date"],
                     amount_micros=-s.net, revision=s.revision + 1,
                     entry=LedgerEntry.CORRECTION, reason=f"void of assignment {aid}",
                     idempotency_key=correction_key(KeySpace.VOID, aid, *key))
                for key, s in sorted(states.items()) if s.net != 0]
        ledger.lock_customers(conn, {str(base[0])} | {str(r["customer_id"]) for r in rows})
        # read under the lock: a void committed meanwhile by another process is seen here
        already = conn.execute(sa.select(changes_t.c.change_id).where(
            changes_t.c.assignment_id == aid, changes_t.c.void.is_(True))).first() is not None
        recorded = bool(record_changes(conn, [{"assignment_id": aid,
                                               "effective_from": base[1], "void": True}],
                                       "void", recorded_by()))
        written = write(conn, rows, 1)
        stamp = bulk.now_value(conn)
        withdrawn = conn.execute(sa.text(
            "UPDATE grants SET withdrawn_at = :t, withdrawn_by_run = :b "
            "WHERE assignment_id = :a AND withdrawn_at IS NULL"),
            {"t": stamp, "b": tag, "a": aid}).rowcount
        given_back = conn.execute(sa.text("DELETE FROM call_credits WHERE assignment_id = :a"),
                                  {"a": aid}).rowcount
        conn.execute(sa.text(
            "UPDATE grant_usage SET seconds_used = 0, credited_micros = 0, updated_by_run = :b "
            "WHERE assignment_id = :a AND (seconds_used <> 0 OR credited_micros <> 0)"),
            {"b": tag, "a": aid})
        outcome = Voided(rows, written if post else [False] * len(rows), recorded=recorded,
                         already=already, grants_withdrawn=int(withdrawn or 0),
                         calls_given_back=int(given_back or 0))
        if not post:
            conn.rollback()
    return outcome
