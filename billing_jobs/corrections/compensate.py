"""Corrections are new ledger rows, never edits (SPEC section 9, docs/ledger.md).

* `adjust`: a manual debit (> 0) or credit (< 0) of a customer, once per idempotency key.
* `reverse`: compensating 'reversal' rows for every posting key a run posted (amount = -net),
  its grants withdrawn, the run marked reversed; once (the rows' idempotency keys name the run
  and the key).
* `rebill`: per billing date, recompute what is due with the current data through the pipeline's
  own load and compute stages, and write one 'correction' row per posting key whose ledger net
  differs from it (amount = target - net); keys no longer computed (assignment deleted, invalid,
  start moved) are reversed to 0. The correction's idempotency key is derived from the key, the
  revision it takes, the net it corrects and the target, so concurrent rebills that computed the
  same difference collide on the unique key and only one writes; a rerun sees net == target.

Every write moves the balance in the same transaction (balance -= amount of each 'posted' row
this transaction inserted), so `balance = opening - SUM(posted ledger)` holds after each command.
Fault injection: BILLING_CRASH_AT=`correct_mid:<n>` SIGKILLs after the n-th group of inserts,
before its balance update and the commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.money import BALANCE_BOUND_MICROS
from billing_jobs.core.faults import crash_point
from billing_jobs.core.errors import BillingError, UsageError
from billing_jobs.store import bulk
from billing_jobs.store.db import db_errors, read_connection
from billing_jobs.corrections.grant_moves import rebill_grants
from billing_jobs.store.overlaps import overlapped_by


_COLS = ("run_id", "run_date", "customer_id", "assignment_id", "package_id", "kind",
         "period_start", "period_end", "quantity", "unit_price_micros", "amount_micros",
         "cost_micros", "currency", "auto_decrement", "status", "posted_at", "revision", "entry",
         "reason", "reverses_run_id", "idempotency_key")


@dataclass
class Written:
    """What a correction command did: the rows (as dicts) and which of them this call wrote."""

    rows: list[dict]
    written: list[bool]
    #: what rebill did to free-minute grants, one line each (store/grant_corrections.py)
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.written)


def _d(value) -> date | None:
    if value is None or value is pd.NaT or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _insert(conn, rows: list[dict], n: int) -> list[bool]:
    """Insert rows (ON CONFLICT DO NOTHING on any unique key), move balances for the posted rows
    inserted; return which rows were inserted. Runs inside the caller's transaction."""
    stamp = bulk.now_value(conn)
    written = []
    debits: dict[str, int] = {}
    cols = ", ".join(_COLS)
    marks = ", ".join(f":{c}" for c in _COLS)
    stmt = sa.text(f"INSERT INTO ledger ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING "
                   "RETURNING ledger_id")
    for row in rows:
        params = {c: row.get(c) for c in _COLS}
        params["posted_at"] = stamp
        got = conn.execute(stmt, params).first()
        written.append(got is not None)
        if got is not None and row["status"] == "posted" and row["amount_micros"]:
            debits[row["customer_id"]] = debits.get(row["customer_id"], 0) + int(row["amount_micros"])
    crash_point("correct_mid", n)
    for customer in sorted(debits):
        bal = conn.execute(sa.text("SELECT balance_micros FROM customers WHERE customer_id = :c"
                                   + (" FOR UPDATE" if bulk.is_postgres(conn) else "")),
                           {"c": customer}).scalar()
        if bal is None:
            raise BillingError(f"customer {customer}: not found, nothing written")
        new = int(bal) - debits[customer]
        if abs(new) > BALANCE_BOUND_MICROS:
            raise BillingError(
                f"customer {customer}: balance would become {new} micros, beyond the bound "
                f"+/-{BALANCE_BOUND_MICROS} micros (9e9 units); nothing written")
        conn.execute(sa.text("UPDATE customers SET balance_micros = balance_micros - :a "
                             "WHERE customer_id = :c"), {"a": debits[customer], "c": customer})
    return written


# ---------------------------------------------------------------------------- adjust

