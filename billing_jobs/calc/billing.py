"""compute_billing: everything due on one billing date, from validated input frames."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from billing_jobs.calc.book import build_book, customer_codes
from billing_jobs.calc.calendar import NEVER, OPEN, from_days, to_days
from billing_jobs.calc.charges import due_lines_on, sort_lines
from billing_jobs.calc.free_minutes import free_minutes_on
from billing_jobs.core.frames import BillingInputs, BillingResult
from billing_jobs.calc.grants import apply_cuts, grant_cuts, grants_on, hold_overlapping
from billing_jobs.calc.usage import PeriodSpend, SpendIndex, call_days


def day_number(d: date | str | pd.Timestamp) -> int:
    return int(np.datetime64(pd.Timestamp(d).date(), "D").astype("int64"))


def extended_ends(book) -> pd.DataFrame:
    ext = (book.end > NEVER) & (book.eff_end < OPEN) & (book.eff_end > book.end)
    rows = book.rows[ext]
    return pd.DataFrame({
        "assignment_id": rows["assignment_id"].to_numpy(),
        "customer_id": rows["customer_id"].to_numpy(),
        "end_date": from_days(book.end[ext]),
        "effective_end": from_days(book.eff_end[ext]),
    })


def compute_billing(inputs: BillingInputs, run_date, tz: str = "UTC",
                    spend: pd.DataFrame | None = None) -> BillingResult:
    """`spend` (calc.usage.SPEND_COLUMNS), when given, is the spend of each minimum-spend
    period ending on the date (net of `credited`), instead of summing the calls.

    Free minutes (calc/free_minutes.py) are consumed first: their credit lines join the due
    lines, and minimum-spend spend is each call's charge net of its covered part."""
    run_day = day_number(run_date)
    book = build_book(inputs.assignments, inputs.packages, inputs.customers, inputs.versions,
                      inputs.changes)

    usage = inputs.usage
    day_of_call = call_days(usage["start_time"], tz) if len(usage) else np.zeros(0, dtype="int64")
    customer_ids = np.sort(inputs.customers["customer_id"].to_numpy(dtype=object))
    call_customer = customer_codes(usage["customer_id"], customer_ids)

    # the stored grants as the cuts of changes up to this date leave them (SPEC 10)
    cuts = grant_cuts(book)
    granted = apply_cuts(inputs.granted, cuts, run_day)
    free = free_minutes_on(book, run_day, usage, day_of_call, inputs.counters, inputs.consumed,
                           granted)

    spend_index = None
    if book.minimum_spend.any() and len(usage):
        # only the calls of customers with a minimum-spend assignment are ever summed
        n_codes = len(customer_ids)
        committed = np.zeros(n_codes + 1, dtype=bool)  # the extra slot stands for -1
        committed[book.customer_code[book.minimum_spend]] = True
        committed[book.terms.customer_codes_of(book.minimum_spend)] = True  # transfers
        known = committed[np.where(call_customer >= 0, call_customer, n_codes)]
        net = usage["charge"].to_numpy(dtype="int64")[known]
        if len(free.covered_by_call):  # looked up for the summed calls only, by (call, customer)
            net = net - free.covered_of(usage["call_id"].to_numpy(dtype=object)[known],
                                        usage["customer_id"].to_numpy(dtype=object)[known])
        # a call's net charge is never below 0 (#28 item 4): a consumed call re-imported with a
        # lower charge must not make spend negative (a shortfall above the commitment)
        spend_index = SpendIndex(call_customer[known], day_of_call[known], np.maximum(net, 0))

    if spend is not None:  # spend per (assignment, period) given
        spend_index = PeriodSpend(spend, customer_ids)

    # a grant overlapping a live stored grant of its assignment is held (#17 item 2)
    grants, held_grants = hold_overlapping(grants_on(book, run_day), granted)
    return BillingResult(
        due_lines=sort_lines([due_lines_on(book, run_day, spend_index, book.customer_code),
                              free.credit_lines]),
        grants=grants,
        held_grants=held_grants,
        utilisation=free.utilisation,
        extended_ends=extended_ends(book),
        consumption=free.consumption,
        grant_counters=free.grant_counters,
        grant_cuts=cuts_on(cuts, free.grant_counters, run_day),
    )


def cuts_on(cuts: pd.DataFrame, grant_counters: pd.DataFrame, run_day: int) -> pd.DataFrame:
    """The grant cuts the post of `run_day` applies, each never below the seconds its grant
    had given by then (its counter after the date)."""
    mine = cuts[to_days(cuts["run_date"].to_numpy()) == run_day].reset_index(drop=True)
    if not len(mine) or not len(grant_counters):
        return mine
    key = pd.MultiIndex.from_arrays([grant_counters["assignment_id"].astype(str),
                                     pd.to_datetime(grant_counters["period_start"])])
    at = key.get_indexer(pd.MultiIndex.from_arrays([mine["assignment_id"].astype(str),
                                                    pd.to_datetime(mine["period_start"])]))
    used = np.where(at >= 0, grant_counters["seconds_used"].to_numpy(dtype="int64")[at], 0)
    return mine.assign(seconds=np.maximum(mine["seconds"].to_numpy(dtype="int64"), used))
