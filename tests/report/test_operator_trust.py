"""What an operator reads must be true and plain (#30 items 7, 9, 12, 14): amounts in the
currency's minor unit, only this date's extended assignments, differing posted keys said in
the sentence and at the top of the page, readable folders, true/false, names in charts,
no margin share of a negative total, no "would be billed" for what is already posted."""

from __future__ import annotations

import csv
import json
import os
import re
import stat

import numpy as np
import pandas as pd
import pytest

from billing_jobs.core.frames import CONSUMPTION_COLUMNS, BillingResult
from billing_jobs.report import write_report
from billing_jobs.report.writer import outcome_sentence
from tests.report import scenario


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _dates(values):
    return pd.Series(pd.to_datetime(values), dtype="datetime64[s]")


def _line(customer, assignment, package, kind, start, end, amount, currency, status,
          qty=1, cost=0):
    return dict(run_date=scenario.RUN_DATE.isoformat(), customer_id=customer,
                assignment_id=assignment, package_id=package, kind=kind, period_start=start,
                period_end=end, quantity=qty, unit_price=abs(amount), amount=amount, cost=cost,
                currency=currency, auto_decrement=True, status=status)


def _lines(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in ("run_date", "period_start", "period_end"):
        df[c] = _dates(df[c].replace("", None))
    for c in ("quantity", "unit_price", "amount", "cost"):
        df[c] = df[c].astype("int64")
    return df


def _util(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_id", "assignment_id", "period_start",
                                     "period_end", "seconds_granted", "seconds_used",
                                     "credited"])
    for c in ("period_start", "period_end"):
        df[c] = _dates(df[c])
    for c in ("seconds_granted", "seconds_used", "credited"):
        df[c] = df[c].astype("int64")
    return df


def _empty_grants():
    return scenario.grants().iloc[0:0]


# ------------------------------------------------------------------------------ item 7

def test_credited_and_covered_are_written_in_the_currency_minor_unit(tmp_path):
    lines = _lines([_line("C-EUR", "A1", "P1", "recurring", "2026-03-01", "2026-04-01",
                          5_000_000, "EUR", "posted")])
    util = _util([
        ("C-EUR", "A1", "2026-02-01", "2026-03-01", 6000, 1800, 3_486_295),
        ("C-JPY", "A2", "2026-02-15", "2026-03-15", 3000, 3000, 3_486_295),
        ("C-KWD", "A3", "2026-02-15", "2026-03-15", 3000, 300, 3_486_500),
        ("C-EUR", "A4", "2026-02-15", "2026-03-15", 3000, 300, 5_000),  # half a cent: up
    ])
    consumption = pd.DataFrame({
        "run_date": _dates(["2026-03-01"] * 2), "call_id": ["K1", "K2"],
        "customer_id": ["C-EUR", "C-JPY"], "assignment_id": ["A1", "A2"],
        "period_start": _dates(["2026-02-01", "2026-02-15"]),
        "start_time": pd.to_datetime(["2026-02-28T10:00:00Z", "2026-02-28T11:00:00Z"]),
        "seconds": np.array([60, 120], dtype="int64"),
        "covered": np.array([1_234_567, 7_500_000], dtype="int64"),
        "late": [False, True]}, columns=CONSUMPTION_COLUMNS)
    result = BillingResult(lines, _empty_grants(), util, consumption=consumption)
    # the customers' currencies come with the run's inputs (run.stages.report_context)
    context = {"currencies": pd.DataFrame({"customer_id": ["C-EUR", "C-JPY", "C-KWD"],
                                           "currency": ["EUR", "JPY", "KWD"]})}
    out = write_report(tmp_path / "r", scenario.run_info(), result, None, {}, context)
    assert [(u["assignment_id"], u["credited"]) for u in _rows(out / "utilisation.csv")] == [
        ("A1", "3.49"), ("A2", "3"), ("A3", "3.487"), ("A4", "0.01")]
    assert [(r["call_id"], r["covered"]) for r in _rows(out / "free_minutes.csv")] == [
        ("K1", "1.23"), ("K2", "8")]
    # without the inputs' currencies, the run's own lines say a customer's currency
    out = write_report(tmp_path / "r2", scenario.run_info(), result, None, {}, None)
    assert _rows(out / "utilisation.csv")[0]["credited"] == "3.49"