def adjust(engine: sa.Engine, customer_id: str, amount_micros: int, reason: str,
           idempotency_key: str | None = None, post: bool = False,
           on: date | None = None) -> Written:
    """A manual debit (amount > 0) or credit (< 0). Simulate (default) returns the row only."""
    if not reason or not reason.strip():
        raise UsageError("adjust: --reason must say why")
    if amount_micros == 0:
        raise UsageError("adjust: --amount must not be 0")
    key = idempotency_key or f"adjust:{uuid.uuid4()}"
    day = on or datetime.now(timezone.utc).date()
    with db_errors(engine, "adjusting"), engine.begin() as conn:
        cust = conn.execute(sa.text("SELECT currency FROM customers WHERE customer_id = :c"),
                            {"c": customer_id}).first()
        if cust is None:
            raise UsageError(f"adjust: customer {customer_id!r} does not exist")
        row = dict(run_id=f"adjust:{key}", run_date=day, customer_id=customer_id,
                   assignment_id=None, package_id=None, kind="adjustment", period_start=day,
                   period_end=None, quantity=0, unit_price_micros=0, amount_micros=amount_micros,
                   cost_micros=0, currency=cust[0], auto_decrement=True, status="posted",
                   revision=0, entry="adjustment", reason=reason.strip(), reverses_run_id=None,
                   idempotency_key=key)
        if not post:
            conn.rollback()
            return Written([row], [False])
        written = _insert(conn, [row], 1)
    if not written[0]:
        with read_connection(engine) as conn:
            old = conn.execute(sa.text("SELECT customer_id, amount_micros FROM ledger "
                                       "WHERE idempotency_key = :k"), {"k": key}).first()
        if old is not None and (old[0] != customer_id or int(old[1]) != amount_micros):
            raise UsageError(f"adjust: key {key!r} was already used for customer {old[0]} "
                             f"amount {int(old[1])} micros; nothing written")
    return Written([row], written)


# ---------------------------------------------------------------------------- key nets

_NETS = (
    "SELECT l.assignment_id, l.kind, l.period_start, SUM(l.amount_micros), MAX(l.revision) "
    "FROM ledger l WHERE l.assignment_id IS NOT NULL AND EXISTS (SELECT 1 FROM ledger o "
    "WHERE o.assignment_id = l.assignment_id AND o.kind = l.kind "
    "AND o.period_start = l.period_start AND {where}) "
    "GROUP BY l.assignment_id, l.kind, l.period_start"
)


def _key(a, k, p) -> tuple[str, str, date]:
    return (str(a), str(k), _d(p))


def _nets(conn, where: str, params: dict) -> dict[tuple, tuple[int, int]]:
    """{key: (net micros, max revision)} for the keys having a row matching `where` (alias o)."""
    rows = conn.execute(sa.text(_NETS.format(where=where)), params).all()
    return {_key(a, k, p): (int(net), int(rev)) for a, k, p, net, rev in rows}


def _originals(conn, keys: list[tuple]) -> dict[tuple, dict]:
    """The revision-0 row of each key (customer, package, currency, status, period_end...)."""
    out = {}
    for a, k, p in keys:
        row = conn.execute(sa.text(
            "SELECT * FROM ledger WHERE assignment_id = :a AND kind = :k AND period_start = :p "
            "ORDER BY revision LIMIT 1"), {"a": a, "k": k, "p": p}).mappings().first()
        if row is not None:
            out[(a, k, p)] = dict(row)
    return out


def _reversed(conn, keys: list[tuple]) -> set[tuple]:
    """The keys whose highest revision is a reversal: they count as not posted."""
    out = set()
    for a, k, p in keys:
        entry = conn.execute(sa.text(
            "SELECT entry FROM ledger WHERE assignment_id = :a AND kind = :k AND period_start = :p "
            "ORDER BY revision DESC LIMIT 1"), {"a": a, "k": k, "p": p}).scalar()
        if entry == "reversal":
            out.add((a, k, p))
    return out


# ---------------------------------------------------------------------------- reverse

