"""`billing-jobs import | upgrade-db`: load CSV files, migrate the schema (wiring only)."""

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
    changes: Annotated[Optional[Path], typer.Option(
        metavar="FILE", help="changes of assignments from a date (assignment_id, "
                             "effective_from, quantity, package_id, free_minutes, customer_id, "
                             "cancel, void): checked like the change command, each recorded "
                             "once")] = None,
    set_balances: Annotated[bool, typer.Option(
        "--set-balances",
        help="adjust each existing customer whose balance in the file differs from the value "
             "its last import set, by that difference (one adjustment ledger row each, "
             "printed); without it such a file is refused")] = False,
    correct: Annotated[bool, typer.Option(
        "--correct",
        help="the terms were entered wrong: write package and assignment rows whose money "
             "terms differ from those posted lines were priced with (then rebill the "
             "periods); without it such rows are refused")] = False,
    db: DbOption = None,
) -> None:
    """Insert or update rows by id from CSV files; each file is all-or-nothing."""
    from billing_jobs.ingest.importer import import_file  # heavy: pandas; keeps --version fast

    files = [("customers", customers), ("packages", packages), ("assignments", assignments),
             ("usage", usage), ("changes", changes)]
    files = [(entity, path) for entity, path in files if path is not None]
    if not files:
        raise UsageError("import: give at least one of --customers, --packages, --assignments, "
                         "--usage, --changes")
    engine = upgraded_engine(db)
    for entity, path in files:
        if not path.exists():
            raise UsageError(f"--{entity}: file not found: {path}")
        doing = f"importing {entity} from {path}"
        with err.status(doing) as status:
            result = import_file(engine, entity, path, set_balances=set_balances,
                                 correct=correct, progress=lambda rows: status.update(
                                     f"{doing}: {rows:,} rows checked and written, "
                                     "not yet committed"))
        out.print(f"{entity}: {result.rows} rows imported from {path}", markup=False)
        for change in result.balance_changes:
            out.print(change.sentence(), markup=False)
        if result.versions:
            out.print(f"{entity}: {result.versions} price version(s) added or changed",
                      markup=False)
        if entity == "changes":
            out.print(f"changes: {result.changes} recorded now ({result.rows - result.changes} "
                      "recorded before: nothing changed for them); the post of each date "
                      "writes its lines (rebill for dates already posted)", markup=False)
        for note in result.notes:
            out.print(note, markup=False)


def upgrade_db(db: DbOption = None) -> None:
    """Create or migrate the database schema to the current version (Alembic)."""
    upgraded_engine(db)
    out.print("schema is up to date")


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("upgrade-db")(upgrade_db)
