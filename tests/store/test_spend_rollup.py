"""Minimum spend from the spend rollup (#29): on both databases, a night billed from the
`daily_spend` rollup equals, line for line and amount for amount, the same night billed from
the calls, through a random history: posted nights (credits), a re-import with changed prices,
moved and late calls, a reverse, a change from a date, and Run Package (`customer_ids`)."""

from __future__ import annotations

import random
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from billing_jobs.calc.billing import compute_billing
from billing_jobs.checks import validate_inputs
from billing_jobs.corrections.changes import change
from billing_jobs.corrections.reverse import reverse
from billing_jobs.core.errors import UsageError
from billing_jobs.demo.sample_data import write_sample
from billing_jobs.ingest.importer import import_csv
from billing_jobs.run.local import run_billing
from billing_jobs.run.request import RunRequest
from billing_jobs.store.load import load_inputs, spend_source
from billing_jobs.store.spend_rollup import read_spend

from tests.store.helpers import fresh_engine

AS_OF = date(2026, 11, 30)
NIGHTS = [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)]
CHECKED = [date(2026, 11, 21), date(2026, 11, 23), date(2026, 11, 30), date(2026, 12, 1)]


def _bill(engine, day, spend_from, ids=None):
    raw = load_inputs(engine, day, customer_ids=ids, spend_from=spend_from)
    clean, rejected = validate_inputs(raw)
    return raw, rejected, compute_billing(clean, day, "UTC")


def _same(calls, rollup, what):
    for name in ("due_lines", "grants", "held_grants", "utilisation", "extended_ends",
                 "consumption", "grant_counters", "grant_cuts"):
        pd.testing.assert_frame_equal(getattr(rollup, name).reset_index(drop=True),
                                      getattr(calls, name).reset_index(drop=True),
                                      obj=f"{what}: {name}")


def _check(engine, what, ids=None) -> int:
    """Every checked date billed both ways is the same; the number of minimum-spend lines."""
    n_ms = 0
    for day in CHECKED:
        raw_c, rej_c, calls = _bill(engine, day, "calls", ids)
        raw_r, rej_r, rollup = _bill(engine, day, "rollup", ids)
        assert raw_c.daily_spend is None and raw_r.daily_spend is not None
        assert len(raw_r.usage) <= len(raw_c.usage)
        assert len(rej_c) == len(rej_r) == 0
        _same(calls, rollup, f"{what}, {day}")
        n_ms += int((calls.due_lines["kind"] == "minimum_spend").sum())
    return n_ms


def _split_credits(engine) -> None:
    with engine.begin() as conn:
        picked = conn.exec_driver_sql(
            "SELECT c.call_id, c.assignment_id FROM call_credits c JOIN usage u "
            "ON u.call_id = c.call_id AND u.customer_id = c.customer_id "
            "WHERE u.charge_micros >= c.covered_micros ORDER BY CASE WHEN c.customer_id IN "
            "(SELECT a.customer_id FROM assignments a JOIN packages p "
            "ON p.package_id = a.package_id WHERE p.minimum_spend) THEN 0 ELSE 1 END, "
            "c.call_id LIMIT 5").all()
        assert picked
        for call_id, aid in picked:
            conn.exec_driver_sql(
                "INSERT INTO call_credits (call_id, assignment_id, period_start, customer_id, "
                "start_time, consumed_on, run_id, seconds, covered_micros, late) "
                "SELECT c.call_id, 'SPLIT-' || c.assignment_id, c.period_start, c.customer_id, "
                "c.start_time, c.consumed_on, c.run_id, 1, u.charge_micros - c.covered_micros + 1, "
                "c.late FROM call_credits c JOIN usage u ON u.call_id = c.call_id "
                f"WHERE c.call_id = '{call_id}' AND c.assignment_id = '{aid}'")
        ids = sorted({r[0] for r in conn.exec_driver_sql(
            "SELECT customer_id FROM call_credits").all()})
        # the read: each call's credits up to its charge, per (customer, UTC day)
        got = read_spend(conn, pd.DataFrame({"customer_id": ids,
                                             "since_day": [0] * len(ids)}), date(2027, 1, 1))
        calls = pd.DataFrame(conn.exec_driver_sql(
            "SELECT call_id, customer_id, start_time, charge_micros FROM usage").all(),
            columns=["call_id", "customer_id", "start_time", "charge"])
        cred = pd.DataFrame(conn.exec_driver_sql(
            "SELECT call_id, customer_id, covered_micros FROM call_credits").all(),
            columns=["call_id", "customer_id", "covered"])
    cov = cred.groupby(["call_id", "customer_id"])["covered"].sum()
    calls["covered"] = cov.reindex(pd.MultiIndex.from_frame(
        calls[["call_id", "customer_id"]])).fillna(0).to_numpy(dtype="int64")
    calls["credited"] = np.minimum(calls["covered"], calls["charge"].astype("int64"))
    calls["day"] = (pd.to_datetime(calls["start_time"], utc=True).dt.tz_localize(None)
                    .to_numpy().astype("datetime64[D]").astype("int64"))
    want = calls[calls["customer_id"].isin(ids)].groupby(["customer_id", "day"])["credited"].sum()
    have = got.set_index(["customer_id", "day"])["credited"]
    have = have[have != 0]
    want = want[want != 0]
    pd.testing.assert_series_equal(have.sort_index(), want.astype("int64").sort_index(),
                                   check_names=False, check_index_type=False)


