"""The one billing path: load -> validate -> compute -> gate -> post|simulate -> report.

Both the command line and the Airflow DAG call these stage functions; neither holds
billing logic of its own.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from billing_jobs.core import settings
from billing_jobs.calc.billing import compute_billing
from billing_jobs.core.frames import BillingInputs, BillingResult
from billing_jobs.core.errors import BillingError, StrictRejection
# the run lifecycle (record first, what a failed post wrote, atomic report, close the record)
from billing_jobs.run.lifecycle import (RECORD_TRIES, begin_run, close_attempt,  # noqa: F401
                                        close_run, empty_result, mark, posted_by_run,
                                        read_summary, report_stage, run_info, summarise,
                                        write_report_atomically)


@dataclass
class RunRequest:
    run_date: date
    simulate: bool = True
    customer_ids: list[str] | None = None
    strict: bool = False
    out_dir: Path | None = None
    started_by: str = "cli"
    tz: str = field(default_factory=settings.tz_or_default)

    @property
    def mode(self) -> str:
        return "simulate" if self.simulate else "post"


@dataclass
class RunOutcome:
    run_id: str
    status: str
    report_dir: Path | None
    summary: dict
    message: str = ""

    report_error: str = ""
    error: BaseException | None = None
    result: BillingResult | None = None  # the settled result (lines with their status)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded" and not self.report_error


def report_root() -> Path:
    return settings.report_dir()


def default_report_dir(req: RunRequest, run_id: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return report_root() / f"{req.run_date.isoformat()}_{req.mode}_{stamp}_{run_id[:8]}"


class Timings(dict):
    """Seconds spent per stage."""

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = round(self.get(name, 0.0) + time.perf_counter() - t0, 4)


# ------------------------------------------------------------------ stages

def load_stage(engine, req: RunRequest, timings: "Timings | None" = None
               ) -> tuple[BillingInputs, pd.DataFrame]:
    """Inputs for the date from the database, validated: (clean inputs, rejected rows)."""
    from billing_jobs.checks import validate_inputs
    from billing_jobs.store.load import load_inputs

    timings = timings if timings is not None else Timings()
    with timings.stage("load"):
        raw = load_inputs(engine, req.run_date, customer_ids=req.customer_ids)
    with timings.stage("validate"):
        clean, rejected = validate_inputs(raw)
    return strict_check(req, clean, rejected)


def strict_check(req: RunRequest, clean: BillingInputs, rejected: pd.DataFrame
                 ) -> tuple[BillingInputs, pd.DataFrame]:
    """--strict: any rejected input row fails the run before anything is posted."""
    if req.strict and len(rejected):
        first = rejected.iloc[0]
        error = StrictRejection(
            f"--strict: {len(rejected)} input row(s) rejected, nothing posted; first: "
            f"{first['entity']} {first['id']}: {first['reason']}")
        error.rejected = rejected  # the report still lists them
        raise error
    return clean, rejected


def compute_stage(inputs: BillingInputs, req: RunRequest) -> BillingResult:
    return compute_billing(inputs, req.run_date, req.tz)


def gate_stage(result: BillingResult, inputs: BillingInputs) -> None:
    from billing_jobs.checks import gate

    gate(result, inputs)


def settle_stage(engine, result: BillingResult, req: RunRequest, run_id: str) -> BillingResult:
    """Post (exactly once) or simulate; returns the result with a `status` per line and grant."""
    from billing_jobs.store.post import post_result

    return post_result(engine, result, simulate=req.simulate, run_id=run_id)


def report_context(inputs: BillingInputs | None, engine=None, posted: bool = False) -> dict:
    """Names for the report (customers, packages) and, after a post, each customer's balance
    as the database holds it now (balance_after, int micros)."""
    ctx: dict = {}
    if inputs is not None:
        ctx["customers"] = inputs.customers[["customer_id", "name"]].copy()
        cols = [c for c in ("package_id", "name", "description", "frequency")
                if c in inputs.packages.columns]
        ctx["packages"] = inputs.packages[cols].copy()
    if posted and engine is not None:
        try:
            ctx["customers"] = _balances_now(engine, ctx.get("customers"))
        except Exception:  # noqa: BLE001 - the report then shows no balances, says nothing false
            pass
    return ctx


def _balances_now(engine, customers: pd.DataFrame | None) -> pd.DataFrame:
    import sqlalchemy as sa

    from billing_jobs.store.db import read_connection
    from billing_jobs.store.tables import customers as customers_t

    col = (customers_t.c["balance_micros"] if "balance_micros" in customers_t.c
           else customers_t.c["balance"])
    ids = None if customers is None else customers["customer_id"].astype(str).tolist()
    query = sa.select(customers_t.c.customer_id, customers_t.c.name, col.label("balance_after"))
    if ids is not None and len(ids) <= 5000:
        query = query.where(customers_t.c.customer_id.in_(ids))
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["customer_id", "name", "balance_after"])
    frame["balance_after"] = frame["balance_after"].astype(object).map(int)
    return frame


def check_customers(engine, customer_ids: list[str] | None) -> None:
    """--customer ids must exist: 'unknown customer NOPE' (exit 2), never a silent 0-line run."""
    if not customer_ids:
        return
    import sqlalchemy as sa

    from billing_jobs.core.errors import UsageError
    from billing_jobs.store.db import db_errors, read_connection
    from billing_jobs.store.tables import customers

    wanted = sorted({str(c) for c in customer_ids})
    with db_errors(engine, "reading the customers"), read_connection(engine) as conn:
        known = set(conn.execute(sa.select(customers.c.customer_id)
                                 .where(customers.c.customer_id.in_(wanted))).scalars())
    missing = [c for c in wanted if c not in known]
    if missing:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise UsageError(f"unknown customer{'s' if len(missing) > 1 else ''} {shown}: "
                         "no such customer_id in the database (import it, or check the id)")


# ------------------------------------------------------------------ the whole run

@dataclass
class _Progress:
    """How far one run got: the stage it is in and what the stages before it produced."""

    stage: str = "load"
    inputs: BillingInputs | None = None
    result: BillingResult = field(default_factory=empty_result)
    rejected: pd.DataFrame | None = None
    unposted: list[str] = field(default_factory=list)


def rule_evaluator(customer_ids: list[str] | None):
    """A run for chosen customers (Run Package) checks every frame with the pandas evaluator of
    the same rules, so it never pays Great Expectations' start-up; a batch run keeps GX for
    every frame above the fast-path size (checks.evaluator)."""
    from contextlib import nullcontext

    from billing_jobs.checks.evaluator import interactive

    return interactive() if customer_ids else nullcontext()


def _run_stages(engine, req: RunRequest, run_id: str, timings: "Timings",
                loaded: tuple[BillingInputs, pd.DataFrame] | None, p: _Progress) -> None:
    """load (or the plan's frames) -> compute -> gate -> settle, recording progress in `p`."""
    from billing_jobs.store import runs

    with rule_evaluator(req.customer_ids):
        if loaded is None:
            p.inputs, p.rejected = load_stage(engine, req, timings)
        else:
            p.inputs, p.rejected = strict_check(req, *loaded)
        p.stage = "compute"
        with timings.stage("compute"):
            p.result = compute_stage(p.inputs, req)
        p.stage = "gate"
        with timings.stage("gate"):
            gate_stage(p.result, p.inputs)
    p.stage = "settle"
    with timings.stage("post" if not req.simulate else "simulate"):
        p.result = settle_stage(engine, p.result, req, run_id)
    p.stage = "done"
    if not req.simulate:
        p.unposted = [d.isoformat() for d in runs.unposted_dates(engine, req.run_date)]


def run_billing(db_url: str | None, req: RunRequest, engine=None,
                keep_empty: bool = True,
                loaded: tuple[BillingInputs, pd.DataFrame] | None = None) -> RunOutcome:
    """One run for one date, with its run record and report folder.

    `loaded`: the date's (clean inputs, rejected rows) already loaded and validated (a
    backfill's plan, `backfill_plan.night`); otherwise the load stage reads them."""
    from billing_jobs.core.frames import empty_frame
    from billing_jobs.store.db import make_engine, upgrade

    engine = engine or make_engine(db_url)
    upgrade(engine)
    check_customers(engine, req.customer_ids)
    run_id = begin_run(engine, req)
    out_dir = Path(req.out_dir) if req.out_dir else default_report_dir(req, run_id)
    timings = Timings()
    started_at = datetime.now(timezone.utc)
    p = _Progress(rejected=empty_frame(["entity", "id", "reason"]))
    status, message = "failed", ""
    error: BaseException | None = None
    t_all = time.perf_counter()
    try:
        _run_stages(engine, req, run_id, timings, loaded, p)
        status = "succeeded"
    except BillingError as exc:
        error = exc
        message = str(exc)
        p.rejected = getattr(exc, "rejected", p.rejected)
    except Exception as exc:  # an unexpected failure still gets a run record and a report
        error = exc
        message = f"{type(exc).__name__}: {exc}"
    timings["total_before_report"] = round(time.perf_counter() - t_all, 4)
    info = run_info(req, run_id, status, message, p.unposted, started_at)
    info["failed_stage"] = p.stage if status == "failed" else None
    info["validated"] = p.inputs is not None
    context = report_context(p.inputs, engine,
                             posted=not req.simulate and p.stage in ("settle", "done"))
    with timings.stage("report"):
        closed = close_attempt(engine, req, run_id, p.result, p.rejected, info, timings, out_dir,
                               post_attempted=status == "failed" and p.stage == "settle",
                               keep_empty=keep_empty, context=context)
    full = "; ".join(m for m in (message, closed.report_error, closed.closing_error) if m)
    outcome = RunOutcome(run_id, status, closed.report_dir, closed.summary, full)
    outcome.report_error = closed.report_error
    outcome.error = error
    outcome.result = closed.result
    if error is not None and not isinstance(error, BillingError):
        raise error
    return outcome


def _free_minute_state(engine, run_date: date, plan, customer_ids):
    """The stored free-minute state for billing dates from `run_date`, for the calls the
    backfill plan read."""
    from billing_jobs.store.db import read_connection
    from billing_jobs.store.free_minute_state import read_state

    starts = plan.raw.usage["start_time"]
    since = (pd.Timestamp(starts.min()).to_pydatetime() - timedelta(days=1)) if len(starts) \
        else None
    ids = None if customer_ids is None else sorted({str(c) for c in customer_ids})
    with read_connection(engine) as conn:
        return read_state(conn, run_date, since, ids)


def backfill(db_url: str | None, first: date, last: date, simulate: bool, started_by: str = "cli",
             strict: bool = False, customer_ids: list[str] | None = None,
             on_date=None, out_parent: Path | None = None, engine=None,
             tz: str | None = None) -> list[RunOutcome]:
    """Each date from first to last in order; stops at the first failed date.

    The range's inputs are read and validated once (`backfill_plan`); each date then runs
    on exactly the inputs a run of that date alone would load (same rows, same rejects),
    with its own run record, gate and exactly-once posting. Posting changes only one input a
    later date reads, the free-minute state (counters, consumed calls): it is carried from
    night to night in memory (`advance_state`), the same whether the nights are simulated or
    posted; a concurrent change is caught by the post's own check (store/post.py).
    Each date's report goes to `out_parent/<YYYY-MM-DD>` (default: under the report root);
    a date with nothing due (no line, grant or reject) writes no folder (report_dir None).
    """
    from billing_jobs.run.backfill_plan import night, plan_backfill
    from billing_jobs.store.db import make_engine, upgrade

    engine = engine or make_engine(db_url)
    upgrade(engine)
    check_customers(engine, customer_ids)
    from billing_jobs.calc.free_minutes import advance_state

    with rule_evaluator(customer_ids):
        plan = plan_backfill(engine, first, last, customer_ids)
    # free minutes, carried night to night: counters, consumed calls, live stored grants
    state = (plan.clean.counters, plan.clean.consumed, plan.clean.granted)
    outcomes = []
    for day in pd.date_range(first, last, freq="D"):
        req = RunRequest(run_date=day.date(), simulate=simulate, customer_ids=customer_ids,
                         strict=strict, started_by=started_by,
                         out_dir=(Path(out_parent) / day.date().isoformat()) if out_parent else None)
        if tz:
            req.tz = tz
        inputs, rejected = night(plan, day.date())
        inputs.counters, inputs.consumed, inputs.granted = state
        outcome = run_billing(db_url, req, engine=engine, keep_empty=False,
                              loaded=(inputs, rejected))
        if outcome.result is not None and outcome.ok:
            if simulate:  # what the night would have consumed, carried in memory
                state = (*advance_state(state[0], state[1], outcome.result.consumption,
                                        outcome.result.grant_counters), state[2])
            else:  # what the database now holds (another run may have consumed some)
                state = _free_minute_state(engine, day.date() + timedelta(days=1), plan,
                                           customer_ids)
        outcomes.append(outcome)
        if on_date:
            on_date(outcome)
        if not outcome.ok:
            break
    return outcomes
