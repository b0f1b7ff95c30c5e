"""The minimum-spend index from rollup rows (calc.billing.rollup_spend_index, #29) equals the
calls path's (each call's charge net of its credits, never below 0) over random calls, stored
and new credits, calls split over grants whose rounded parts cover more than the charge, a
night's own re-run (a customer done) and random day ranges."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from billing_jobs.calc.billing import rollup_spend_index
from billing_jobs.calc.usage import SpendIndex

RUN_DAY = 20_000


@dataclass
class _Free:
    consumption: pd.DataFrame


@pytest.mark.parametrize("seed", range(8))
def test_rollup_index_equals_the_calls_index(seed):
    rng = np.random.default_rng(seed)
    customers = np.array([f"C{i:02d}" for i in range(12)], dtype=object)
    n = 400
    cust = rng.integers(0, len(customers), n)
    day = RUN_DAY - rng.integers(1, 40, n)
    charge = rng.integers(0, 5_000, n)
    call_id = np.array([f"K{i:04d}" for i in range(n)], dtype=object)
    start = (pd.to_datetime(day, unit="D", utc=True)
             + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"))
    # credits: stored (earlier nights) or new (this run), in 1 to 3 parts each; a part is
    # the charge x a share rounded half up, so split calls can pass their charge by a micro
    state = rng.choice(["none", "stored", "new", "own"], n, p=[0.4, 0.25, 0.25, 0.1])
    own_customers = {customers[c] for c, s in zip(cust, state) if s == "own"}
    state = np.where((state == "new") & np.isin(customers[cust], list(own_customers)),
                     "own", state)
    parts = []
    for i in np.flatnonzero(state != "none"):
        k = int(rng.integers(1, 4))
        for p in range(k):
            cov = int(np.floor(charge[i] / k + 0.5)) + int(rng.integers(0, 2) if k > 1 else 0)
            cov = min(cov, int(charge[i])) if k == 1 else cov
            parts.append((call_id[i], customers[cust[i]], f"A{p}", start[i], cov, state[i]))
    credits = pd.DataFrame(parts, columns=["call_id", "customer_id", "assignment_id",
                                           "start_time", "covered", "state"])
    stored = credits[credits["state"].isin(["stored", "own"])]
    consumed = stored.assign(consumed_on=pd.to_datetime(
        np.where(stored["state"] == "own", RUN_DAY, RUN_DAY - 3), unit="D"))
    today = credits[credits["state"].isin(["new", "own"])].reset_index(drop=True)

    # the calls path: per call max(charge - every credit of it, 0)
    covered = credits.groupby("call_id")["covered"].sum()
    net = np.maximum(charge - covered.reindex(call_id).fillna(0).to_numpy(dtype="int64"), 0)
    calls = SpendIndex(cust, day, net)

    # the rollup: per (customer, UTC day) charges and stored credits, each call's credit up
    # to its charge (what store/spend_rollup.read_spend gives)
    per_call = stored.groupby("call_id")["covered"].sum()
    capped = np.minimum(per_call.reindex(call_id).fillna(0).to_numpy(dtype="int64"), charge)
    rows = (pd.DataFrame({"customer_id": customers[cust], "day": day, "charged": charge,
                          "credited": capped})
            .groupby(["customer_id", "day"], as_index=False).sum())
    usage = pd.DataFrame({"call_id": call_id, "customer_id": customers[cust], "charge": charge})
    rollup = rollup_spend_index(rows, customers, _Free(today), consumed, RUN_DAY, usage)

    q = 300
    qc = rng.integers(0, len(customers), q)
    lo = RUN_DAY - rng.integers(0, 45, q)
    hi = lo + rng.integers(0, 45, q)
    np.testing.assert_array_equal(rollup.spend(qc, lo, hi), calls.spend(qc, lo, hi))
    assert (calls.spend(qc, lo, hi) > 0).any()
