"""Read-only operator views (issue #11): balances, a customer's ledger, the run history and the
billing dates never posted. Each returns a plain list of dicts; money stays integer micros
(`*_micros` keys dropped: `balance`, `amount`, ... hold int micros) next to its `currency`.
The CLI (billing_jobs/cli/views.py) formats them; nothing here writes.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Sequence

import sqlalchemy as sa

from billing_jobs.core.vocab import RunMode, RunStatus
from billing_jobs.store.db import db_errors, read_connection
from billing_jobs.store.runs import unposted_dates
from billing_jobs.store.tables import customers, ledger as ledger_t, runs as runs_t

def _ts(value: datetime | None) -> datetime | None:
    """A typed timestamp as an aware UTC datetime: SQLite's driver has no time zones, so
    SQLAlchemy hands back its stored UTC values naive (PostgreSQL's are aware already)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def balances(engine: sa.Engine, customer_ids: Sequence[str] | None = None) -> list[dict]:
    """One dict per customer (all, or those of `customer_ids`), ordered by customer_id."""
    q = sa.select(customers.c.customer_id, customers.c.name, customers.c.currency,
                  customers.c.balance_micros, customers.c.opening_balance_micros
                  ).order_by(customers.c.customer_id)
    if customer_ids:
        q = q.where(customers.c.customer_id.in_(sorted({str(c) for c in customer_ids})))
    with db_errors(engine, "reading the balances"), read_connection(engine) as conn:
        rows = conn.execute(q).all()
    return [{"customer_id": c, "name": n, "currency": cur, "balance": int(b),
             "opening_balance": int(o)} for c, n, cur, b, o in rows]


def ledger(engine: sa.Engine, customer_id: str, first: date | None = None,
           last: date | None = None) -> list[dict]:
    """Every ledger row of the customer (run_date within first..last, both included when
    given), ordered by posted_at then ledger_id: charges, corrections, reversals, adjustments."""
    t = ledger_t
    q = (sa.select(t.c.ledger_id, t.c.run_id, t.c.run_date, t.c.kind, t.c.entry, t.c.assignment_id,
                   t.c.package_id, t.c.period_start, t.c.period_end, t.c.quantity,
                   t.c.amount_micros, t.c.currency, t.c.auto_decrement, t.c.status, t.c.reason,
                   t.c.posted_at)
         .where(t.c.customer_id == customer_id).order_by(t.c.posted_at, t.c.ledger_id))
    if first is not None:
        q = q.where(t.c.run_date >= first)
    if last is not None:
        q = q.where(t.c.run_date <= last)
    with db_errors(engine, "reading the ledger"), read_connection(engine) as conn:
        rows = conn.execute(q).mappings().all()
    out = []
    for r in rows:
        out.append({
            "run_id": r["run_id"], "run_date": r["run_date"], "kind": r["kind"],
            "entry": r["entry"], "assignment_id": r["assignment_id"], "package_id": r["package_id"],
            "period_start": r["period_start"], "period_end": r["period_end"],
            "quantity": int(r["quantity"]), "amount": int(r["amount_micros"]),
            "currency": r["currency"], "auto_decrement": bool(r["auto_decrement"]),
            "status": r["status"], "reason": r["reason"], "posted_at": _ts(r["posted_at"]),
        })
    return out


def unposted(engine: sa.Engine, today: date | None = None) -> list[dict]:
    """Billing dates with no standing post for all customers, up to the day before `today`
    (default: today, UTC; the CLI gives today in the billing time zone), each with a reason.

    The series starts at the first succeeded full post (no customer filter, reversed or not):
    every later date before `today` that has no succeeded full post (`store.runs.unposted_dates`),
    and every date whose full posts were reversed with no full post after the reversal
    (#30 point 6: `reverse --run` makes the date unposted, so the worklist brings it back).
    Never a date after `today` (#30 point 4: a mistyped post in 2099 does not list the decades
    before it). The reason says whether a post of the date failed, posted only some customers,
    was reversed, or never ran.
    """
    today = today or datetime.now(timezone.utc).date()
    dates = set(unposted_dates(engine, today))
    with db_errors(engine, "reading the run history"), read_connection(engine) as conn:
        full = conn.execute(sa.select(runs_t.c.run_date, runs_t.c.started_at,
                                      runs_t.c.reversed_at, runs_t.c.reversed_by_run)
                            .where(runs_t.c.mode == RunMode.POST,
                                   runs_t.c.status == RunStatus.SUCCEEDED,
                                   runs_t.c.customer_filter.is_(None),
                                   runs_t.c.run_date < today)).all()
    reversed_by = _reversed_dates(full)
    dates |= set(reversed_by)
    if not dates:
        return []
    dates_sorted = sorted(dates)
    with db_errors(engine, "reading the run history"), read_connection(engine) as conn:
        tried = conn.execute(sa.select(runs_t.c.run_date, runs_t.c.status, runs_t.c.customer_filter,
                                       runs_t.c.message)
                             .where(runs_t.c.mode == RunMode.POST,
                                    runs_t.c.run_date >= dates_sorted[0],
                                    runs_t.c.run_date <= dates_sorted[-1])
                             .order_by(runs_t.c.started_at)).all()
    by_date: dict[date, list] = {}
    for d, status, filt, message in tried:
        by_date.setdefault(d, []).append((status, filt, message))
    out = []
    for d in dates_sorted:
        attempts = by_date.get(d, [])
        partial = sorted({c for s, f, _ in attempts if s == RunStatus.SUCCEEDED and f
                          for c in json.loads(f)})
        failed = [((m or "").strip().splitlines() or ["no message"])[0] for s, _, m in attempts
                  if s == RunStatus.FAILED]
        running = [s for s, _, _ in attempts if s == RunStatus.RUNNING]
        if d in reversed_by:
            reason = f"posted, then reversed ({reversed_by[d]}): post the date again"
        elif partial:
            reason = f"posted for {', '.join(partial)} only, not for all customers"
        elif failed:
            reason = f"post run failed ({len(failed)}x): {failed[-1]}"
        elif running:
            reason = "a post run is still running (or was killed)"
        else:
            reason = "no post run"
        out.append({"run_date": d, "reason": reason, "post_attempts": len(attempts)})
    return out


def _reversed_dates(full_posts) -> dict[date, str]:
    """{date: the reversal's run id} of the dates whose succeeded full posts (run_date,
    started_at, reversed_at, reversed_by_run) were reversed, with no full post started after
    the latest reversal (a post that started before it found the keys posted and wrote
    nothing, so it does not post the date again)."""
    by_date: dict[date, list] = {}
    for d, started, rev_at, rev_by in full_posts:
        by_date.setdefault(d, []).append((_ts(started), _ts(rev_at), rev_by))
    out = {}
    for d, posts in by_date.items():
        undone = [(at, by) for _s, at, by in posts if at is not None]
        if not undone:
            continue
        last_at, last_by = max(undone, key=lambda x: x[0])
        if not any(at is None and started is not None and started > last_at
                   for started, at, _b in posts):
            out[d] = last_by
    return out
