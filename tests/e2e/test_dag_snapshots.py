"""billing_jobs.staged.handoff: the Parquet hand-offs between the DAG's tasks, and customer sharding."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from billing_jobs.staged import handoff as snapshots
from billing_jobs.calc.billing import compute_billing
from billing_jobs.core.frames import BillingResult
from tests.calc.strategies import assignment, call, customer, make_inputs, package


def _inputs():
    customers = [customer(f"C{i}", currency="EUR", balance=f"{i}.5") for i in range(1, 8)]
    customers.append(customer("J1", currency="JPY", balance=-100_000_000))
    packages = [
        package("P-MON", retail="9.99", cost="4", setup_retail="25", frequency="monthly",
                match="1,15"),
        # starts on a billing date: setup and recurring lines on the same day (the engine's
        # kind order, not the alphabet's, must survive sharding)
        package("P-SET", retail="3", setup_retail="1", setup_cost="0.5", frequency="daily"),
        package("P-FM", type="free_minutes", retail="5", free_minutes=100, destination="^44",
                frequency="monthly", prorate=True),
        package("P-MIN", retail="50", minimum_spend=True, frequency="monthly", minimum_days=60),
        package("P-WK", retail="1.25", frequency="weekly", match="1|3|5"),
        package("P-JPY", retail="334", currency="JPY", frequency="daily"),
    ]
    assignments = []
    for i in range(1, 8):
        cid = f"C{i}"
        assignments += [
            assignment(f"A{i}-mon", cid, "P-MON", quantity=i, start="2026-12-15"),
            assignment(f"A{i}-fm", cid, "P-FM", start=f"2027-01-{10 + i:02d}",
                       free_minutes=None if i % 2 else 30),
            assignment(f"A{i}-min", cid, "P-MIN", start="2026-12-01",
                       end="2027-01-10" if i == 3 else None, auto_decrement=bool(i % 2)),
            assignment(f"A{i}-wk", cid, "P-WK", start="2027-01-01"),
            assignment(f"A{i}-set", cid, "P-SET", start=f"2027-01-{14 + i:02d}"),
        ]
    assignments.append(assignment("AJ", "J1", "P-JPY", start="2027-01-01"))
    usage = [call(f"U{i}-{k}", f"C{i}", at=f"2027-01-{20 + k:02d}T1{k}:00:00Z",
                  destination="+4420" if k % 2 else "+12125550100", duration_s=60 * (k + 1),
                  charge=f"{k}.25")
             for i in range(1, 8) for k in range(5)]
    return make_inputs(customers, packages, assignments, usage)


def _rejected():
    return pd.DataFrame({"entity": ["packages", "usage"], "id": ["P-BAD", "U9"],
                         "reason": ["negative retail", "unknown customer X"]})


def test_inputs_round_trip_keeps_every_dtype_and_value(tmp_path):
    inputs, rejected = _inputs(), _rejected()
    folder = snapshots.save_inputs(inputs, rejected, tmp_path / "inputs")
    back, back_rejected = snapshots.load_inputs(folder)
    for name in snapshots.INPUT_FRAMES:
        assert_frame_equal(getattr(back, name), getattr(inputs, name), check_exact=True)
    assert_frame_equal(back_rejected, rejected)
    assert back.assignments["start_date"].dtype == "datetime64[s]"
    assert back.assignments["free_minutes"].dtype == "Int64"
    assert back.assignments["free_minutes"].isna().any()
    assert back.usage["start_time"].dtype == "datetime64[us, UTC]"
    assert back.customers["balance"].dtype == "int64"
    # object column with None stays object with None (not NaN, not the str dtype)
    fm = back.packages["frequency_match"]
    assert fm.dtype == object and fm.map(lambda v: v is None).sum() == 4


def test_result_round_trip_with_status_and_empty_frames(tmp_path):
    result = compute_billing(_inputs(), date(2027, 1, 15), "UTC")
    assert len(result.due_lines) and len(result.grants)
    settled = BillingResult(result.due_lines.assign(status="simulated"),
                            result.grants.iloc[0:0].assign(status=pd.Series(dtype=object)),
                            result.utilisation, result.extended_ends)
    back = snapshots.load_result(snapshots.save_result(settled, tmp_path / "r"))
    for name in snapshots.RESULT_FRAMES:
        assert_frame_equal(getattr(back, name), getattr(settled, name), check_exact=True)
    assert back.due_lines["amount"].dtype == "int64"
    assert back.due_lines["period_end"].dtype == "datetime64[s]"


def test_incomplete_snapshot_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a complete snapshot"):
        snapshots.load_inputs(tmp_path)


@pytest.mark.parametrize("n_shards", [1, 2, 3, 4, 16])
@pytest.mark.parametrize("run_date", ["2027-01-01", "2027-01-15", "2027-01-16", "2027-01-22",
                                      "2027-02-01"])
def test_sharded_compute_equals_whole_compute(n_shards, run_date):
    inputs = _inputs()
    day = date.fromisoformat(run_date)
    whole = compute_billing(inputs, day, "UTC")
    shards = snapshots.shard_customers(inputs.customers["customer_id"], n_shards)
    parts = [compute_billing(snapshots.filter_inputs(inputs, ids), day, "UTC") for ids in shards]
    merged = snapshots.concat_results(parts)
    for name in snapshots.RESULT_FRAMES:
        assert_frame_equal(getattr(merged, name), getattr(whole, name).reset_index(drop=True),
                           check_exact=True, obj=name)


def test_shard_customers_partitions_all_customers():
    ids = [f"C{i:05d}" for i in range(1000)] + ["C00001"]  # a duplicate
    shards = snapshots.shard_customers(ids, 4)
    assert len(shards) == 4
    flat = [c for s in shards for c in s]
    assert sorted(flat) == sorted(set(ids)) and len(flat) == len(set(flat))
    assert all(s == sorted(s) for s in shards)
    assert min(len(s) for s in shards) > 150  # roughly balanced
    assert snapshots.shard_customers([], 3) == [[], [], []]
    with pytest.raises(ValueError):
        snapshots.shard_customers(ids, 0)


def test_shards_are_pinned_not_hash_seed_dependent():
    # A literal: the same on every machine, process, Python hash seed and release (blake2b).
    assert snapshots.shard_customers(["alice", "bob", "C1", "C2", "C3", "Ω-7"], 3) == [
        ["C3"], ["C2", "alice", "bob", "Ω-7"], ["C1"]]


def test_filter_inputs_keeps_the_customers_rows_and_all_packages():
    inputs = _inputs()
    part = snapshots.filter_inputs(inputs, ["C2", "J1"])
    assert set(part.customers["customer_id"]) == {"C2", "J1"}
    assert set(part.assignments["customer_id"]) == {"C2", "J1"}
    assert set(part.usage["customer_id"]) == {"C2"}
    assert_frame_equal(part.packages, inputs.packages)
    assert part.assignments.dtypes.equals(inputs.assignments.dtypes)


def _terms_inputs():
    from tests.calc.strategies import change, version, with_terms

    return with_terms(_inputs(), versions=[
        version("P-MON", "2027-01-15", retail="12.50", cost="4", setup_retail="25"),
        version("P-WK", "2027-01-08", retail="2", cost="0")], changes=[
        change(1, "2027-01-10", "A1-min", customer_id="C2"),  # minimum spend moves to C2
        change(2, "2027-01-12", "A3-mon", quantity=5),
        change(3, "2027-01-05", "A4-wk", customer_id="C5"),
        change(4, "2027-01-20", "A5-wk", cancel=True)])


@pytest.mark.parametrize("n_shards", [2, 3, 4, 16])
@pytest.mark.parametrize("run_date", ["2027-01-15", "2027-01-16", "2027-01-22", "2027-02-01"])
def test_sharded_compute_keeps_price_versions_and_changes(n_shards, run_date):
    """Every shard sees the price versions and its assignments' changes, and a transfer's two
    customers share a shard: sharded lines equal the whole computation's."""
    inputs = _terms_inputs()
    day = date.fromisoformat(run_date)
    whole = compute_billing(inputs, day, "UTC")
    links = snapshots.transfer_links(inputs)
    assert sorted(links) == [("C1", "C2"), ("C4", "C5")]
    shards = snapshots.shard_customers(inputs.customers["customer_id"], n_shards, links)
    where = {c: i for i, s in enumerate(shards) for c in s}
    assert where["C1"] == where["C2"] and where["C4"] == where["C5"]
    parts = [compute_billing(snapshots.filter_inputs(inputs, ids), day, "UTC") for ids in shards]
    merged = snapshots.concat_results(parts)
    for name in snapshots.RESULT_FRAMES:
        assert_frame_equal(getattr(merged, name), getattr(whole, name).reset_index(drop=True),
                           check_exact=True, obj=name)


def test_a_price_version_reaches_every_shard():
    inputs = _terms_inputs()
    whole = compute_billing(inputs, date(2027, 2, 1), "UTC").due_lines
    monthly = whole[(whole["package_id"] == "P-MON") & (whole["kind"] == "recurring")]
    assert len(monthly) and (monthly["unit_price"] == 12_500_000).all()
    part = snapshots.filter_inputs(inputs, ["C6"])
    assert len(part.versions) == 2 and part.changes.empty
    lines = compute_billing(part, date(2027, 2, 1), "UTC").due_lines
    assert set(lines.loc[lines["package_id"] == "P-MON", "unit_price"]) == {12_500_000}
