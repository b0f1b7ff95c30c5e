"""Backfill of N billing dates for far less than N runs: load and validate once, compute
each date.

`plan_backfill(engine, first, last)` reads the inputs of the whole range once
(`store.load.load_range`: per customer the calls from the first day any date needs) and
validates them once; `night(plan, day)` then gives billing date `day` exactly the inputs a
run of that date alone would have (`load_inputs` + `validate_inputs`): the same customers,
packages and assignments, and the calls of the customers that date needs from the first day
it needs them (`calc.usage.usage_needs`), cut from the range's frames without another read.

Validation rules are per row, so validating the range once rejects each call as validating
its night would; the one exception is the rule on a customer's charges adding up to more
than the maximum amount (1e12 units), judged over the range's calls.

The run hook (billing_jobs/run/local.py): `run_billing` taking the
night's `(clean inputs, rejected)` instead of running `load_stage`, and `backfill` building
one plan before its loop:

    plan = plan_backfill(engine, first, last, customer_ids)
    for day in dates:
        run_billing(db_url, req, engine=engine, loaded=night(plan, day))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.frames import BillingInputs
from billing_jobs.calc.usage import needed_calls, usage_needs


@dataclass
class BackfillPlan:
    first: date
    last: date
    raw: BillingInputs  # the range's raw frames (as loaded)
    clean: BillingInputs  # validated once
    rejected: pd.DataFrame  # entity, id, reason


def plan_backfill(engine: sa.Engine, first: date, last: date,
                  customer_ids: Sequence[str] | None = None) -> BackfillPlan:
    """Load the range's inputs once and validate them once."""
    from billing_jobs.checks import validate_inputs
    from billing_jobs.store.load import load_range

    raw = load_range(engine, first, last, customer_ids)
    clean, rejected = validate_inputs(raw)
    return BackfillPlan(first, last, raw, clean, rejected)


def _day(d: date) -> int:
    return int(np.datetime64(d, "D").astype("int64"))


def night(plan: BackfillPlan, day: date) -> tuple[BillingInputs, pd.DataFrame]:
    """Billing date `day`'s (clean inputs, rejected rows), as a run of that date alone
    would load and validate them."""
    if not plan.first <= day <= plan.last:
        raise ValueError(f"{day} is outside the backfill range {plan.first} .. {plan.last}")
    raw = plan.raw
    needs = usage_needs(raw.customers, raw.packages, _held(raw), _day(day), _lookback())
    raw_in = needed_calls(raw.usage, needs, day)
    usage = plan.clean.usage[needed_calls(plan.clean.usage, needs, day)].reset_index(drop=True)
    rej = plan.rejected
    is_call = (rej["entity"] == "usage").to_numpy()
    if is_call.any():
        ids_in = set(raw.usage["call_id"].astype(str).to_numpy()[raw_in])
        keep = ~is_call | rej["id"].astype(str).isin(ids_in).to_numpy()
        rej = rej[keep].reset_index(drop=True)
    # the terms over time (SPEC 10) are the range's: the same for every date of it
    inputs = BillingInputs(customers=plan.clean.customers, packages=plan.clean.packages,
                           assignments=plan.clean.assignments, usage=usage,
                           versions=plan.clean.versions, changes=plan.clean.changes)
    return inputs, rej


def _held(raw: BillingInputs) -> pd.DataFrame:
    """The assignments under every customer and package they hold over time, as the loader
    reads usage needs for them (store.load.held_assignments)."""
    from billing_jobs.store.load import held_assignments

    return held_assignments(raw.assignments, raw.changes)


def _lookback() -> int:
    from billing_jobs.store.load import USAGE_LOOKBACK_DAYS

    return USAGE_LOOKBACK_DAYS
