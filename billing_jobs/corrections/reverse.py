"""`reverse --run R`: compensating 'reversal' rows for every posting key R posted (amount =
-net), R's grants withdrawn and the free minutes it consumed given back, R marked reversed; in
one transaction, once (each row's idempotency key names the run and the key). The date can then
be posted again (a reversed key counts as not posted, store/ledger.py)."""

from __future__ import annotations

import sqlalchemy as sa

from billing_jobs.core.errors import UsageError
from billing_jobs.core.vocab import KeySpace, LedgerEntry, LineKind, RunMode, correction_key
from billing_jobs.corrections.rows import Written, line_fields, write
from billing_jobs.store import bulk, ledger
from billing_jobs.store.db import db_errors


def reverse(engine: sa.Engine, run_id: str, simulate: bool = True) -> Written:
    """Compensate every posting key `run_id` posted (amount = -net), withdraw its grants and mark
    the run reversed, in one transaction. Reversing twice writes nothing the second time."""
    with db_errors(engine, "reversing"), engine.begin() as conn:
        run = conn.execute(sa.text("SELECT mode FROM runs WHERE run_id = :r"),
                           {"r": run_id}).first()
        if run is None:
            raise UsageError(f"reverse: run {run_id!r} does not exist")
        if run[0] != RunMode.POST:
            raise UsageError(f"reverse: run {run_id} was a simulation; nothing to reverse")
        states = ledger.key_states(
            conn, "SELECT DISTINCT assignment_id, kind, period_start FROM ledger "
                  f"WHERE run_id = :r AND entry = '{LedgerEntry.CHARGE}'", {"r": run_id})
        tag = correction_key(KeySpace.REVERSE, run_id)
        rows = [dict(line_fields(s.original), run_id=tag, run_date=s.original["run_date"],
                     amount_micros=-s.net, revision=s.revision + 1, entry=LedgerEntry.REVERSAL,
                     reason=f"reversal of run {run_id}", reverses_run_id=run_id,
                     idempotency_key=correction_key(KeySpace.REVERSE, run_id, *key))
                for key, s in sorted(states.items()) if s.net != 0]
        taken = _taken_keys(conn, run_id)
        for r in rows:  # a key an adjust took before user keys had a namespace (#28 point 7)
            if r["idempotency_key"] in taken:
                r["idempotency_key"] += f":r{r['revision']}"
        if simulate:
            conn.rollback()
            return Written(rows, [False] * len(rows))
        ledger.lock_customers(conn, (r["customer_id"] for r in rows))
        written = write(conn, rows, 1)
        _undo_consumption(conn, run_id)
        stamp = bulk.now_value(conn)
        conn.execute(sa.text("UPDATE grants SET withdrawn_at = :t, withdrawn_by_run = :b "
                             "WHERE run_id = :r AND withdrawn_at IS NULL"),
                     {"t": stamp, "b": tag, "r": run_id})
        conn.execute(sa.text("UPDATE runs SET reversed_at = :t, reversed_by_run = :b "
                             "WHERE run_id = :r AND reversed_at IS NULL"),
                     {"t": stamp, "b": tag, "r": run_id})
    return Written(rows, written)


def _taken_keys(conn: sa.Connection, run_id: str) -> set[str]:
    """The reversal keys of `run_id` that adjustment rows hold: before user keys had their own
    namespace, `adjust --key reverse:<run>:...` stored such a key raw. Those keys take the
    revision as a suffix (still once: the revision is unique per posting key)."""
    prefix = correction_key(KeySpace.REVERSE, run_id, "")
    like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return set(conn.execute(sa.text(
        "SELECT idempotency_key FROM ledger WHERE kind = :k AND idempotency_key LIKE :p "
        "ESCAPE '\\'"), {"k": LineKind.ADJUSTMENT, "p": like}).scalars())


_RUN_PART = ("FROM call_credits c WHERE c.run_id = :r AND c.assignment_id = "
             "grant_usage.assignment_id AND c.period_start = grant_usage.period_start")


def _undo_consumption(conn: sa.Connection, run_id: str) -> None:
    """The free minutes `run_id` consumed go back to their grants (counters down by its
    calls' seconds and covered charge, the call records deleted), in the reversal's
    transaction: a post of the date again consumes those calls again, once."""
    conn.execute(sa.text(
        f"UPDATE grant_usage SET seconds_used = seconds_used - (SELECT COALESCE(SUM(c.seconds), 0) "
        f"{_RUN_PART}), credited_micros = credited_micros - (SELECT "
        f"COALESCE(SUM(c.covered_micros), 0) {_RUN_PART}) WHERE EXISTS (SELECT 1 {_RUN_PART})"),
        {"r": run_id})
    conn.execute(sa.text("DELETE FROM call_credits WHERE run_id = :r"), {"r": run_id})