def _credited(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.exec_driver_sql("SELECT call_id FROM call_credits").scalars())


@pytest.mark.parametrize("seed", [5, 17])
def test_rollup_bills_as_the_calls_through_a_history(db_url, tmp_path, seed):
    rng = random.Random(seed)
    data = tmp_path / "data"
    write_sample(data, 30, 200, 3_000, seed=seed, as_of=AS_OF, months=3)
    engine = fresh_engine(db_url)
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, data / f"{entity}.csv")
    assert _check(engine, "after the import") > 0

    runs = []
    for night in NIGHTS:  # posted nights: the rollup path posts them (a UTC run)
        assert spend_source(None) == "rollup"
        out = run_billing(engine, RunRequest(run_date=night, simulate=False,
                                             out_dir=tmp_path / f"r{night}"))
        runs.append(out.run_id)
    credited = _credited(engine)
    assert credited
    # minimum spend netted of stored credits, and a night's own re-run (customers done)
    _check(engine, "after three posted nights")

    # a re-import: prices changed, calls moved a day or to another customer, late calls
    usage = pd.read_csv(data / "usage.csv", dtype=str, keep_default_na=False)
    free = usage[~usage["call_id"].isin(credited)].index.to_list()
    rng.shuffle(free)
    customers = sorted(usage["customer_id"].unique())
    for i in free[:60]:
        usage.loc[i, "charge"] = f"{rng.randint(0, 900)}.{rng.randint(0, 999999):06d}"
    for i in free[60:120]:
        t = pd.Timestamp(usage.loc[i, "start_time"]) + timedelta(hours=rng.choice([-30, 7, 23]))
        usage.loc[i, "start_time"] = t.isoformat()
    for i in free[120:150]:
        usage.loc[i, "customer_id"] = rng.choice(customers)
    late = usage.sample(40, random_state=seed).copy()
    late["call_id"] = [f"LATE-{seed}-{k}" for k in range(len(late))]
    late["start_time"] = [(pd.Timestamp("2026-11-21T23:59:59Z") - timedelta(minutes=17 * k))
                          .isoformat() for k in range(len(late))]
    pd.concat([usage, late]).to_csv(data / "usage2.csv", index=False)
    import_csv(engine, "usage", data / "usage2.csv")
    _check(engine, "after a re-import")

    reverse(engine, runs[1], simulate=False)
    assert _credited(engine) < credited
    _check(engine, "after a reverse")

    # calls credited in two parts that cover a micro more than the charge (each part rounded
    # half up): the calls path nets each call to 0, the rollup read takes the excess back
    _split_credits(engine)
    _check(engine, "with split credits over the charge")

    # a change from a date on a minimum-spend assignment (cuts its period)
    with engine.connect() as conn:
        ms = conn.exec_driver_sql(
            "SELECT a.assignment_id, a.customer_id FROM assignments a JOIN packages p "
            "ON p.package_id = a.package_id WHERE p.minimum_spend AND a.end_date IS NULL "
            "ORDER BY a.assignment_id").all()
    assert ms
    changed = None
    for aid, cust in ms[:8]:
        try:
            change(engine, aid, date(2026, 11, 16), quantity=3, post=True, tz="UTC")
        except UsageError:
            continue
        changed = cust
        break
    assert changed is not None
    _check(engine, "after a change from a date")

    # Run Package: chosen customers (the changed one among them)
    chosen = sorted({changed, *rng.sample(customers, 6)})
    _check(engine, "chosen customers", ids=chosen)
    engine.dispose()


def test_the_rollup_needs_utc_days_and_no_every_call_read(tmp_path):
    engine = fresh_engine(f"sqlite:///{tmp_path / 'b.db'}")
    data = tmp_path / "data"
    write_sample(data, 5, 20, 200, seed=2, as_of=AS_OF, months=1)
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, data / f"{entity}.csv")
    assert spend_source("Europe/Paris") == "calls" and spend_source("UTC") == "rollup"
    with pytest.raises(ValueError, match="usage_since"):
        load_inputs(engine, date(2026, 12, 1), usage_since=date(2026, 11, 1),
                    spend_from="rollup")
    with pytest.raises(ValueError, match="spend_from"):
        load_inputs(engine, date(2026, 12, 1), spend_from="both")
    clean, _ = validate_inputs(load_inputs(engine, date(2026, 12, 1), spend_from="rollup"))
    assert clean.daily_spend is not None
    with pytest.raises(ValueError, match="UTC days"):
        compute_billing(clean, date(2026, 12, 1), "Europe/Paris")
    engine.dispose()
