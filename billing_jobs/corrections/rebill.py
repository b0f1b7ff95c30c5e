"""`rebill`: per billing date, recompute what is due with the current data through the
pipeline's own load and compute stages, and write one 'correction' row per posting key whose
ledger net differs from it (amount = target - net); keys no longer computed (assignment
deleted, invalid, start moved) are corrected to 0 (SPEC sections 9 and 10, docs/ledger.md).

The correction's idempotency key is derived from the key, the revision it takes, the net it
corrects and the target, so concurrent rebills that computed the same difference collide on the
unique key and only one writes; a rerun sees net == target. What the ledger holds for a date's
keys is read in one query per date (store/ledger.py `key_states`), never key by key.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.errors import UsageError
from billing_jobs.core.vocab import (KeySpace, LedgerEntry, LineKind, RunMode, RunStatus,
                                     correction_key)
from billing_jobs.corrections.grant_moves import rebill_grants
from billing_jobs.corrections.rows import Written, ledger_records, line_fields, write
from billing_jobs.run.request import RunRequest
from billing_jobs.run.stages import compute_stage, load_stage
from billing_jobs.store import ledger
from billing_jobs.store.db import db_errors
from billing_jobs.store.overlaps import overlapped_by


def rebill(engine: sa.Engine, first: date, last: date, customer_ids: list[str] | None = None,
           simulate: bool = True, tz: str | None = None) -> Written:
    """Post (or show) the difference between what current data says is due on each date of
    [first, last] and what the ledger holds per posting key, once, in one transaction.

    The rows that lower a key's net are written first (over every date of the range), then the
    rows that raise one: a moved start reverses the old keys before the new ones are charged,
    so the ledger never holds two live keys for the same days (the database refuses that,
    migration 0007). A simulation does the same in a transaction it rolls back."""
    if last < first:
        raise UsageError(f"rebill: --to {last} is before --from {first}")
    plans: list[tuple[date, list[dict]]] = []
    grant_plans: list[tuple[date, pd.DataFrame]] = []
    zone = None
    for day in (first + timedelta(days=i) for i in range((last - first).days + 1)):
        req = RunRequest(run_date=day, simulate=True, customer_ids=customer_ids,
                         **({"tz": tz} if tz else {}))
        zone = req.tz
        inputs, _rejected = load_stage(engine, req)
        result = compute_stage(inputs, req)
        plans.append((day, ledger_records(result.due_lines)))
        # the grants current data gives on the date, held ones included: rebill moves them
        grant_plans.append((day, pd.concat([g for g in (result.grants, result.held_grants[
            list(result.grants.columns)]) if len(g)] or [result.grants], ignore_index=True)))
    all_rows: list[dict] = []
    all_written: list[bool] = []
    with db_errors(engine, f"rebilling {first} to {last}"), engine.begin() as conn:
        _lock(conn, plans, first, last, customer_ids)
        n = 0  # writes so far (the fault hook correct_mid:<n> counts them)
        for lowering in (True, False):
            for day, lines in plans:
                rows = [r for r in _corrections_of_day(conn, day, lines, customer_ids)
                        if not lowering or r["amount_micros"] < 0]
                if not lowering:
                    _refuse_overlaps(conn, rows, first, last)
                if rows:
                    n += 1
                    all_rows += rows
                    all_written += write(conn, rows, n)
        notes = rebill_grants(conn, [(d, g, _posted_day(conn, d)) for d, g in grant_plans],
                              first, last, customer_ids, zone or "UTC")
        if simulate:
            conn.rollback()
            return Written(all_rows, [False] * len(all_rows), notes)
    return Written(all_rows, all_written, notes)


def _lock(conn: sa.Connection, plans: list[tuple[date, list[dict]]], first: date, last: date,
          customer_ids: list[str] | None) -> None:
    """Lock, once, every customer a correction of the range can move: those of the computed
    lines and those of the ledger rows of the range's dates."""
    sql = "SELECT DISTINCT customer_id FROM ledger WHERE run_date BETWEEN :f AND :l"
    stmt = sa.text(sql)
    params: dict = {"f": first, "l": last}
    if customer_ids:
        stmt = sa.text(sql + " AND customer_id IN :cs").bindparams(
            sa.bindparam("cs", expanding=True))
        params["cs"] = list(customer_ids)
    held = conn.execute(stmt, params).scalars().all()
    ledger.lock_customers(conn, [*held, *(r["customer_id"] for _d, lines in plans for r in lines)])


