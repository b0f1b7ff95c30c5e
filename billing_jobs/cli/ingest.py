"""`billing-jobs import | upgrade-db`: load CSV files, migrate the schema (wiring only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from billing_jobs.cli.options import DbOption, err, out, upgraded_engine
from billing_jobs.core.errors import UsageError


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
    from billing_jobs.ingest.importer import import_csv  # heavy: pandas; keeps --version fast

    files = [("customers", customers), ("packages", packages), ("assignments", assignments),
             ("usage", usage)]
    files = [(entity, path) for entity, path in files if path is not None]
    if not files:
        raise UsageError("import: give at least one of --customers, --packages, --assignments, --usage")
    engine = upgraded_engine(db)
    for entity, path in files:
        if not path.exists():
            raise UsageError(f"--{entity}: file not found: {path}")
        doing = f"importing {entity} from {path}"
        with err.status(doing) as status:
            n = import_csv(engine, entity, path, set_balances=set_balances, progress=lambda rows: (
                status.update(f"{doing}: {rows:,} rows checked and written, not yet committed")))
        out.print(f"{entity}: {n} rows imported from {path}")


def upgrade_db(db: DbOption = None) -> None:
    """Create or migrate the database schema to the current version (Alembic)."""
    upgraded_engine(db)
    out.print("schema is up to date")


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("upgrade-db")(upgrade_db)
