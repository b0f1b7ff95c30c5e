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

from billing_jobs.errors import BillingError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Package billing for VoIP carriers: charge packages, grant free minutes, simulate.")
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

DbOption = Annotated[Optional[str], typer.Option(
    "--db", help="SQLAlchemy database URL (default: $BILLING_DB_URL, else sqlite:///billing.db)")]

DEMO_DATE = date(2026, 11, 30)


def _parse_date(value: str, option: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise UsageError(f"{option}: {value!r} is not a date in YYYY-MM-DD form") from None


def _print_outcome(outcome) -> None:
    from billing_jobs.report import headline

    out.print(headline(outcome.summary))
    if outcome.message:
        err.print(f"[red]error:[/red] {outcome.message}", highlight=False)


@app.command("import")
def import_(
    customers: Annotated[Optional[Path], typer.Option(help="customers CSV")] = None,
    packages: Annotated[Optional[Path], typer.Option(help="packages CSV")] = None,
    assignments: Annotated[Optional[Path], typer.Option(help="assignments CSV")] = None,
    usage: Annotated[Optional[Path], typer.Option(help="usage (call records) CSV")] = None,
    db: DbOption = None,
) -> None:
    """Insert or update rows by id from CSV files; each file is all-or-nothing."""
    from billing_jobs.store import import_csv, make_engine, upgrade

    files = [("customers", customers), ("packages", packages), ("assignments", assignments),
             ("usage", usage)]
    files = [(entity, path) for entity, path in files if path is not None]
    if not files:
        raise UsageError("import: give at least one of --customers, --packages, --assignments, --usage")
    engine = make_engine(db)
    upgrade(engine)
    for entity, path in files:
        if not path.exists():
            raise UsageError(f"--{entity}: file not found: {path}")
        with err.status(f"importing {entity} from {path}"):
            n = import_csv(engine, entity, path)
        out.print(f"{entity}: {n} rows imported from {path}")


@app.command()
def run(
    date_: Annotated[str, typer.Option("--date", help="billing date YYYY-MM-DD")],
    customer: Annotated[Optional[list[str]], typer.Option("--customer", help="only this customer (repeatable)")] = None,
    simulate: Annotated[bool, typer.Option("--simulate/--post", help="simulate (default) or post")] = True,
    strict: Annotated[bool, typer.Option("--strict", help="fail before posting if any input row is rejected")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="report folder")] = None,
    db: DbOption = None,
) -> None:
    """Bill one date: compute what is due, then simulate (report only) or post it."""
    from billing_jobs.pipeline import RunRequest, run_billing

    req = RunRequest(run_date=_parse_date(date_, "--date"), simulate=simulate,
                     customer_ids=list(customer) if customer else None, strict=strict,
                     out_dir=out_dir, started_by=f"cli:{os.environ.get('USER', 'unknown')}")
    with err.status(f"billing {req.run_date} ({req.mode})"):
        outcome = run_billing(db, req)
    _print_outcome(outcome)
    if not outcome.ok:
        raise typer.Exit(1)


@app.command()
def backfill(
    from_: Annotated[str, typer.Option("--from", help="first date YYYY-MM-DD")],
    to: Annotated[str, typer.Option("--to", help="last date YYYY-MM-DD")],
    simulate: Annotated[bool, typer.Option("--simulate/--post")] = True,
    strict: Annotated[bool, typer.Option("--strict")] = False,
    db: DbOption = None,
) -> None:
    """Bill every date from --from to --to in order (stops at the first failure)."""
    from rich.progress import Progress

    from billing_jobs.pipeline import backfill as run_backfill

    first, last = _parse_date(from_, "--from"), _parse_date(to, "--to")
    if last < first:
        raise UsageError(f"--to {last} is before --from {first}")
    days = (last - first).days + 1
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("backfill", total=days)

        def done(outcome):
            progress.advance(task)
            c = outcome.summary.get("counts", {})
            out.print(f"{outcome.summary.get('run', {}).get('run_date', '')} {outcome.status}: "
                      f"{c.get('lines', 0)} lines -> {outcome.report_dir}")

        outcomes = run_backfill(db, first, last, simulate=simulate, strict=strict,
                                started_by=f"cli-backfill:{os.environ.get('USER', 'unknown')}",
                                on_date=done)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        err.print(f"[red]error:[/red] {failed[0].message}", highlight=False)
        raise typer.Exit(1)


@app.command()
def demo(
    db: DbOption = None,
    date_: Annotated[str, typer.Option("--date", help="date to simulate")] = DEMO_DATE.isoformat(),
) -> None:
    """Fill the embedded database with a realistic sample and simulate one date."""
    from billing_jobs.pipeline import RunRequest, run_billing
    from billing_jobs.sample_data import generate, write_csv
    from billing_jobs.store import import_csv, make_engine, upgrade

    run_date = _parse_date(date_, "--date")
    engine = make_engine(db)
    upgrade(engine)
    with err.status("generating and importing the demo sample"):
        frames = generate(customers=40, assignments=300, calls=5000, seed=7, as_of=run_date)
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_csv(frames, Path(tmp))
            for entity in ("customers", "packages", "assignments", "usage"):
                import_csv(engine, entity, paths[entity])
    out.print(f"demo data: {', '.join(f'{len(v)} {k}' for k, v in frames.items())}")
    req = RunRequest(run_date=run_date, simulate=True, started_by="demo")
    with err.status(f"simulating {run_date}"):
        outcome = run_billing(db, req, engine=engine)
    _print_outcome(outcome)
    if not outcome.ok:
        raise typer.Exit(1)


@app.command("upgrade-db")
def upgrade_db(db: DbOption = None) -> None:
    """Create or migrate the database schema to the current version (Alembic)."""
    from billing_jobs.store import make_engine, upgrade

    upgrade(make_engine(db))
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
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return exc.exit_code
    except Exception as exc:  # click usage errors and everything unexpected
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click's (typer's) usage errors
            exc.show()
            return exc.exit_code
        if os.environ.get("BILLING_DEBUG"):
            raise
        err.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        return 1
    return 0


from billing_jobs.cli_ledger import register as _register_ledger  # noqa: E402
_register_ledger(app)  # adjust, rebill, reverse

if __name__ == "__main__":
    sys.exit(main())

