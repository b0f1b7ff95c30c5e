"""`billing-jobs demo`: a realistic sample in the embedded database, one date simulated."""

from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer

from billing_jobs.cli.options import (DbOption, err, out, parse_date, print_outcome,
                                      upgraded_engine)
from billing_jobs.core.errors import UsageError

DEMO_DATE = date(2026, 11, 30)
SAMPLE_FILES = ("customers", "packages", "assignments", "usage")


def demo(
    db: DbOption = None,
    date_: Annotated[str, typer.Option("--date", metavar="YYYY-MM-DD",
                                       help="date to simulate")] = DEMO_DATE.isoformat(),
    force: Annotated[bool, typer.Option(
        "--force", help="write the sample even into a database holding other rows")] = False,
    export: Annotated[Optional[Path], typer.Option(
        "--export", metavar="DIR",
        help="also keep the sample's CSV files (customers, packages, assignments, usage) in "
             "DIR, to edit and import")] = None,
) -> None:
    """Fill the embedded database with a realistic sample and simulate one date."""
    import tempfile  # with random: only the demo writes a temporary folder; fast --help

    # heavy: pandas, SQLAlchemy, the billing rules; keeps --version fast
    from billing_jobs.demo.guard import foreign_rows
    from billing_jobs.demo.sample_data import generate, write_csv
    from billing_jobs.ingest.importer import import_csv
    from billing_jobs.run.local import run_billing
    from billing_jobs.run.request import RunRequest
    from billing_jobs.store.db import describe

    run_date = parse_date(date_, "--date")
    if export is not None:
        existing = [str(export / f"{name}.csv") for name in SAMPLE_FILES
                    if (export / f"{name}.csv").exists()]
        if existing:
            raise UsageError(f"--export: {', '.join(existing)} already exist(s): give an empty "
                             "or new folder (nothing is overwritten)")
    engine = upgraded_engine(db)
    frames = generate(customers=40, assignments=300, calls=5000, seed=7, as_of=run_date)
    foreign = foreign_rows(engine, frames)
    if foreign and not force:
        where = describe(engine)  # no password, wherever it sits in the URL
        raise UsageError(f"demo: {where} holds rows the demo did not create ({'; '.join(foreign)}): "
                         "the demo never mixes its sample customers into such a database; give "
                         "another --db, or add --force to write the sample there anyway")
    with err.status("importing the demo sample"), tempfile.TemporaryDirectory() as tmp:
        paths = write_csv(frames, export if export is not None else Path(tmp))
        for entity in SAMPLE_FILES:
            # with --force, a sample customer whose sample balance differs from the value
            # its last import set is adjusted by the difference; balances billing moved
            # are kept
            import_csv(engine, entity, paths[entity], set_balances=force)
    out.print(f"demo data: {', '.join(f'{len(v)} {k}' for k, v in frames.items())}")
    if export is not None:
        out.print(f"sample CSV files kept in {export} (import them with billing-jobs import)",
                  markup=False)
    req = RunRequest(run_date=run_date, simulate=True, started_by="demo")
    with err.status(f"simulating {run_date}"):
        outcome = run_billing(engine, req)
    print_outcome(outcome)
    if not outcome.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(demo)
