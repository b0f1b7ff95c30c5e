"""The run record: every run (simulate or post) writes one row in `runs`."""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import sqlalchemy as sa

from billing_jobs.core.money import format_micros, format_minor, minor_digits, parse_micros
from billing_jobs.core.version import code_version
from billing_jobs.core.vocab import NEW_STATUSES, LineStatus, RunMode, RunStatus
from billing_jobs.store.db import db_errors, read_connection
from billing_jobs.store.tables import runs


def _filter_text(customer_ids: Sequence[str] | None) -> str | None:
    if customer_ids is None:
        return None
    return json.dumps(sorted({str(c) for c in customer_ids}))


def _one_of(words: type[RunMode] | type[RunStatus], value: str, what: str):
    """`value` as a member of `words`; ValueError naming the allowed words otherwise."""
    try:
        return words(value)
    except ValueError:
        allowed = tuple(str(w) for w in words)
        raise ValueError(f"{what} must be one of {allowed}, not {value!r}") from None


def start_run(
    engine: sa.Engine,
    run_date: date,
    mode: RunMode | str,
    customer_ids: Sequence[str] | None,
    started_by: str,
    *,
    pid: int | None = None,
) -> str:
    """Record a run as `running` on this host; return its run_id (uuid4 text).

    `pid`: the process that runs the whole run (so `runs` can tell when it is gone); None
    when the run spans several processes (the Airflow stages)."""
    mode = _one_of(RunMode, mode, "mode")
    run_id = str(uuid.uuid4())
    with db_errors(engine, "recording the run"), engine.begin() as conn:
        conn.execute(runs.insert().values(
            run_id=run_id, run_date=run_date, mode=mode,
            customer_filter=_filter_text(customer_ids), started_by=started_by or "",
            started_at=datetime.now(timezone.utc), status=RunStatus.RUNNING,
            code_version=code_version(), host=this_host(), pid=pid,
        ))
    return run_id


def this_host() -> str:
    return socket.gethostname() or "?"


def finish_run(
    engine: sa.Engine,
    run_id: str,
    status: RunStatus | str,
    counts: dict | None = None,
    totals: dict | None = None,
    message: str | None = None,
    report_dir: Path | str | None = None,
) -> None:
    """Close the run record with its outcome (`succeeded`, `failed` or `interrupted`), counts,
    totals and the report folder it wrote (None: none written)."""
    status = _one_of(RunStatus, status, "status")
    with db_errors(engine, "recording the run"), engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(
            status=status, finished_at=datetime.now(timezone.utc),
            counts=json.dumps(counts or {}, sort_keys=True, default=str),
            totals=json.dumps(totals or {}, sort_keys=True, default=str),
            message=message, report_dir=None if report_dir is None else str(report_dir),
        ))


def get_run(engine: sa.Engine, run_id: str) -> dict | None:
    """The run's row as a dict (counts/totals decoded), or None."""
    with db_errors(engine, "reading the run"), read_connection(engine) as conn:
        row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
    if row is None:
        return None
    out = dict(row)
    for key in ("counts", "totals"):
        out[key] = json.loads(out[key]) if out[key] else {}
    out["customer_filter"] = json.loads(out["customer_filter"]) if out["customer_filter"] else None
    return out


def unposted_dates(engine: sa.Engine, before: date) -> list[date]:
    """Dates never posted for all customers, from the first such post up to `before` - 1.

    The first successful post run without a customer filter starts the series; every date
    from it to the day before `before` that has no successful full post run is returned, in
    order. Nothing was ever fully posted -> [].
    """
    full_post = sa.and_(runs.c.mode == RunMode.POST, runs.c.status == RunStatus.SUCCEEDED,
                        runs.c.customer_filter.is_(None))
    with db_errors(engine, "reading the run history"), read_connection(engine) as conn:
        first = conn.execute(sa.select(sa.func.min(runs.c.run_date)).where(full_post)).scalar()
        if first is None:
            return []
        done = set(conn.execute(
            sa.select(runs.c.run_date).distinct()
            .where(full_post, runs.c.run_date >= first, runs.c.run_date < before)
        ).scalars())
    days = (before - first).days
    return [first + timedelta(days=i) for i in range(days)
            if first + timedelta(days=i) not in done]


# --------------------------------------------------------------------------- the run history


