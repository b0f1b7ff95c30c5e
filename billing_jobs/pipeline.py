"""The one billing path: load -> validate -> compute -> gate -> post|simulate -> report.

Both the command line and the Airflow DAG call these stage functions; neither holds
billing logic of its own.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd

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
    tz: str = field(default_factory=lambda: os.environ.get("BILLING_TZ", "UTC"))

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

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def report_root() -> Path:
    return Path(os.environ.get("BILLING_REPORT_DIR", "reports"))


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
                 run_info: dict, timings: dict, out_dir: Path) -> Path:
    from billing_jobs.report import write_report

    return write_report(out_dir, run_info, result, rejected, timings)


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


# ------------------------------------------------------------------ the whole run

def run_billing(db_url: str | None, req: RunRequest, engine=None) -> RunOutcome:
    """One run for one date, with its run record and report folder."""
    from billing_jobs.engine.frames import empty_frame
    from billing_jobs.store import make_engine, runs, upgrade

    engine = engine or make_engine(db_url)
    upgrade(engine)
    run_id = runs.start_run(engine, req.run_date, req.mode, req.customer_ids, req.started_by)
    out_dir = Path(req.out_dir) if req.out_dir else default_report_dir(req, run_id)
    timings = Timings()
    started_at = datetime.now(timezone.utc)
    result, rejected = empty_result(), empty_frame(["entity", "id", "reason"])
    status, message = "failed", ""
    unposted: list[str] = []
    t_all = time.perf_counter()
    try:
        inputs, rejected = load_stage(engine, req, timings)
        with timings.stage("compute"):
            result = compute_stage(inputs, req)
        with timings.stage("gate"):
            gate_stage(result, inputs)
        with timings.stage("post" if not req.simulate else "simulate"):
            result = settle_stage(engine, result, req, run_id)
        if not req.simulate:
            unposted = [d.isoformat() for d in runs.unposted_dates(engine, req.run_date)]
        status = "succeeded"
    except BillingError as exc:
        message = str(exc)
        rejected = getattr(exc, "rejected", rejected)
    except Exception as exc:  # an unexpected failure still gets a run record and a report
        message = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        timings["total_before_report"] = round(time.perf_counter() - t_all, 4)
        info = run_info(req, run_id, status, message, unposted, started_at)
        if "status" not in result.due_lines.columns:
            result = _mark(result, "not_posted")
        with timings.stage("report"):
            report_dir = report_stage(req, result, rejected, info, timings, out_dir)
        summary = _read_summary(report_dir)
        runs.finish_run(engine, run_id, status, summary.get("counts", {}),
                        summary.get("totals", {}), message)
    return RunOutcome(run_id, status, report_dir, summary, message)


def _mark(result: BillingResult, status: str) -> BillingResult:
    lines = result.due_lines.assign(status=status)
    grants = result.grants.assign(status=status)
    return BillingResult(lines, grants, result.utilisation, result.extended_ends)


def _read_summary(report_dir: Path) -> dict:
    import json

    path = Path(report_dir) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def backfill(db_url: str | None, first: date, last: date, simulate: bool, started_by: str = "cli",
             strict: bool = False, customer_ids: list[str] | None = None,
             on_date=None) -> list[RunOutcome]:
    """Each date from first to last in order; stops at the first failed date."""
    from billing_jobs.store import make_engine

    engine = make_engine(db_url)
    outcomes = []
    for day in pd.date_range(first, last, freq="D"):
        req = RunRequest(run_date=day.date(), simulate=simulate, customer_ids=customer_ids,
                         strict=strict, started_by=started_by)
        outcome = run_billing(db_url, req, engine=engine)
        outcomes.append(outcome)
        if on_date:
            on_date(outcome)
        if not outcome.ok:
            break
    return outcomes
