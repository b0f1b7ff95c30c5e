"""A night reads what the date needs: with 13 months of call history in the database, the
default (needed-calls) read bills exactly what reading every call of the look-back does, and
what a database holding only the needed calls bills."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from billing_jobs.checks import validate_inputs
from billing_jobs.calc.billing import compute_billing
from billing_jobs.demo.sample_data import write_sample
from billing_jobs.ingest.importer import import_csv
from billing_jobs.store.load import load_inputs
from billing_jobs.store.load import USAGE_LOOKBACK_DAYS

from tests.store.helpers import fresh_engine

AS_OF = date(2026, 11, 30)
DATES = [date(2026, 11, 16), date(2026, 12, 1)]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("history")
    write_sample(out, 80, 600, 2_500, seed=7, as_of=AS_OF, months=13)
    return out


def _bill(engine, day, **kw):
    raw = load_inputs(engine, day, **kw)
    clean, _ = validate_inputs(raw)
    return raw, compute_billing(clean, day, "UTC")


def _same(a, b):
    for name in ("due_lines", "grants", "utilisation", "extended_ends"):
        pd.testing.assert_frame_equal(getattr(a, name).reset_index(drop=True),
                                      getattr(b, name).reset_index(drop=True), obj=name)


def test_thirteen_months_bill_as_the_needed_calls(db_url, sample_dir):
    engine = fresh_engine(db_url)
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, sample_dir / f"{entity}.csv")
    needed_ids = {}
    for day in DATES:
        full_raw, full = _bill(engine, day,
                               usage_since=day - timedelta(days=USAGE_LOOKBACK_DAYS))
        raw, needed = _bill(engine, day)
        assert len(full.due_lines) > 0 and (full.due_lines["kind"] == "minimum_spend").any()
        assert (full.utilisation["seconds_used"] > 0).any()
        assert (full.due_lines.loc[full.due_lines["kind"] == "minimum_spend", "amount"]
                < full.due_lines.loc[full.due_lines["kind"] == "minimum_spend", "unit_price"]
                * full.due_lines.loc[full.due_lines["kind"] == "minimum_spend", "quantity"]).any()
        assert len(raw.usage) < len(full_raw.usage)  # it really reads less
        _same(full, needed)
        needed_ids[day] = set(raw.usage["call_id"])
    # a database holding only the calls the last date needs bills that date the same
    day = DATES[-1]
    _, full = _bill(engine, day, usage_since=day - timedelta(days=USAGE_LOOKBACK_DAYS))
    keep = needed_ids[day]
    with engine.begin() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT call_id FROM usage")]
        drop = [i for i in ids if i not in keep]
        assert drop
        for k in range(0, len(drop), 500):
            chunk = drop[k:k + 500]
            conn.exec_driver_sql(
                "DELETE FROM usage WHERE call_id IN (" + ", ".join(["%s" if engine.dialect.name
                                                                     == "postgresql" else "?"]
                                                                    * len(chunk)) + ")",
                tuple(chunk))
    _, only = _bill(engine, day, usage_since=day - timedelta(days=USAGE_LOOKBACK_DAYS))
    _same(full, only)
    engine.dispose()


def test_backfill_plan_gives_each_night_what_its_own_run_loads(db_url, sample_dir):
    """Loaded and validated once for the range, each night computes exactly the lines,
    grants and utilisation (and sees the same rejected rows) as a run of that date alone."""
    from billing_jobs.run.backfill_plan import night, plan_backfill

    engine = fresh_engine(db_url)
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, sample_dir / f"{entity}.csv")
    first, last = date(2026, 11, 27), date(2026, 12, 1)
    plan = plan_backfill(engine, first, last)
    day = first
    while day <= last:
        raw = load_inputs(engine, day)
        clean, rejected = validate_inputs(raw)
        inputs, rej = night(plan, day)
        assert sorted(inputs.usage["call_id"]) == sorted(clean.usage["call_id"])
        pd.testing.assert_frame_equal(
            rej.sort_values(list(rej.columns), ignore_index=True),
            rejected.sort_values(list(rejected.columns), ignore_index=True))
        _same(compute_billing(clean, day, "UTC"), compute_billing(inputs, day, "UTC"))
        day += timedelta(days=1)
    with pytest.raises(ValueError, match="outside the backfill range"):
        night(plan, last + timedelta(days=1))
    engine.dispose()


def test_the_dense_scan_in_slices_reads_the_same_calls_as_the_index_ranges(db_url, sample_dir,
                                                                           monkeypatch):
    """The dense path reads its window a slice at a time (memory: one slice, not the window);
    it must read exactly the calls the per-customer index ranges read."""
    from billing_jobs.store import load

    engine = fresh_engine(db_url)
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, sample_dir / f"{entity}.csv")
    got = {}
    for name, share, slice_days in (("sparse", 1e9, 31), ("dense", 0.0, 7)):
        monkeypatch.setattr(load, "DENSE_SHARE", share)
        monkeypatch.setattr(load, "DENSE_SLICE_DAYS", slice_days)
        usage = load_inputs(engine, DATES[1]).usage
        got[name] = usage.sort_values("call_id").reset_index(drop=True)
    assert len(got["dense"]) > 0
    pd.testing.assert_frame_equal(got["sparse"], got["dense"])
    engine.dispose()