# ------------------------------------------------------------------------------ item 9

def test_extended_banner_names_only_assignments_billed_past_their_end_on_this_date(tmp_path):
    lines = _lines([
        # A1: extended to 31 Mar, end 5 Mar; billed 1 Mar .. 1 Apr: past its end date
        _line("C1", "A1", "P1", "recurring", "2026-03-01", "2026-04-01", 1_000_000, "EUR",
              "posted"),
        # A2: extended, but this date's line ends before its end date (+1): not news
        _line("C1", "A2", "P1", "recurring", "2026-02-22", "2026-03-01", 1_000_000, "EUR",
              "posted"),
    ])
    ext = pd.DataFrame({"assignment_id": ["A1", "A2", "A3"], "customer_id": ["C1"] * 3,
                        "end_date": _dates(["2026-03-05", "2026-03-20", "2026-03-05"]),
                        "effective_end": _dates(["2026-03-31"] * 3)})  # A3: no line today
    result = BillingResult(lines, _empty_grants(), _util([]), extended_ends=ext)
    out = write_report(tmp_path / "r", scenario.run_info(), result, None, {})
    s = json.loads((out / "summary.json").read_text())
    assert s["extended_assignments"] == 1 and s["counts"]["extended_assignments"] == 1
    assert [e["assignment_id"] for e in s["extended_ends"]] == ["A1"]
    html = (out / "report.html").read_text()
    banner = re.search(r'<div class="alert info" id="extended-flag">(.*?)</div>', html, re.S)
    assert banner and "1 assignment billed past its end date" in " ".join(banner.group(1).split())
    # a date that bills none of them shows no banner at all
    quiet = BillingResult(lines.iloc[1:], _empty_grants(), _util([]), extended_ends=ext)
    out = write_report(tmp_path / "q", scenario.run_info(), quiet, None, {})
    assert 'id="extended-flag"' not in (out / "report.html").read_text()
    assert json.loads((out / "summary.json").read_text())["extended_ends"] == []


# ------------------------------------------------------------------------------ item 12

def _differing_result():
    lines = _lines([
        _line("C1", "A1", "DID", "recurring", "2027-01-01", "2027-02-01", 2_000_000, "EUR",
              "already_posted"),
        _line("C1", "A2", "DID", "recurring", "2027-01-01", "2027-02-01", 2_000_000, "EUR",
              "already_posted"),
    ])
    lines["run_date"] = _dates(["2027-01-01"] * 2)
    diff = pd.DataFrame({
        "assignment_id": ["A1"], "kind": ["recurring"], "period_start": _dates(["2027-01-01"]),
        "currency": ["EUR"], "ledger_customer_id": ["C1"], "customer_id": ["C2"],
        "ledger_quantity": np.array([1], dtype="int64"), "quantity": np.array([2], dtype="int64"),
        "ledger_amount": np.array([2_000_000], dtype="int64"),
        "amount": np.array([6_000_000], dtype="int64"),
        "correction": ["billing-jobs rebill --from 2027-01-01 --to 2027-01-01"]})
    return BillingResult(lines, _empty_grants(), _util([]), differences=diff)


