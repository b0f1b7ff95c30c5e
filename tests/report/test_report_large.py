"""A million-line run: the page stays small (aggregates + 2000 sample rows), totals exact."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from tests.report.conftest import BIG_LINES

MB = 1024 * 1024


def _embedded_tables(html: str) -> dict:
    return {m.group(1): json.loads(m.group(2)) for m in re.finditer(
        r'<script type="application/json" id="data-([a-z]+)">(.*?)</script>', html, re.S)}


def test_the_page_of_a_million_lines_stays_small_and_embeds_at_most_2000_rows(big_report):
    size = (big_report / "report.html").stat().st_size
    print(f"report.html for {BIG_LINES} lines: {size / MB:.2f} MB; "
          f"charges.csv: {(big_report / 'charges.csv').stat().st_size / MB:.1f} MB")
    assert size < 15 * MB
    html = (big_report / "report.html").read_text(encoding="utf-8")
    tables = _embedded_tables(html)
    assert tables["lines"]["total"] == BIG_LINES
    assert len(tables["lines"]["rows"]) == 2000
    assert all(len(t["rows"]) <= 2000 for t in tables.values())
    assert "first 2000 of 1000000 rows" in html and "charges.csv" in html
    assert html.count("Plotly.newPlot(") == 4


def test_summary_totals_equal_charges_csv_at_scale(big_report, big_run):
    """Read charges.csv back as exact decimals and sum them per currency and kind."""
    money = pa.decimal128(38, 6)
    table = pacsv.read_csv(big_report / "charges.csv", convert_options=pacsv.ConvertOptions(
        column_types={"amount": money, "cost": money, "currency": pa.string(),
                      "kind": pa.string()},
        include_columns=["currency", "kind", "amount", "cost"]))
    assert table.num_rows == BIG_LINES
    # the CSV holds exactly the engine's amounts (checked on a sample, as Python Decimals)
    rng = np.random.default_rng(1)
    sample = rng.choice(BIG_LINES, 20_000, replace=False)
    csv_amounts = table.column("amount").take(pa.array(sample)).to_pylist()
    engine = big_run.due_lines["amount"].to_numpy()[sample]
    assert [a * 10**6 for a in csv_amounts] == [Decimal(int(m)) for m in engine]

    sums = {(r["currency"], r["kind"]): r for r in table.group_by(["currency", "kind"]).aggregate(
        [("amount", "sum"), ("cost", "sum"), ("amount", "count")]).to_pylist()}
    summary = json.loads((big_report / "summary.json").read_text())
    assert sorted(summary["totals"]) == ["EUR", "JPY", "USD"]
    for cur, t in summary["totals"].items():
        mine = [r for (c, _), r in sums.items() if c == cur]
        assert Decimal(t["amount"]) == sum(r["amount_sum"] for r in mine)
        assert Decimal(t["cost"]) == sum(r["cost_sum"] for r in mine)
        assert t["lines"] == sum(r["amount_count"] for r in mine)
        assert set(t["by_kind"]) == {k for (c, k) in sums if c == cur}
        for kind, b in t["by_kind"].items():
            r = sums[(cur, kind)]
            assert (Decimal(b["amount"]), Decimal(b["cost"]), b["lines"]) == (
                r["amount_sum"], r["cost_sum"], r["amount_count"])
            assert Decimal(b["margin"]) == r["amount_sum"] - r["cost_sum"]
    assert summary["counts"]["lines"] == BIG_LINES
    assert sum(summary["counts"]["lines_by_status"].values()) == BIG_LINES


def test_largest_customers_are_the_top_20_by_amount(big_report, big_run):
    summary = json.loads((big_report / "summary.json").read_text())
    lines = big_run.due_lines
    per = (lines.groupby(["currency", "customer_id"])["amount"].sum()
           .reset_index().sort_values(["currency", "amount", "customer_id"],
                                      ascending=[True, False, True]))
    for cur, rows in summary["top_customers"].items():
        expected = per[per["currency"] == cur].head(20)
        assert [r["customer_id"] for r in rows] == expected["customer_id"].tolist()
        assert [Decimal(r["amount"]) for r in rows] == [
            Decimal(int(a)) / 10**6 for a in expected["amount"]]
    util = pd.read_csv(big_report / "utilisation.csv")
    assert summary["free_minutes"]["utilisation"]["seconds_used"] == int(util["seconds_used"].sum())
