"""A run's typed context: what was asked (`RunRequest`), what came of it (`RunOutcome`) and
the seconds each stage took (`Timings`)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from billing_jobs.core import settings
from billing_jobs.core.frames import BillingResult
from billing_jobs.core.vocab import RunMode, RunStatus


@dataclass(frozen=True)
class RunRequest:
    """What one run is asked to do, built once and never changed (`dataclasses.replace` gives
    a variant, e.g. each night of a backfill). `customer_ids` None: every customer; `out_dir`
    None: a new folder under the report root; `tz` None: $BILLING_TZ, else UTC, resolved
    here."""

    run_date: date
    simulate: bool = True
    customer_ids: tuple[str, ...] | None = None
    strict: bool = False
    out_dir: Path | None = None
    started_by: str = "cli"
    tz: str | None = None

    def __post_init__(self) -> None:
        fixed = {"tz": self.tz or settings.tz_or_default()}
        if self.customer_ids is not None:
            fixed["customer_ids"] = tuple(str(c) for c in self.customer_ids)
        if self.out_dir is not None:
            fixed["out_dir"] = Path(self.out_dir)
        for name, value in fixed.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    @property
    def mode(self) -> RunMode:
        return RunMode.SIMULATE if self.simulate else RunMode.POST


@dataclass
class RunOutcome:
    run_id: str
    status: RunStatus
    report_dir: Path | None
    summary: dict
    message: str = ""

    report_error: str = ""
    error: BaseException | None = None
    result: BillingResult | None = None  # the settled result (lines with their status)

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED and not self.report_error


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
