"""`billing-jobs forecast`: upcoming charges of the next N billing dates (wiring only)."""



from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Optional
from zoneinfo import ZoneInfo

import typer


def register(app: typer.Typer) -> None:
    from billing_jobs.cli import app as cli

    @app.command()
    def forecast(
        days: Annotated[int, typer.Option("--days", metavar="N",
                                          help="how many billing dates to simulate (1 to 366)")],
        from_: Annotated[Optional[str], typer.Option(
            "--from", metavar="YYYY-MM-DD",
            help="first billing date (default: tomorrow in the billing time zone)")] = None,
        customer: cli.CustomerOption = None,
        out_dir: cli.OutOption = None,
        force: cli.ForceOption = False,
        tz: cli.TzOption = None,
        db: cli.DbOption = None,
    ) -> None:
        """Simulate the next N billing dates in one pass and write one report of what each
        customer will be charged, and when (charge notices). Nothing is posted."""
        from billing_jobs.core.errors import UsageError
        from billing_jobs.run.forecast import MAX_FORECAST_DAYS, forecast as run_forecast
        from billing_jobs.run.request import report_root
        from billing_jobs.run.stages import check_customers
        from billing_jobs.report.forecast_report import write_forecast_report
        from billing_jobs.store.db import upgrade

        zone = cli._tz(tz)
        if not 1 <= days <= MAX_FORECAST_DAYS:
            raise UsageError(f"--days {days}: give a number of billing dates from 1 to "
                             f"{MAX_FORECAST_DAYS}")
        first = (cli._parse_date(from_, "--from") if from_ is not None
                 else datetime.now(ZoneInfo(zone)).date() + timedelta(days=1))
        last = first + timedelta(days=days - 1)
        if last > cli.MAX_RUN_DATE:
            raise UsageError(f"--from {first} --days {days} ends after {cli.MAX_RUN_DATE}, "
                             "the last billing date this product handles")
        cli._check_out(out_dir, force)
        engine = cli._engine(db)
        upgrade(engine)
        check_customers(engine, list(customer) if customer else None)
        with cli.err.status(f"simulating {first}..{last}"):
            fc = run_forecast(engine, first, days, tz=zone,
                              customer_ids=list(customer) if customer else None)
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        target = Path(out_dir) if out_dir else report_root() / f"forecast_{first}_{days}d_{stamp}"
        folder, summary = write_forecast_report(fc, target)
        cli.out.print(f"{summary['headline']} -> {folder / 'forecast.html'}", markup=False)
