"""`billing-jobs`: the command line. The Typer app, `--version`, `main` and the command groups
(one module each: run, ingest, demo, ledger, views, forecast); wiring only.

Exit status: 0 success, 1 the run failed (gate, --strict, database), 2 bad arguments (usage
errors included), 130 interrupted by Ctrl-C (SIGINT), 143 stopped by SIGTERM. Errors are one
readable line; set BILLING_DEBUG=1 for a traceback. `-h` is `--help` everywhere.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
from typing import Annotated

import typer

from billing_jobs.cli import demo, forecast, ingest, ledger, run, terms, views
from billing_jobs.cli.options import err, interrupted_line, out
from billing_jobs.core import settings
from billing_jobs.core.version import code_version
from billing_jobs.core.errors import BillingError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Package billing for VoIP carriers: charge packages, grant free minutes, simulate.")


def _version(value: bool) -> None:
    if value:
        out.print(f"billing-jobs {code_version()}")
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="print the version and exit")] = False) -> None:
    """Package billing for VoIP carriers: charge packages, grant free minutes, simulate."""


for group in (ingest, run, demo, ledger, terms, views, forecast):  # the order of `--help`
    group.register(app)


PROG = "billing-jobs"
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as shells do


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt('SIGTERM') while a command runs, as Ctrl-C raises
    KeyboardInterrupt: a run stopped either way closes its record ('interrupted')."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum, _frame):
        raise KeyboardInterrupt("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _usage_line(exc) -> str:
    """A usage error (Typer's click: an unknown option or command, a bad value) as one line:
    what is wrong, and where the help is."""
    text = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", "") or PROG
    return f"error: {text} (see '{path} -h')"


def _invoke(argv: list[str] | None) -> int:
    """The command line parsed and run by click directly (not through Typer's `main`, which
    turns Ctrl-C into a silent exit 130): every exception reaches `main`."""
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    with command.make_context(PROG, args) as ctx:
        code = command.invoke(ctx)
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> int:
    with _sigterm_interrupts():
        return _main_guarded(argv)


def _main_guarded(argv: list[str] | None) -> int:
    try:
        return _invoke(argv)
    except typer.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see _sigterm_interrupts)
        line, name = interrupted_line(exc)
        err.print(line, markup=False)
        return EXIT_SIGNAL.get(name, 130)
    except typer.Abort:
        err.print("aborted")
        return 1
    except typer.TyperException as exc:  # Typer's own click's errors (it vendors click)
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `billing-jobs`: the help
            exc.show()
            return exc.exit_code
        if getattr(exc, "exit_code", 1) == 2:  # usage: unknown option or command, bad value
            err.print(_usage_line(exc), markup=False)
            return 2
        err.print(f"error: {' '.join(exc.format_message().split())}", markup=False)
        return getattr(exc, "exit_code", 1)
    except BillingError as exc:
        if settings.debug():
            cause = exc.__cause__ or exc.__context__
            if cause is not None:
                err.print("".join(traceback.format_exception(cause)), markup=False)
            err.print("".join(traceback.format_exception(exc)), markup=False)
        err.print(f"error: {exc}", markup=False)
        return exc.exit_code
    except Exception as exc:  # everything unexpected
        if settings.debug():
            raise
        err.print(f"error: {type(exc).__name__}: {exc}", markup=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
