"""`billing-jobs balances | ledger | runs | unposted`: the operator views (wiring only).

Read-only: the services in billing_jobs/store/views.py read, this module prints. Amounts are
plain decimals in the currency's minor unit ('17.38' EUR, '9666' JPY); an amount finer than
the minor unit is shown with all its digits, never rounded away. `--json` prints ONE JSON
document, a list of objects with amounts as decimal strings and dates in ISO form; otherwise
a table. An unknown --customer exits 2 with one line, like `run`.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from typing import Annotated, Optional
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text  # cells as plain text: a name like '[red]' is not markup

from billing_jobs.cli import options
from billing_jobs.cli.options import CustomerOption, DbOption, JsonOption, parse_date, zone
from billing_jobs.core import settings
from billing_jobs.core.errors import UsageError


def money(micros: int, currency: str) -> str:
    """Plain decimal in the currency's minor unit; all digits when finer than that unit."""
    # heavy: pandas; keeps --version fast
    from billing_jobs.core.money import format_micros, format_minor, minor_digits

    step = 10 ** max(0, 6 - minor_digits(currency))
    return format_minor(micros, currency) if int(micros) % step == 0 else format_micros(micros)


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


def _emit_json(rows: list[dict]) -> None:
    sys.stdout.write(json.dumps(_plain(rows), indent=2, ensure_ascii=False) + "\n")


def _table(title: str, columns: list[str], rows: list[list], right: tuple[str, ...] = ()) -> None:
    console = options.out if options.out.is_terminal else Console(width=240, highlight=False,
                                                          soft_wrap=True)
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left",
                         no_wrap=name in right, overflow="fold")
    for row in rows:
        table.add_row(*[Text("-" if v is None or v == "" else str(_plain(v))) for v in row])
    console.print(table)


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
    _table(f"ledger of {customer}: {len(rows)} row(s)",
           ["posted_at", "run_date", "kind", "entry", "assignment_id", "period", "qty",
            "amount", "currency", "status", "reason", "run_id"],
           [[r["posted_at"].strftime("%Y-%m-%d %H:%M:%S") if r["posted_at"] else None,
             r["run_date"], r["kind"], r["entry"], r["assignment_id"],
             f"{r['period_start']}..{r['period_end'] or ''}", r["quantity"], r["amount"],
             r["currency"], r["status"], r["reason"], r["run_id"]] for r in rows],
           right=("amount", "qty"))


def runs_cmd(
    last: Annotated[int, typer.Option("--last", metavar="N", help="how many runs, newest first")] = 20,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The latest run records: date, mode, status, who started it, line counts, totals
    per currency and the report folder."""
    from billing_jobs.store import views  # heavy: SQLAlchemy; keeps --version fast

    if last < 1:
        raise UsageError(f"--last {last}: give a number of runs >= 1")
    rows = views.runs(options.upgraded_engine(db), settings.report_dir(), last)
    if as_json:
        return _emit_json(rows)
    _table(f"runs: the last {len(rows)}",
           ["run_date", "mode", "status", "started_by", "started_at", "finished_at", "lines",
            "totals", "report_folder", "run_id"],
           [[r["run_date"], r["mode"], r["status"], r["started_by"],
             r["started_at"].strftime("%Y-%m-%d %H:%M:%S") if r["started_at"] else None,
             r["finished_at"].strftime("%Y-%m-%d %H:%M:%S") if r["finished_at"] else None,
             r["lines"],
             "; ".join(f"{cur} {t['amount']}" for cur, t in r["totals"].items()),
             r["report_folder"], r["run_id"]] for r in rows], right=("lines",))


def unposted_cmd(as_json: JsonOption = False, db: DbOption = None) -> None:
    """Billing dates not posted for all customers since the first full post, with why
    (up to yesterday in the billing time zone, $BILLING_TZ, and every gap between posts)."""
    from billing_jobs.store import views  # heavy: SQLAlchemy; keeps --version fast

    today = datetime.now(ZoneInfo(zone(None))).date()
    rows = views.unposted(options.upgraded_engine(db), today)
    if as_json:
        return _emit_json(rows)
    _table(f"unposted: {len(rows)} billing date(s)", ["run_date", "reason", "post_attempts"],
           [[r["run_date"], r["reason"], r["post_attempts"]] for r in rows],
           right=("post_attempts",))


def register(app: typer.Typer) -> None:
    app.command("balances")(balances_cmd)
    app.command("ledger")(ledger_cmd)
    app.command("runs")(runs_cmd)
    app.command("unposted")(unposted_cmd)
