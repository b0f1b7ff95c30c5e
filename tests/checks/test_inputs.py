"""validate_inputs: clean frames typed per the contract, normalisation, cascades, scale."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import billing_jobs.checks.check_frame as gxmod
from billing_jobs.checks import inputs as inputs_mod
from billing_jobs.checks import validate_inputs
from billing_jobs.core.frames import (
    ASSIGNMENT_COLUMNS,
    CUSTOMER_COLUMNS,
    PACKAGE_COLUMNS,
    USAGE_COLUMNS,
    BillingInputs,
)
from billing_jobs.calc.patterns import destination_matches
from tests.checks._data import M, raw_inputs, set_value


def _ids(frame, col):
    return frame[col].tolist()


def test_valid_inputs_pass_through_typed_per_contract():
    clean, rejected = validate_inputs(raw_inputs())
    assert rejected.empty and list(rejected.columns) == ["entity", "id", "reason"]

    c, p, a, u = clean.customers, clean.packages, clean.assignments, clean.usage
    assert list(c.columns) == CUSTOMER_COLUMNS
    assert list(p.columns) == PACKAGE_COLUMNS
    assert list(a.columns) == ASSIGNMENT_COLUMNS
    assert list(u.columns) == USAGE_COLUMNS

    assert c["balance"].dtype == "int64" and c["balance"].tolist() == [100 * M, -50 * M, 0]
    for col in ("cost", "retail", "setup_cost", "setup_retail", "free_minutes", "minimum_days"):
        assert p[col].dtype == "int64", col
    assert p["free_minutes"].tolist() == [0, 100, 0, 0]
    assert p["destination"].tolist() == ["", "^44|^91|^1", "", ""]
    assert p["frequency_match"].tolist() == [None, "1|3", None, None]
    assert p["minimum_spend"].dtype == bool and p["prorate"].dtype == bool
    assert p["prorate"].tolist() == [True, False, False, False]
    assert p["description"].tolist() == ["", "minutes to UK, India, NANP", "", ""]

    assert a["quantity"].dtype == "int64"
    assert a["start_date"].dtype == "datetime64[s]" and a["end_date"].dtype == "datetime64[s]"
    assert a["start_date"].tolist() == [pd.Timestamp(d) for d in
                                        ("2027-01-01", "2027-01-04", "2027-01-10", "2027-02-01")]
    assert a["end_date"].isna().tolist() == [True, False, True, True]
    assert a["auto_decrement"].dtype == bool
    assert str(a["free_minutes"].dtype) == "Int64" and a["free_minutes"].isna().all()

    assert str(u["start_time"].dtype) == "datetime64[us, UTC]"
    assert u["destination"].tolist() == ["+441234567", "15551234", ""]
    assert u["duration_s"].dtype == "int64" and u["charge"].dtype == "int64"
    assert u["charge"].tolist() == [12_500, 0, 1_000 * M]


def test_loader_types_dates_as_datetimes_and_date_objects():
    raw = raw_inputs()
    a = raw.assignments.astype(object)
    a["start_date"] = [dt.date(2027, 1, 1), pd.Timestamp("2027-01-04"), "2027-01-10", pd.NaT]
    a["end_date"] = [None, dt.datetime(2027, 6, 30), np.nan, ""]
    raw.assignments = a
    clean, rejected = validate_inputs(raw)
    assert rejected.values.tolist() == [["assignments", "A4", "start_date is missing"]]
    assert clean.assignments["start_date"].tolist() == [
        pd.Timestamp("2027-01-01"), pd.Timestamp("2027-01-04"), pd.Timestamp("2027-01-10")]
    assert clean.assignments["end_date"].isna().tolist() == [True, False, True]


def test_datetime64_columns_from_the_loader():
    raw = raw_inputs()
    raw.assignments["start_date"] = pd.to_datetime(raw.assignments["start_date"])
    raw.assignments["end_date"] = pd.to_datetime(raw.assignments["end_date"])
    raw.usage["start_time"] = raw.usage["start_time"].dt.tz_localize(None)  # naive = UTC
    clean, rejected = validate_inputs(raw)
    assert rejected.empty
    assert clean.assignments["start_date"].dtype == "datetime64[s]"
    assert clean.usage["start_time"].iloc[0] == pd.Timestamp("2027-01-05T10:00:00Z")


def test_timestamps_with_offsets_are_converted_to_utc():
    raw = raw_inputs()
    raw.usage = set_value(raw.usage, "U1", "start_time", "2027-01-05T01:30:00+02:00")
    clean, rejected = validate_inputs(raw)
    assert rejected.empty
    assert clean.usage["start_time"].iloc[0] == pd.Timestamp("2027-01-04T23:30:00Z")


def test_enumerations_are_normalised():
    raw = raw_inputs()
    raw.packages = set_value(raw.packages, "P2", "type", "Free Minutes")
    raw.packages = set_value(raw.packages, "P2", "frequency", " Weekly ")
    raw.packages = set_value(raw.packages, "P2", "frequency_match", " 3, 1 ,3")
    raw.packages = set_value(raw.packages, "P2", "currency", "eur")
    raw.packages = set_value(raw.packages, "P2", "destination", " ^44|^91 ")
    raw.customers = set_value(raw.customers, "C1", "currency", " eur")
    clean, rejected = validate_inputs(raw)
    assert rejected.empty
    p2 = clean.packages.set_index("package_id").loc["P2"]
    assert (p2["type"], p2["frequency"], p2["frequency_match"], p2["currency"]) == (
        "free_minutes", "weekly", "1|3", "EUR")
    assert clean.customers["currency"].tolist() == ["EUR", "USD", "JPY"]
    assert p2["destination"] == "^44|^91"


def test_truth_values_from_databases():
    raw = raw_inputs()
    raw.assignments["auto_decrement"] = pd.Series([1, 0, "true", None], dtype=object)
    raw.packages["prorate"] = pd.Series(["yes", "no", "f", None], dtype=object)
    clean, rejected = validate_inputs(raw)
    assert rejected.empty
    assert clean.assignments["auto_decrement"].tolist() == [True, False, True, False]
    assert clean.packages["prorate"].tolist() == [True, False, False, False]


def test_free_minutes_override_kept_as_nullable_integer():
    raw = raw_inputs()
    raw.assignments = set_value(raw.assignments, "A2", "free_minutes", 250)
    clean, rejected = validate_inputs(raw)
    assert rejected.empty
    assert clean.assignments["free_minutes"].tolist()[1] == 250
    assert str(clean.assignments["free_minutes"].dtype) == "Int64"


def test_sql_and_unicode_text_is_kept_verbatim():
    raw = raw_inputs()
    evil = "'; DROP TABLE customers; --"
    raw.customers = set_value(raw.customers, "C1", "name", evil)
    raw.customers = set_value(raw.customers, "C2", "name", "Zoë Ünïcødé 顧客 🚀")
    clean, rejected = validate_inputs(raw)
    assert rejected.empty
    assert clean.customers["name"].tolist()[:2] == [evil, "Zoë Ünïcødé 顧客 🚀"]


def test_empty_frames():
    empty = BillingInputs(*(pd.DataFrame(columns=cols) for cols in
                            (CUSTOMER_COLUMNS, PACKAGE_COLUMNS, ASSIGNMENT_COLUMNS, USAGE_COLUMNS)))
    clean, rejected = validate_inputs(empty)
    assert rejected.empty and list(rejected.columns) == ["entity", "id", "reason"]
    for name, cols in (("customers", CUSTOMER_COLUMNS), ("packages", PACKAGE_COLUMNS),
                       ("assignments", ASSIGNMENT_COLUMNS), ("usage", USAGE_COLUMNS)):
        frame = getattr(clean, name)
        assert frame.empty and list(frame.columns) == cols
    assert clean.assignments["start_date"].dtype == "datetime64[s]"


def test_frames_without_columns_or_rows():
    clean, rejected = validate_inputs(BillingInputs(pd.DataFrame(), pd.DataFrame(),
                                                    pd.DataFrame(), pd.DataFrame()))
    assert rejected.empty and clean.usage.empty


def test_only_usage_given():
    raw = raw_inputs()
    raw.customers = raw.customers.iloc[0:0]
    clean, rejected = validate_inputs(raw)
    # no customers: every assignment and call is of an unknown customer
    assert set(rejected["entity"]) == {"assignments", "usage"}
    assert rejected["reason"].str.startswith("unknown customer").all()
    assert clean.usage.empty and clean.assignments.empty and len(clean.packages) == 4


def test_unrelated_extra_columns_are_dropped():
    raw = raw_inputs()
    raw.customers["created_at"] = "yesterday"
    clean, _ = validate_inputs(raw)
    assert list(clean.customers.columns) == CUSTOMER_COLUMNS


@pytest.mark.timeout(60)
def test_catastrophic_pattern_package_is_usable_on_calls():
    raw = raw_inputs()
    raw.packages = set_value(raw.packages, "P2", "destination", "(1+)+$")
    raw.usage = set_value(raw.usage, "U1", "destination", "1" * 60 + "2")
    clean, rejected = validate_inputs(raw)
    assert rejected.empty
    pattern = clean.packages.set_index("package_id").loc["P2", "destination"]
    assert destination_matches(clean.usage["destination"], pattern).tolist() == [False, False, False]


def _messy_usage(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    call_id = np.char.add("U", np.arange(n).astype(str)).astype(object)
    dup = rng.choice(n, 20, replace=False)
    call_id[dup[10:]] = call_id[dup[:10]]
    call_id[rng.choice(n, 5, replace=False)] = None
    customer = np.where(rng.random(n) < 0.01, "C9", rng.choice(["C1", "C2", "C3"], n)).astype(object)
    customer[rng.choice(n, 3, replace=False)] = None
    duration = rng.integers(-5, 4000, n)
    charge = np.where(rng.random(n) < 0.01, -5, rng.integers(0, 10**7, n))
    start = np.where(rng.random(n) < 0.005, "not a time", "2027-01-05T10:00:00Z").astype(object)
    return pd.DataFrame({"call_id": call_id, "customer_id": customer, "start_time": start,
                         "destination": "+44", "duration_s": duration, "charge": charge})


def test_gx_and_vectorised_usage_rules_agree(monkeypatch):
    raw = raw_inputs()
    raw.customers = set_value(raw.customers, "C3", "currency", "XXX")  # C3 rejected
    raw.usage = _messy_usage(5000, 3)
    monkeypatch.setattr(inputs_mod, "USAGE_GX_MAX_ROWS", 10**9)
    c1, r1 = validate_inputs(raw)
    monkeypatch.setattr(inputs_mod, "USAGE_GX_MAX_ROWS", 0)
    c2, r2 = validate_inputs(raw)
    key = ["entity", "id", "reason"]
    pd.testing.assert_frame_equal(r1.sort_values(key).reset_index(drop=True),
                                  r2.sort_values(key).reset_index(drop=True))
    pd.testing.assert_frame_equal(c1.usage, c2.usage)
    reasons = set(r1.loc[r1.entity == "usage", "reason"].str.split(" ").str[0])
    assert {"duplicate", "unknown", "customer", "call_id", "duration_s", "charge",
            "start_time"} <= reasons


def test_uniqueness_proof_and_its_fallback(monkeypatch):
    monkeypatch.setattr(gxmod, "_PROOF_MIN_ROWS", 0)
    s = pd.Series(["a", "b", None, "abcdefghij", "abcdefghik"], dtype="str")
    assert gxmod.proved_unique(s)
    assert not gxmod.proved_unique(pd.Series(["a", "b", "a"], dtype="str"))
    assert not gxmod.proved_unique(pd.Series(["x" * 100, "y"], dtype="str"))  # too long to hash
    raw = raw_inputs()
    raw.usage = _messy_usage(3000, 5)
    monkeypatch.setattr(inputs_mod, "USAGE_GX_MAX_ROWS", 0)
    _, with_proof = validate_inputs(raw)
    monkeypatch.setattr(gxmod, "_PROOF_MIN_ROWS", 10**12)
    _, without = validate_inputs(raw)
    pd.testing.assert_frame_equal(with_proof, without)


@pytest.mark.timeout(120)
def test_one_million_call_records():
    n = 1_000_000
    rng = np.random.default_rng(11)
    ids = pd.Series(np.char.add("CALL-", np.arange(n).astype(str)), dtype="str")
    cust = pd.Series(np.array(["C1", "C2", "C3"])[rng.integers(0, 3, n)], dtype="str")
    usage = pd.DataFrame({
        "call_id": ids, "customer_id": cust,
        "start_time": pd.Timestamp("2027-01-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, 86400 * 28, n), unit="s"),
        "destination": pd.Series(rng.integers(10**9, 10**12, n).astype(str), dtype="str"),
        "duration_s": rng.integers(0, 3600, n), "charge": rng.integers(0, 10**6, n)})
    raw = raw_inputs()
    raw.usage = usage
    clean, rejected = validate_inputs(raw)
    assert rejected.empty and len(clean.usage) == n

    usage = usage.copy()
    usage.loc[17, "call_id"] = "CALL-5"
    usage.loc[99, "customer_id"] = "C9"
    raw.usage = usage
    clean, rejected = validate_inputs(raw)
    assert sorted(rejected.itertuples(index=False, name=None)) == [
        ("usage", "CALL-5", "duplicate call_id 'CALL-5' (2 rows)"),
        ("usage", "CALL-99", "unknown customer 'C9'")]
    assert len(clean.usage) == n - 3


def test_great_expectations_stays_quiet():
    code = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from tests.checks._data import raw_inputs\n"
        "from billing_jobs.checks import validate_inputs\n"
        "validate_inputs(raw_inputs())\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=str(__import__('pathlib').Path(__file__).parents[2]))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "done"
    assert "Skipping registering function" not in out.stderr
    assert "Calculating Metrics" not in out.stderr
    assert "absl" not in out.stderr and "re2.cc" not in out.stderr
