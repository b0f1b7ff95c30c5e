"""`rebill`: per billing date, recompute what is due with the current data through the
pipeline's own load and compute stages, and write one 'correction' row per posting key whose
ledger net differs from it (amount = target - net); keys no longer computed (assignment
deleted, invalid, start moved) are corrected to 0 (SPEC sections 9 and 10, docs/ledger.md).

The correction's idempotency key is derived from the key, the revision it takes, the net it
corrects and the target, so concurrent rebills that computed the same difference collide on the
unique key and only one writes; a rerun sees net == target. What the ledger holds for a date's
keys is read in one query per date (store/ledger.py `key_states`), never key by key.

A range covers every period that overlaps it (#30 point 5): besides the billing dates of the
range, rebill recomputes each billing date outside it whose posted lines or grants have a period
overlapping the range (a change or an end moved into the middle of a period billed earlier is
found by `--from` the change date), and corrects there only the keys whose period overlaps the
range. A setup line (no end) is a period of its one start day.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.errors import UsageError
from billing_jobs.core.money import format_amount
from billing_jobs.core.vocab import (KeySpace, LedgerEntry, LineKind, RunMode, RunStatus,
                                     correction_key)
from billing_jobs.corrections.grant_moves import rebill_grants
from billing_jobs.corrections.rows import (Written, ledger_records, line_fields,
                                          period_overlaps, write)
from billing_jobs.run.request import RunRequest
from billing_jobs.run.stages import compute_stage, load_stage
from billing_jobs.store import ledger
from billing_jobs.store.db import db_errors, read_connection
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
    before, after = _overlapping_dates(engine, first, last, customer_ids)
    days = [*before, *(first + timedelta(days=i) for i in range((last - first).days + 1)),
            *after]
    #: None: every key of the date; else only keys whose period overlaps the range
    window = {d: (first, last) for d in (*before, *after)}
    plans: list[tuple[date, list[dict]]] = []
    grant_plans: list[tuple[date, pd.DataFrame]] = []
    zone = None
    for day in days:
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
        _lock(conn, plans, days[0], days[-1], customer_ids)
        n = 0  # writes so far (the fault hook correct_mid:<n> counts them)
        for lowering in (True, False):
            for day, lines in plans:
                rows = [r for r in _corrections_of_day(conn, day, lines, customer_ids,
                                                       window.get(day))
                        if not lowering or r["amount_micros"] < 0]
                if not lowering:
                    _refuse_overlaps(conn, rows, first, last)
                if rows:
                    n += 1
                    all_rows += rows
                    all_written += write(conn, rows, n)
        notes = rebill_grants(conn, [(d, g, _posted_day(conn, d), window.get(d))
                                     for d, g in grant_plans],
                              first, last, customer_ids, zone or "UTC")
        extra = [*before, *after]
        if extra:
            notes.insert(0, f"billing date(s) {', '.join(d.isoformat() for d in extra)} "
                            f"recomputed too: their periods overlap {first} to {last}")
        if simulate:
            conn.rollback()
            return Written(all_rows, [False] * len(all_rows), notes)
    return Written(all_rows, all_written, notes)


_OVERLAPPING = ("SELECT DISTINCT run_date FROM {table} WHERE (run_date < :f OR run_date > :l) "
                "AND ((period_end IS NULL AND period_start BETWEEN :f AND :l) "
                "OR (period_end IS NOT NULL AND period_start <= :l AND period_end > :f))")


def _overlapping_dates(engine: sa.Engine, first: date, last: date,
                       customer_ids: list[str] | None) -> tuple[list[date], list[date]]:
    """The billing dates before and after [first, last] whose posted lines (ledger charges) or
    grants have a period overlapping it."""
    found: set[date] = set()
    with read_connection(engine) as conn:
        for table, extra in (("ledger", f" AND entry = '{LedgerEntry.CHARGE}' "
                                        "AND assignment_id IS NOT NULL"), ("grants", "")):
            sql = _OVERLAPPING.format(table=table) + extra
            params: dict = {"f": first, "l": last}
            if customer_ids:
                sql += " AND customer_id IN :cs"
                params["cs"] = list(customer_ids)
            stmt = sa.text(sql)
            if customer_ids:
                stmt = stmt.bindparams(sa.bindparam("cs", expanding=True))
            found.update(conn.execute(stmt.columns(run_date=sa.Date), params).scalars())
    return sorted(d for d in found if d < first), sorted(d for d in found if d > last)


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
                        customer_ids: list[str] | None,
                        window: tuple[date, date] | None = None) -> list[dict]:
    """The correction rows that bring each posting key of `day` to what `lines` (the computed
    lines, ledger names) says is due, given what the ledger holds now (inside the caller's
    transaction): the keys computed, and the keys the date's posted lines hold; with `window`
    (a date outside the range), only the keys whose period overlaps it."""
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
        if window is not None:
            src = line if line is not None else state.original
            if not period_overlaps(src["period_start"], src["period_end"], *window):
                continue
        net, rev = (state.net, state.revision) if state is not None else (0, -1)
        target = int(line["amount_micros"]) if line is not None else 0
        if target == net:
            continue
        source = line if line is not None else state.original
        cur = source["currency"]
        why = ("no longer due with current data (assignment deleted, invalid or moved)"
               if line is None else f"current data says {format_amount(target, cur)} {cur}")
        rows.append(dict(
            line_fields(source), run_id=tag,
            run_date=(state.original if state is not None else line)["run_date"],
            amount_micros=target - net, revision=rev + 1, entry=LedgerEntry.CORRECTION,
            reason=(f"rebill of {day}: key ({key[0]}, {key[1]}, {key[2]}) held "
                    f"{format_amount(net, cur)} {cur}, "
                    + why),
            reverses_run_id=None,
            idempotency_key=correction_key(KeySpace.REBILL, *key, f"r{rev + 1}",
                                           f"{net}->{target}")))
    return rows
