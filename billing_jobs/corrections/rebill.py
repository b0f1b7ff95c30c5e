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
from billing_jobs.core.vocab import (KeySpace, LedgerEntry, LineKind, LineStatus, RunMode,
                                     RunStatus, correction_key)
from billing_jobs.corrections.grant_moves import rebill_grants
from billing_jobs.corrections.rows import (Written, ledger_records, line_fields,
                                          period_overlaps, write)
from billing_jobs.run.request import RunRequest
from billing_jobs.run.stages import compute_stage, load_stage
from billing_jobs.store import ledger
from billing_jobs.store.db import db_errors, read_connection
from billing_jobs.store.overlaps import overlapped_by


#: the billing dates the engine handles (cli/options.py MIN_RUN_DATE / MAX_RUN_DATE; the CLI
#: refuses other dates before this is reached): a period's end and every date arithmetic stay
#: inside what dates and timestamps can hold (#28 point 12: `--from 0001-01-01` overflowed)
MIN_DATE = date(2000, 1, 1)
MAX_DATE = date(2199, 12, 31)
#: a range of more days than this works in steps of this many billing dates, one transaction
#: each (#28 point 12); up to it, one transaction over the whole range as before
STEP_DAYS = 31


def check_range(first: date, last: date) -> None:
    """Refuse (exit 2) a range outside the billing dates or backwards, in one line."""
    for option, day in (("--from", first), ("--to", last)):
        if not MIN_DATE <= day <= MAX_DATE:
            raise UsageError(f"rebill: {option} {day} is out of range: billing dates run from "
                             f"{MIN_DATE} to {MAX_DATE}")
    if last < first:
        raise UsageError(f"rebill: --to {last} is before --from {first}")


def rebill(engine: sa.Engine, first: date, last: date, customer_ids: list[str] | None = None,
           simulate: bool = True, tz: str | None = None, progress=None,
           step_days: int = STEP_DAYS) -> Written:
    """Post (or show) the difference between what current data says is due on each date of
    [first, last] and what the ledger holds per posting key, once.

    Up to `step_days` billing dates (the range's and those added because their periods
    overlap it): one transaction. The rows that lower a key's net are written first (over
    every date of the range), then the rows that raise one: a moved start reverses the old
    keys before the new ones are charged, so the ledger never holds two live keys for the same
    days (the database refuses that, migration 0007). A simulation does the same in a
    transaction it rolls back.

    More dates: in steps of `step_days` dates, each computed, written and committed in its own
    transaction (memory and transaction size bounded by a step), `progress(step, steps, first
    date, last date, rows)` called after each (step 0: the last transaction's waiting rows). A row that would raise a key still overlapped by
    a live key (a start moved to an earlier step than its old key) waits for the last
    transaction, which writes those rows and moves the grants of the whole range. A crash leaves
    the steps before it posted; a rerun computes what is left and writes only that."""
    check_range(first, last)
    if step_days < 1:
        raise UsageError("rebill: a step has at least one day")
    before, after = _overlapping_dates(engine, first, last, customer_ids)
    days = [*before, *(first + timedelta(days=i) for i in range((last - first).days + 1)),
            *after]
    #: None: every key of the date; else only keys whose period overlaps the range
    window = {d: (first, last) for d in (*before, *after)}
    steps = [days[i:i + step_days] for i in range(0, len(days), step_days)]
    done = _Done()
    notes: list[str] = []
    grant_plans: list[tuple[date, pd.DataFrame]] = []
    zone = None
    if len(steps) == 1:
        plans, grant_plans, zone = _plans(engine, days, customer_ids, tz)
        with db_errors(engine, f"rebilling {first} to {last}"), engine.begin() as conn:
            _lock(conn, plans, days[0], days[-1], customer_ids)
            _write_days(conn, plans, window, customer_ids, first, last, done, notes)
            notes += _grants(conn, grant_plans, window, first, last, customer_ids, zone)
            if simulate:
                conn.rollback()
        return done.result(simulate, _extra_note(before, after, first, last) + notes)
    deferred: list[tuple[date, dict]] = []
    lowered: set = set()  # keys a simulated step brought to 0 (rolled back since)
    for i, step in enumerate(steps, 1):
        plans, grants, zone = _plans(engine, step, customer_ids, tz)
        grant_plans += grants
        count = len(done.rows)
        with db_errors(engine, f"rebilling {step[0]} to {step[-1]} (step {i} of "
                               f"{len(steps)})"), engine.begin() as conn:
            _lock(conn, plans, step[0], step[-1], customer_ids)
            _write_days(conn, plans, window, customer_ids, first, last, done, notes,
                        deferred=deferred, lowered=lowered if simulate else None)
            if simulate:
                conn.rollback()
        del plans
        if progress is not None:
            progress(i, len(steps), step[0], step[-1],
                     len(done.rows) - count if simulate else sum(done.written[count:]))
    before_last = len(done.rows)
    try:
        with db_errors(engine, f"rebilling {first} to {last} (last step: moved keys and "
                               "grants)"), engine.begin() as conn:
            _lock(conn, [(d, [line]) for d, line in deferred], days[0], days[-1], customer_ids)
            for day, line in deferred:  # each key alone: its state after the steps
                rows = _corrections_of_day(conn, day, [line], customer_ids, window.get(day),
                                           only_computed=True)
                _refuse_overlaps(conn, rows, first, last,
                                 ignore=lowered if simulate else None)
                if simulate:  # shown only: the old key's reversal was rolled back
                    done.add(rows, [])
                elif rows:
                    done.add(rows, write(conn, rows, done.next()))
            if deferred and progress is not None:
                count = len(done.rows) - before_last
                progress(0, len(steps), first, last,
                         count if simulate else sum(done.written[len(done.rows) - count:]))
            notes += _grants(conn, grant_plans, window, first, last, customer_ids, zone)
            if simulate:
                conn.rollback()
    except UsageError as exc:
        if simulate or not done.count:
            raise
        raise UsageError(f"{exc} (in the last step; the {done.count} row(s) of the "
                         f"{len(steps)} steps before it are posted and stand)") from None
    return done.result(simulate, _extra_note(before, after, first, last) + notes)


