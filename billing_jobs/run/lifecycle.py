"""The run lifecycle, one source for the command line and the Airflow tasks (#15).

A run is recorded first (`begin_run`: 'running'), whatever happens next; when it ends, the
tail is always the same (`close_attempt`): after a failed post the database says which lines
and grants it wrote (`posted_by_run`), every other line gets its status, the report is built
in memory and written atomically (a temporary folder, then renamed; or file by file into an
existing folder, the summary last) and the run record is closed with the counts and the real
cause. The two callers differ only in where the frames live: `run.local.run_billing` holds
them in memory, `staged.stages` reads them back from its hand-offs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.frames import (DUE_LINE_COLUMNS, GRANT_COLUMNS, UTILISATION_COLUMNS,
                                      BillingResult, empty_frame)
from billing_jobs.core.version import code_version
from billing_jobs.core.vocab import LineStatus, RunStatus
from billing_jobs.report.folders import building, finish, finish_into
from billing_jobs.report.writer import build_report, write_files
from billing_jobs.run.request import RunRequest
from billing_jobs.store import runs
from billing_jobs.store.db import read_connection
from billing_jobs.store.tables import grants as grants_t
from billing_jobs.store.tables import ledger


def empty_result() -> BillingResult:
    lines = empty_frame(DUE_LINE_COLUMNS + ["status"])
    grants = empty_frame(GRANT_COLUMNS + ["status"])
    return BillingResult(lines, grants, empty_frame(UTILISATION_COLUMNS))


def run_info(req: RunRequest, run_id: str, status: str, message: str, unposted: list[str],
             started_at: datetime | str, **more) -> dict:
    """The run's description in its report (``summary.json`` -> ``run``), the one place it is
    built: the local run adds where it stopped, the Airflow stages their ids (`more`). Times
    are ISO 8601 strings (a datetime is converted); ``finished_at`` is now (UTC)."""
    return {
        "run_id": run_id,
        "run_date": req.run_date,
        "mode": req.mode,
        "status": status,
        "started_by": req.started_by,
        "customer_ids": None if req.customer_ids is None else list(req.customer_ids),
        "started_at": started_at.isoformat() if isinstance(started_at, datetime) else started_at,
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "message": message,
        "unposted_dates": unposted,
        "code_version": code_version(),
        "strict": req.strict,
        "tz": req.tz,
        **more,
    }


RECORD_TRIES = 3


def begin_run(engine, req: RunRequest, *, pid: int | None = None) -> str:
    """Record the run as 'running' before anything else happens; returns its run_id.
    `pid`: the process that runs it all (`run.local`), so `runs` can tell when it is gone."""
    return runs.start_run(engine, req.run_date, req.mode, req.customer_ids, req.started_by,
                          pid=pid)


def close_run(engine, run_id: str, status: str, summary: dict, message: str,
              report_dir: Path | None = None) -> str:
    """Close the run record (retrying a few times: the database may be coming back).

    Returns '' when closed, else why it could not be closed (the caller adds that to its
    message; it never replaces the run's own cause).
    """
    last = ""
    for attempt in range(RECORD_TRIES):
        try:
            runs.finish_run(engine, run_id, status, summary.get("counts", {}),
                            summary.get("totals", {}), message, report_dir)
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
                return mark(result, LineStatus.UNKNOWN)
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
    status = line_keys.map(ledger_status).fillna(LineStatus.NOT_POSTED).to_numpy(dtype=object)
    grant_done = {"\x1f".join([str(a), str(pd.Timestamp(p).date())]) for a, p in gdone}
    gkeys = keys(grants, ["assignment_id", "period_start"])
    gstatus = gkeys.isin(grant_done).map({True: LineStatus.POSTED, False: LineStatus.NOT_POSTED})
    lines = lines.assign(status=pd.Series(status, index=lines.index, dtype=object)
                         if len(lines) else pd.Series([], dtype=object))
    grants = grants.assign(status=pd.Series(gstatus.to_numpy(dtype=object), index=grants.index)
                           if len(grants) else pd.Series([], dtype=object))
    return BillingResult(lines, grants, result.utilisation, result.extended_ends)


def is_empty(summary: dict) -> bool:
    c = summary.get("counts", {})
    return not (c.get("lines") or c.get("grants") or c.get("rejects"))


def mark(result: BillingResult, status: str) -> BillingResult:
    lines = result.due_lines.assign(status=status)
    grants = result.grants.assign(status=status)
    return BillingResult(lines, grants, result.utilisation, result.extended_ends)


@dataclass
class Closed:
    """What `close_attempt` did: the result with every status, the report folder (None when
    not written or left out empty), the summary, and why the report or the record failed."""

    result: BillingResult
    report_dir: Path | None
    summary: dict
    report_error: str = ""
    closing_error: str = ""


@dataclass(frozen=True)
class Attempt:
    """One run attempt to close: its request and record, what it computed (lines without a
    status when the settle stage did not finish) and rejected, its description (`run_info`:
    the status and message the record gets), its timings and the report's names and
    balances (`run.stages.report_context`). `post_attempted`: a post failed after it may
    have written batches; the database is asked what this run wrote. `record_status`: see
    below."""

    req: RunRequest
    run_id: str
    result: BillingResult
    rejected: pd.DataFrame
    info: dict
    timings: dict
    context: dict | None = None
    post_attempted: bool = False
    #: the record's status when it differs from the report's (`info`): 'interrupted' for a
    #: run stopped by a signal, whose report says 'failed' with the signal as the reason
    record_status: str | None = None


@dataclass(frozen=True)
class ReportPlace:
    """Where the report goes: `out_dir`; `into_existing`: it already holds other files (the
    Airflow hand-offs), the report's files are moved into it one by one, summary.json last;
    `keep_empty=False`: a succeeded run with nothing in it (no line, grant or reject) writes
    no folder; `raise_report_error`: a report that cannot be written is raised before the
    record is closed (an Airflow task then retries; its final failure closes the record
    through `record_failure`)."""

    out_dir: Path
    into_existing: bool = False
    keep_empty: bool = True
    raise_report_error: bool = False


def write_report_atomically(attempt: Attempt, place: ReportPlace) -> tuple[Path | None, dict]:
    """Build the report in memory, write its files into a temporary folder beside
    `place.out_dir`, then its summary and rename it into place (or move its files into the
    existing folder, summary.json last, so a summary is there only when every other file is).

    Returns (folder, summary); (None, summary) for an empty run left out. A half-written
    report is never left at `out_dir`: on failure the temporary folder is removed and the
    error raised."""
    report = build_report(attempt.info, attempt.result, attempt.rejected, attempt.timings,
                          attempt.context)
    if (not place.keep_empty and attempt.info.get("status") == RunStatus.SUCCEEDED
            and is_empty(report.summary)):
        return None, report.summary
    out_dir = Path(place.out_dir)
    with building(out_dir) as tmp:
        summary = write_files(report, tmp, named_as=out_dir)
        return (finish_into if place.into_existing else finish)(tmp, out_dir, summary), summary


def close_attempt(engine, attempt: Attempt, place: ReportPlace) -> Closed:
    """The end of every run attempt (see the module docstring)."""
    req, result = attempt.req, attempt.result
    if attempt.post_attempted and not req.simulate:
        result = posted_by_run(engine, attempt.run_id, result)  # what the database holds
    if "status" not in result.due_lines.columns:
        result = mark(result, LineStatus.NOT_POSTED if not req.simulate
                        else LineStatus.NOT_SIMULATED)
    attempt = replace(attempt, result=result)
    status, message = attempt.info["status"], attempt.info.get("message") or ""
    report_error = ""
    report_dir: Path | None = None
    try:
        report_dir, summary = write_report_atomically(attempt, place)
    except Exception as exc:  # noqa: BLE001 - disk full, a file in the way: said as such
        if place.raise_report_error:
            raise
        summary = summarise(attempt)
        report_error = (f"the report could not be written to {place.out_dir}: "
                        f"{type(exc).__name__}: {exc}")
        if status == RunStatus.SUCCEEDED:
            report_error += " (the run itself succeeded and stands)"
    closing = close_run(engine, attempt.run_id, attempt.record_status or status, summary,
                        message, report_dir)
    return Closed(result, report_dir, summary, report_error, closing)


def summarise(attempt: Attempt) -> dict:
    """The summary the report would hold, without any file (for the run record when the
    report itself cannot be written)."""
    try:
        return build_report(attempt.info, attempt.result, attempt.rejected,
                            attempt.timings).summary
    except Exception:  # noqa: BLE001 - counts only; the caller reports the real error
        return {}
