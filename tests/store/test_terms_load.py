"""Loading terms over time (SPEC 10, #27): price versions and assignment changes come with the
inputs, typed per the frames contract, and a transfer brings both customers (both databases)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd

from billing_jobs.core.frames import CHANGE_COLUMNS, VERSION_COLUMNS
from billing_jobs.store.load import load_inputs, load_range
from billing_jobs.store.tables import (assignment_changes, assignments, customers,
                                       package_versions, packages, usage)
from tests.store.helpers import fresh_engine

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _package(pid: str, **over) -> dict:
    row = dict(package_id=pid, name=pid, type="standard", cost_micros=1_000_000,
               retail_micros=4_000_000, currency="EUR", frequency="monthly")
    row.update(over)
    return row


def _seed(engine) -> None:
    with engine.begin() as conn:
        conn.execute(customers.insert(), [
            dict(customer_id=c, name=c, currency="EUR", balance_micros=0) for c in
            ("C1", "C2", "C3")])
        conn.execute(packages.insert(), [
            _package("P1"),
            _package("P-FM", type="free_minutes", free_minutes=100, frequency="daily")])
        conn.execute(assignments.insert(), [
            dict(assignment_id="A1", customer_id="C1", package_id="P-FM", quantity=5,
                 start_date=date(2026, 11, 1), auto_decrement=True),
            dict(assignment_id="A2", customer_id="C3", package_id="P1", quantity=1,
                 start_date=date(2026, 11, 1), auto_decrement=True)])
        conn.execute(package_versions.insert(), [dict(
            package_id="P1", effective_from=date(2026, 12, 1), cost_micros=1_500_000,
            retail_micros=6_000_000, setup_cost_micros=0, setup_retail_micros=250_000,
            free_minutes=0, recorded_at=NOW, recorded_by="op@host", source="packages.csv")])
        conn.execute(assignment_changes.insert().values(
            assignment_id="A1", effective_from=date(2026, 12, 10), customer_id="C2",
            quantity=8, recorded_at=NOW, recorded_by="op@host", source="changes.csv",
            idempotency_key="k1"))
        conn.execute(assignment_changes.insert().values(
            assignment_id="A1", effective_from=date(2026, 12, 20), cancel=True,
            recorded_at=NOW, recorded_by="op@host", source="change", idempotency_key="k2"))
        conn.execute(usage.insert(), [
            dict(call_id=f"X{c}", customer_id=c, start_time=datetime(2026, 12, 14, 9,
                                                                      tzinfo=timezone.utc),
                 destination="44", duration_s=60, charge_micros=10_000) for c in ("C1", "C2")])


def test_versions_and_changes_are_loaded_typed(db_url):
    engine = fresh_engine(db_url)
    _seed(engine)
    inputs = load_inputs(engine, date(2026, 12, 15))
    v = inputs.versions
    assert list(v.columns) == VERSION_COLUMNS
    assert v.to_dict("records") == [dict(
        package_id="P1", effective_from=pd.Timestamp("2026-12-01"), cost=1_500_000,
        retail=6_000_000, setup_cost=0, setup_retail=250_000, free_minutes=0)]
    assert str(v["effective_from"].dtype) == "datetime64[s]"
    assert all(str(v[c].dtype) == "int64" for c in VERSION_COLUMNS[2:])
    ch = inputs.changes
    assert list(ch.columns) == CHANGE_COLUMNS
    assert str(ch["quantity"].dtype) == "Int64" and str(ch["free_minutes"].dtype) == "Int64"
    assert str(ch["effective_from"].dtype) == "datetime64[s]"
    assert ch["cancel"].dtype == bool and ch["void"].dtype == bool
    assert ch["change_id"].dtype == "int64"
    first, second = ch.to_dict("records")
    assert (first["assignment_id"], first["effective_from"], first["quantity"],
            first["customer_id"], first["package_id"], first["cancel"]) == (
        "A1", pd.Timestamp("2026-12-10"), 8, "C2", None, False)
    assert pd.isna(first["free_minutes"])
    assert second["cancel"] and second["customer_id"] is None and pd.isna(second["quantity"])


def test_empty_terms_have_the_contract_dtypes(db_url):
    engine = fresh_engine(db_url)
    inputs = load_inputs(engine, date(2026, 12, 15))
    assert inputs.versions.empty and list(inputs.versions.columns) == VERSION_COLUMNS
    assert inputs.changes.empty and list(inputs.changes.columns) == CHANGE_COLUMNS
    assert str(inputs.changes["quantity"].dtype) == "Int64"


def test_a_transfer_brings_the_assignment_both_customers_and_the_new_holders_calls(db_url):
    engine = fresh_engine(db_url)
    _seed(engine)
    for inputs in (load_inputs(engine, date(2026, 12, 15), ["C2"]),
                   load_range(engine, date(2026, 12, 14), date(2026, 12, 15), ["C2"])):
        assert inputs.assignments["assignment_id"].tolist() == ["A1"]
        assert sorted(inputs.customers["customer_id"]) == ["C1", "C2"]
        assert inputs.changes["assignment_id"].tolist() == ["A1", "A1"]
        # the free-minute grant of the new holder needs its calls; the old holder's too
        assert sorted(inputs.usage["call_id"]) == ["XC1", "XC2"]
        assert inputs.versions["package_id"].tolist() == ["P1"]  # packages are all read
    by_old = load_inputs(engine, date(2026, 12, 15), ["C1"])
    assert by_old.assignments["assignment_id"].tolist() == ["A1"]
    assert sorted(by_old.customers["customer_id"]) == ["C1", "C2"]
    other = load_inputs(engine, date(2026, 12, 15), ["C3"])
    assert other.assignments["assignment_id"].tolist() == ["A2"]
    assert other.customers["customer_id"].tolist() == ["C3"]
    assert other.changes.empty
    every = load_inputs(engine, date(2026, 12, 15))
    assert sorted(every.usage["call_id"]) == ["XC1", "XC2"]  # C2 holds no base row
