"""load_inputs: contract dtypes, customer filter, usage window."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest
import sqlalchemy as sa

from billing_jobs.checks import validate_inputs
from billing_jobs.core.frames import (
    ASSIGNMENT_COLUMNS,
    CUSTOMER_COLUMNS,
    PACKAGE_COLUMNS,
    USAGE_COLUMNS,
)
from billing_jobs.store.load import load_inputs
from billing_jobs.store import load as load_module
from billing_jobs.store.tables import assignments, customers, packages, usage

from tests.store.helpers import fresh_engine

D = date(2027, 3, 1)
WINDOW = D - timedelta(days=400)  # the explicit look-back form (every call since)


def _seed(engine, n_customers: int = 4) -> None:
    utc = timezone.utc
    with engine.begin() as conn:
        conn.execute(customers.insert(), [
            {"customer_id": f"C{i}", "name": f"N{i}", "currency": "EUR", "balance_micros": i * 1_000_001}
            for i in range(n_customers)
        ])
        conn.execute(packages.insert(), [{
            "package_id": "P1", "name": "DID", "type": "standard", "cost_micros": 1, "retail_micros": 2,
            "setup_cost_micros": 0, "setup_retail_micros": 0, "currency": "EUR", "frequency": "monthly",
            "frequency_match": None, "free_minutes": 0, "destination": None,
            "minimum_spend": False, "minimum_days": 0, "prorate": True, "description": "",
        }])
        conn.execute(assignments.insert(), [
            {"assignment_id": f"A{i}", "customer_id": f"C{i}", "package_id": "P1",
             "quantity": i + 1, "start_date": date(2027, 1, 1),
             "end_date": date(2027, 12, 31) if i % 2 else None,
             "auto_decrement": bool(i % 2), "free_minutes": 30 if i == 1 else None}
            for i in range(n_customers)
        ])
        calls = []
        for i in range(n_customers):
            for label, when in [
                ("old", datetime(2025, 1, 1, tzinfo=utc)),            # far before the window
                ("in", datetime(2027, 2, 15, 12, 30, 1, 5, tzinfo=utc)),
                ("edge", datetime(2027, 3, 1, 23, 59, 59, 999999, tzinfo=utc)),  # end of D
                ("future", datetime(2027, 3, 20, tzinfo=utc)),       # well after D
            ]:
                calls.append({"call_id": f"{label}-{i}", "customer_id": f"C{i}",
                              "start_time": when, "destination": "+4412", "duration_s": 60,
                              "charge_micros": 12_345})
        conn.execute(usage.insert(), calls)


def test_frames_follow_the_contract(db_url):
    engine = fresh_engine(db_url)
    _seed(engine)
    inputs = load_inputs(engine, D, usage_since=WINDOW)
    assert list(inputs.customers.columns) == CUSTOMER_COLUMNS
    assert list(inputs.packages.columns) == PACKAGE_COLUMNS
    assert list(inputs.assignments.columns) == ASSIGNMENT_COLUMNS
    assert list(inputs.usage.columns) == USAGE_COLUMNS
    assert inputs.customers["balance"].dtype == "int64"
    assert inputs.customers["balance"].tolist() == [0, 1_000_001, 2_000_002, 3_000_003]
    for col in ("cost", "retail", "setup_cost", "setup_retail", "free_minutes", "minimum_days"):
        assert inputs.packages[col].dtype == "int64", col
    assert inputs.packages["prorate"].dtype == bool and inputs.packages["prorate"].iloc[0]
    assert inputs.packages["destination"].iloc[0] == ""
    assert inputs.packages["frequency_match"].iloc[0] is None
    a = inputs.assignments
    assert a["start_date"].dtype == "datetime64[s]" and a["end_date"].dtype == "datetime64[s]"
    assert a["quantity"].dtype == "int64" and a["auto_decrement"].dtype == bool
    assert str(a["free_minutes"].dtype) == "Int64"
    assert a["free_minutes"].isna().tolist() == [True, False, True, True]
    assert a["end_date"].isna().tolist() == [True, False, True, False]
    u = inputs.usage
    assert str(u["start_time"].dtype) == "datetime64[us, UTC]"
    assert u["charge"].dtype == "int64" and u["duration_s"].dtype == "int64"
    assert pd.api.types.is_string_dtype(u["call_id"]) and pd.api.types.is_string_dtype(u["customer_id"])
    edge = u.set_index("call_id").loc["edge-0", "start_time"]
    assert edge == pd.Timestamp("2027-03-01T23:59:59.999999Z")
    engine.dispose()


def test_usage_window_and_customer_filter(db_url):
    engine = fresh_engine(db_url)
    _seed(engine)
    inputs = load_inputs(engine, D, usage_since=WINDOW)
    assert sorted(inputs.usage["call_id"]) == sorted(
        [f"in-{i}" for i in range(4)] + [f"edge-{i}" for i in range(4)])
    # a longer look-back brings the old calls in
    inputs = load_inputs(engine, D, usage_since=date(2024, 12, 1))
    assert len(inputs.usage) == 12
    inputs = load_inputs(engine, D, customer_ids=["C1", "C3", "nobody"],
                         usage_since=WINDOW)
    assert inputs.customers["customer_id"].tolist() == ["C1", "C3"]
    assert inputs.assignments["assignment_id"].tolist() == ["A1", "A3"]
    assert sorted(inputs.usage["call_id"]) == ["edge-1", "edge-3", "in-1", "in-3"]
    assert inputs.packages["package_id"].tolist() == ["P1"]
    inputs = load_inputs(engine, D, customer_ids=[])
    assert inputs.customers.empty and inputs.usage.empty and inputs.assignments.empty
    engine.dispose()


def test_empty_database_gives_empty_typed_frames(db_url):
    engine = fresh_engine(db_url)
    inputs = load_inputs(engine, D)
    assert inputs.customers.empty and inputs.packages.empty
    assert inputs.usage["charge"].dtype == "int64"
    assert str(inputs.usage["start_time"].dtype) == "datetime64[us, UTC]"
    assert inputs.assignments["start_date"].dtype == "datetime64[s]"
    engine.dispose()


def test_many_customer_ids_are_chunked(db_url):
    engine = fresh_engine(db_url)
    _seed(engine, n_customers=12)
    wanted = [f"C{i}" for i in range(0, 12, 2)] + [f"missing{i}" for i in range(12_000)]
    inputs = load_inputs(engine, D, customer_ids=wanted, usage_since=WINDOW)
    assert inputs.customers["customer_id"].tolist() == sorted(f"C{i}" for i in range(0, 12, 2))
    assert len(inputs.usage) == 12
    engine.dispose()


def test_unparsable_stored_values_reach_validation_and_are_rejected(tmp_path):
    """Rows that reached the database another way keep their bad values through the loader,
    so validation rejects them naming the value: an end date that does not parse is never an
    open end, a price that is not a number is never free. Only SQLite can hold such text in typed columns."""
    engine = fresh_engine(f"sqlite:///{tmp_path / 'b.db'}")
    _seed(engine, 1)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE assignments SET end_date = 'soon'"))
    # money that is not an integer never reaches the database (migration 0005's triggers)
    with pytest.raises(sa.exc.IntegrityError,
                       match="packages.retail_micros must be an integer number of micro-units"):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE packages SET retail_micros = 'free'"))
    inputs = load_inputs(engine, D)
    clean, rejected = validate_inputs(inputs)
    assert clean.assignments.empty and len(clean.packages) == 1
    reasons = " | ".join(rejected["reason"])
    assert "soon" in reasons
    assert set(rejected["entity"]) >= {"assignments"}
    engine.dispose()


def _pkg(pid: str, **kw) -> dict:
    row = {"package_id": pid, "name": pid, "type": "standard", "cost_micros": 1, "retail_micros": 2,
           "setup_cost_micros": 0, "setup_retail_micros": 0, "currency": "EUR", "frequency": "monthly",
           "frequency_match": None, "free_minutes": 0, "destination": None,
           "minimum_spend": False, "minimum_days": 0, "prorate": False, "description": ""}
    row.update(kw)
    return row


@pytest.mark.parametrize("dense_share", [0.0, 2.0], ids=["range-scan", "index-ranges"])
def test_a_night_reads_only_the_calls_the_date_needs(db_url, dense_share, monkeypatch):
    """Default read: per customer, the calls from the first day its minimum-spend period
    (ending on D) or its free minutes (the day before D and the late-call window of 7 days
    before it: the counters hold the rest) need; no calls for a customer with neither;
    never the whole history."""
    engine = fresh_engine(db_url)
    utc = timezone.utc
    with engine.begin() as conn:
        conn.execute(customers.insert(), [
            {"customer_id": c, "name": c, "currency": "EUR", "balance_micros": 0}
            for c in ("STD", "MS", "FM", "GAP")])
        conn.execute(packages.insert(), [
            _pkg("P"), _pkg("MSP", minimum_spend=True, retail_micros=100_000_000),
            _pkg("FMP", type="free_minutes", free_minutes=100)])
        conn.execute(assignments.insert(), [
            {"assignment_id": aid, "customer_id": c, "package_id": p, "quantity": 1,
             "start_date": s, "end_date": e, "auto_decrement": True, "free_minutes": None}
            for aid, c, p, s, e in [
                ("a-std", "STD", "P", date(2025, 6, 1), None),
                ("a-ms", "MS", "MSP", date(2026, 5, 10), None),       # period Feb 10 - Mar 10
                ("a-ms2", "MS", "MSP", date(2026, 1, 1), None),       # period Feb 1 - Mar 1: ends on D
                ("a-fm", "FM", "FMP", date(2026, 2, 15), None),       # chain from 2026-02-15
                ("a-gap1", "GAP", "FMP", date(2025, 1, 1), date(2026, 6, 30)),
                ("a-gap2", "GAP", "FMP", date(2026, 9, 1), None),     # chain from 2026-09-01
            ]])
        days = [date(2025, 6, 1) + timedelta(days=k) for k in range(0, 660, 3)]
        conn.execute(usage.insert(), [
            {"call_id": f"{c}-{d.isoformat()}", "customer_id": c,
             "start_time": datetime(d.year, d.month, d.day, 12, tzinfo=utc),
             "destination": "44", "duration_s": 60, "charge_micros": 1}
            for c in ("STD", "MS", "FM", "GAP") for d in days])
    monkeypatch.setattr(load_module, "DENSE_SHARE", dense_share)  # both read paths
    inputs = load_inputs(engine, D)
    got = inputs.usage.groupby("customer_id")["start_time"].agg(["min", "max", "count"])
    assert "STD" not in got.index
    # the minimum-spend period that ends on D (a-ms2: Feb 1 - Mar 1; a-ms's Feb 10 - Mar 10
    # does not end on D and needs nothing), minus a day of margin
    assert got.loc["MS", "min"] == pd.Timestamp("2027-01-31T12:00Z")
    # free minutes: from D-1-7 = 2027-02-21, minus a day (calls lie every 3 days)
    assert got.loc["FM", "min"] == pd.Timestamp("2027-02-21T12:00Z")
    assert got.loc["GAP", "min"] == pd.Timestamp("2027-02-21T12:00Z")
    for c in ("MS", "FM", "GAP"):
        assert got.loc[c, "max"] <= pd.Timestamp("2027-03-02T12:00Z")
    # exactly the calls of each customer inside its window (a set-based read, not a sample)
    full = load_inputs(engine, D, usage_since=WINDOW).usage
    lo = {"MS": "2027-01-31", "FM": "2027-02-20", "GAP": "2027-02-20"}
    want = full[full["customer_id"].isin(list(lo))]
    want = want[want["start_time"] >= want["customer_id"].map(lo).map(pd.Timestamp).dt.tz_localize("UTC")]
    assert sorted(inputs.usage["call_id"]) == sorted(want["call_id"])
    # the customer filter keeps its meaning
    only = load_inputs(engine, D, customer_ids=["GAP", "STD"]).usage
    assert set(only["customer_id"]) == {"GAP"}
    assert len(only) == got.loc["GAP", "count"]
    engine.dispose()