class _Done:
    """The rows computed so far (over the steps), which of them were written, and the count
    of write groups (the fault hook correct_mid:<n> counts them)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.written: list[bool] = []
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n

    def add(self, rows: list[dict], written: list[bool]) -> None:
        self.rows += rows
        self.written += written or [False] * len(rows)

    @property
    def count(self) -> int:
        return sum(self.written)

    def result(self, simulate: bool, notes: list[str]) -> Written:
        if simulate:
            return Written(self.rows, [False] * len(self.rows), notes)
        return Written(self.rows, self.written, notes)


def _extra_note(before: list[date], after: list[date], first: date, last: date) -> list[str]:
    extra = [*before, *after]
    if not extra:
        return []
    return [f"billing date(s) {', '.join(d.isoformat() for d in extra)} recomputed too: "
            f"their periods overlap {first} to {last}"]


def _plans(engine: sa.Engine, days: list[date], customer_ids: list[str] | None,
           tz: str | None):
    """(per day the computed lines in ledger names, per day the grants current data gives,
    the billing time zone) through the pipeline's own load and compute stages."""
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
    return plans, grant_plans, zone


def _write_days(conn: sa.Connection, plans, window, customer_ids, first: date, last: date,
                done: _Done, notes: list[str], deferred: list | None = None,
                lowered: set | None = None) -> None:
    """The corrections of `plans`' dates: first the rows that lower a key (over every date),
    then the rest. With `deferred` (working in steps), a raise that a live key still overlaps
    is kept there (date, computed line) for the last transaction instead of refused; with
    `lowered` (simulating in steps), the keys brought to 0 are noted there."""
    for lowering in (True, False):
        for day, lines in plans:
            rows = _corrections_of_day(conn, day, lines, customer_ids, window.get(day),
                                       lowering=lowering, notes=None if lowering else notes)
            if not lowering:
                if deferred is not None:
                    by_key = {_row_key(r): r for r in lines}
                    rows, wait = _split_overlapped(conn, rows, set(by_key))
                    deferred += [(day, by_key[k]) for k in wait]
                _refuse_overlaps(conn, rows, first, last)
            if rows:
                done.add(rows, write(conn, rows, done.next()))
                if lowered is not None:
                    lowered.update(_keys_at_zero(conn, rows))


def _row_key(r: dict) -> tuple:
    return (str(r["assignment_id"]), str(r["kind"]), r["period_start"])


def _split_overlapped(conn: sa.Connection, rows: list[dict], computed: set
                      ) -> tuple[list[dict], list]:
    """(rows to write now, keys of the raises of computed keys a live key still overlaps)."""
    now, wait = [], []
    for r in rows:
        if r["amount_micros"] > 0 and _row_key(r) in computed and overlapped_by(conn, r["assignment_id"], r["kind"],
                                                    r["period_start"], r["period_end"]):
            wait.append(_row_key(r))
        else:
            now.append(r)
    waiting = set(wait)
    return [r for r in now if _row_key(r) not in waiting], sorted(waiting)


