"""`billing-jobs`: the command line. Wiring only: parse, call the pipeline, print.

Exit status: 0 success, 1 the run failed (gate, --strict, database), 2 bad arguments.
Errors are one readable line; set BILLING_DEBUG=1 for a traceback.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from billing_jobs.core import settings
from billing_jobs.core.errors import BillingError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Package billing for VoIP carriers: charge packages, grant free minutes, simulate.")
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

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

DEMO_DATE = date(2026, 11, 30)
# Billing dates the engine handles: a period's end (a year later at most) and every date
# arithmetic must stay well inside what dates and timestamps can hold.
MIN_RUN_DATE = date(2000, 1, 1)
MAX_RUN_DATE = date(2199, 12, 31)


def _version(value: bool) -> None:
    if value:
        from billing_jobs.store.runs import code_version

        out.print(f"billing-jobs {code_version()}")
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="print the version and exit")] = False) -> None:
    """Package billing for VoIP carriers: charge packages, grant free minutes, simulate."""


def _parse_date(value: str, option: str) -> date:
    import calendar
    import re

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


def _tz(option: str | None) -> str:
    """The zone from --tz, else $BILLING_TZ, else UTC; checked here, named when wrong."""
    from zoneinfo import ZoneInfo

    if option is not None:
        value, where = option, "--tz"
    elif settings.tz() is not None:
        value, where = settings.tz(), "BILLING_TZ"
    else:
        return "UTC"
    try:
        if not value.strip():
            raise ValueError("empty")
        ZoneInfo(value)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError, IndexError...
        raise UsageError(f"{where} {value!r} is not a time zone: give an IANA name such as "
                         "Europe/London or UTC" + (" (or unset BILLING_TZ)" if where == "BILLING_TZ" else "")) from None
    return value


def _user() -> str:
    """Who started the run: $USER, else the OS login (getpass / pwd), else the uid."""
    name = settings.os_user()
    if name:
        return name
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # noqa: BLE001
        try:
            import pwd

            return pwd.getpwuid(os.getuid()).pw_name
        except Exception:  # noqa: BLE001
            return f"uid{os.getuid()}"


def _engine(db: str | None):
    """An engine for --db; a URL that cannot be a database URL is a bad argument (exit 2)."""
    from billing_jobs.core.errors import DatabaseError
    from billing_jobs.store.db import make_engine

    try:
        return make_engine(db)
    except DatabaseError as exc:
        raise UsageError(f"--db: {exc}") from None


def _check_out(path: Path | None, force: bool, option: str = "--out") -> None:
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder: give a new folder name")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise UsageError(f"{option} {path} already exists and is not empty: give a new folder, "
                         "or add --force to replace it")


def _print_outcome(outcome) -> None:
    from billing_jobs.report import headline

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
        import traceback

        err.print("".join(traceback.format_exception(outcome.error)), markup=False)


@app.command("import")
def import_(
    customers: Annotated[Optional[Path], typer.Option(metavar="FILE", help="customers CSV")] = None,
    packages: Annotated[Optional[Path], typer.Option(metavar="FILE", help="packages CSV")] = None,
    assignments: Annotated[Optional[Path], typer.Option(metavar="FILE", help="assignments CSV")] = None,
    usage: Annotated[Optional[Path], typer.Option(metavar="FILE", help="usage (call records) CSV")] = None,
    set_balances: Annotated[bool, typer.Option(
        "--set-balances",
        help="write a changed balance of an existing customer as an adjustment ledger row "
             "(without it such a file is refused)")] = False,
    db: DbOption = None,
) -> None:
    """Insert or update rows by id from CSV files; each file is all-or-nothing."""
    from billing_jobs.ingest.importer import import_csv
    from billing_jobs.store.db import make_engine, upgrade

    files = [("customers", customers), ("packages", packages), ("assignments", assignments),
             ("usage", usage)]
    files = [(entity, path) for entity, path in files if path is not None]
    if not files:
        raise UsageError("import: give at least one of --customers, --packages, --assignments, --usage")
    engine = _engine(db)
    upgrade(engine)
    for entity, path in files:
        if not path.exists():
            raise UsageError(f"--{entity}: file not found: {path}")
        doing = f"importing {entity} from {path}"
        with err.status(doing) as status:
            n = import_csv(engine, entity, path, set_balances=set_balances, progress=lambda rows: (
                status.update(f"{doing}: {rows:,} rows checked and written, not yet committed")))
        out.print(f"{entity}: {n} rows imported from {path}")


@app.command()
def run(
    date_: Annotated[str, typer.Option("--date", metavar="YYYY-MM-DD", help="billing date")],
    customer: CustomerOption = None,
    simulate: SimulateOption = True,
    strict: StrictOption = False,
    out_dir: OutOption = None,
    force: ForceOption = False,
    tz: TzOption = None,
    db: DbOption = None,
) -> None:
    """Bill one date: compute what is due, then simulate (report only) or post it."""
    from billing_jobs.run.local import run_billing
    from billing_jobs.run.request import RunRequest

    run_date = _parse_date(date_, "--date")
    zone = _tz(tz)
    _check_out(out_dir, force)
    engine = _engine(db)
    req = RunRequest(run_date=run_date, simulate=simulate,
                     customer_ids=list(customer) if customer else None, strict=strict,
                     out_dir=out_dir, started_by=f"cli:{_user()}", tz=zone)
    with err.status(f"billing {req.run_date} ({req.mode})"):
        outcome = run_billing(engine, req)
    _print_outcome(outcome)
    if not outcome.ok:
        raise typer.Exit(1)


@app.command()
def backfill(
    from_: Annotated[str, typer.Option("--from", metavar="YYYY-MM-DD", help="first date")],
    to: Annotated[str, typer.Option("--to", metavar="YYYY-MM-DD", help="last date (included)")],
    customer: CustomerOption = None,
    simulate: SimulateOption = True,
    strict: StrictOption = False,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", metavar="DIR",
        help="parent folder: one report folder per date inside it (DIR/YYYY-MM-DD)")] = None,
    force: ForceOption = False,
    tz: TzOption = None,
    db: DbOption = None,
) -> None:
    """Bill every date from --from to --to in order (stops at the first failure)."""
    from rich.progress import Progress

    from billing_jobs.core.money import format_minor
    from billing_jobs.run.local import backfill as run_backfill
    from billing_jobs.run.request import RunRequest
    from billing_jobs.report.writer import outcome_sentence

    first, last = _parse_date(from_, "--from"), _parse_date(to, "--to")
    if last < first:
        raise UsageError(f"--to {last} is before --from {first}")
    zone = _tz(tz)
    _check_out(out_dir, force)
    engine = _engine(db)
    days = (last - first).days + 1
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("backfill", total=days)

        def done(outcome):
            progress.advance(task)
            day = outcome.summary.get("run_date") or outcome.summary.get("run", {}).get("run_date", "")
            where = (f" -> {outcome.report_dir}" if outcome.report_dir
                     else "" if outcome.report_error else " (no report folder written)")
            line = f"{day}: {outcome_sentence(outcome.summary)}{where}"
            (out if outcome.ok else err).print(line, markup=False)
            if outcome.report_error:
                err.print(f"error: {outcome.report_error}", markup=False)

        req = RunRequest(run_date=first, simulate=simulate, customer_ids=customer or None,
                         strict=strict, out_dir=out_dir, started_by=f"cli-backfill:{_user()}",
                         tz=zone)
        outcomes = run_backfill(engine, req, last, on_date=done)
    # totals over the dates run
    new_lines = sum(o.summary.get("outcome", {}).get("new_lines", 0) for o in outcomes)
    old_lines = sum(o.summary.get("outcome", {}).get("already_posted_lines", 0) for o in outcomes)
    empty = sum(1 for o in outcomes if o.ok and o.report_dir is None)
    money: dict[str, int] = {}
    for o in outcomes:
        for cur, micros in o.summary.get("outcome", {}).get("new_micros", {}).items():
            money[cur] = money.get(cur, 0) + int(micros)
    amounts = ", ".join(f"{format_minor(v, c)} {c}" for c, v in sorted(money.items())) or "0"
    verb = "would post" if simulate else "posted"
    failed = [o for o in outcomes if not o.ok]
    out.print(f"backfill {first}..{last}: {len(outcomes)} of {days} date(s) run, "
              f"{verb} {new_lines} new line(s) for {amounts}; {old_lines} line(s) already "
              f"posted earlier (nothing charged twice); {empty} date(s) with nothing due"
              + (f"; stopped at {failed[0].summary.get('run_date', '?')} (failed)" if failed else ""),
              markup=False)
    if failed:
        raise typer.Exit(1)


@app.command()
def demo(
    db: DbOption = None,
    date_: Annotated[str, typer.Option("--date", metavar="YYYY-MM-DD",
                                       help="date to simulate")] = DEMO_DATE.isoformat(),
    force: Annotated[bool, typer.Option(
        "--force", help="write the sample even into a database holding other rows")] = False,
) -> None:
    """Fill the embedded database with a realistic sample and simulate one date."""
    from billing_jobs.run.local import run_billing
    from billing_jobs.run.request import RunRequest
    from billing_jobs.demo.sample_data import generate, write_csv
    from billing_jobs.ingest.importer import import_csv
    from billing_jobs.store.db import make_engine, upgrade
    from billing_jobs.demo.guard import foreign_rows

    run_date = _parse_date(date_, "--date")
    engine = _engine(db)
    upgrade(engine)
    frames = generate(customers=40, assignments=300, calls=5000, seed=7, as_of=run_date)
    foreign = foreign_rows(engine, frames)
    if foreign and not force:
        where = engine.url.render_as_string(hide_password=True)
        raise UsageError(f"demo: {where} holds rows the demo did not create ({'; '.join(foreign)}): "
                         "the demo never mixes its sample customers into such a database; give "
                         "another --db, or add --force to write the sample there anyway")
    with err.status("importing the demo sample"):
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_csv(frames, Path(tmp))
            for entity in ("customers", "packages", "assignments", "usage"):
                # with --force, a sample customer whose balance moved is set back by an
                # adjustment row (the ledger still explains every balance)
                import_csv(engine, entity, paths[entity], set_balances=force)
    out.print(f"demo data: {', '.join(f'{len(v)} {k}' for k, v in frames.items())}")
    req = RunRequest(run_date=run_date, simulate=True, started_by="demo")
    with err.status(f"simulating {run_date}"):
        outcome = run_billing(engine, req)
    _print_outcome(outcome)
    if not outcome.ok:
        raise typer.Exit(1)


@app.command("upgrade-db")
def upgrade_db(db: DbOption = None) -> None:
    """Create or migrate the database schema to the current version (Alembic)."""
    from billing_jobs.store.db import make_engine, upgrade

    upgrade(_engine(db))
    out.print("schema is up to date")


def main(argv: list[str] | None = None) -> int:
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int):
            return code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        return 1
    except BillingError as exc:
        if settings.debug():
            import traceback

            cause = exc.__cause__ or exc.__context__
            if cause is not None:
                err.print("".join(traceback.format_exception(cause)), markup=False)
            err.print("".join(traceback.format_exception(exc)), markup=False)
        err.print(f"error: {exc}", markup=False)
        return exc.exit_code
    except Exception as exc:  # click usage errors and everything unexpected
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click's (typer's) usage errors
            exc.show()
            return exc.exit_code
        if settings.debug():
            raise
        err.print(f"error: {type(exc).__name__}: {exc}", markup=False)
        return 1
    return 0


from billing_jobs.cli.ledger import register as _register_ledger  # noqa: E402
_register_ledger(app)  # adjust, rebill, reverse
from billing_jobs.cli.views import register as _register_views; _register_views(app)  # noqa: E402,E702 - balances, ledger, runs, unposted
from billing_jobs.cli.forecast import register as _register_forecast  # noqa: E402
_register_forecast(app)  # forecast

if __name__ == "__main__":
    sys.exit(main())

