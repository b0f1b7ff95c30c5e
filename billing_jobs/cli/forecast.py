"""`billing-jobs forecast`: upcoming charges of the next N billing dates (wiring only)."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer

from billing_jobs.cli.options import (MAX_RUN_DATE, CustomerOption, DbOption, ForceOption,
                                      OutOption, TzOption, check_out, err, out, parse_date,
                                      upgraded_engine, zone)
from billing_jobs.core import settings
from billing_jobs.core.errors import UsageError


def forecast(
    days: Annotated[int, typer.Option("--days", metavar="N",
                                      help="how many billing dates to simulate (1 to 366)")],
    from_: Annotated[Optional[str], typer.Option(
        "--from", metavar="YYYY-MM-DD",
        help="first billing date (default: tomorrow in the billing time zone)")] = None,
    customer: CustomerOption = None,
    out_dir: OutOption = None,
    force: ForceOption = False,
    tz: TzOption = None,
    db: DbOption = None,
) -> None:
    """Simulate the next N billing dates in one pass and write one report of what each
    customer will be charged, and when (charge notices). Nothing is posted."""
    # heavy: pandas, SQLAlchemy, the billing rules; keeps --version fast
    from billing_jobs.report.forecast_report import write_forecast_report
    from billing_jobs.run.forecast import MAX_FORECAST_DAYS, forecast as run_forecast
    from billing_jobs.run.stages import check_customers

    from zoneinfo import ZoneInfo  # with its tz path lookup: not at import; fast --help

    tz_name = zone(tz)
    if not 1 <= days <= MAX_FORECAST_DAYS:
        raise UsageError(f"--days {days}: give a number of billing dates from 1 to "
                         f"{MAX_FORECAST_DAYS}")
    first = (parse_date(from_, "--from") if from_ is not None
             else datetime.now(ZoneInfo(tz_name)).date() + timedelta(days=1))
    last = first + timedelta(days=days - 1)
    if last > MAX_RUN_DATE:
        raise UsageError(f"--from {first} --days {days} ends after {MAX_RUN_DATE}, "
                         "the last billing date this product handles")
    check_out(out_dir, force)
    engine = upgraded_engine(db)
    check_customers(engine, list(customer) if customer else None)
    with err.status(f"simulating {first}..{last}"):
        fc = run_forecast(engine, first, days, tz=tz_name,
                          customer_ids=list(customer) if customer else None)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    target = (Path(out_dir) if out_dir
              else settings.report_dir() / f"forecast_{first}_{days}d_{stamp}")
    folder, summary = write_forecast_report(fc, target)
    out.print(f"{summary['headline']} -> {folder / 'forecast.html'}", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(forecast)
