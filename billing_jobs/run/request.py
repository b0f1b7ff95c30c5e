"""A run's typed context: what was asked (`RunRequest`), what came of it (`RunOutcome`) and
the seconds each stage took (`Timings`)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from billing_jobs.core import settings
from billing_jobs.core.frames import BillingResult


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
