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
        help="adjust each existing customer whose balance in the file differs from the value "
             "its last import set, by that difference (one adjustment ledger row each, "
             "printed); without it such a file is refused")] = False,
    db: DbOption = None,
) -> None:
    """Insert or update rows by id from CSV files; each file is all-or-nothing."""
    from billing_jobs.ingest.importer import import_file  # heavy: pandas; keeps --version fast

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
            result = import_file(engine, entity, path, set_balances=set_balances,
                                 progress=lambda rows: status.update(
                                     f"{doing}: {rows:,} rows checked and written, "
                                     "not yet committed"))
        out.print(f"{entity}: {result.rows} rows imported from {path}", markup=False)
        for change in result.balance_changes:
            out.print(change.sentence(), markup=False)


def upgrade_db(db: DbOption = None) -> None:
    """Create or migrate the database schema to the current version (Alembic)."""
    upgraded_engine(db)
    out.print("schema is up to date")


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("upgrade-db")(upgrade_db)