def reverse(engine: sa.Engine, run_id: str, simulate: bool = True) -> Written:
    """Compensate every posting key `run_id` posted (amount = -net), withdraw its grants and mark
    the run reversed, in one transaction. Reversing twice writes nothing the second time."""
    with db_errors(engine, "reversing"), engine.begin() as conn:
        run = conn.execute(sa.text("SELECT mode, status, run_date FROM runs WHERE run_id = :r"),
                           {"r": run_id}).first()
        if run is None:
            raise UsageError(f"reverse: run {run_id!r} does not exist")
        if run[0] != "post":
            raise UsageError(f"reverse: run {run_id} was a simulation; nothing to reverse")
        nets = _nets(conn, "o.run_id = :r AND o.entry = 'charge'", {"r": run_id})
        originals = _originals(conn, sorted(nets))
        rows = []
        for key in sorted(nets):
            net, rev = nets[key]
            if net == 0:
                continue
            o = originals[key]
            rows.append(_correction_row(o, f"reverse:{run_id}", "reversal", rev + 1, -net,
                                        f"reversal of run {run_id}",
                                        f"reverse:{run_id}:{key[0]}:{key[1]}:{key[2]}",
                                        reverses=run_id))
        if simulate:
            conn.rollback()
            return Written(rows, [False] * len(rows))
        written = _insert(conn, rows, 1)
        _undo_consumption(conn, run_id)
        stamp = bulk.now_value(conn)
        conn.execute(sa.text("UPDATE grants SET withdrawn_at = :t, withdrawn_by_run = :b "
                             "WHERE run_id = :r AND withdrawn_at IS NULL"),
                     {"t": stamp, "b": f"reverse:{run_id}", "r": run_id})
        conn.execute(sa.text("UPDATE runs SET reversed_at = :t, reversed_by_run = :b "
                             "WHERE run_id = :r AND reversed_at IS NULL"),
                     {"t": stamp, "b": f"reverse:{run_id}", "r": run_id})
    return Written(rows, written)


_RUN_PART = ("FROM call_credits c WHERE c.run_id = :r AND c.assignment_id = "
             "grant_usage.assignment_id AND c.period_start = grant_usage.period_start")


def _undo_consumption(conn, run_id: str) -> None:
    """The free minutes `run_id` consumed go back to their grants (counters down by its
    calls' seconds and covered charge, the call records deleted), in the reversal's
    transaction: a post of the date again consumes those calls again, once."""
    conn.execute(sa.text(
        f"UPDATE grant_usage SET seconds_used = seconds_used - (SELECT COALESCE(SUM(c.seconds), 0) "
        f"{_RUN_PART}), credited_micros = credited_micros - (SELECT "
        f"COALESCE(SUM(c.covered_micros), 0) {_RUN_PART}) WHERE EXISTS (SELECT 1 {_RUN_PART})"),
        {"r": run_id})
    conn.execute(sa.text("DELETE FROM call_credits WHERE run_id = :r"), {"r": run_id})


def _correction_row(o: dict, run_id: str, entry: str, revision: int, amount: int, reason: str,
                    key: str, reverses: str | None = None, line: dict | None = None) -> dict:
    src = line or o
    return dict(
        run_id=run_id, run_date=_d(o["run_date"]) if o else _d(src["run_date"]),
        customer_id=src["customer_id"], assignment_id=src["assignment_id"],
        package_id=src["package_id"], kind=src["kind"], period_start=_d(src["period_start"]),
        period_end=_d(src.get("period_end")), quantity=int(src.get("quantity") or 0),
        unit_price_micros=int(src.get("unit_price_micros", src.get("unit_price", 0)) or 0),
        amount_micros=int(amount), cost_micros=0, currency=src["currency"],
        auto_decrement=bool(src["auto_decrement"]),
        status="posted" if bool(src["auto_decrement"]) else "invoiced",
        revision=int(revision), entry=entry, reason=reason, reverses_run_id=reverses,
        idempotency_key=key)


# ---------------------------------------------------------------------------- rebill

