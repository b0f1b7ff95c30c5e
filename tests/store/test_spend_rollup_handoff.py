"""The spend rollup rows (#29) travel through the Airflow hand-off: written and read back
exactly (int64 micros, int64 day numbers), absent when None, and sharded by customer."""

from __future__ import annotations

import pandas as pd
from pandas.testing import assert_frame_equal

from billing_jobs.core.frames import DAILY_SPEND_COLUMNS, BillingInputs, empty_frame
from billing_jobs.core.frames import ASSIGNMENT_COLUMNS, CUSTOMER_COLUMNS, PACKAGE_COLUMNS
from billing_jobs.core.frames import USAGE_COLUMNS
from billing_jobs.staged import handoff


def _inputs(daily_spend):
    return BillingInputs(customers=empty_frame(CUSTOMER_COLUMNS),
                         packages=empty_frame(PACKAGE_COLUMNS),
                         assignments=empty_frame(ASSIGNMENT_COLUMNS),
                         usage=empty_frame(USAGE_COLUMNS), daily_spend=daily_spend)


def test_rollup_rows_round_trip_and_shard(tmp_path):
    rows = pd.DataFrame({"customer_id": pd.Series(["C1", "C1", "C2"], dtype=object),
                         "day": pd.Series([20_788, 20_789, 20_788], dtype="int64"),
                         "charged": pd.Series([2**62, 5, 0], dtype="int64"),
                         "credited": pd.Series([3, 5, 0], dtype="int64")},
                        columns=DAILY_SPEND_COLUMNS)
    back, _ = handoff.load_inputs(handoff.save_inputs(_inputs(rows), None, tmp_path / "a"))
    assert_frame_equal(back.daily_spend, rows, check_exact=True)
    none, _ = handoff.load_inputs(handoff.save_inputs(_inputs(None), None, tmp_path / "b"))
    assert none.daily_spend is None
    shard = handoff.filter_inputs(_inputs(rows), ["C2"])
    assert shard.daily_spend["customer_id"].tolist() == ["C2"]
    assert handoff.filter_inputs(_inputs(None), ["C2"]).daily_spend is None
