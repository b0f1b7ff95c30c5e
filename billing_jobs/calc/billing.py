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
    if inputs.daily_spend is not None:  # minimum spend from the spend rollup (#29)
        if tz not in _UTC:
            raise ValueError(f"the spend rollup holds UTC days: a run billed in {tz} sums the "
                             "calls (store.load.load_inputs(spend_from='calls'))")
        if book.minimum_spend.any():
            spend_index = rollup_spend_index(inputs.daily_spend, customer_ids, free,
                                             inputs.consumed, run_day, usage)
    elif book.minimum_spend.any() and len(usage):
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


_UTC = ("UTC", "Etc/UTC")


def rollup_spend_index(daily_spend: pd.DataFrame, customer_ids: np.ndarray, free,
                       consumed: pd.DataFrame, run_day: int, usage: pd.DataFrame) -> SpendIndex:
    """The minimum-spend SpendIndex from the rollup rows (core.frames.DAILY_SPEND_COLUMNS):
    per (customer, UTC day) charged - credited (the stored credits, each call's up to its
    charge: store/spend_rollup.py) - the credits this run consumes now and nothing stored
    yet (the free-minute consumption of this date less what a post of it already recorded),
    each call's again up to its charge. That is the calls path's sum of max(charge - covered,
    0) over the same calls (docs/decisions.md, "Minimum spend from the spend rollup"); a
    day's total is clamped at 0 like a call's net (#28 item 4)."""
    codes = [customer_codes(daily_spend["customer_id"], customer_ids)]
    days = [daily_spend["day"].to_numpy(dtype="int64")]
    net = [daily_spend["charged"].to_numpy(dtype="int64")
           - daily_spend["credited"].to_numpy(dtype="int64")]
    today = free.consumption
    if len(today):
        # a customer a post of this date already consumed for is done: its consumption is
        # those recorded rows, already in the rollup; everyone else's is new (calc.free_minutes)
        own = consumed[_day_numbers(consumed["consumed_on"]) == run_day] if len(consumed) \
            else consumed
        new = today[~today["customer_id"].astype(str).isin(
            own["customer_id"].astype(str)).to_numpy()]
        if len(new):
            per_call = new.groupby([new["call_id"].astype(str).rename("call_id"),
                                    new["customer_id"].astype(str).rename("customer_id")],
                                   sort=False).agg(covered=("covered", "sum"),
                                                   parts=("covered", "size"),
                                                   start_time=("start_time", "first"))
            covered = np.array(per_call["covered"].to_numpy(dtype="int64"), dtype="int64")
            split = np.flatnonzero(per_call["parts"].to_numpy() > 1)
            if split.size:  # parts rounded half up may cover a micro more than the charge
                keys = per_call.index[split]
                # only the split calls' rows: an index over every call of the window cost
                # seconds at 1M assignments for the few calls a split covers
                mine = usage[usage["call_id"].astype(str).isin(
                    keys.get_level_values("call_id")).to_numpy()]
                charge = pd.Series(mine["charge"].to_numpy(dtype="int64"),
                                   index=pd.MultiIndex.from_arrays(
                                       [mine["call_id"].astype(str),
                                        mine["customer_id"].astype(str)]))
                at = charge.index.get_indexer(keys)
                cap = np.where(at >= 0, charge.to_numpy()[np.maximum(at, 0)], covered[split])
                covered[split] = np.minimum(covered[split], cap)
            call_customer = per_call.index.get_level_values("customer_id")
            codes.append(customer_codes(pd.Series(call_customer, dtype=object), customer_ids))
            days.append(call_days(per_call["start_time"], "UTC"))
            net.append(-covered)
    code = np.concatenate(codes)
    day = np.concatenate(days)
    value = np.concatenate(net)
    known = code >= 0
    code, day, value = code[known], day[known], value[known]
    if len(code):  # one total per (customer, day), clamped at 0
        total = pd.Series(value).groupby([code, day], sort=False).sum()
        code = total.index.get_level_values(0).to_numpy(dtype="int64")
        day = total.index.get_level_values(1).to_numpy(dtype="int64")
        value = np.maximum(total.to_numpy(dtype="int64"), 0)
    return SpendIndex(code, day, value)


def _day_numbers(s: pd.Series) -> np.ndarray:
    return pd.to_datetime(s).to_numpy().astype("datetime64[D]").astype("int64")


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