def test_a_differing_posted_line_is_said_in_the_sentence_and_at_the_top_of_the_page(tmp_path):
    info = dict(scenario.run_info(mode="simulate"), run_date="2027-01-01", unposted_dates=[])
    out = write_report(tmp_path / "r", info, _differing_result(), None, {})
    s = json.loads((out / "summary.json").read_text())
    sentence = outcome_sentence(s)
    assert sentence == (
        "simulated: nothing new would be posted; 2 lines were already posted earlier and "
        "would not be charged again; 1 posted line differs from current data: A1 recurring "
        "from 2027-01-01: the ledger holds 2.00 EUR (customer C1, quantity 1), current data "
        "gives 6.00 EUR (customer C2, quantity 2) (differences.csv): run `billing-jobs rebill "
        "--from 2027-01-01 --to 2027-01-01` to see the difference, then with --post to post "
        "it; nothing was written to the database")
    html = (out / "report.html").read_text()
    top = html[:html.index('<section id="headline">')]
    banner = re.search(r'<div class="alert warn" id="differences">(.*?)</div>', top, re.S)
    assert banner, "the differing key is at the top of the page, before the totals"
    text = " ".join(re.sub(r"<[^>]+>", " ", banner.group(1)).split())
    assert text.startswith("1 posted line differs from current data")
    assert "A1 recurring from 2027-01-01: the ledger holds 2.00 EUR" in text
    assert "Run billing-jobs rebill --from 2027-01-01 --to 2027-01-01 to see the difference" in text
    # the card of a simulation where everything is already posted says so (#30 item 14)
    card = re.search(r'<div class="card money" data-currency="EUR">(.*?)</dl>', html, re.S).group(1)
    assert "would be billed" not in card
    assert "already posted earlier, not billed again" in card


def test_no_differences_no_banner_and_the_sentence_is_unchanged(report_dir):
    s = json.loads((report_dir / "summary.json").read_text())
    assert "differs from current data" not in outcome_sentence(s)
    assert 'id="differences"' not in (report_dir / "report.html").read_text()
    assert s["outcome"]["differing"]["lines"] == 0


# ------------------------------------------------------------------------------ item 14

def test_report_folders_get_the_umask_mode_not_0700(tmp_path):
    old = os.umask(0o022)
    try:
        from billing_jobs.report.folders import building, finish

        with building(tmp_path / "rep") as tmp:
            (tmp / "a.csv").write_text("x\n")
            out = finish(tmp, tmp_path / "rep", {})
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        os.umask(0o027)
        with building(tmp_path / "rep2") as tmp:
            out = finish(tmp, tmp_path / "rep2", {})
        assert stat.S_IMODE(out.stat().st_mode) == 0o750
    finally:
        os.umask(old)


def test_margin_share_is_not_shown_for_a_negative_total(tmp_path):
    lines = _lines([
        _line("C1", "A1", "P1", "free_minutes_credit", "2026-02-28", "2026-03-01", -3_010_000,
              "EUR", "posted"),
        _line("C1", "A2", "P2", "recurring", "2026-03-01", "2026-04-01", 0, "EUR", "posted",
              cost=10_000),
    ])
    out = write_report(tmp_path / "r", scenario.run_info(), BillingResult(
        lines, _empty_grants(), _util([])), None, {})
    s = json.loads((out / "summary.json").read_text())
    assert s["totals"]["EUR"]["amount"] == "-3.01" and s["totals"]["EUR"]["margin"] == "-3.02"
    assert s["totals"]["EUR"]["margin_pct"] is None and s["margin"]["EUR"]["margin_pct"] is None
    assert "%)" not in (out / "report.html").read_text().split('id="headline"')[1].split(
        "</dl>")[0]


def test_package_chart_shows_names_beside_ids(tmp_path):
    lines = _lines([_line("C1", "A1", "P-DID", "recurring", "2026-03-01", "2026-04-01",
                          1_000_000, "EUR", "posted")])
    context = {"packages": pd.DataFrame({"package_id": ["P-DID"], "name": ["DID <UK>"],
                                         "description": [""], "frequency": ["monthly"]})}
    out = write_report(tmp_path / "r", scenario.run_info(), BillingResult(
        lines, _empty_grants(), _util([])), None, {}, context)
    html = (out / "report.html").read_text()
    chart = html[html.index('id="chart-package"'):html.index('id="chart-kind"')]
    assert "DID &lt;UK&gt; (P-DID)" in chart  # the name as typed (plotly labels are HTML)


@pytest.mark.parametrize("names", [None, {"P1": ""}])
def test_package_labels_fall_back_to_the_id(names):
    from billing_jobs.report.charts import package_labels

    assert package_labels(["P1"], names) == ["P1"]


def test_an_amount_of_unknown_currency_stays_exact_rather_than_guessed():
    from billing_jobs.report.formatting import rounded_money

    assert list(rounded_money([3_486_295, 3_486_295, -5_000], ["JPY", "", "EUR"])) == [
        "3", "3.486295", "-0.01"]
