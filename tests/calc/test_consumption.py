"""Worked examples for free-minute consumption (issue #12), amounts written out."""

import numpy as np
import pandas as pd

from billing_jobs.calc.consumption import consume, credit_amounts
from billing_jobs.calc.usage import call_days
from tests.calc.reference import reference_consume


def _grants(rows):
    return pd.DataFrame(rows, columns=["customer_id", "assignment_id", "period_start",
                                       "period_end", "destination", "seconds", "seconds_used"])


def _calls(rows, tz="UTC"):
    c = pd.DataFrame(rows, columns=["call_id", "customer_id", "start_time", "destination",
                                    "duration_s", "charge"])
    return c.assign(day=call_days(c["start_time"], tz))


def test_done_when_three_uk_calls_against_12_minutes():
    g = _grants([["c1", "a1", "2026-12-01", "2027-01-01", "^44", 720, 0]])
    calls = _calls([[f"k{i}", "c1", f"2026-12-05T10:0{i}:00Z", "447700900000", 300, 300_000]
                    for i in range(3)])
    cov = consume(g, calls)
    assert cov["seconds"].tolist() == [300, 300, 120]
    assert cov["covered"].tolist() == [300_000, 300_000, 120_000]
    cr = credit_amounts(cov, pd.Series({"a1": "GBP"}))
    assert cr.to_dict("records") == [{"assignment_id": "a1", "seconds": 720, "amount": -720_000}]


def test_counter_carried_and_unmatched_pattern():
    g = _grants([["c1", "a1", "2026-12-01", "2027-01-01", "^44", 720, 600]])
    calls = _calls([["k1", "c1", "2026-12-05T10:00:00Z", "+447700", 300, 300_000],
                    ["k2", "c1", "2026-12-05T09:00:00Z", "9198", 300, 300_000]])
    cov = consume(g, calls)
    assert cov[["call_id", "seconds", "covered"]].values.tolist() == [["k1", 120, 120_000]]


def test_spill_over_two_grants_ending_first_then_lowest_id():
    g = _grants([["c1", "b", "2026-12-01", "2027-01-01", "", 60, 0],
                 ["c1", "a", "2026-12-01", "2027-01-01", "", 30, 0],
                 ["c1", "z", "2026-12-01", "2026-12-10", "", 30, 0]])
    calls = _calls([["k1", "c1", "2026-12-05T10:00:00Z", "1", 100, 1_000_000]])
    cov = consume(g, calls)
    got = dict(zip(cov["assignment_id"], cov["seconds"]))
    assert got == {"z": 30, "a": 30, "b": 40}
    assert dict(zip(cov["assignment_id"], cov["covered"])) == {
        "z": 300_000, "a": 300_000, "b": 400_000}
    cr = credit_amounts(cov, pd.Series({"a": "EUR", "b": "EUR", "z": "EUR"}))
    assert cr["amount"].tolist() == [-300_000, -400_000, -300_000]


def test_partial_rounded_once_half_up():
    g = _grants([["c1", "a1", "2026-12-01", None, "", 1, 0]])
    calls = _calls([["k1", "c1", "2026-12-05T10:00:00Z", "1", 3, 10_000]])  # 0.01 / 3
    cov = consume(g, calls)
    assert cov["covered"].tolist() == [3_333]
    assert credit_amounts(cov, pd.Series({"a1": "EUR"}))["amount"].tolist() == [0]


def test_midnight_non_utc_belongs_to_local_day():
    # 23:30 UTC on 30 Nov is 00:30 on 1 Dec in Europe/Berlin: inside a December grant
    g = _grants([["c1", "a1", "2026-12-01", "2027-01-01", "", 600, 0]])
    calls = _calls([["k1", "c1", "2026-11-30T23:30:00Z", "1", 60, 50_000]], tz="Europe/Berlin")
    assert consume(g, calls)["seconds"].tolist() == [60]
    calls = _calls([["k1", "c1", "2026-11-30T23:30:00Z", "1", 60, 50_000]], tz="UTC")
    assert consume(g, calls).empty


def test_differential_many_days_counters_carried():
    rng = np.random.default_rng(12)
    for trial in range(30):
        base = pd.Timestamp("2026-12-01")
        ref_grants, rows = [], []
        for k in range(int(rng.integers(1, 5))):
            cust = f"c{int(rng.integers(0, 2))}"
            s = int(rng.integers(0, 5))
            e = None if rng.random() < 0.3 else s + int(rng.integers(1, 10))
            pat = ["", "^44"][int(rng.integers(0, 2))]
            secs = int(rng.integers(0, 8)) * 60
            rows.append([cust, f"a{k}", base + pd.Timedelta(days=s),
                         None if e is None else base + pd.Timedelta(days=e), pat, secs, 0])
            d0 = int(np.datetime64("2026-12-01", "D").astype("int64"))
            ref_grants.append({"customer_id": cust, "assignment_id": f"a{k}", "start": d0 + s,
                               "end": None if e is None else d0 + e, "seconds": secs, "used": 0,
                               "pattern": (lambda d: True) if pat == "" else
                               (lambda d: d.lstrip("+").startswith("44"))})
        used = {r[1]: 0 for r in rows}
        for day in range(12):  # one post per day, counters carried day to day
            n = int(rng.integers(0, 5))
            crows = [[f"d{day}k{i}", f"c{int(rng.integers(0, 2))}",
                      base + pd.Timedelta(days=day, seconds=int(rng.integers(0, 86400))),
                      ["447", "+4412", "1555"][int(rng.integers(0, 3))],
                      int(rng.integers(0, 400)), int(rng.integers(0, 10**6))] for i in range(n)]
            calls = _calls(crows)
            g = _grants([r[:6] + [used[r[1]]] for r in rows])
            cov = consume(g, calls)
            for a, s in cov.groupby("assignment_id")["seconds"].sum().items():
                used[a] += int(s)
            ref = reference_consume(ref_grants, [
                {"call_id": r[0], "customer_id": r[1], "t": r[2], "day": int(dd), "dest": r[3],
                 "duration": r[4]} for r, dd in zip(crows, calls["day"])])
            got = sorted(zip(cov["call_id"], cov["assignment_id"], cov["seconds"].astype(int)))
            assert got == ref, (trial, day)
        assert used == {g["assignment_id"]: g["used"] for g in ref_grants}