def _keys_at_zero(conn: sa.Connection, rows: list[dict]) -> set:
    """The keys of `rows` whose net is 0 now (inside the caller's transaction)."""
    out = set()
    for key in {_row_key(r) for r in rows}:
        net = conn.execute(sa.text(
            "SELECT COALESCE(SUM(amount_micros), 0) FROM ledger WHERE assignment_id = :a "
            "AND kind = :k AND period_start = :p"), {"a": key[0], "k": key[1], "p": key[2]}
        ).scalar()
        if not int(net):
            out.add((key[0], key[1], key[2].isoformat()))
    return out


def _grants(conn, grant_plans, window, first, last, customer_ids, zone) -> list[str]:
    return rebill_grants(conn, [(d, g, _posted_day(conn, d), window.get(d))
                                for d, g in grant_plans],
                         first, last, customer_ids, zone or "UTC")


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
    if customer_ids:  # an assignment moved to a selected customer: its old customer too
        held += conn.execute(sa.text(
            "SELECT DISTINCT l.customer_id FROM ledger l JOIN assignments a "
            "ON a.assignment_id = l.assignment_id WHERE l.run_date BETWEEN :f AND :l "
            "AND a.customer_id IN :cs").bindparams(sa.bindparam("cs", expanding=True)),
            params).scalars().all()
    ledger.lock_customers(conn, [*held, *(r["customer_id"] for _d, lines in plans for r in lines)])


def _posted_day(conn: sa.Connection, day: date) -> bool:
    return conn.execute(sa.text(
        f"SELECT 1 FROM runs WHERE run_date = :d AND mode = '{RunMode.POST}' "
        f"AND status = '{RunStatus.SUCCEEDED}' AND reversed_at IS NULL LIMIT 1"),
        {"d": day}).first() is not None


def _refuse_overlaps(conn: sa.Connection, rows: list[dict], first: date, last: date,
                     ignore: set | None = None) -> None:
    """A row that would charge days a live key outside the range still charges (a start moved
    to or from a date outside [first, last]) is refused naming both keys (store/overlaps.py).
    `ignore`: keys (assignment, kind, ISO start) a simulated earlier step brought to 0."""
    for r in rows:
        if r["amount_micros"] <= 0:
            continue
        other = overlapped_by(conn, r["assignment_id"], r["kind"], r["period_start"],
                              r["period_end"])
        if other is not None and ignore and (str(r["assignment_id"]), other[0],
                                             other[1]) in ignore:
            continue
        if other is not None:
            lo, hi = min(first.isoformat(), other[2]), max(last.isoformat(), other[2])
            raise UsageError(
                f"rebill: key ({r['assignment_id']}, {r['kind']}, {r['period_start']}) would "
                f"charge days the posted ({r['assignment_id']}, {other[0]}, {other[1]}) of run "
                f"date {other[2]} still charges; rebill --from {lo} --to {hi} moves the charge; "
                "nothing written")


_SHARES = ("SELECT l.assignment_id, l.kind, l.period_start, l.customer_id, l.status, "
           "l.currency, SUM(l.amount_micros) AS net FROM ledger l JOIN ({keys}) k "
           "ON l.assignment_id = k.assignment_id AND l.kind = k.kind "
           "AND l.period_start = k.period_start "
           "GROUP BY l.assignment_id, l.kind, l.period_start, l.customer_id, l.status, "
           "l.currency")


def _shares(conn: sa.Connection, keys: str, params: dict) -> dict[tuple, list[tuple]]:
    """{key: [(customer_id, status, currency, net), ...]}: what each customer holds of each
    key (a key moved between customers is held by several until rebill moves it whole)."""
    stmt = sa.text(_SHARES.format(keys=keys)).columns(period_start=sa.Date)
    if "cs" in params:
        stmt = stmt.bindparams(sa.bindparam("cs", expanding=True))
    out: dict[tuple, list[tuple]] = {}
    for a, k, p, c, st, cur, net in conn.execute(stmt, params).all():
        out.setdefault((str(a), str(k), p), []).append((str(c), str(st), str(cur), int(net)))
    for groups in out.values():
        groups.sort()
    return out


def _current_customers(conn: sa.Connection, assignment_ids: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    ids = sorted(assignment_ids)
    for i in range(0, len(ids), 500):
        found.update((str(a), str(c)) for a, c in conn.execute(sa.text(
            "SELECT assignment_id, customer_id FROM assignments WHERE assignment_id IN :ids"
        ).bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids[i:i + 500]}).all())
    return found


