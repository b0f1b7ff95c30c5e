"""One billing run in one process: `run_billing` (a date) and `backfill` (a range of dates),
each date with its run record, its stages (`run.stages`) and its report (`run.lifecycle`)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone

import pandas as pd

from billing_jobs.core.frames import BillingInputs, BillingResult
from billing_jobs.calc.free_minutes import advance_state
from billing_jobs.core import faults
from billing_jobs.core.errors import BillingError
from billing_jobs.core.frames import empty_frame
from billing_jobs.run.backfill_plan import night, plan_backfill
from billing_jobs.core.vocab import RunStatus
from billing_jobs.run.lifecycle import (Attempt, ReportPlace, begin_run, close_attempt,
                                        empty_result, run_info)
from billing_jobs.run.request import (RunInterrupted, RunOutcome, RunRequest, Timings,
                                      default_report_dir, signal_name)
from billing_jobs.run.stages import (check_customers, compute_stage, gate_stage, load_stage,
                                     report_context, rule_evaluator, settle_stage, strict_check)
from billing_jobs.store import runs
from billing_jobs.store.db import read_connection, upgrade
from billing_jobs.store.free_minute_state import read_state


_SETTLE, _DONE = "settle", "done"  # where a run stopped (`failed_stage` in its report)


@dataclass
class _Progress:
    """How far one run got: the stage it is in and what the stages before it produced."""

    stage: str = "load"
    inputs: BillingInputs | None = None
    result: BillingResult = field(default_factory=empty_result)
    rejected: pd.DataFrame | None = None
    unposted: list[str] = field(default_factory=list)


def _run_stages(engine, req: RunRequest, run_id: str, timings: Timings,
                loaded: tuple[BillingInputs, pd.DataFrame] | None, p: _Progress) -> None:
    """load (or the plan's frames) -> compute -> gate -> settle, recording progress in `p`."""
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
    faults.pause_point("before_settle")
    p.stage = _SETTLE
    with timings.stage(req.mode):
        p.result = settle_stage(engine, p.result, req, run_id)
    p.stage = _DONE
    if not req.simulate:
        p.unposted = [d.isoformat() for d in runs.unposted_dates(engine, req.run_date)]


def run_billing(engine, req: RunRequest, *, keep_empty: bool = True,
                loaded: tuple[BillingInputs, pd.DataFrame] | None = None) -> RunOutcome:
    """One run for one date, with its run record and report folder.

    `loaded`: the date's (clean inputs, rejected rows) already loaded and validated (a
    backfill's plan, `backfill_plan.night`); otherwise the load stage reads them.
    `keep_empty=False`: a succeeded run with nothing in it writes no report folder."""
    upgrade(engine)
    check_customers(engine, req.customer_ids)
    p = _Progress(rejected=empty_frame(["entity", "id", "reason"]))
    status, message = RunStatus.FAILED, ""
    error: BaseException | None = None
    stopped: str | None = None  # the signal that interrupted the run
    timings = Timings()
    started_at = datetime.now(timezone.utc)
    t_all = time.perf_counter()
    run_id = begin_run(engine, req, pid=os.getpid())
    try:
        _run_stages(engine, req, run_id, timings, loaded, p)
        status = RunStatus.SUCCEEDED
    except BillingError as exc:
        error = exc
        message = str(exc)
        p.rejected = getattr(exc, "rejected", p.rejected)
    except Exception as exc:  # an unexpected failure still gets a run record and a report
        error = exc
        message = f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt as exc:  # SIGINT (Ctrl-C), or SIGTERM made one by the entry point
        error, stopped = exc, signal_name(exc)
        message = f"interrupted by {stopped}" + (" (Ctrl-C)" if stopped == "SIGINT" else "")
    # the tail (report, record) runs to its end: a signal now is acted on after it
    with _signals_deferred() as pending:
        outcome = _close(engine, req, run_id, p, timings, started_at, t_all, status, message,
                         error, keep_empty, stopped)
    if stopped or pending:
        raise RunInterrupted(stopped or pending[0], outcome) from error
    if error is not None and not isinstance(error, BillingError):
        raise error
    return outcome


def _close(engine, req: RunRequest, run_id: str, p: _Progress, timings: Timings,
           started_at: datetime, t_all: float, status: RunStatus, message: str,
           error: BaseException | None, keep_empty: bool, stopped: str | None) -> RunOutcome:
    """The run's tail: its report and its closed record (`lifecycle.close_attempt`). An
    interrupted run's report says 'failed' with the signal as the reason (what it posted
    before the stop stands); its record says 'interrupted'."""
    timings["total_before_report"] = round(time.perf_counter() - t_all, 4)
    failed = status == RunStatus.FAILED
    info = run_info(req, run_id, status, message, p.unposted, started_at,
                    failed_stage=p.stage if failed else None, validated=p.inputs is not None)
    settled = p.stage in (_SETTLE, _DONE)
    attempt = Attempt(req, run_id, p.result, p.rejected, info, timings,
                      context=report_context(p.inputs, engine,
                                             posted=not req.simulate and settled),
                      post_attempted=failed and p.stage == _SETTLE,
                      record_status=RunStatus.INTERRUPTED if stopped else None)
    place = ReportPlace(req.out_dir or default_report_dir(req, run_id), keep_empty=keep_empty)
    with timings.stage("report"):
        closed = close_attempt(engine, attempt, place)
    full = "; ".join(m for m in (message, closed.report_error, closed.closing_error) if m)
    return RunOutcome(run_id, RunStatus.INTERRUPTED if stopped else status, closed.report_dir,
                      closed.summary, full, report_error=closed.report_error, error=error,
                      result=closed.result, closing_error=closed.closing_error)


@contextlib.contextmanager
def _signals_deferred():
    """While the block runs, SIGINT and SIGTERM are noted, not acted on: the list it yields
    holds their names, for the caller to act on after the block (a run's report and record
    are never left half-closed). Outside the main thread (signals cannot be handled there)
    it changes nothing."""
    pending: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    names = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
    previous = {}
    try:
        for sig in names:
            previous[sig] = signal.signal(sig, lambda signum, _frame: pending.append(names[signum]))
    except ValueError:  # not the main interpreter
        pass
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _free_minute_state(engine, run_date: date, plan, customer_ids):
    """The stored free-minute state for billing dates from `run_date`, for the calls the
    backfill plan read."""
    starts = plan.raw.usage["start_time"]
    since = (pd.Timestamp(starts.min()).to_pydatetime() - timedelta(days=1)) if len(starts) \
        else None
    ids = None if customer_ids is None else sorted({str(c) for c in customer_ids})
    with read_connection(engine) as conn:
        return read_state(conn, run_date, since, ids)


def backfill(engine, req: RunRequest, last: date, on_date=None) -> list[RunOutcome]:
    """Each date from `req.run_date` to `last` in order, each run as `req` asks; stops at the
    first failed date.

    The range's inputs are read and validated once (`backfill_plan`); each date then runs
    on exactly the inputs a run of that date alone would load (same rows, same rejects),
    with its own run record, gate and exactly-once posting. Posting changes only one input a
    later date reads, the free-minute state (counters, consumed calls): it is carried from
    night to night in memory (`advance_state`), the same whether the nights are simulated or
    posted; a concurrent change is caught by the post's own check (store/post.py).
    Each date's report goes to `req.out_dir/<YYYY-MM-DD>` (default: under the report root);
    a date with nothing due (no line, grant or reject) writes no folder (report_dir None).
    `on_date(outcome)` is called after each date.
    """
    first, customer_ids = req.run_date, req.customer_ids
    upgrade(engine)
    check_customers(engine, customer_ids)
    try:
        with rule_evaluator(customer_ids):
            plan = plan_backfill(engine, first, last, customer_ids)
    except KeyboardInterrupt as exc:  # reading the range: nothing written yet
        raise RunInterrupted(signal_name(exc)) from exc
    outcomes: list[RunOutcome] = []
    try:
        _nights(engine, req, last, plan, outcomes, on_date)
    except RunInterrupted as exc:  # the night it stopped, and the nights done before it
        raise RunInterrupted(exc.signal_name, exc.outcome, tuple(outcomes)) from exc
    except KeyboardInterrupt as exc:  # between nights: no run open
        raise RunInterrupted(signal_name(exc), None, tuple(outcomes)) from exc
    return outcomes


def _nights(engine, req: RunRequest, last: date, plan, outcomes: list, on_date) -> None:
    """`backfill`'s loop: each night run in order, appended to `outcomes`."""
    customer_ids = req.customer_ids
    # free minutes, carried night to night: counters, consumed calls, live stored grants
    state = (plan.clean.counters, plan.clean.consumed, plan.clean.granted)
    for day in pd.date_range(req.run_date, last, freq="D"):
        nightly = replace(req, run_date=day.date(), out_dir=(
            req.out_dir / day.date().isoformat() if req.out_dir else None))
        inputs, rejected = night(plan, day.date())
        inputs.counters, inputs.consumed, inputs.granted = state
        outcome = run_billing(engine, nightly, keep_empty=False, loaded=(inputs, rejected))
        if outcome.result is not None and outcome.ok:
            if req.simulate:  # what the night would have consumed, carried in memory
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
