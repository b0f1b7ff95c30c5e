"""The synthetic data generator (billing_jobs.demo.sample_data) and `python -m bench.generate`."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from bench import generate as bench_generate
from billing_jobs.demo import sample_data
from billing_jobs.core.frames import ENTITY_COLUMNS, ENTITY_KEYS, MONEY_COLUMNS
from billing_jobs.core.money import minor_digits, parse_micros, parse_micros_series
from billing_jobs.demo.sample_data import generate, write_csv, write_sample

AS_OF = date(2026, 1, 31)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return generate(customers=60, assignments=600, calls=5_000, seed=11, as_of=AS_OF)


@pytest.fixture(scope="module")
def joined(frames) -> pd.DataFrame:
    a = frames["assignments"].merge(frames["customers"], on="customer_id", how="left",
                                    validate="many_to_one")
    return a.merge(frames["packages"], on="package_id", how="left", validate="many_to_one",
                   suffixes=("_customer", "_package"))


def test_same_seed_gives_identical_frames(frames):
    again = generate(customers=60, assignments=600, calls=5_000, seed=11, as_of=AS_OF)
    for name in ENTITY_COLUMNS:
        pd.testing.assert_frame_equal(frames[name], again[name])
    other = generate(customers=60, assignments=600, calls=5_000, seed=12, as_of=AS_OF)
    assert not frames["usage"].equals(other["usage"])
    assert not frames["assignments"].equals(other["assignments"])


def test_columns_are_the_csv_columns_all_strings(frames):
    assert set(frames) == set(ENTITY_COLUMNS)
    for name, columns in ENTITY_COLUMNS.items():
        df = frames[name]
        assert list(df.columns) == columns, name
        for c in columns:
            assert df[c].dtype == "str", (name, c, df[c].dtype)
            assert not df[c].isna().any(), (name, c)
    assert len(frames["customers"]) == 60
    assert len(frames["assignments"]) == 600
    assert len(frames["usage"]) == 5_000


def test_ids_unique_and_shaped(frames):
    shapes = {"customers": r"C\d{6}", "packages": r"P\d{4}", "assignments": r"A\d{7}",
              "usage": r"K\d{8}"}
    for name, key in ENTITY_KEYS.items():
        ids = frames[name][key]
        assert ids.is_unique, name
        assert ids.str.fullmatch(shapes[name]).all(), name
    assert frames["usage"]["call_id"].iloc[0] == "K00000001"


def test_references_exist(frames):
    cust = set(frames["customers"]["customer_id"])
    assert set(frames["assignments"]["customer_id"]) <= cust
    assert set(frames["usage"]["customer_id"]) <= cust
    assert set(frames["assignments"]["package_id"]) <= set(frames["packages"]["package_id"])


def test_currencies_consistent_and_mixed(frames, joined):
    assert (joined["currency_customer"] == joined["currency_package"]).all()
    assert set(frames["customers"]["currency"]) == {"EUR", "USD", "GBP", "JPY", "KWD"}
    assert {minor_digits(c) for c in frames["customers"]["currency"]} == {0, 2, 3}
    # a catalogue per currency: the same products in each
    per_cur = frames["packages"].groupby("currency")["type"].size()
    assert per_cur.nunique() == 1 and len(per_cur) == 5
    # every currency actually has assignments
    assert joined["currency_package"].nunique() == 5


def test_every_frequency_and_match_is_assigned(joined):
    freq = joined["frequency"]
    match = joined["frequency_match"]
    assert set(freq) == {"once", "daily", "weekly", "monthly", "yearly"}
    weekly, monthly = joined[freq == "weekly"], joined[freq == "monthly"]
    assert (weekly["frequency_match"] == "").any() and (weekly["frequency_match"] != "").any()
    assert (weekly["frequency_match"] == "1|3|5").any()
    assert (monthly["frequency_match"] == "").any()
    days = {d for m in monthly["frequency_match"] for d in re.split(r"[|,]", m) if d}
    assert {"1", "15", "29", "30", "31"} <= days
    assert (match == "1,15").any()
    yearly = joined[freq == "yearly"]
    assert yearly["start_date"].str.endswith("-02-29").any()
    feb29 = yearly.loc[yearly["start_date"].str.endswith("-02-29"), "start_date"]
    assert all(date.fromisoformat(d) <= AS_OF for d in feb29)  # real leap days


def test_frequency_match_values_fit_their_frequency(frames):
    for freq, match in zip(frames["packages"]["frequency"], frames["packages"]["frequency_match"]):
        if not match:
            continue
        days = [int(x) for x in re.split(r"[|,]", match)]
        assert freq in ("weekly", "monthly"), (freq, match)
        assert all(1 <= d <= (7 if freq == "weekly" else 31) for d in days), (freq, match)


def test_money_strings_are_exact_decimals(frames):
    plain = re.compile(r"^\d+(\.\d{0,5}[1-9])?$")  # no exponent, no sign, no trailing zeros
    for name, cols in MONEY_COLUMNS.items():
        for c in cols:
            values = frames[name][c]
            unsigned = values.str.removeprefix("-") if c == "balance" else values
            assert unsigned.str.match(plain).all(), (name, c, values[~unsigned.str.match(plain)])
            for v in unsigned:
                parse_micros(v)
            _, bad = parse_micros_series(unsigned)
            assert not bad.any(), (name, c)
    # balances are whole minor units of their currency; some customers owe money
    cust = frames["customers"]
    for cur, bal in zip(cust["currency"], cust["balance"]):
        frac = bal.partition(".")[2]
        assert len(frac) <= minor_digits(cur), (cur, bal)
    assert cust["balance"].str.startswith("-").any()


def test_package_kinds(frames):
    p = frames["packages"]
    micros = {c: p[c].map(parse_micros) for c in ("cost", "retail", "setup_cost", "setup_retail")}
    assert (micros["cost"] < micros["retail"]).all()  # margin everywhere
    assert (micros["setup_cost"] <= micros["setup_retail"]).all()
    assert (micros["setup_retail"] > 0).any() and (micros["setup_retail"] == 0).any()
    fm = p[p["type"] == "free_minutes"]
    std = p[p["type"] == "standard"]
    assert set(p["type"]) == {"standard", "free_minutes"}
    assert (fm["free_minutes"].astype(int) > 0).all()
    assert {"100", "500", "1000"} <= set(fm["free_minutes"])
    assert {"^44", "^44|^91|^1", ""} <= set(fm["destination"])
    assert (std["free_minutes"] == "0").all() and (std["destination"] == "").all()
    ms = p[p["minimum_spend"] == "true"]
    assert len(ms) and (ms["retail"].map(parse_micros) > 0).all()
    assert "90" in set(p["minimum_days"])
    assert set(p["prorate"]) == {"true", "false"}
    assert set(p["minimum_spend"]) == {"true", "false"}
    assert p["name"].str.contains("DID").any() and p["name"].str.contains("PBX seat").any()
    jpy = p[p["currency"] == "JPY"]
    assert (jpy["retail"].map(parse_micros) % 1_000_000 == 0).sum() > len(jpy) // 2
    assert (p["retail"].str.partition(".")[2].str.len() > 2).any()  # sub-cent prices


def test_assignments_realistic(frames, joined):
    a = frames["assignments"]
    qty = a["quantity"].astype(int)
    assert qty.between(1, 50).all() and (qty == 1).mean() > 0.5 and (qty > 1).any()
    start = a["start_date"].map(date.fromisoformat)
    assert (start >= AS_OF - timedelta(days=sample_data.HISTORY_DAYS)).sum() > 0.9 * len(a)
    assert (start >= AS_OF).any() and (start < AS_OF).any()
    ended = a["end_date"] != ""
    assert 0.1 < ended.mean() < 0.35
    end = a.loc[ended, "end_date"].map(date.fromisoformat)
    assert (end >= start[ended]).all()
    # some end inside the minimum term (the extension of the SPEC section 3)
    j = joined[joined["end_date"] != ""]
    min_end = [date.fromisoformat(s) + timedelta(days=int(m) - 1)
               for s, m in zip(j["start_date"], j["minimum_days"])]
    assert any(date.fromisoformat(e) < m for e, m in zip(j["end_date"], min_end))
    assert set(a["auto_decrement"]) == {"true", "false"}
    assert (a["auto_decrement"] == "true").mean() > 0.7
    has = a["free_minutes"] != ""
    assert has.any()
    assert a.loc[has, "free_minutes"].str.fullmatch(r"\d+").all()
    types = a.merge(frames["packages"][["package_id", "type"]], on="package_id")
    assert (types.loc[types["free_minutes"] != "", "type"] == "free_minutes").all()


def test_calls_realistic(frames):
    u = frames["usage"]
    ts = u["start_time"]
    assert ts.str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z").all()
    parsed = pd.to_datetime(ts, format="%Y-%m-%dT%H:%M:%SZ")
    assert parsed.is_monotonic_increasing
    first = datetime.combine(AS_OF - timedelta(days=29), datetime.min.time())
    assert parsed.min() >= first and parsed.max() < first + timedelta(days=30)
    assert parsed.dt.date.nunique() == 30
    dest = u["destination"]
    assert dest.str.fullmatch(r"\+?[1-9]\d{7,14}").all()
    assert dest.str.startswith("+").any() and (~dest.str.startswith("+")).any()
    bare = dest.str.removeprefix("+")
    for cc in ("44", "91", "1", "49", "33"):
        assert bare.str.startswith(cc).any(), cc
    dur = u["duration_s"].astype(int)
    assert (dur >= 0).all() and (dur == 0).any()
    assert 0.7 < dur.between(30, 600).mean()
    charge = u["charge"].map(parse_micros)
    assert (charge[dur == 0] == 0).all() and (charge[dur > 0] > 0).all()
    assert u["charge"].str.fullmatch(r"\d+(\.\d{1,6})?").all()


def test_charge_is_duration_times_rate():
    """A call twice as long on the same destination costs twice as much (±rounding)."""
    f = generate(customers=5, assignments=10, calls=3_000, seed=3, as_of=AS_OF)
    u = f["usage"].merge(f["customers"], on="customer_id")
    u = u[u["duration_s"] != "0"].copy()
    u["cc"] = u["destination"].str.removeprefix("+").str[:3]
    u["rate"] = u["charge"].map(parse_micros) * 60 / u["duration_s"].astype(int)
    spread = u.groupby(["customer_id", "cc"])["rate"].agg(lambda r: r.max() / r.min())
    assert (spread < 4).all()  # a handful of rates per (customer, prefix), not noise


def test_calls_in_chunks_same_rows(monkeypatch):
    whole = generate(customers=8, assignments=30, calls=2_500, seed=5, as_of=AS_OF)["usage"]
    monkeypatch.setattr(sample_data, "USAGE_CHUNK_ROWS", 1_000)
    lazy = generate(customers=8, assignments=30, calls=2_500, seed=5, as_of=AS_OF, lazy_usage=True)
    chunks = list(lazy["usage"])
    assert [len(c) for c in chunks] == [1_000, 1_000, 500]
    u = pd.concat(chunks, ignore_index=True)
    assert u["call_id"].is_unique and u["call_id"].iloc[-1] == "K00002500"
    assert pd.to_datetime(u["start_time"], format="%Y-%m-%dT%H:%M:%SZ").is_monotonic_increasing
    eager = generate(customers=8, assignments=30, calls=2_500, seed=5, as_of=AS_OF)["usage"]
    pd.testing.assert_frame_equal(u, eager)
    # (a different chunk size draws differently: USAGE_CHUNK_ROWS is part of the seed contract)
    assert len(whole) == len(u)


def test_small_and_empty_samples():
    one = generate(customers=1, assignments=3, calls=10, seed=1, as_of=AS_OF)
    assert set(one["packages"]["currency"]) == {"EUR"}
    assert len(one["assignments"]) == 3 and len(one["usage"]) == 10
    empty = generate(customers=0, assignments=0, calls=0, seed=1, as_of=AS_OF)
    assert len(empty["customers"]) == len(empty["usage"]) == 0
    assert list(empty["usage"].columns) == ENTITY_COLUMNS["usage"]
    with pytest.raises(ValueError):
        generate(customers=0, assignments=5, calls=0, seed=1, as_of=AS_OF)
    with pytest.raises(ValueError):
        generate(customers=5, assignments=-1, calls=0, seed=1, as_of=AS_OF)


def test_write_csv_round_trip(frames, tmp_path):
    paths = write_csv(frames, tmp_path)
    assert {p.name for p in paths.values()} == {"customers.csv", "packages.csv",
                                                 "assignments.csv", "usage.csv"}
    for name, path in paths.items():
        back = pd.read_csv(path, dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(back, frames[name], check_dtype=False)
        assert path.read_text().splitlines()[0] == ",".join(ENTITY_COLUMNS[name])
    assert "e-0" not in paths["usage"].read_text()


def test_streamed_files_equal_in_memory_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sample_data, "USAGE_CHUNK_ROWS", 700)
    a = write_csv(generate(20, 100, 2_000, 9, AS_OF), tmp_path / "a")
    b = write_sample(tmp_path / "b", 20, 100, 2_000, 9, AS_OF)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name


def test_bench_generate_cli(tmp_path, capsys):
    assert bench_generate.main(["--customers", "10", "--assignments", "50", "--calls", "300",
                                "--seed", "2", "--out", str(tmp_path),
                                "--as-of", "2024-03-01"]) == 0
    out = capsys.readouterr().out
    assert "usage.csv" in out and " s" in out
    usage = pd.read_csv(tmp_path / "usage.csv", dtype=str, keep_default_na=False)
    assert len(usage) == 300 and usage["start_time"].max().startswith("2024-03-01")
    a = pd.read_csv(tmp_path / "assignments.csv", dtype=str, keep_default_na=False)
    assert (a["start_date"] == "2024-02-29").any()
    with pytest.raises(SystemExit):
        bench_generate.main(["--out", str(tmp_path), "--as-of", "2024-02-30"])
