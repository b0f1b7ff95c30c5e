"""The Typer app: the global options (`--version`, `-h`) and the command groups (one module
each: ingest, run, demo, ledger, terms, views, forecast), in the order of `--help`; wiring only.
`cli/app.py`'s `main` parses the command line with it (and answers a bare `--version` without it)."""

from typing import Annotated

import typer

from billing_jobs.cli import demo, forecast, ingest, ledger, run, terms, views
from billing_jobs.cli.options import out
from billing_jobs.core.version import version_line

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Package billing for VoIP carriers: charge packages, grant free minutes, simulate.")


def _version(value: bool) -> None:
    if value:
        out.print(version_line())
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="print the version and exit")] = False) -> None:
    """Package billing for VoIP carriers: charge packages, grant free minutes, simulate."""


for group in (ingest, run, demo, ledger, terms, views, forecast):  # the order of `--help`
    group.register(app)
