"""The run record: every run (simulate or post) writes one row in `runs`."""

from __future__ import annotations

import functools
import json
import subprocess
import uuid
from datetime import date, datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Sequence

import sqlalchemy as sa

from billing_jobs.core.vocab import RunMode, RunStatus
from billing_jobs.store.db import db_errors, read_connection
from billing_jobs.store.tables import runs


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version, plus the git short sha (and '-dirty') when run from a checkout."""
    try:
        ver = version("billing-jobs")
    except Exception:  # pragma: no cover - not installed
        ver = "unknown"
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            sha = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
            if sha:
                ver = f"{ver}+g{sha}"
        except (OSError, subprocess.SubprocessError):
            pass
    return ver


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
) -> str:
    """Record a run as `running`; return its run_id (uuid4 text)."""
    mode = _one_of(RunMode, mode, "mode")
    run_id = str(uuid.uuid4())
    with db_errors(engine, "recording the run"), engine.begin() as conn:
        conn.execute(runs.insert().values(
            run_id=run_id, run_date=run_date, mode=mode,
            customer_filter=_filter_text(customer_ids), started_by=started_by or "",
            started_at=datetime.now(timezone.utc), status=RunStatus.RUNNING,
            code_version=code_version(),
        ))
    return run_id


def finish_run(
    engine: sa.Engine,
    run_id: str,
    status: RunStatus | str,
    counts: dict | None = None,
    totals: dict | None = None,
    message: str | None = None,
) -> None:
    """Close the run record with its outcome (`succeeded` or `failed`), counts and totals."""
    status = _one_of(RunStatus, status, "status")
    with db_errors(engine, "recording the run"), engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(
            status=status, finished_at=datetime.now(timezone.utc),
            counts=json.dumps(counts or {}, sort_keys=True, default=str),
            totals=json.dumps(totals or {}, sort_keys=True, default=str),
            message=message,
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
