"""The spend rollup (`daily_spend`, migration 0013) equals the calls and their credits, on both
databases, through a random history: the first import, posted nights (credits), a re-import that
changes prices, moves calls to another day or customer and brings late calls, a reverse (credits
taken back), deleted calls, and the upgrade of a database that already held calls."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command

from billing_jobs.demo.sample_data import write_sample
from billing_jobs.corrections.reverse import reverse
from billing_jobs.ingest.importer import import_csv
from billing_jobs.run.local import run_billing
from billing_jobs.run.request import RunRequest
from billing_jobs.store.db import _alembic_config

from tests.store.helpers import fresh_engine

AS_OF = date(2026, 11, 30)


def _expected(engine) -> pd.DataFrame:
    """The rollup computed here from the rows, in Python: UTC day of each call's start."""
    with engine.connect() as conn:
        calls = pd.DataFrame(conn.execute(sa.text(
            "SELECT customer_id, start_time, charge_micros FROM usage")).all(),
            columns=["customer_id", "start_time", "amount"])
        credits = pd.DataFrame(conn.execute(sa.text(
            "SELECT customer_id, start_time, covered_micros FROM call_credits")).all(),
            columns=["customer_id", "start_time", "amount"])
    parts = []
    for frame, column in ((calls, "charged_micros"), (credits, "credited_micros")):
        if not len(frame):
            continue
        day = pd.to_datetime(frame["start_time"], utc=True).dt.date
        g = frame.assign(day=day).groupby(["customer_id", "day"])
        part = g["amount"].sum().rename(column).to_frame()
        if column == "charged_micros":
            part["calls"] = g.size()
        parts.append(part)
    out = pd.concat(parts, axis=1).fillna(0).astype("int64") if parts else pd.DataFrame()
    for c in ("charged_micros", "credited_micros", "calls"):
        if c not in out:
            out[c] = 0
    return out[["charged_micros", "credited_micros", "calls"]].sort_index()


def _rollup(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT customer_id, day, charged_micros, credited_micros, calls FROM daily_spend "
            "WHERE charged_micros <> 0 OR credited_micros <> 0 OR calls <> 0")).all()
    frame = pd.DataFrame(rows, columns=["customer_id", "day", "charged_micros",
                                        "credited_micros", "calls"])
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    return (frame.set_index(["customer_id", "day"]).astype("int64").sort_index()
            [["charged_micros", "credited_micros", "calls"]])


def _assert_equal(engine, what: str) -> None:
    expected, got = _expected(engine), _rollup(engine)
    assert len(expected), what
    pd.testing.assert_frame_equal(got, expected, check_names=False, obj=what)


def _credited_calls(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT call_id FROM call_credits")).scalars())


@pytest.mark.parametrize("seed", [3, 11])
def test_rollup_equals_calls_through_a_history(db_url, tmp_path, seed):
    rng = random.Random(seed)
    data = tmp_path / "data"
    write_sample(data, 25, 160, 1_600, seed=seed, as_of=AS_OF, months=2)
    engine = fresh_engine(db_url)
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, data / f"{entity}.csv")
    _assert_equal(engine, "after the first import")

    runs = []
    for night in (date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)):
        out = run_billing(engine, RunRequest(run_date=night, simulate=False,
                                             out_dir=tmp_path / f"r{night}"))
        runs.append(out.run_id)
    credited = _credited_calls(engine)
    assert credited, "the sample's free-minute packages credit some calls"
    _assert_equal(engine, "after three posted nights")

    # a re-import: prices changed, calls moved a day or to another customer, late calls added
    usage = pd.read_csv(data / "usage.csv", dtype=str, keep_default_na=False)
    free = usage[~usage["call_id"].isin(credited)].index.to_list()
    rng.shuffle(free)
    customers = sorted(usage["customer_id"].unique())
    for i in free[:40]:
        usage.loc[i, "charge"] = f"{rng.randint(0, 900)}.{rng.randint(0, 999999):06d}"
    for i in free[40:80]:
        t = pd.Timestamp(usage.loc[i, "start_time"]) + timedelta(hours=rng.choice([-30, 7, 23]))
        usage.loc[i, "start_time"] = t.isoformat()
    for i in free[80:110]:
        usage.loc[i, "customer_id"] = rng.choice(customers)
    late = usage.sample(25, random_state=seed).copy()
    late["call_id"] = [f"LATE-{seed}-{k}" for k in range(len(late))]
    late["start_time"] = [(pd.Timestamp("2026-11-19T23:59:59Z") - timedelta(minutes=k)).isoformat()
                          for k in range(len(late))]
    pd.concat([usage, late]).to_csv(data / "usage2.csv", index=False)
    import_csv(engine, "usage", data / "usage2.csv")
    _assert_equal(engine, "after a re-import that changed, moved and added calls")

    import_csv(engine, "usage", data / "usage2.csv")  # the same file again: nothing moves
    _assert_equal(engine, "after importing the same file twice")

    reverse(engine, runs[1], simulate=False)
    assert _credited_calls(engine) < credited
    _assert_equal(engine, "after a reverse took credits back")

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM usage WHERE call_id IN "
                             "(SELECT call_id FROM usage WHERE call_id LIKE 'LATE-%' LIMIT 5)"))
    _assert_equal(engine, "after deleting calls")


def test_upgrade_fills_the_rollup_from_stored_calls(db_url, tmp_path):
    data = tmp_path / "data"
    write_sample(data, 10, 60, 500, seed=5, as_of=AS_OF, months=1)
    engine = fresh_engine(db_url)
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, data / f"{entity}.csv")
    run_billing(engine, RunRequest(run_date=date(2026, 11, 25), simulate=False,
                                   out_dir=tmp_path / "r"))
    assert _credited_calls(engine)
    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0012")
    with engine.connect() as conn:
        assert "daily_spend" not in sa.inspect(conn).get_table_names()
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")
    _assert_equal(engine, "after the upgrade from 0012")