def rebill(engine: sa.Engine, first: date, last: date, customer_ids: list[str] | None = None,
           simulate: bool = True, tz: str | None = None) -> Written:
    """Post (or show) the difference between what current data says is due on each date of
    [first, last] and what the ledger holds per posting key, once, in one transaction.

    The rows that lower a key's net are written first (over every date of the range), then the
    rows that raise one: a moved start reverses the old keys before the new ones are charged,
    so the ledger never holds two live keys for the same days (the database refuses that,
    migration 0007). A simulation does the same in a transaction it rolls back."""
    from billing_jobs.run.request import RunRequest
    from billing_jobs.run.stages import compute_stage, load_stage

    if last < first:
        raise UsageError(f"rebill: --to {last} is before --from {first}")
    plans: list[tuple[date, pd.DataFrame]] = []
    grant_plans: list[tuple[date, pd.DataFrame]] = []
    day = first
    zone = None
    while day <= last:
        req = RunRequest(run_date=day, simulate=True, customer_ids=customer_ids)
        if tz:
            req.tz = tz
        zone = req.tz
        inputs, _rejected = load_stage(engine, req)
        result = compute_stage(inputs, req)
        plans.append((day, result.due_lines))
        # the grants current data gives on the date, held ones included: rebill moves them
        grant_plans.append((day, pd.concat([g for g in (result.grants, result.held_grants[
            list(result.grants.columns)]) if len(g)] or [result.grants], ignore_index=True)))
        day += timedelta(days=1)
    all_rows: list[dict] = []
    all_written: list[bool] = []
    with db_errors(engine, f"rebilling {first} to {last}"), engine.begin() as conn:
        n = 0  # writes so far (the fault hook correct_mid:<n> counts them)
        for lowering in (True, False):
            for day, lines in plans:
                rows = [r for r in _rebill_day(conn, day, lines, customer_ids)
                        if not lowering or r["amount_micros"] < 0]
                if not lowering:
                    _refuse_overlaps(conn, rows, first, last)
                if rows:
                    n += 1
                    all_rows += rows
                    all_written += _insert(conn, rows, n)
        notes = rebill_grants(conn, [(d, g, _posted_day(conn, d)) for d, g in grant_plans],
                              first, last, customer_ids, zone or "UTC")
        if simulate:
            conn.rollback()
            return Written(all_rows, [False] * len(all_rows), notes)
    return Written(all_rows, all_written, notes)


def _posted_day(conn, day: date) -> bool:
    return conn.execute(sa.text(
        "SELECT 1 FROM runs WHERE run_date = :d AND mode = 'post' AND status = 'succeeded' "
        "AND reversed_at IS NULL LIMIT 1"), {"d": day}).first() is not None


def _refuse_overlaps(conn, rows: list[dict], first: date, last: date) -> None:
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


def _rebill_day(conn, day: date, lines: pd.DataFrame, customer_ids) -> list[dict]:
    """The correction rows that bring each posting key of `day` to what `lines` says is due,
    given what the ledger holds now (inside the caller's transaction)."""
    computed: dict[tuple, dict] = {}
    for rec in lines.to_dict("records"):
        computed[_key(rec["assignment_id"], rec["kind"], rec["period_start"])] = rec
    tag = f"rebill:{day.isoformat()}"
    where, params = "o.run_date = :d AND o.entry = 'charge'", {"d": day}
    if customer_ids:
        where += " AND o.customer_id IN :cs"
        params["cs"] = tuple(customer_ids)
        stmt_nets = sa.text(_NETS.format(where=where)).bindparams(
            sa.bindparam("cs", expanding=True))
        owned = {_key(a, k, p): (int(net), int(rev))
                 for a, k, p, net, rev in conn.execute(stmt_nets, params).all()}
    else:
        owned = _nets(conn, where, params)
    posted_day = _posted_day(conn, day)
    # computed keys the ledger holds under another date (or not at all)
    extra = [k for k in computed if k not in owned]
    for key in extra:
        row = conn.execute(sa.text(
            "SELECT SUM(amount_micros), MAX(revision) FROM ledger WHERE assignment_id = :a "
            "AND kind = :k AND period_start = :p"),
            {"a": key[0], "k": key[1], "p": key[2]}).first()
        if row[1] is not None:
            owned[key] = (int(row[0]), int(row[1]))
    originals = _originals(conn, sorted(owned))
    reversed_keys = _reversed(conn, sorted(owned))
    rows = []
    for key in sorted(set(owned) | set(computed)):
        if key[1] == "free_minutes_credit":
            continue  # credits follow the recorded consumption (docs/free_minutes.md)
        line = computed.get(key)
        if key not in owned and not posted_day:
            continue  # never posted: the next post of the date charges it
        if key in reversed_keys:
            continue  # reversed = not posted (docs/ledger.md): the next post charges it
        net, rev = owned.get(key, (0, -1))
        target = int(line["amount"]) if line is not None else 0
        if target == net:
            continue
        o = originals.get(key)
        src = None
        if line is not None:
            src = dict(line, unit_price_micros=int(line["unit_price"]))
        why = ("no longer due with current data (assignment deleted, invalid or moved)"
               if line is None else f"current data says {target} micros")
        reason = (f"rebill of {day}: key ({key[0]}, {key[1]}, {key[2]}) held {net} micros, "
                  + why)
        rows.append(_correction_row(
            o, tag, "correction", rev + 1, target - net, reason,
            f"rebill:{key[0]}:{key[1]}:{key[2]}:r{rev + 1}:{net}->{target}", line=src))
    return rows
