"""`billing-jobs balances | ledger | runs | unposted`: the operator views (wiring only).

Read-only: the services in billing_jobs/store/views.py read, this module prints. Amounts are
plain decimals in the currency's minor unit ('17.38' EUR, '9666' JPY); an amount finer than
the minor unit is shown with all its digits, never rounded away. `--json` prints ONE JSON
document, a list of objects with amounts as decimal strings and dates in ISO form; otherwise
a table as wide as the terminal ($COLUMNS when set; 240 when piped): below 160 columns the
long ids (run ids) are shortened with an ellipsis and long cells fold, so a 100-column
terminal shows whole rows (`--json` always has everything). Text from the data (names,
ids, reasons) is printed as typed, never as markup, and inert: control and bidirectional
characters show as visible escapes (`\\x1b`, `\\u202e`, #28 point 8). An unknown --customer
exits 2 with one line, like `run`.
"""

import os
import re
import sys
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from billing_jobs.cli import options
from billing_jobs.cli.options import CustomerOption, DbOption, JsonOption, parse_date, zone
from billing_jobs.core import settings
from billing_jobs.core.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def money(micros: int, currency: str) -> str:
    """Plain decimal in the currency's minor unit; all digits when finer than that unit."""
    # heavy: pandas; keeps --version fast
    from billing_jobs.core.money import format_micros, format_minor, minor_digits

    step = 10 ** max(0, 6 - minor_digits(currency))
    return format_minor(micros, currency) if int(micros) % step == 0 else format_micros(micros)


