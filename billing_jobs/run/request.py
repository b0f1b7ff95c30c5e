"""A run's typed context: what was asked (`RunRequest`), what came of it (`RunOutcome`) and
the seconds each stage took (`Timings`)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from billing_jobs.core import settings
from billing_jobs.core.errors import UsageError
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
    #: post a billing date after today in the billing time zone (prepaid in advance); the
    #: entry points refuse such a post without it (`refuse_future_post`)
    allow_future: bool = False

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

    def refuse_future_post(self, last: date | None = None, today: date | None = None) -> None:
        """A post of a billing date after today in the billing time zone (`run_date`, or any
        date up to `last` for a range) is refused before anything is written: UsageError
        naming the first such date, unless `allow_future`. Simulations are never refused.

        Called by every entry point that posts: `billing-jobs run | backfill`, the Airflow
        stages' `extract`; the library functions (`run.local`) leave the policy to them."""
        if self.simulate or self.allow_future:
            return
        today = today or billing_today(self.tz)
        last = last or self.run_date
        if last <= today:
            return
        first_future = max(self.run_date, today + timedelta(days=1))
        span = "" if last == self.run_date else f" (the range reaches {last})"
        raise UsageError(f"{first_future} is after today ({today} in {self.tz}){span}: "
                         "posting a future date is refused; simulate it, or add "
                         "--allow-future to post it in advance")


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
    closing_error: str = ""  # why the run record could not be closed ('' when it was)

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED and not self.report_error


def billing_today(tz: str | None) -> date:
    """Today's calendar date in the billing time zone `tz` (None: $BILLING_TZ, else UTC)."""
    return datetime.now(ZoneInfo(tz or settings.tz_or_default())).date()


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT (Ctrl-C) or SIGTERM. `outcome`: the interrupted run, its
    record closed as 'interrupted' and its report written (None: no run had started);
    `done`: the runs that finished before it (a backfill's earlier dates)."""

    def __init__(self, signal_name: str, outcome: "RunOutcome | None" = None,
                 done: tuple["RunOutcome", ...] = ()):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.outcome = outcome
        self.done = tuple(done)


def signal_name(exc: BaseException) -> str:
    """The signal behind a KeyboardInterrupt: SIGTERM when the entry point's handler said so
    (`KeyboardInterrupt('SIGTERM')`), else SIGINT (Ctrl-C)."""
    if isinstance(exc, RunInterrupted):
        return exc.signal_name
    return "SIGTERM" if exc.args and exc.args[0] == "SIGTERM" else "SIGINT"


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
