"""`billing-jobs run | backfill`: bill one date, or every date of a range (wiring only)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from billing_jobs.cli.options import (AllowFutureOption, CustomerOption, DbOption, ForceOption,
                                      OutOption, SimulateOption, StrictOption, TzOption,
                                      check_out, engine, err, out, parse_date, print_outcome,
                                      user, zone)
from billing_jobs.core.errors import UsageError


def run(
    date_: Annotated[str, typer.Option("--date", metavar="YYYY-MM-DD", help="billing date")],
    customer: CustomerOption = None,
    simulate: SimulateOption = True,
    strict: StrictOption = False,
    out_dir: OutOption = None,
    force: ForceOption = False,
    allow_future: AllowFutureOption = False,
    tz: TzOption = None,
    db: DbOption = None,
) -> None:
    """Bill one date: compute what is due, then simulate (report only) or post it. A post of
    a date after today (billing time zone) is refused unless --allow-future."""
    # heavy: pandas, SQLAlchemy, the billing rules; keeps --version fast
    from billing_jobs.run.local import run_billing
    from billing_jobs.run.request import RunRequest

    run_date = parse_date(date_, "--date")
    tz_name = zone(tz)
    check_out(out_dir, force)
    req = RunRequest(run_date=run_date, simulate=simulate, customer_ids=customer or None,
                     strict=strict, out_dir=out_dir, started_by=f"cli:{user()}", tz=tz_name,
                     allow_future=allow_future)
    req.refuse_future_post()  # before the database is even opened: nothing written
    opened = engine(db)
    with err.status(f"billing {req.run_date} ({req.mode})"):
        outcome = run_billing(opened, req)
    print_outcome(outcome)
    if not outcome.ok:
        raise typer.Exit(1)


def backfill(
    from_: Annotated[str, typer.Option("--from", metavar="YYYY-MM-DD", help="first date")],
    to: Annotated[str, typer.Option("--to", metavar="YYYY-MM-DD", help="last date (included)")],
    customer: CustomerOption = None,
    simulate: SimulateOption = True,
    strict: StrictOption = False,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", metavar="DIR",
        help="parent folder: one report folder per date inside it (DIR/YYYY-MM-DD)")] = None,
    force: ForceOption = False,
    allow_future: AllowFutureOption = False,
    tz: TzOption = None,
    db: DbOption = None,
) -> None:
    """Bill every date from --from to --to in order (stops at the first failure). A post
    whose range reaches past today (billing time zone) is refused before posting anything,
    unless --allow-future."""
    from rich.progress import Progress  # only a backfill draws a bar; keeps --version fast

    # heavy: pandas, SQLAlchemy, the billing rules; keeps --version fast
    from billing_jobs.core.money import format_minor
    from billing_jobs.report.writer import outcome_sentence
    from billing_jobs.run.local import backfill as run_backfill
    from billing_jobs.run.request import RunRequest

    first, last = parse_date(from_, "--from"), parse_date(to, "--to")
    if last < first:
        raise UsageError(f"--to {last} is before --from {first}")
    tz_name = zone(tz)
    check_out(out_dir, force)
    req = RunRequest(run_date=first, simulate=simulate, customer_ids=customer or None,
                     strict=strict, out_dir=out_dir, started_by=f"cli-backfill:{user()}",
                     tz=tz_name, allow_future=allow_future)
    req.refuse_future_post(last)  # the whole range, before anything is posted
    opened = engine(db)
    days = (last - first).days + 1
    with Progress(console=err.get(), transient=True) as progress:
        task = progress.add_task("backfill", total=days)

        def done(outcome):
            progress.advance(task)
            day = outcome.summary.get("run_date") or outcome.summary.get("run", {}).get("run_date", "")
            where = (f" -> {outcome.report_dir}" if outcome.report_dir
                     else "" if outcome.report_error else " (no report folder written)")
            line = f"{day}: {outcome_sentence(outcome.summary)}{where}"
            (out if outcome.ok else err).print(line, markup=False)
            if outcome.report_error:
                err.print(f"error: {outcome.report_error}", markup=False)

        outcomes = run_backfill(opened, req, last, on_date=done)
    # totals over the dates run
    new_lines = sum(o.summary.get("outcome", {}).get("new_lines", 0) for o in outcomes)
    old_lines = sum(o.summary.get("outcome", {}).get("already_posted_lines", 0) for o in outcomes)
    empty = sum(1 for o in outcomes if o.ok and o.report_dir is None)
    money: dict[str, int] = {}
    for o in outcomes:
        for cur, micros in o.summary.get("outcome", {}).get("new_micros", {}).items():
            money[cur] = money.get(cur, 0) + int(micros)
    amounts = ", ".join(f"{format_minor(v, c)} {c}" for c, v in sorted(money.items())) or "0"
    verb = "would post" if simulate else "posted"
    failed = [o for o in outcomes if not o.ok]
    out.print(f"backfill {first}..{last}: {len(outcomes)} of {days} date(s) run, "
              f"{verb} {new_lines} new line(s) for {amounts}; {old_lines} line(s) already "
              f"posted earlier (nothing charged twice); {empty} date(s) with nothing due"
              + (f"; stopped at {failed[0].summary.get('run_date', '?')} (failed)" if failed else ""),
              markup=False)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(backfill)
