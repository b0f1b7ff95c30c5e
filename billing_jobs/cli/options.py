"""What the commands share: option aliases, date and time-zone parsing, opening the engine,
the consoles and printing a run's outcome. Light: importing it loads no service (pandas,
SQLAlchemy) and no rich (the consoles are made on first use), so `billing-jobs --help` stays fast."""

from __future__ import annotations

import calendar
import os
import re
import traceback
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer

from billing_jobs.core import settings
from billing_jobs.core.errors import DatabaseError, UsageError



class _Console:
    """A rich `Console(**settings)`, made on first use (rich costs ~30 ms of imports, which
    `--help` and the usage errors do not need); every attribute is the console's. Hand
    `.get()`, the console itself, to rich (a Progress, a Live)."""

    def __init__(self, **settings) -> None:
        self._settings = settings
        self._console = None

    def get(self):
        if self._console is None:
            from rich.console import Console  # rich on first print, not at import: fast --help

            self._console = Console(**self._settings)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.get(), name)

    def __enter__(self):
        return self.get().__enter__()

    def __exit__(self, *exc):
        return self.get().__exit__(*exc)


out = _Console(soft_wrap=True, highlight=False)
err = _Console(stderr=True, soft_wrap=True, highlight=False)

DbOption = Annotated[Optional[str], typer.Option(
    "--db", metavar="URL",
    help="SQLAlchemy database URL (default: $BILLING_DB_URL, else sqlite:///billing.db)")]
TzOption = Annotated[Optional[str], typer.Option(
    "--tz", metavar="ZONE",
    help="IANA time zone of the billing day, e.g. Europe/London (default: $BILLING_TZ, else UTC)")]
OutOption = Annotated[Optional[Path], typer.Option(
    "--out", metavar="DIR", help="report folder (default: a new folder under $BILLING_REPORT_DIR)")]
ForceOption = Annotated[bool, typer.Option(
    "--force", help="replace an existing non-empty --out folder")]
CustomerOption = Annotated[Optional[list[str]], typer.Option(
    "--customer", metavar="ID", help="only this customer_id (repeat for several)")]
StrictOption = Annotated[bool, typer.Option(
    "--strict", help="fail before posting if any input row is rejected")]
SimulateOption = Annotated[bool, typer.Option(
    "--simulate/--post", help="simulate (default: report only, nothing written) or post")]
JsonOption = Annotated[bool, typer.Option(
    "--json", help="print one JSON document (a list of objects)")]
AllowFutureOption = Annotated[bool, typer.Option(
    "--allow-future",
    help="post billing dates after today in the billing time zone (prepaid in advance); "
         "without it such a post is refused")]

# Billing dates the engine handles: a period's end (a year later at most) and every date
# arithmetic must stay well inside what dates and timestamps can hold.
MIN_RUN_DATE = date(2000, 1, 1)
MAX_RUN_DATE = date(2199, 12, 31)


def parse_date(value: str, option: str) -> date:
    """A billing date given as `option`, checked to be a calendar date the engine handles."""
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", value.strip())
    if not m:
        raise UsageError(f"{option} {value!r} is not a date in YYYY-MM-DD form (e.g. 2027-01-31)")
    year, month, day = (int(g) for g in m.groups())
    if not 1 <= month <= 12:
        raise UsageError(f"{option} {value} is not a calendar date (month {month} does not exist)")
    days = calendar.monthrange(year, month)[1] if year >= 1 else 31
    if year < 1 or not 1 <= day <= days:
        raise UsageError(f"{option} {value} is not a calendar date ({calendar.month_name[month]} "
                         f"{year} has {days} days)")
    parsed = date(year, month, day)
    if not MIN_RUN_DATE <= parsed <= MAX_RUN_DATE:
        raise UsageError(f"{option} {value} is out of range: billing dates run from "
                         f"{MIN_RUN_DATE} to {MAX_RUN_DATE}")
    return parsed


def zone(option: str | None) -> str:
    """The zone from --tz, else $BILLING_TZ, else UTC; checked here, named when wrong."""
    if option is not None:
        value, where = option, "--tz"
    elif settings.tz() is not None:
        value, where = settings.tz(), "BILLING_TZ"
    else:
        return "UTC"
    from zoneinfo import ZoneInfo  # with its tz path lookup: only when a zone is given; fast --help

    try:
        if not value.strip():
            raise ValueError("empty")
        ZoneInfo(value)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError, IndexError...
        raise UsageError(f"{where} {value!r} is not a time zone: give an IANA name such as "
                         "Europe/London or UTC" + (" (or unset BILLING_TZ)" if where == "BILLING_TZ" else "")) from None
    return value


