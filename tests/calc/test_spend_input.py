"""Minimum spend from a spend-per-(assignment, period) input frame: the same lines as from
the calls, and `credited` is taken off the spend."""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np
import pandas as pd

from billing_jobs.checks import validate_inputs
from billing_jobs.calc.billing import compute_billing
from billing_jobs.calc.billing import day_number
from billing_jobs.calc.book import build_book, customer_codes
from billing_jobs.calc.usage import SPEND_COLUMNS, SpendIndex, call_days, spend_from_calls
from billing_jobs.core.frames import BillingInputs
from billing_jobs.demo.sample_data import generate

DAY = date(2026, 12, 1)


def _inputs() -> BillingInputs:
    frames = generate(150, 2_000, 8_000, seed=3, as_of=date(2026, 11, 30))
    clean, _ = validate_inputs(BillingInputs(**frames))
    # calls of the minimum-spend customers inside the period ending on DAY (one each)
    ms = compute_billing(clean, DAY).due_lines
    ms = ms[ms["kind"] == "minimum_spend"]
    extra = pd.DataFrame({
        "call_id": [f"X{i}" for i in range(len(ms))],
        "customer_id": ms["customer_id"].to_numpy(dtype=object).astype(str),
        "start_time": pd.to_datetime(ms["period_start"].to_numpy()).tz_localize("UTC")
        .as_unit("us") + pd.Timedelta(hours=12),
        "destination": "4420",
        "duration_s": 60,
        "charge": 1_000_000,
    })
    extra = extra.astype({"duration_s": "int64", "charge": "int64"})
    usage = pd.concat([clean.usage, extra.astype(clean.usage.dtypes.to_dict())],
                      ignore_index=True)
    return dataclasses.replace(clean, usage=usage)


def _spend(inputs: BillingInputs) -> pd.DataFrame:
    book = build_book(inputs.assignments, inputs.packages, inputs.customers)
    ids = np.sort(inputs.customers["customer_id"].to_numpy(dtype=object))
    codes = customer_codes(inputs.usage["customer_id"], ids)
    index = SpendIndex(codes, call_days(inputs.usage["start_time"]),
                       inputs.usage["charge"].to_numpy(dtype="int64"))
    return spend_from_calls(book, day_number(DAY), index)


def test_spend_frame_bills_as_the_calls_and_credits_reduce_spend():
    inputs = _inputs()
    base = compute_billing(inputs, DAY)
    ms = base.due_lines[base.due_lines["kind"] == "minimum_spend"]
    assert len(ms) >= 1 and (ms["amount"] < ms["unit_price"] * ms["quantity"]).any()
    spend = _spend(inputs)
    assert list(spend.columns) == SPEND_COLUMNS and (spend["credited"] == 0).all()
    assert sorted(spend["assignment_id"]) == sorted(ms["assignment_id"])
    assert (spend["spend"] > 0).any()

    # the calls are no longer needed: the frame carries the spend
    no_calls = dataclasses.replace(inputs, usage=inputs.usage.iloc[:0])
    got = compute_billing(no_calls, DAY, spend=spend)
    pd.testing.assert_frame_equal(got.due_lines, base.due_lines)

    # everything spent was credited (free minutes covered it): the full commitment is due
    credited = spend.assign(credited=spend["spend"])
    full = compute_billing(inputs, DAY, spend=credited).due_lines
    fm = full[full["kind"] == "minimum_spend"]
    nothing = compute_billing(dataclasses.replace(
        inputs, usage=inputs.usage.iloc[:0]), DAY).due_lines
    pd.testing.assert_frame_equal(fm.reset_index(drop=True), nothing[
        nothing["kind"] == "minimum_spend"].reset_index(drop=True))
    assert (fm["amount"].to_numpy() >= ms["amount"].to_numpy()).all()
