"""The report folder of a hand-built run: files, columns, formats, totals, page content."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from billing_jobs.core.frames import (
    DUE_LINE_COLUMNS,
    EXTENDED_END_COLUMNS,
    GRANT_COLUMNS,
    UTILISATION_COLUMNS,
    BillingResult,
    empty_frame,
)
from billing_jobs.report import headline, write_report
from tests.report import scenario

SPEC_COLUMNS = {
    "charges.csv": ["run_date", "customer_id", "assignment_id", "package_id", "kind",
                    "period_start", "period_end", "quantity", "unit_price", "amount", "cost",
                    "currency", "auto_decrement", "status"],
    "grants.csv": ["run_date", "customer_id", "assignment_id", "package_id", "period_start",
                   "period_end", "destination", "seconds", "status"],
    # the SPEC's columns, then what #12 adds: credited amount and minutes granted/used/left
    "utilisation.csv": ["customer_id", "assignment_id", "period_start", "period_end",
                        "seconds_granted", "seconds_used", "credited", "minutes_granted",
                        "minutes_used", "minutes_left"],
    "rejected.csv": ["entity", "id", "reason"],
    # keys posted earlier whose current data differs from the ledger (#17 item 3)
    "differences.csv": ["assignment_id", "kind", "period_start", "currency",
                        "ledger_customer_id", "customer_id", "ledger_quantity", "quantity",
                        "ledger_amount", "amount", "correction"],
    # every call part the date consumed (#12)
    "free_minutes.csv": ["run_date", "customer_id", "assignment_id", "period_start", "call_id",
                         "start_time", "seconds", "covered", "late"],
}


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [dict(zip(header, row)) for row in reader]


def by(rows, key):
    return {r[key]: r for r in rows}


def test_the_folder_holds_the_spec_files_with_exactly_the_spec_columns(report_dir):
    names = sorted(p.name for p in report_dir.iterdir())
    # the SPEC's files, plus balances.csv (balance before/after per customer, #14)
    assert names == sorted([*SPEC_COLUMNS, "balances.csv", "summary.json", "report.html"])
    for name, columns in SPEC_COLUMNS.items():
        header, _ = read_csv(report_dir / name)
        assert header == columns, name


def test_charges_are_plain_decimals_in_the_minor_unit(report_dir):
    _, rows = read_csv(report_dir / "charges.csv")
    lines = by(rows, "assignment_id")
    assert len(rows) == 7
    assert {a: (r["amount"], r["cost"]) for a, r in lines.items()} == {
        "A1": ("10.50", "4.00"),
        "A2": ("0.38", "0.04"),      # 3 x 0.125 = 0.375 -> 0.38
        "A3": ("25.00", "5.00"),
        "A4": ("0.00", "0.00"),      # a met minimum spend is written as 0
        "A5": ("334", "200"),        # JPY: no minor digits
        "A6": ("1000", "600"),
        "A7": ("1.250", "0.500"),    # KWD: three
    }
    # unit prices: plain decimals, up to 6 places, trailing zeros trimmed
    assert {a: r["unit_price"] for a, r in lines.items()} == {
        "A1": "10.5", "A2": "0.125", "A3": "25", "A4": "0.0125", "A5": "167", "A6": "1000",
        "A7": "1.25"}
    assert lines["A3"]["period_end"] == "" and lines["A6"]["period_end"] == ""
    assert lines["A1"]["period_start"] == "2026-03-01" and lines["A1"]["period_end"] == "2026-04-01"
    assert {r["run_date"] for r in rows} == {"2026-03-01"}
    assert lines["A4"]["auto_decrement"] == "false" and lines["A1"]["auto_decrement"] == "true"
    assert lines["A5"]["quantity"] == "2"
    assert [r["status"] for r in rows] == ["posted", "posted", "already_posted", "invoiced",
                                           "posted", "invoiced", "posted"]
    # no float artefacts anywhere
    assert not any(re.search(r"e[+-]?\d|\.\d{7,}", v) for r in rows for v in r.values())


def test_grants_utilisation_and_rejected_round_trip(report_dir):
    _, grants = read_csv(report_dir / "grants.csv")
    assert grants == [
        dict(run_date="2026-03-01", customer_id="C-EUR-1", assignment_id="A8",
             package_id="P-FM-UK", period_start="2026-03-01", period_end="2026-04-01",
             destination="^44|^91", seconds="6000", status="posted"),
        dict(run_date="2026-03-01", customer_id="C-JPY", assignment_id="A9",
             package_id="P-FM-ALL", period_start="2026-03-01", period_end="",
             destination="", seconds="3000", status="already_posted"),
    ]
    _, util = read_csv(report_dir / "utilisation.csv")
    assert [(u["assignment_id"], u["period_start"], u["period_end"], u["seconds_granted"],
             u["seconds_used"]) for u in util] == [
        ("A8", "2026-02-01", "2026-03-01", "6000", "1800"),
        ("A9", "2026-02-15", "2026-03-15", "3000", "3000")]
    _, rejected = read_csv(report_dir / "rejected.csv")
    expected = scenario.rejected()
    assert [(r["entity"], r["id"], r["reason"]) for r in rejected] == list(
        expected.itertuples(index=False, name=None))


def test_summary_totals_equal_the_sums_of_charges_csv(report_dir):
    summary = json.loads((report_dir / "summary.json").read_text())
    _, rows = read_csv(report_dir / "charges.csv")
    sums = defaultdict(lambda: [Decimal(0), Decimal(0), 0])

    def add(key, r):
        sums[key][0] += Decimal(r["amount"])
        sums[key][1] += Decimal(r["cost"])
        sums[key][2] += 1

    for r in rows:
        add((r["currency"],), r)
        add((r["currency"], "kind", r["kind"]), r)
        add((r["currency"], "status", r["status"]), r)

    totals = summary["totals"]
    assert sorted(totals) == ["EUR", "JPY", "KWD"]
    for cur, t in totals.items():
        amount, cost, n = sums[(cur,)]
        assert (Decimal(t["amount"]), Decimal(t["cost"]), t["lines"]) == (amount, cost, n)
        assert Decimal(t["margin"]) == amount - cost
        assert summary["margin"][cur]["revenue"] == t["amount"]
        assert Decimal(summary["margin"][cur]["margin"]) == amount - cost
        for kind, b in t["by_kind"].items():
            amount, cost, n = sums[(cur, "kind", kind)]
            assert (Decimal(b["amount"]), Decimal(b["cost"]), b["lines"]) == (amount, cost, n)
        for status, b in t["by_status"].items():
            amount, cost, n = sums[(cur, "status", status)]
            assert (Decimal(b["amount"]), Decimal(b["cost"]), b["lines"]) == (amount, cost, n)
        assert sum(b["lines"] for b in t["by_kind"].values()) == t["lines"]
    # the exact strings, in the minor unit of each currency
    assert (totals["EUR"]["amount"], totals["EUR"]["cost"], totals["EUR"]["margin"]) == (
        "35.88", "9.04", "26.84")
    assert (totals["JPY"]["amount"], totals["KWD"]["amount"]) == ("1334", "1.250")
    assert totals["EUR"]["margin_pct"] == "74.8"


def test_summary_counts_run_info_and_flags(report_dir):
    s = json.loads((report_dir / "summary.json").read_text())
    assert (s["mode"], s["status"], s["run_id"], s["run_date"]) == (
        "post", "succeeded", 17, "2026-03-01")
    c = s["counts"]
    assert c["lines"] == 7
    assert c["lines_by_status"] == {"posted": 4, "invoiced": 2, "already_posted": 1}
    assert c["lines_by_kind"] == {"setup": 2, "recurring": 3, "prorated": 1, "minimum_spend": 1}
    assert (c["grants"], c["grants_by_status"]) == (2, {"posted": 1, "already_posted": 1})
    assert c["customers"] == 4
    assert c["rejects"] == 3
    assert c["rejects_by_entity"] == {"customers": 0, "packages": 1, "assignments": 1, "usage": 1}
    assert c["extended_assignments"] == 1 and s["extended_assignments"] == 1
    assert s["extended_ends"] == [{"assignment_id": "A3", "customer_id": "C-EUR-1",
                                   "end_date": "2026-03-05", "effective_end": "2026-03-31"}]
    assert s["unposted_dates"] == ["2026-02-27", "2026-02-28"]
    assert s["run"]["started_by"] == "cli:test" and s["run"]["customer_ids"] is None
    assert s["run"]["code_version"] == "0.1.0+test"
    for stage, secs in scenario.TIMINGS.items():
        assert s["timings"][stage] == pytest.approx(secs, abs=0.001)  # to the millisecond
    assert s["timings"]["report"] >= 0
    assert s["free_minutes"]["seconds_granted"] == 9000
    assert s["free_minutes"]["utilisation"] == {"periods": 2, "seconds_granted": 9000,
                                                "seconds_used": 4800}
    assert s["top_customers"]["EUR"][0] == {"customer_id": "C-EUR-1", "lines": 3, "name": "",
                                            "amount": "35.88", "cost": "9.04", "margin": "26.84"}
    assert s["report_html"].endswith("report.html")


def _embedded(html: str, name: str) -> dict:
    m = re.search(rf'<script type="application/json" id="data-{name}">(.*?)</script>', html, re.S)
    assert m, name
    return json.loads(m.group(1))


def test_report_html_is_self_contained_and_shows_the_run(report_dir):
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    # no fetches of anything: no external scripts, stylesheets, images, frames
    assert not re.search(r"<(script|img|iframe|link)\b[^>]*\b(src|href)\s*=", html, re.I)
    assert html.count("plotly.js v") == 1          # the library, inlined once
    assert html.count("Plotly.newPlot(") == 4      # package, kind, status, utilisation
    for text in ("35.88", "9.04", "26.84", "1334", "1.250", "POSTED",
                 "2026-02-27, 2026-02-28", "never posted", "billed past"):
        assert text in html, text
    # rejected reasons are data, never markup
    assert "<script>alert(1)" not in html
    assert _embedded(html, "rejected")["rows"][0] == list(scenario.rejected().iloc[0])
    lines = _embedded(html, "lines")
    # the page's lines: the CSV's columns plus names, description and the explanation
    assert set(SPEC_COLUMNS["charges.csv"]) - {"run_date", "period_end"} <= set(lines["columns"])
    assert {"customer", "package", "description", "why this amount",
            "period_end (exclusive)"} <= set(lines["columns"])
    assert lines["total"] == 7 and len(lines["rows"]) == 7
    assert lines["rows"][4][lines["columns"].index("amount")] == "334"
    assert _embedded(html, "extended")["rows"] == [["A3", "C-EUR-1", "2026-03-05", "2026-03-31"]]
    # the largest-customers table
    assert re.search(r'<table class="grid top-customers" data-currency="EUR">.*?C-EUR-1.*?35\.88',
                     html, re.S)


def test_headline_names_mode_status_lines_totals_rejects_and_path(report_dir):
    text = headline(json.loads((report_dir / "summary.json").read_text()))
    assert "post" in text and "succeeded" in text
    assert "lines 7 (posted 4, invoiced 2, already_posted 1)" in text
    assert "EUR: amount 35.88  cost 9.04  margin 26.84" in text
    assert "JPY: amount 1334" in text and "KWD: amount 1.250" in text
    assert "rejected 3 input rows" in text
    assert "2 earlier billing dates never posted: 2026-02-27, 2026-02-28" in text
    assert str(report_dir.resolve() / "report.html") in text
    assert len(text.splitlines()) <= 12


def test_a_simulation_without_status_column_is_all_simulated(tmp_path):
    result = scenario.result()
    result.due_lines = result.due_lines.drop(columns="status")
    result.grants = result.grants.drop(columns="status")
    before = result.due_lines.copy()
    out = write_report(tmp_path / "sim", scenario.run_info(mode="simulate"), result,
                       scenario.rejected(), {})
    _, rows = read_csv(out / "charges.csv")
    assert {r["status"] for r in rows} == {"simulated"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["lines_by_status"] == {"simulated": 7}
    assert "SIMULATION" in (out / "report.html").read_text()
    assert "simulation (nothing posted)" in headline(summary)
    pd.testing.assert_frame_equal(result.due_lines, before)  # the caller's frame is untouched


def test_a_post_without_status_is_refused(tmp_path):
    result = scenario.result()
    result.due_lines = result.due_lines.drop(columns="status")
    with pytest.raises(ValueError, match="status"):
        write_report(tmp_path / "p", scenario.run_info(mode="post"), result, None, {})


def test_an_empty_run_writes_headers_only_and_a_page(tmp_path):
    empty = BillingResult(due_lines=empty_frame(DUE_LINE_COLUMNS),
                          grants=empty_frame(GRANT_COLUMNS),
                          utilisation=empty_frame(UTILISATION_COLUMNS),
                          extended_ends=empty_frame(EXTENDED_END_COLUMNS))
    info = scenario.run_info(mode="simulate", status="failed")
    info.update(message="gate failed: amount out of range for A1", unposted_dates=[])
    out = write_report(tmp_path / "empty", info, empty, pd.DataFrame(columns=["entity", "id",
                                                                              "reason"]), {})
    for name, columns in SPEC_COLUMNS.items():
        assert (out / name).read_text() == ",".join(columns) + "\n"
    s = json.loads((out / "summary.json").read_text())
    assert s["totals"] == {} and s["counts"]["lines"] == 0 and s["counts"]["rejects"] == 0
    html = (out / "report.html").read_text()
    assert "No charge lines" in html and "gate failed: amount out of range for A1" in html
    assert "never posted" not in html
    assert "failed" in headline(s)


def test_totals_stay_exact_past_the_int64_range(tmp_path):
    """20 lines of 900 billion EUR: each fits int64 micros, their sum does not."""
    n = 20
    lines = scenario.due_lines().iloc[[0] * n].reset_index(drop=True)
    lines["assignment_id"] = [f"A{i:02d}" for i in range(n)]
    big = 900_000_000_000 * scenario.M + 10_000  # 900000000000.01 EUR
    lines["amount"] = np.int64(big)
    lines["cost"] = np.int64(1)
    result = BillingResult(due_lines=lines, grants=scenario.grants(),
                           utilisation=scenario.utilisation())
    out = write_report(tmp_path / "huge", scenario.run_info(), result, None, {})
    s = json.loads((out / "summary.json").read_text())
    assert s["totals"]["EUR"]["amount"] == "18000000000000.20"
    assert Decimal(s["totals"]["EUR"]["amount"]) == Decimal("900000000000.01") * n
    _, rows = read_csv(out / "charges.csv")
    assert {r["amount"] for r in rows} == {"900000000000.01"}