def user() -> str:
    """Who started the run: $USER, else the OS login (getpass / pwd), else the uid."""
    name = settings.os_user()
    if name:
        return name
    import getpass  # with termios: only a run asks who started it; fast --help

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        try:
            import pwd  # POSIX only

            return pwd.getpwuid(os.getuid()).pw_name
        except Exception:  # noqa: BLE001
            return f"uid{os.getuid()}"


def engine(db: str | None):
    """An engine for --db; a URL that cannot be a database URL is a bad argument (exit 2)."""
    from billing_jobs.store.db import make_engine  # heavy: SQLAlchemy; keeps --version fast

    where = "--db" if db is not None else "BILLING_DB_URL"
    try:
        return make_engine(db)
    except DatabaseError as exc:
        raise UsageError(f"{where}: {exc}") from None
    except (ValueError, TypeError) as exc:  # e.g. a port that is not a number: '55x33'
        raise UsageError(f"{where}: not a database URL ({exc})") from None


def upgraded_engine(db: str | None):
    """`engine(db)` with its schema migrated to the current version."""
    from billing_jobs.store.db import upgrade  # heavy: SQLAlchemy, Alembic; keeps --version fast

    opened = engine(db)
    upgrade(opened)
    return opened


def check_out(path: Path | None, force: bool, option: str = "--out") -> None:
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder: give a new folder name")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise UsageError(f"{option} {path} already exists and is not empty: give a new folder, "
                         "or add --force to replace it")


def print_outcome(outcome) -> None:
    """A run's headline on stdout when it succeeded, else on stderr with the error."""
    from billing_jobs.report import headline  # heavy: pandas; keeps --version fast

    text = headline(outcome.summary) if outcome.summary else f"{outcome.status}"
    if outcome.ok:
        out.print(text, markup=False)
        return
    err.print(text, markup=False)  # the headline says why, once
    if outcome.report_error:
        err.print(f"error: {outcome.report_error}", markup=False)
    elif not outcome.summary and outcome.message:
        err.print(f"error: {outcome.message}", markup=False)
    if settings.debug() and getattr(outcome, "error", None) is not None:
        err.print("".join(traceback.format_exception(outcome.error)), markup=False)


def interrupted_line(exc: KeyboardInterrupt) -> tuple[str, str]:
    """(one line saying what a SIGINT/SIGTERM stopped and what stands, the signal's name).

    Says "nothing half-written" only when it is so: a billing run is interrupted only after
    its record is closed as 'interrupted' (each customer is posted whole or not at all; the
    report folder is renamed into place whole). Any other command: only that it stopped."""
    name = "SIGTERM" if exc.args and exc.args[0] == "SIGTERM" else "SIGINT"
    name = getattr(exc, "signal_name", name)
    head = f"interrupted ({name}{', Ctrl-C' if name == 'SIGINT' else ''})"
    done = tuple(getattr(exc, "done", ()) or ())
    outcome = getattr(exc, "outcome", None)
    earlier = (f"; {len(done)} earlier date(s) of the backfill finished and stand"
               if done else "")
    if outcome is None:
        if not hasattr(exc, "outcome"):
            return f"{head}: the command stopped before it finished", name
        return (f"{head}: the backfill stopped while no date's run was open{earlier}; "
                "nothing half-written"), name
    summary = outcome.summary or {}
    run_date = summary.get("run_date") or (summary.get("run") or {}).get("run_date") or "?"
    mode = summary.get("mode") or (summary.get("run") or {}).get("mode") or ""
    new_lines = (summary.get("outcome") or {}).get("new_lines")
    if mode == "simulate":
        what = "a simulation: nothing was written to the ledger"
    elif new_lines:
        what = f"{new_lines} line(s) posted before the stop stand (not charged again on a rerun)"
    elif new_lines == 0:
        what = "nothing was posted"
    else:
        what = "see `billing-jobs runs` for what it posted"
    where = f"; report: {outcome.report_dir}" if outcome.report_dir else ""
    if outcome.closing_error:
        return (f"{head}: run {outcome.run_id} of {run_date} stopped; {what}; but "
                f"{outcome.closing_error}: it still says running{earlier}"), name
    return (f"{head}: run {outcome.run_id} of {run_date} stopped and is recorded as "
            f"interrupted; {what}; nothing half-written (each customer is posted whole or not "
            f"at all){earlier}{where}"), name
