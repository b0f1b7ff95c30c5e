"""The one billing path: load -> validate -> compute -> gate -> post|simulate -> report.

Both the command line and the Airflow DAG call these stage functions; neither holds
billing logic of its own.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from billing_jobs import settings
from billing_jobs.engine import BillingInputs, BillingResult, compute_billing
from billing_jobs.errors import BillingError, StrictRejection


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
    from billing_jobs.store import load_inputs

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
    from billing_jobs.store import post_result

    return post_result(engine, result, simulate=req.simulate, run_id=run_id)


def report_stage(req: RunRequest, result: BillingResult, rejected: pd.DataFrame,
                 run_info: dict, timings: dict, out_dir: Path,
                 context: dict | None = None) -> Path:
    from billing_jobs.report import write_report

    return write_report(out_dir, run_info, result, rejected, timings, context=context)


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


def empty_result() -> BillingResult:
    from billing_jobs.engine.frames import (DUE_LINE_COLUMNS, GRANT_COLUMNS,
                                            UTILISATION_COLUMNS, empty_frame)

    lines = empty_frame(DUE_LINE_COLUMNS + ["status"])
    grants = empty_frame(GRANT_COLUMNS + ["status"])
    return BillingResult(lines, grants, empty_frame(UTILISATION_COLUMNS))


def run_info(req: RunRequest, run_id: str, status: str, message: str, unposted: list[str],
             started_at: datetime | str, finished_at: datetime | str | None = None) -> dict:
    """The run's description in its report (``summary.json`` -> ``run``). Times are ISO 8601
    strings (a datetime is converted); ``finished_at`` defaults to now (UTC)."""
    from billing_jobs.store import runs

    if finished_at is None:
        finished_at = datetime.now(timezone.utc)
    return {
        "run_id": run_id,
        "run_date": req.run_date,
        "mode": req.mode,
        "status": status,
        "started_by": req.started_by,
        "customer_ids": req.customer_ids,
        "started_at": started_at.isoformat() if isinstance(started_at, datetime) else started_at,
        "finished_at": (finished_at.isoformat() if isinstance(finished_at, datetime)
                        else finished_at),
        "message": message,
        "unposted_dates": unposted,
        "code_version": runs.code_version(),
        "strict": req.strict,
        "tz": req.tz,
    }


# ------------------------------------------------------------------ run lifecycle
# Named functions, reused by staged_run.py (Airflow): record the run first, say exactly what
# a failed post wrote, write the report atomically, and never leave the record 'running'.

RECORD_TRIES = 3


def begin_run(engine, req: RunRequest) -> str:
    """Record the run as 'running' before anything else happens; returns its run_id."""
    from billing_jobs.store import runs

    return runs.start_run(engine, req.run_date, req.mode, req.customer_ids, req.started_by)


def close_run(engine, run_id: str, status: str, summary: dict, message: str) -> str:
    """Close the run record (retrying a few times: the database may be coming back).

    Returns '' when closed, else why it could not be closed (the caller adds that to its
    message; it never replaces the run's own cause).
    """
    from billing_jobs.store import runs

    last = ""
    for attempt in range(RECORD_TRIES):
        try:
            runs.finish_run(engine, run_id, status, summary.get("counts", {}),
                            summary.get("totals", {}), message)
            return ""
        except Exception as exc:  # noqa: BLE001 - reported in words, never swallowed
            last = str(exc) or type(exc).__name__
            if attempt + 1 < RECORD_TRIES:
                time.sleep(1.0 * (attempt + 1))
    return f"the run record {run_id} could not be closed ({last})"


def posted_by_run(engine, run_id: str, result: BillingResult) -> BillingResult:
    """After a failed post: mark each line and grant by what the database holds for this run.

    Asks the ledger and grants tables for the rows with this run_id: those lines are
    'posted' (or 'invoiced'), the others 'not_posted'. If the database cannot answer, every
    line is 'unknown' (never claimed posted or not posted without evidence).
    """
    import sqlalchemy as sa

    from billing_jobs.store.db import read_connection
    from billing_jobs.store.tables import grants as grants_t
    from billing_jobs.store.tables import ledger

    lines, grants = result.due_lines, result.grants
    for attempt in range(RECORD_TRIES):
        try:
            with read_connection(engine) as conn:
                done = conn.execute(sa.select(ledger.c.assignment_id, ledger.c.kind,
                                              ledger.c.period_start, ledger.c.status)
                                    .where(ledger.c.run_id == run_id)).all()
                gdone = conn.execute(sa.select(grants_t.c.assignment_id,
                                               grants_t.c.period_start)
                                     .where(grants_t.c.run_id == run_id)).all()
            break
        except Exception:  # noqa: BLE001
            if attempt + 1 == RECORD_TRIES:
                return _mark(result, "unknown")
            time.sleep(1.0 * (attempt + 1))

    def keys(frame, cols):
        if not len(frame):
            return pd.Series([], dtype=str)
        parts = [frame[c].astype(str) if c != "period_start"
                 else pd.to_datetime(frame[c]).dt.strftime("%Y-%m-%d") for c in cols]
        out = parts[0]
        for p in parts[1:]:
            out = out + "\x1f" + p
        return out.reset_index(drop=True)

    ledger_status = {"\x1f".join([str(a), str(k), str(pd.Timestamp(p).date())]): st
                     for a, k, p, st in done}
    line_keys = keys(lines, ["assignment_id", "kind", "period_start"])
    status = line_keys.map(ledger_status).fillna("not_posted").to_numpy(dtype=object)
    grant_done = {"\x1f".join([str(a), str(pd.Timestamp(p).date())]) for a, p in gdone}
    gkeys = keys(grants, ["assignment_id", "period_start"])
    gstatus = gkeys.isin(grant_done).map({True: "posted", False: "not_posted"})
    lines = lines.assign(status=pd.Series(status, index=lines.index, dtype=object)
                         if len(lines) else pd.Series([], dtype=object))
    grants = grants.assign(status=pd.Series(gstatus.to_numpy(dtype=object), index=grants.index)
                           if len(grants) else pd.Series([], dtype=object))
    return BillingResult(lines, grants, result.utilisation, result.extended_ends)


def _is_empty(summary: dict) -> bool:
    c = summary.get("counts", {})
    return not (c.get("lines") or c.get("grants") or c.get("rejects"))


def write_report_atomically(req: RunRequest, result: BillingResult, rejected: pd.DataFrame,
                            info: dict, timings: dict, out_dir: Path,
                            keep_empty: bool = True,
                            context: dict | None = None) -> tuple[Path | None, dict]:
    """Write the report into a temporary folder beside `out_dir`, then rename it into place.

    Returns (folder, summary). With keep_empty=False a succeeded run with nothing in it
    (no line, grant or reject) leaves no folder: (None, summary). A half-written report is
    never left at `out_dir`: on failure the temporary folder is removed and the error raised.
    """
    import shutil

    from billing_jobs.report.folders import building, finish

    out_dir = Path(out_dir)
    with building(out_dir) as tmp:
        report_stage(req, result, rejected, info, timings, tmp, context=context)
        summary = _read_summary(tmp)
        if not keep_empty and info.get("status") == "succeeded" and _is_empty(summary):
            shutil.rmtree(tmp, ignore_errors=True)
            return None, summary
        final = out_dir.resolve()
        for key in ("report_dir", "report_html"):  # name the final place, not the temporary one
            if summary.get(key):
                summary[key] = summary[key].replace(str(tmp.resolve()), str(final))
        return finish(tmp, out_dir, summary), summary


def summarise(req: RunRequest, result: BillingResult, rejected: pd.DataFrame, info: dict,
              timings: dict) -> dict:
    """The summary the report would hold, without keeping any file (for the run record when
    the report itself cannot be written)."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="billing-summary-"))
    try:
        report_stage(req, result, rejected, info, timings, tmp)
        summary = _read_summary(tmp)
        summary.pop("report_dir", None)
        summary.pop("report_html", None)
        return summary
    except Exception:  # noqa: BLE001 - counts only; the caller reports the real error
        return {}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_customers(engine, customer_ids: list[str] | None) -> None:
    """--customer ids must exist: 'unknown customer NOPE' (exit 2), never a silent 0-line run."""
    if not customer_ids:
        return
    import sqlalchemy as sa

    from billing_jobs.errors import UsageError
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

def run_billing(db_url: str | None, req: RunRequest, engine=None,
                keep_empty: bool = True,
                loaded: tuple[BillingInputs, pd.DataFrame] | None = None) -> RunOutcome:
    """One run for one date, with its run record and report folder.

    `loaded`: the date's (clean inputs, rejected rows) already loaded and validated (a
    backfill's plan, `backfill_plan.night`); otherwise the load stage reads them."""
    from billing_jobs.engine.frames import empty_frame
    from billing_jobs.store import make_engine, runs, upgrade

    engine = engine or make_engine(db_url)
    upgrade(engine)
    check_customers(engine, req.customer_ids)
    run_id = begin_run(engine, req)
    out_dir = Path(req.out_dir) if req.out_dir else default_report_dir(req, run_id)
    timings = Timings()
    started_at = datetime.now(timezone.utc)
    result, rejected = empty_result(), empty_frame(["entity", "id", "reason"])
    status, message = "failed", ""
    unposted: list[str] = []
    stage = "load"
    inputs = None
    error: BaseException | None = None
    t_all = time.perf_counter()
    try:
        if loaded is None:
            inputs, rejected = load_stage(engine, req, timings)
        else:
            inputs, rejected = strict_check(req, *loaded)
        stage = "compute"
        with timings.stage("compute"):
            result = compute_stage(inputs, req)
        stage = "gate"
        with timings.stage("gate"):
            gate_stage(result, inputs)
        stage = "settle"
        with timings.stage("post" if not req.simulate else "simulate"):
            result = settle_stage(engine, result, req, run_id)
        stage = "done"
        if not req.simulate:
            unposted = [d.isoformat() for d in runs.unposted_dates(engine, req.run_date)]
        status = "succeeded"
    except BillingError as exc:
        error = exc
        message = str(exc)
        rejected = getattr(exc, "rejected", rejected)
    except Exception as exc:  # an unexpected failure still gets a run record and a report
        error = exc
        message = f"{type(exc).__name__}: {exc}"
    timings["total_before_report"] = round(time.perf_counter() - t_all, 4)
    if status == "failed" and stage == "settle" and not req.simulate:
        result = posted_by_run(engine, run_id, result)  # ask the database what was written
    if "status" not in result.due_lines.columns:
        result = _mark(result, "not_posted" if not req.simulate else "not_simulated")
    info = run_info(req, run_id, status, message, unposted, started_at)
    info["failed_stage"] = stage if status == "failed" else None
    info["validated"] = inputs is not None
    context = report_context(inputs, engine, posted=not req.simulate and stage in ("settle", "done"))
    report_error = ""
    report_dir: Path | None = None
    try:
        with timings.stage("report"):
            report_dir, summary = write_report_atomically(req, result, rejected, info, timings,
                                                          out_dir, keep_empty=keep_empty,
                                                          context=context)
    except Exception as exc:  # noqa: BLE001 - disk full, a file in the way: said as such
        summary = summarise(req, result, rejected, info, timings)
        report_error = (f"the report could not be written to {out_dir}: "
                        f"{type(exc).__name__}: {exc}")
        if status == "succeeded":
            report_error += " (the run itself succeeded and stands)"
    closing = close_run(engine, run_id, status, summary, message)
    full = "; ".join(m for m in (message, report_error, closing) if m)
    outcome = RunOutcome(run_id, status, report_dir, summary, full)
    outcome.report_error = report_error
    outcome.error = error
    outcome.result = result
    if error is not None and not isinstance(error, BillingError):
        raise error
    return outcome


def _mark(result: BillingResult, status: str) -> BillingResult:
    lines = result.due_lines.assign(status=status)
    grants = result.grants.assign(status=status)
    return BillingResult(lines, grants, result.utilisation, result.extended_ends)


def _read_summary(report_dir: Path) -> dict:
    import json

    path = Path(report_dir) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


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
    from billing_jobs.backfill_plan import night, plan_backfill
    from billing_jobs.store import make_engine, upgrade

    engine = engine or make_engine(db_url)
    upgrade(engine)
    check_customers(engine, customer_ids)
    from billing_jobs.engine.free_minutes import advance_state

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