def _posted_day(conn: sa.Connection, day: date) -> bool:
    return conn.execute(sa.text(
        f"SELECT 1 FROM runs WHERE run_date = :d AND mode = '{RunMode.POST}' "
        f"AND status = '{RunStatus.SUCCEEDED}' AND reversed_at IS NULL LIMIT 1"),
        {"d": day}).first() is not None


def _refuse_overlaps(conn: sa.Connection, rows: list[dict], first: date, last: date) -> None:
    """A row that would charge days a live key outside the range still charges (a start moved
    to or from a date outside [first, last]) is refused naming both keys (store/overlaps.py)."""
    for r in rows:
        if r["amount_micros"] <= 0:
            continue
        other = overlapped_by(conn, r["assignment_id"], r["kind"], r["period_start"],
                              r["period_end"])
        if other is not None:
            lo, hi = min(first.isoformat(), other[2]), max(last.isoformat(), other[2])
            raise UsageError(
                f"rebill: key ({r['assignment_id']}, {r['kind']}, {r['period_start']}) would "
                f"charge days the posted ({r['assignment_id']}, {other[0]}, {other[1]}) of run "
                f"date {other[2]} still charges; rebill --from {lo} --to {hi} moves the charge; "
                "nothing written")


def _corrections_of_day(conn: sa.Connection, day: date, lines: list[dict],
                        customer_ids: list[str] | None) -> list[dict]:
    """The correction rows that bring each posting key of `day` to what `lines` (the computed
    lines, ledger names) says is due, given what the ledger holds now (inside the caller's
    transaction): the keys computed, and the keys the date's posted lines hold."""
    computed = {(str(r["assignment_id"]), str(r["kind"]), r["period_start"]): r for r in lines}
    held = ("SELECT assignment_id, kind, period_start FROM ledger WHERE run_date = :d "
            f"AND entry = '{LedgerEntry.CHARGE}'")
    params: dict = {"d": day}
    if customer_ids:
        held += " AND customer_id IN :cs"
        params["cs"] = list(customer_ids)
    with ledger.staged_keys(conn, "_rebill_keys", computed) as staged:
        states = ledger.key_states(
            conn, f"SELECT assignment_id, kind, period_start FROM {staged} UNION {held}", params)
    posted_day = _posted_day(conn, day)
    tag = correction_key(KeySpace.REBILL, day)
    rows = []
    for key in sorted(set(states) | set(computed)):
        if key[1] == LineKind.FREE_MINUTES_CREDIT:
            continue  # credits follow the recorded consumption (docs/free_minutes.md)
        state = states.get(key)
        if state is None and not posted_day:
            continue  # never posted: the next post of the date charges it
        if state is not None and state.reversed:
            continue  # reversed = not posted (docs/ledger.md): the next post charges it
        line = computed.get(key)
        net, rev = (state.net, state.revision) if state is not None else (0, -1)
        target = int(line["amount_micros"]) if line is not None else 0
        if target == net:
            continue
        why = ("no longer due with current data (assignment deleted, invalid or moved)"
               if line is None else f"current data says {target} micros")
        source = line if line is not None else state.original
        rows.append(dict(
            line_fields(source), run_id=tag,
            run_date=(state.original if state is not None else line)["run_date"],
            amount_micros=target - net, revision=rev + 1, entry=LedgerEntry.CORRECTION,
            reason=(f"rebill of {day}: key ({key[0]}, {key[1]}, {key[2]}) held {net} micros, "
                    + why),
            reverses_run_id=None,
            idempotency_key=correction_key(KeySpace.REBILL, *key, f"r{rev + 1}",
                                           f"{net}->{target}")))
    return rows