def _corrections_of_day(conn: sa.Connection, day: date, lines: list[dict],
                        customer_ids: list[str] | None,
                        window: tuple[date, date] | None = None, lowering: bool = False,
                        notes: list[str] | None = None,
                        only_computed: bool = False) -> list[dict]:
    """The correction rows that bring each posting key of `day` to what `lines` (the computed
    lines, ledger names) says is due, given what the ledger holds now (inside the caller's
    transaction): the keys computed, and (unless `only_computed`) the keys the date's posted
    lines hold; with `window` (a date outside the range), only the keys whose period overlaps
    it; with `lowering`, only the rows that lower a key's net.

    A key lives on one customer (#28 point 5): what another customer than the one current data
    bills holds of it (an assignment whose customer was corrected by an import) is corrected
    to 0 on that customer (per status and currency held), and the billed customer gets the
    full amount; a key no longer due is brought to 0 on every customer holding it. With
    `customer_ids`, a key no longer computed whose assignment is now billed to a customer
    outside them is left alone (noted in `notes`): a rebill of that customer moves it."""
    computed = {(str(r["assignment_id"]), str(r["kind"]), r["period_start"]): r for r in lines}
    held = ("SELECT assignment_id, kind, period_start FROM ledger WHERE run_date = :d "
            f"AND entry = '{LedgerEntry.CHARGE}'")
    params: dict = {"d": day}
    if customer_ids:
        held += " AND customer_id IN :cs"
        params["cs"] = list(customer_ids)
    with ledger.staged_keys(conn, "_rebill_keys", computed) as staged:
        keys = f"SELECT assignment_id, kind, period_start FROM {staged}"
        if not only_computed:
            keys += f" UNION {held}"
        else:
            params = {}
        states = ledger.key_states(conn, keys, params)
        shares = _shares(conn, keys, params)
    posted_day = _posted_day(conn, day)
    tag = correction_key(KeySpace.REBILL, day)
    elsewhere: dict[str, str] = {}
    if customer_ids:
        gone = {k[0] for k in states if k not in computed}
        wanted = {str(c) for c in customer_ids}
        elsewhere = {a: c for a, c in _current_customers(conn, gone).items() if c not in wanted}
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
        if line is None and key[0] in elsewhere:
            if notes is not None and state.net:
                notes.append(f"key ({key[0]}, {key[1]}, {key[2]}) left alone: its assignment "
                             f"is now billed to customer {elsewhere[key[0]]}, outside "
                             "--customer; a rebill of that customer moves it")
            continue
        rows += _key_rows(day, key, state, line, shares.get(key, []), tag, lowering)
    return rows


def _key_rows(day: date, key: tuple, state, line: dict | None, shares: list[tuple], tag: str,
              lowering: bool) -> list[dict]:
    """The rows bringing one key to `line` (None: 0): the share of each customer current data
    does not bill to 0, then the billed customer's share to the target."""
    net, rev = (state.net, state.revision) if state is not None else (0, -1)
    target = int(line["amount_micros"]) if line is not None else 0
    if line is not None:
        billed = str(line["customer_id"])
    else:
        holders = {c for c, _st, _cur, n in shares if n}
        billed = (holders.pop() if len(holders) == 1 else
                  None if holders else str(state.original["customer_id"]))
    own = sum(n for c, _st, _cur, n in shares if c == billed) if shares else net
    source = line if line is not None else state.original
    moved = [(c, st, cur, n) for c, st, cur, n in shares if c != billed and n]
    planned: list[tuple[dict, int, str, str]] = []  # (fields, amount, key tail, reason)
    for c, st, cur, n in moved:
        fields = dict(line_fields(source), customer_id=c, currency=cur, status=st,
                      auto_decrement=st == LineStatus.POSTED)
        where = (f"current data bills customer {billed}: the key moves whole"
                 if line is not None else
                 "no longer due with current data (assignment deleted, invalid or moved)")
        planned.append((fields, -n, f"{c}:{n}->0",
                        f"rebill of {day}: key ({key[0]}, {key[1]}, {key[2]}) held "
                        f"{format_amount(n, cur)} {cur} on customer {c}, " + where))
    if billed is not None and target != own:
        cur = source["currency"]
        why = ("no longer due with current data (assignment deleted, invalid or moved)"
               if line is None else f"current data says {format_amount(target, cur)} {cur}")
        if moved:
            why += f" (moved from customer {', '.join(sorted({m[0] for m in moved}))})"
            tail = f"{billed}:{own}->{target}"
        else:
            tail = f"{net}->{target}"
        planned.append((line_fields(source), target - own, tail,
                        f"rebill of {day}: key ({key[0]}, {key[1]}, {key[2]}) held "
                        f"{format_amount(own, cur)} {cur}, " + why))
    rows = []
    for fields, amount, tail, reason in planned:
        if lowering and amount >= 0:
            continue
        rev += 1
        rows.append(dict(
            fields, run_id=tag,
            run_date=(state.original if state is not None else line)["run_date"],
            amount_micros=amount, revision=rev, entry=LedgerEntry.CORRECTION, reason=reason,
            reverses_run_id=None,
            idempotency_key=correction_key(KeySpace.REBILL, *key, f"r{rev}", tail)))
    return rows
