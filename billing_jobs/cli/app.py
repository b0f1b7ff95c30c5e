"""`billing-jobs`: the command line. `main`, the console entry point: it answers a bare
`--version` at once, else runs the Typer app (`app`, built in cli/commands.py with the command
groups, one module each: ingest, run, demo, ledger, terms, views, forecast); wiring only.

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

from billing_jobs.core import settings
from billing_jobs.core.errors import BillingError
from billing_jobs.core.version import version_line


def __getattr__(name: str):
    """`app`, the Typer app (cli/commands.py), loaded on first use: `--version` needs none of it."""
    if name == "app":
        from billing_jobs.cli.commands import app  # typer and every command group; see main
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _invoke(argv: list[str]) -> int:
    """The command line parsed and run by click directly (not through Typer's `main`, which
    turns Ctrl-C into a silent exit 130): every exception reaches `main`."""
    import typer.main  # loaded with the commands; see main

    from billing_jobs.cli.commands import app  # every command group; see main

    command = typer.main.get_command(app)
    with command.make_context(PROG, list(argv)) as ctx:
        code = command.invoke(ctx)
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:  # the global flag alone: answered without loading the commands
        sys.stdout.write(version_line() + "\n")
        sys.stdout.flush()
        return 0
    with _sigterm_interrupts():
        return _main_guarded(args)


def _main_guarded(argv: list[str]) -> int:
    # typer (click) and rich are loaded here, not at import, so a bare `--version` stays fast
    import typer

    from billing_jobs.cli.options import err, interrupted_line

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
