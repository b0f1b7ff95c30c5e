"""`billing-jobs`: the command line. The Typer app, `--version`, `main` and the command groups
(one module each: run, ingest, demo, ledger, views, forecast); wiring only.

Exit status: 0 success, 1 the run failed (gate, --strict, database), 2 bad arguments.
Errors are one readable line; set BILLING_DEBUG=1 for a traceback.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from billing_jobs.cli import demo, forecast, ingest, ledger, run, terms, views
from billing_jobs.cli.options import err, out
from billing_jobs.core import settings
from billing_jobs.core.errors import BillingError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Package billing for VoIP carriers: charge packages, grant free minutes, simulate.")


def _version(value: bool) -> None:
    if value:
        from billing_jobs.store.runs import code_version  # heavy: SQLAlchemy; only when asked

        out.print(f"billing-jobs {code_version()}")
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="print the version and exit")] = False) -> None:
    """Package billing for VoIP carriers: charge packages, grant free minutes, simulate."""


for group in (ingest, run, demo, ledger, terms, views, forecast):  # the order of `--help`
    group.register(app)


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


if __name__ == "__main__":
    sys.exit(main())
