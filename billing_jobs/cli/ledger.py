"""`billing-jobs adjust | rebill | reverse`: the correction commands (wiring only).

Each prints the rows it wrote (or would write) with amounts as plain decimals, and exits
0 on success, 1 when the database refused, 2 for bad arguments (like `run`).
"""

from datetime import datetime
from typing import Annotated, List, Optional

import typer

from billing_jobs.cli.options import err, out, parse_date, zone
from billing_jobs.core.errors import UsageError

# no metavar, unlike options.DbOption: `--help` of these commands stays as it was
DbOption = Annotated[Optional[str], typer.Option(
    "--db", help="SQLAlchemy database URL (default: $BILLING_DB_URL, else sqlite:///billing.db)")]


def _amount(text: str) -> int:
    from billing_jobs.core.money import parse_micros  # heavy: pandas; keeps --version fast

    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    try:
        return sign * parse_micros(s[1:] if sign < 0 else s.lstrip("+"))
    except ValueError as exc:
        raise UsageError(f"--amount: {exc}") from None


def _show(written, what: str, simulate: bool) -> None:
    """The rows written (or, simulating, that would be written), amounts as plain decimals in
    the currency's minor unit. Text from data (ids, reasons) is printed as typed, never read
    as markup (#28 point 1): a command that committed always gets to say what it wrote."""
    from billing_jobs.core.money import format_amount  # heavy: pandas; keeps --version fast

    from billing_jobs.cli.views import inert  # control characters as visible escapes

    verb = "would write" if simulate else "wrote"
    count = len(written.rows) if simulate else written.count
    out.print(f"{what}: {verb} {count} row(s)", markup=False)
    for row, done in zip(written.rows, written.written):
        if not simulate and not done:
            continue
        row = inert(row)
        status = f"would be {row['status']}" if simulate else row["status"]
        out.print(f"  {row['customer_id']}  {row['assignment_id'] or '-'}  {row['kind']}  "
                  f"{row['period_start']}  rev {row['revision']}  {row['entry']}  "
                  f"{format_amount(int(row['amount_micros']), row['currency'])} {row['currency']}"
                  f"  {status}  {row['reason']}", markup=False)
    for note in getattr(written, "notes", []):
        out.print(f"  {inert(note)}", markup=False)


def _engine(db):
    """The engine, migrated; a bad URL is the database's error (exit 1), as it always was."""
    from billing_jobs.store.db import make_engine, upgrade  # heavy: SQLAlchemy

    engine = make_engine(db)
    upgrade(engine)
    return engine


def adjust_cmd(
    customer: Annotated[str, typer.Option("--customer", help="customer id")],
    amount: Annotated[str, typer.Option("--amount", help="decimal; > 0 debit, < 0 credit")],
    reason: Annotated[str, typer.Option("--reason", help="why (kept on the ledger row)")],
    key: Annotated[Optional[str], typer.Option(
        "--key", help="idempotency key of a deliberate further adjustment (default: from "
                      "customer, amount, reason and day)")] = None,
    post: Annotated[bool, typer.Option("--post", help="write it (default: show only)")] = False,
    db: DbOption = None,
) -> None:
    """A manual debit or credit of a customer, once per idempotency key."""
    from billing_jobs.corrections.adjust import adjust  # heavy: pandas; keeps --version fast

    from zoneinfo import ZoneInfo  # with its tz path lookup: not at import; fast --help

    today = datetime.now(ZoneInfo(zone(None))).date()  # the billing time zone's day
    written = adjust(_engine(db), customer, _amount(amount), reason, idempotency_key=key,
                     post=post, on=today, minor_unit_only=True)
    _show(written, "adjust", not post)
    from billing_jobs.cli.views import inert

    used = inert(written.rows[0]["idempotency_key"])
    if not post:
        out.print(f"idempotency key: {used} (adding --post posts under it, once)", markup=False)
    elif written.count:
        out.print(f"idempotency key: {used} (a retry writes nothing)", markup=False)
    else:
        out.print(f"idempotency key: {used}", markup=False)
        out.print("already written under this key: nothing changed (a deliberate second "
                  "adjustment needs its own --key)", markup=False)


def rebill_cmd(
    from_: Annotated[str, typer.Option("--from", help="first date YYYY-MM-DD")],
    to: Annotated[str, typer.Option("--to", help="last date YYYY-MM-DD")],
    customer: Annotated[Optional[List[str]], typer.Option("--customer", help="customer id (repeatable)")] = None,
    simulate: Annotated[bool, typer.Option("--simulate/--post", help="show only (default) or write")] = True,
    db: DbOption = None,
) -> None:
    """Post the differences between current data and the ledger, per posting key, once."""
    # heavy: pandas; keeps --version fast
    from billing_jobs.corrections.rebill import STEP_DAYS, rebill

    # billing dates only (2000-01-01..2199-12-31, as `run`): one line, exit 2 (#28 point 12)
    first, last = parse_date(from_, "--from"), parse_date(to, "--to")
    if last < first:
        raise UsageError(f"rebill: --to {last} is before --from {first}")
    days = (last - first).days + 1
    if days > STEP_DAYS:
        err.print(f"rebill: {first} to {last} is {days} day(s): in steps of {STEP_DAYS} billing "
                  "dates, each its own transaction"
                  + ("" if simulate else "; a step posted stands, a rerun completes the rest"),
                  markup=False)

    def progress(step: int, steps: int, since, until, rows: int) -> None:
        verb = "would write" if simulate else "wrote"
        what = (f"step {step}/{steps} ({since} to {until})" if step else
                "last step (keys whose old key a later step reversed)")
        err.print(f"rebill: {what}: {verb} {rows} row(s)", markup=False)

    written = rebill(_engine(db), first, last, customer or None, simulate=simulate,
                     progress=progress)
    _show(written, "rebill", simulate)


def reverse_cmd(
    run: Annotated[str, typer.Option("--run", help="run id of a post run")],
    simulate: Annotated[bool, typer.Option("--simulate/--post", help="show only (default) or write")] = True,
    db: DbOption = None,
) -> None:
    """Void a posted run: compensating rows, balances restored, grants withdrawn; once."""
    from billing_jobs.corrections.reverse import reverse  # heavy: pandas; keeps --version fast

    written = reverse(_engine(db), run, simulate=simulate)
    _show(written, "reverse", simulate)


def register(app: typer.Typer) -> None:
    app.command("adjust")(adjust_cmd)
    app.command("rebill")(rebill_cmd)
    app.command("reverse")(reverse_cmd)