def _ts(value: datetime | None) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (SQLite hands back naive UTC values)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def charged_totals(mode: str, totals: dict) -> dict:
    """Per currency, what the run itself charged (a post: its `posted` and `invoiced` lines) or
    would charge (a simulation: its `simulated` lines): amount, cost, margin (decimal strings
    in the currency's minor unit) and lines. Lines already posted by an earlier run, held or
    not posted are not this run's money: a re-post that charged nothing totals nothing.
    `totals` is the run summary's (`report.writer`): each currency with its `by_status`."""
    statuses = (LineStatus.SIMULATED,) if mode == RunMode.SIMULATE else NEW_STATUSES
    out = {}
    for cur, block in (totals or {}).items():
        if not isinstance(block, dict):
            continue
        picked = [b for s, b in (block.get("by_status") or {}).items() if s in statuses]
        if not picked:
            continue
        amount = sum(_signed_micros(b.get("amount")) for b in picked)
        cost = sum(_signed_micros(b.get("cost")) for b in picked)
        out[cur] = {"amount": _money(amount, cur), "cost": _money(cost, cur),
                    "margin": _money(amount - cost, cur),
                    "lines": sum(int(b.get("lines", 0) or 0) for b in picked)}
    return out


def _signed_micros(text) -> int:
    s = str(text if text is not None else "0").strip()
    return -parse_micros(s[1:]) if s.startswith("-") else parse_micros(s)


def _money(micros: int, currency: str) -> str:
    """In the currency's minor unit; all digits when finer than that unit (never rounded)."""
    step = 10 ** max(0, 6 - minor_digits(currency))
    return format_minor(micros, currency) if micros % step == 0 else format_micros(micros)


def _pid_alive(pid: int, since: datetime | None) -> bool:
    """True while process `pid` exists on this host and started no later than `since` (a
    process that started after the run is another process reusing the number)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    except OSError:
        return False
    if since is not None:
        try:  # Linux: the /proc entry is created when the process starts
            started = datetime.fromtimestamp(os.stat(f"/proc/{pid}").st_ctime, timezone.utc)
            if started > since + timedelta(seconds=2):
                return False
        except OSError:
            pass
    return True


def process_note(status: str, host: str | None, pid: int | None,
                 started_at: datetime | None) -> str | None:
    """For a `running` record: whether its process is still there. 'process gone' (this host,
    the process no longer runs: killed or crashed, never closed), 'on host <h>' (another
    host: not checked from here), None when it runs or the record has no process."""
    if status != RunStatus.RUNNING or pid is None or not host:
        return None
    if host != this_host():
        return f"on host {host}: its process {pid} cannot be checked from here"
    return None if _pid_alive(int(pid), started_at) else "process gone"


def _legacy_report_folder(run_id: str, run_date, mode: str, root: Path) -> str | None:
    """A record from before migration 0011 has no report_dir: its folder under the report
    root, found by the default name `<date>_<mode>_<stamp>_<run_id[:8]>` and confirmed by its
    summary.json run_id."""
    try:
        candidates = sorted(Path(root).glob(f"{run_date}_{mode}_*_{run_id[:8]}"))
    except OSError:
        return None
    for folder in candidates:
        try:
            if json.loads((folder / "summary.json").read_text(encoding="utf-8")).get(
                    "run_id") == run_id:
                return str(folder)
        except (OSError, ValueError):
            continue
    return None


def history(engine: sa.Engine, report_root: Path, last: int | None = 20) -> list[dict]:
    """The `last` run records (newest first; None = all): who started what, when and where,
    how it ended (`process`: a `running` record whose process is gone says so), line counts
    (`lines`: every line it computed; `new_lines`: those it posted, or would post), what it
    charged per currency (`charged_totals`) and its report folder."""
    q = sa.select(runs).order_by(runs.c.started_at.desc(), runs.c.run_id)
    if last is not None:
        q = q.limit(int(last))
    with db_errors(engine, "reading the run history"), read_connection(engine) as conn:
        rows = conn.execute(q).mappings().all()
    out = []
    for r in rows:
        counts = json.loads(r["counts"]) if r["counts"] else {}
        totals = charged_totals(r["mode"], json.loads(r["totals"]) if r["totals"] else {})
        started_at = _ts(r["started_at"])
        folder = r["report_dir"] or (
            None if r["status"] == RunStatus.RUNNING
            else _legacy_report_folder(r["run_id"], r["run_date"], r["mode"], report_root))
        out.append({
            "run_id": r["run_id"], "run_date": r["run_date"], "mode": r["mode"],
            "status": r["status"],
            "process": process_note(r["status"], r["host"], r["pid"], started_at),
            "started_by": r["started_by"], "started_at": started_at,
            "finished_at": _ts(r["finished_at"]), "host": r["host"], "pid": r["pid"],
            "customers": json.loads(r["customer_filter"]) if r["customer_filter"] else None,
            "lines": int(counts.get("lines", 0) or 0),
            "new_lines": sum(t["lines"] for t in totals.values()),
            "lines_by_status": counts.get("lines_by_status", {}),
            "rejects": int(counts.get("rejects", 0) or 0),
            "totals": totals,
            "message": r["message"], "reversed_by_run": r["reversed_by_run"],
            "report_folder": folder,
        })
    return out
