"""Upcoming charges: what the next N billing dates will charge, in one pass (issue #14).

`forecast(engine, first, days)` reads the inputs of the whole range once and validates them
once (`backfill_plan`), computes each billing date from exactly the inputs a run of that
date alone would use, and asks the ledger which of those lines are posted already
(read-only, the simulation's check). Nothing is written to the database: a forecast is
not a run, it has no run record and it can never post.

Free minutes (docs/free_minutes.md): the forecast starts from the free-minute state the
database holds (grant counters, the calls already credited, the live grants: read by
`plan_backfill`, as for a backfill) and carries it from date to date in memory
(`calc.free_minutes.advance_state`), as a simulated backfill does: each date consumes only
the calls no posted run and no earlier forecast date consumed, so no call is credited twice
and each date shows what its post will write once the dates before it are posted.

What a forecast cannot know: calls not made yet. A minimum-spend line of a period that is
still open is computed from the calls recorded so far, so it is the most the shortfall can
be (`provisional` True); every other line (setup, recurring, prorated) is exact for the data
as it is now.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Sequence

import pandas as pd
import sqlalchemy as sa

from billing_jobs.calc.billing import compute_billing
from billing_jobs.calc.free_minutes import advance_state
from billing_jobs.run.backfill_plan import night, plan_backfill
from billing_jobs.store.post import post_result
from billing_jobs.core.vocab import LineStatus
from billing_jobs.core.frames import (BillingResult, DUE_LINE_COLUMNS, Forecast, GRANT_COLUMNS,
                                      empty_frame)

MAX_FORECAST_DAYS = 366


def forecast(engine: sa.Engine, first: date, days: int, tz: str = "UTC",
             customer_ids: Sequence[str] | None = None) -> Forecast:
    """Simulate billing dates first .. first + days - 1 with the data as it is now."""
    if not 1 <= days <= MAX_FORECAST_DAYS:
        raise ValueError(f"--days {days}: give 1 to {MAX_FORECAST_DAYS} days")
    last = first + timedelta(days=days - 1)
    plan = plan_backfill(engine, first, last, customer_ids)
    lines, grants = [], []
    # free minutes, carried date to date: stored counters, credited calls, live grants
    counters, consumed, granted = plan.clean.counters, plan.clean.consumed, plan.clean.granted
    for day in pd.date_range(first, last, freq="D"):
        inputs, _ = night(plan, day.date())
        inputs.counters, inputs.consumed, inputs.granted = counters, consumed, granted
        result = compute_billing(inputs, day.date(), tz)
        counters, consumed = advance_state(counters, consumed, result.consumption,
                                           result.grant_counters)
        lines.append(result.due_lines)
        grants.append(result.grants)
    all_lines = _concat(lines, DUE_LINE_COLUMNS)
    all_grants = _concat(grants, GRANT_COLUMNS)
    checked = post_result(engine, BillingResult(all_lines, all_grants, pd.DataFrame()),
                          simulate=True, run_id="forecast")
    out_lines = checked.due_lines.copy()
    out_lines["status"] = out_lines["status"].replace({LineStatus.SIMULATED: LineStatus.UPCOMING})
    # a minimum-spend period still open today: its spend can only grow, its shortfall shrink
    today = pd.Timestamp(date.today())
    out_lines["provisional"] = ((out_lines["kind"] == "minimum_spend")
                                & (out_lines["status"] == "upcoming")
                                & (pd.to_datetime(out_lines["period_end"]) > today))
    out_grants = checked.grants.copy()
    out_grants["status"] = out_grants["status"].replace({LineStatus.SIMULATED: LineStatus.UPCOMING})
    cols = [c for c in ("package_id", "name", "description") if c in plan.clean.packages.columns]
    return Forecast(first=first, last=last, tz=tz,
                    lines=out_lines.sort_values(["run_date", "customer_id", "assignment_id",
                                                 "kind"], kind="stable").reset_index(drop=True),
                    grants=out_grants.reset_index(drop=True),
                    rejected=plan.rejected,
                    customers=plan.clean.customers.copy(),
                    packages=plan.clean.packages[cols].copy(), inputs=plan.clean)


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_frame(columns)
    return pd.concat(frames, ignore_index=True)[columns]