# Stored text is printed inert (#28 point 8): rows written before the text rules (or by another
# tool) may hold an ESC sequence (window title, screen clear), a carriage return that overwrites
# the line or a bidirectional control that reorders it. Each such character is printed as its
# visible escape (`\x1b`, `\x0d`, `\u202e`), never sent to the terminal. A backslash typed in
# the data prints as itself.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def inert(value):
    """`value` with every control and bidirectional-control character of its text (in dicts
    and lists too) written as a visible escape; other values as they are."""
    if isinstance(value, str):
        return _UNSAFE.sub(_escape, value)
    if isinstance(value, dict):
        return {k: inert(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [inert(v) for v in value]
    return value


def _plain(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _with_money(row: dict, keys: tuple[str, ...]) -> dict:
    return {k: (money(v, row["currency"]) if k in keys else v) for k, v in row.items()}


_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _emit_json(rows: list[dict]) -> None:
    """One JSON document; C0 controls are escaped by JSON itself, DEL, C1 and bidirectional
    controls are written as `\\uXXXX` escapes too (the same string to a JSON reader)."""
    import json  # only --json writes JSON; fast --help

    text = json.dumps(_plain(rows), indent=2, ensure_ascii=False)
    text = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")


PIPED_WIDTH = 240  # a table piped to a file or a program: every cell whole
NARROW = 160  # below this many columns: the compact layouts, long ids shortened
ID_CHARS = 8  # a shortened id: its first characters and an ellipsis


def _console() -> "Console":
    """The terminal's width ($COLUMNS wins when set); PIPED_WIDTH when not a terminal."""
    from rich.console import Console  # rich only when a table is drawn: fast --help
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return Console(width=int(columns), highlight=False, soft_wrap=False)
    if options.out.is_terminal:
        return options.out.get()
    return Console(width=PIPED_WIDTH, highlight=False, soft_wrap=False)


def _short(value, narrow: bool) -> str | None:
    """An id whole, or in a narrow terminal its first ID_CHARS characters and an ellipsis."""
    if value is None:
        return None
    text = str(value)
    return text if not narrow or len(text) <= ID_CHARS + 1 else text[:ID_CHARS] + "…"


def _stamp(value: datetime | None, narrow: bool) -> str | None:
    """A UTC time: whole on one line, or date over minutes (a narrow terminal)."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%d\n%H:%M" if narrow else "%Y-%m-%d %H:%M:%S")


def _cell(value) -> "Text":
    """A cell as plain text (never markup: a name like '[red]' is not markup); empty shows as '-'."""
    from rich.text import Text  # rich only when a table is drawn: fast --help
    return Text("-" if value is None or value == "" else str(_plain(value)))


def _table(title: str, columns: list[str], rows: list[list], right: tuple[str, ...] = (),
           console: "Console | None" = None, note: str = "",
           whole: tuple[str, ...] = (), min_widths: dict[str, int] | None = None) -> None:
    """A table on `console`: cells of `whole` columns never wrap (dates, short ids), the
    others fold to fit the width (no narrower than `min_widths`); `note` under it."""
    from rich import box  # rich only when a table is drawn: fast --help
    from rich.table import Table
    from rich.text import Text

    console = console or _console()
    table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, padding=(0, 1, 0, 0), pad_edge=False,
                  caption=Text(note) if note else None, caption_justify="left")
    for name in columns:
        table.add_column(Text(name), justify="right" if name in right else "left",
                         no_wrap=name in right or name in whole, overflow="fold",
                         min_width=(min_widths or {}).get(name))
    for row in rows:
        table.add_row(*[_cell(v) for v in row])
    console.print(table)


def _shortened_note(shown: bool) -> str:
    return (f"ids shortened (…) to fit: --json or {NARROW}+ columns show them whole"
            if shown else "")


def balances_cmd(customer: CustomerOption = None, as_json: JsonOption = False,
                 db: DbOption = None) -> None:
    """Each customer's balance and opening balance (balance = opening - posted ledger)."""
    # heavy: pandas, SQLAlchemy; keeps --version fast
    from billing_jobs.run.stages import check_customers
    from billing_jobs.store import views

    engine = options.upgraded_engine(db)
    wanted = list(customer) if customer else None
    check_customers(engine, wanted)
    rows = [_with_money(r, ("balance", "opening_balance"))
            for r in views.balances(engine, wanted)]
    if as_json:
        return _emit_json(rows)
    rows = inert(rows)
    _table(f"balances: {len(rows)} customer(s)",
           ["customer_id", "name", "currency", "balance", "opening_balance"],
           [[r["customer_id"], r["name"], r["currency"], r["balance"], r["opening_balance"]]
            for r in rows], right=("balance", "opening_balance"))


def ledger_cmd(
    customer: Annotated[str, typer.Option("--customer", metavar="ID", help="customer id")],
    from_: Annotated[Optional[str], typer.Option(
        "--from", metavar="YYYY-MM-DD", help="first run date (included)")] = None,
    to: Annotated[Optional[str], typer.Option(
        "--to", metavar="YYYY-MM-DD", help="last run date (included)")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Every ledger row of one customer, in posting order: charges, corrections,
    reversals and adjustments (debit > 0, credit < 0)."""
    # heavy: pandas, SQLAlchemy; keeps --version fast
    from billing_jobs.run.stages import check_customers
    from billing_jobs.store import views

    first = parse_date(from_, "--from") if from_ is not None else None
    last = parse_date(to, "--to") if to is not None else None
    if first and last and first > last:
        raise UsageError(f"--from {first} is after --to {last}: give --from <= --to")
    engine = options.upgraded_engine(db)
    check_customers(engine, [customer])
    rows = [_with_money(r, ("amount",)) for r in views.ledger(engine, customer, first, last)]
    if as_json:
        return _emit_json(rows)
    rows, customer = inert(rows), inert(customer)
    console = _console()
    if console.width >= NARROW:
        _table(f"ledger of {customer}: {len(rows)} row(s)",
               ["posted_at", "run_date", "kind", "entry", "assignment_id", "period", "qty",
                "amount", "currency", "status", "reason", "run_id"],
               [[_stamp(r["posted_at"], False), r["run_date"], r["kind"], r["entry"],
                 r["assignment_id"], f"{r['period_start']}..{r['period_end'] or ''}",
                 r["quantity"], r["amount"], r["currency"], r["status"], r["reason"],
                 r["run_id"]] for r in rows],
               right=("amount", "qty"), console=console)
        return
    # compact: two lines a row where it saves width; run ids shortened
    _table(f"ledger of {customer}: {len(rows)} row(s)",
           ["run_date\nposted", "kind\nentry", "assign-\nment", "period", "qty", "amount",
            "status", "reason", "run_id"],
           [[f"{r['run_date']}\n{r['posted_at']:%m-%d %H:%M}" if r["posted_at"]
             else r["run_date"], f"{r['kind']}\n{r['entry']}", r["assignment_id"],
             f"{r['period_start']}\n..{r['period_end'] or ''}", r["quantity"],
             f"{r['amount']} {r['currency']}", r["status"], r["reason"],
             _short(r["run_id"], True)] for r in rows],
           right=("amount", "qty"), console=console,
           min_widths={"kind\nentry": 13, "reason": 10},
           whole=("run_date\nposted", "period", "status", "run_id"),
           note=_shortened_note(any(len(str(r["run_id"] or "")) > ID_CHARS + 1
                                    for r in rows)))


MAX_LAST = 1_000_000


def _took(started: datetime | None, finished: datetime | None) -> str | None:
    if started is None or finished is None:
        return None
    seconds = max(0, round((finished - started).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds < 7200 else f"{seconds // 3600}h"


def _status(r: dict) -> str:
    """The status, and for a `running` record whose process is gone (or elsewhere) that."""
    return f"{r['status']}\n({r['process']})" if r.get("process") else str(r["status"])


def runs_cmd(
    last: Annotated[int, typer.Option("--last", metavar="N", help="how many runs, newest first")] = 20,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The latest run records: date, mode, status (a `running` record whose process is gone
    says so), who started it and when, its lines (new = posted by it, or that a simulation
    would post / all it computed), what it charged per currency and its report folder."""
    from billing_jobs.store import runs  # heavy: SQLAlchemy; keeps --version fast

    if not 1 <= last <= MAX_LAST:
        raise UsageError(f"--last {last}: give a number of runs from 1 to {MAX_LAST}")
    rows = runs.history(options.upgraded_engine(db), settings.report_dir(), last)
    if as_json:
        return _emit_json(rows)
    rows = inert(rows)
    console = _console()
    narrow = console.width < NARROW
    charged = ["\n".join(f"{cur} {t['amount']}" for cur, t in r["totals"].items())
               for r in rows]
    if not narrow:
        _table(f"runs: the last {len(rows)}",
               ["run_id", "run_date", "mode", "status", "started_by", "started_at", "took",
                "new/lines", "charged", "report_folder"],
               [[r["run_id"], r["run_date"], r["mode"], _status(r), r["started_by"],
                 _stamp(r["started_at"], False), _took(r["started_at"], r["finished_at"]),
                 f"{r['new_lines']}/{r['lines']}", c, r["report_folder"]]
                for r, c in zip(rows, charged)],
               right=("new/lines", "took"), console=console)
        return
    # compact: two lines a row where it saves width; run ids shortened
    _table(f"runs: the last {len(rows)}",
           ["run_id", "run_date\nmode", "status", "started", "by", "new/\nlines", "charged",
            "report_folder"],
           [[_short(r["run_id"], True), f"{r['run_date']}\n{r['mode']}", _status(r),
             _stamp(r["started_at"], True), r["started_by"], f"{r['new_lines']}/{r['lines']}",
             c, r["report_folder"]] for r, c in zip(rows, charged)],
           right=("new/\nlines",), console=console,
           whole=("run_id", "run_date\nmode", "started"), note=_shortened_note(bool(rows)))


def unposted_cmd(as_json: JsonOption = False, db: DbOption = None) -> None:
    """Billing dates not posted for all customers since the first full post, with why
    (up to yesterday in the billing time zone, $BILLING_TZ, and every gap between posts)."""
    from billing_jobs.store import views  # heavy: SQLAlchemy; keeps --version fast

    from zoneinfo import ZoneInfo  # with its tz path lookup: not at import; fast --help

    today = datetime.now(ZoneInfo(zone(None))).date()
    rows = views.unposted(options.upgraded_engine(db), today)
    if as_json:
        return _emit_json(rows)
    rows = inert(rows)
    _table(f"unposted: {len(rows)} billing date(s)", ["run_date", "reason", "post_attempts"],
           [[r["run_date"], r["reason"], r["post_attempts"]] for r in rows],
           right=("post_attempts",))


def register(app: typer.Typer) -> None:
    app.command("balances")(balances_cmd)
    app.command("ledger")(ledger_cmd)
    app.command("runs")(runs_cmd)
    app.command("unposted")(unposted_cmd)
