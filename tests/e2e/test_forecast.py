"""`billing-jobs forecast --days N`: upcoming charges of the next billing dates, one pass,
one report, nothing written to the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import json

import pytest
import sqlalchemy as sa

from billing_jobs.cli.app import main
from tests.e2e.test_cli import billing_db  # noqa: F401 - the CLI test's imported carrier


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _ledger_count(db_url) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT COUNT(*) FROM ledger")).scalar_one()
    finally:
        engine.dispose()


def test_forecast_lists_each_upcoming_charge_and_writes_nothing(billing_db, tmp_path, capsys):
    db_url = billing_db
    before = _ledger_count(db_url)
    out = tmp_path / "fc"
    # 2027-01-01 .. 2027-01-03: A1/A4 setup + first month on 01-01, A3's minimum spend on
    # 01-01, A2 daily seat 334 JPY each day
    assert main(["forecast", "--days", "3", "--from", "2027-01-01", "--out", str(out),
                 "--db", db_url]) == 0
    assert _ledger_count(db_url) == before  # nothing posted, no run record needed
    lines = _rows(out / "upcoming_charges.csv")
    got = sorted((r["run_date"], r["assignment_id"], r["kind"], r["amount"], r["status"])
                 for r in lines)
    assert got == sorted([
        ("2027-01-01", "A1", "setup", "15.00", "upcoming"),
        ("2027-01-01", "A1", "recurring", "29.97", "upcoming"),
        ("2027-01-01", "A2", "recurring", "334", "upcoming"),
        ("2027-01-01", "A3", "minimum_spend", "37.65", "upcoming"),
        ("2027-01-01", "A4", "setup", "5.00", "upcoming"),
        ("2027-01-01", "A4", "recurring", "9.99", "upcoming"),
        ("2027-01-02", "A2", "recurring", "334", "upcoming"),
        ("2027-01-03", "A2", "recurring", "334", "upcoming"),
    ])
    names = {r["customer_id"]: r["customer_name"] for r in lines}
    assert names == {"C1": "Alice Telecom", "C2": "Tokyo Trading"}
    per = {(r["customer_id"], r["currency"]): r for r in _rows(out / "upcoming_by_customer.csv")}
    assert per[("C1", "EUR")]["amount"] == "97.61"  # 15 + 29.97 + 37.65 + 5 + 9.99
    assert per[("C2", "JPY")]["amount"] == "1002" and per[("C2", "JPY")]["lines"] == "3"
    assert per[("C2", "JPY")]["first_date"] == "2027-01-01"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"] == {"EUR": "97.61", "JPY": "1002"}
    assert summary["counts"]["upcoming_lines"] == 8
    page = (out / "forecast.html").read_text()
    assert "Alice Telecom" in page and "97.61" in page and "nothing posted" in page
    assert "<script" not in page  # a page without any script: nothing in it can execute
    said = capsys.readouterr().out
    assert "8 upcoming line(s) for 2 customer(s), 97.61 EUR, 1002 JPY" in said


def test_a_posted_date_shows_as_posted_not_upcoming(billing_db, tmp_path):
    db_url = billing_db
    assert main(["run", "--date", "2027-01-01", "--post", "--allow-future", "--db", db_url,
                 "--out", str(tmp_path / "post")]) == 0
    out = tmp_path / "fc"
    assert main(["forecast", "--days", "2", "--from", "2027-01-01", "--customer", "C2",
                 "--out", str(out), "--db", db_url]) == 0
    got = sorted((r["run_date"], r["status"]) for r in _rows(out / "upcoming_charges.csv"))
    assert got == [("2027-01-01", "already_posted"), ("2027-01-02", "upcoming")]
    assert json.loads((out / "summary.json").read_text())["totals"] == {"JPY": "334"}


def test_hostile_names_are_text_in_the_page_and_inert_in_the_csv(db_url, tmp_path):
    (tmp_path / "c.csv").write_text(
        'customer_id,name,currency,balance\nH1,"<script>alert(1)</script>=HYPERLINK(""x"")",EUR,0\n')
    (tmp_path / "p.csv").write_text(
        "package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
        "frequency_match,free_minutes,destination,minimum_spend,minimum_days,prorate,description\n"
        'P1,=cmd|\' /C calc\'!A0,standard,0,1,0,0,EUR,daily,,0,,false,0,false,<img src=x>\n')
    (tmp_path / "a.csv").write_text(
        "assignment_id,customer_id,package_id,quantity,start_date,end_date,auto_decrement,"
        "free_minutes\nA1,H1,P1,1,2027-01-01,,true,\n")
    assert main(["import", "--db", db_url, "--customers", str(tmp_path / "c.csv"),
                 "--packages", str(tmp_path / "p.csv"), "--assignments",
                 str(tmp_path / "a.csv")]) == 0
    out = tmp_path / "fc"
    assert main(["forecast", "--days", "1", "--from", "2027-01-01", "--out", str(out),
                 "--db", db_url]) == 0
    page = (out / "forecast.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    row = _rows(out / "upcoming_charges.csv")[0]
    assert row["package_name"].startswith("'=cmd")
    assert row["amount"] == "1.00"


def test_bad_days_exit_2(tmp_path, capsys):
    assert main(["forecast", "--days", "0", "--db", f"sqlite:///{tmp_path}/x.db"]) == 2
    assert "--days 0" in capsys.readouterr().err


def test_forecast_page_opens_offline_without_errors(db_url, billing_db, tmp_path):
    """The page in headless Chromium, network blocked: no console error, no request, no
    CSP violation; a screenshot is kept in test-artifacts/."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the page does not depend on the database; one browser run (SQLite) is enough")
    from playwright.sync_api import sync_playwright

    from tests.report.test_report_browser import ARGS, ARTIFACTS, CHROMIUM

    out = tmp_path / "fc"
    assert main(["forecast", "--days", "3", "--from", "2027-01-01", "--out", str(out),
                 "--db", billing_db]) == 0
    errors, requested = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1024, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
                   else (requested.append(r.request.url), r.abort()))
        page.goto((out / "forecast.html").resolve().as_uri())
        assert "97.61 EUR" in page.locator(".headline").inner_text()
        assert page.locator("table").nth(2).locator("tbody tr").count() == 8
        # the nonce'd stylesheet applied (CSP allowed it): the headline has its border
        assert page.eval_on_selector(".headline", "e => getComputedStyle(e).borderLeftStyle") == "solid"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "forecast.png"), full_page=True)
        browser.close()
    assert errors == [] and requested == []


# ------------------------------------------------------------------ free minutes (#30 item 1)

SAMPLE_AS_OF = "2026-11-30"  # the sample's calls cover the 30 days up to here


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    from datetime import date

    from billing_jobs.demo.sample_data import write_sample

    out = tmp_path_factory.mktemp("fm_sample")
    write_sample(out, 30, 220, 2_500, seed=7, as_of=date.fromisoformat(SAMPLE_AS_OF))
    return out


def _key(r) -> tuple:
    return (r["run_date"], r["customer_id"], r["assignment_id"], r["kind"], r["period_start"],
            r["amount"], r["currency"])


def test_forecast_after_posted_nights_agrees_with_the_runs_of_its_dates(db_url, sample_dir,
                                                                       tmp_path):
    """Two nights posted, then a 4-day forecast: each forecast date holds exactly the lines
    `run --date D` simulates for it (kind, key, amount, free-minute credits included), with
    the dates before it posted as the nightly runs will post them; no call credited twice."""
    assert main(["import", "--db", db_url,
                 *[a for n in ("customers", "packages", "assignments", "usage")
                   for a in (f"--{n}", str(sample_dir / f"{n}.csv"))]]) == 0
    assert main(["backfill", "--from", "2026-11-28", "--to", "2026-11-29", "--post",
                 "--db", db_url, "--out", str(tmp_path / "bf")]) == 0
    out = tmp_path / "fc"
    assert main(["forecast", "--days", "4", "--from", "2026-11-30", "--out", str(out),
                 "--db", db_url]) == 0
    forecast_rows = _rows(out / "upcoming_charges.csv")
    assert {r["status"] for r in forecast_rows} == {"upcoming"}
    credits = [r for r in forecast_rows if r["kind"] == "free_minutes_credit"]
    # the calls of 29 and 30 November are credited by the posts of 30 Nov and 1 Dec; the
    # calls the two posted nights credited (27, 28 Nov and the late window) are not again
    assert {r["run_date"] for r in credits} == {"2026-11-30", "2026-12-01"}
    assert all(r["amount"].startswith("-") for r in credits)
    # a forecast that starts on a posted night: that night shows the ledger's lines, and the
    # nights after it are the same as above (the posted consumption is not taken again)
    out2 = tmp_path / "fc2"
    assert main(["forecast", "--days", "3", "--from", "2026-11-29", "--out", str(out2),
                 "--db", db_url]) == 0
    again = _rows(out2 / "upcoming_charges.csv")
    assert {r["status"] for r in again if r["run_date"] == "2026-11-29"} == {"already_posted"}
    assert sorted(_key(r) for r in again if r["run_date"] != "2026-11-29") == sorted(
        _key(r) for r in forecast_rows if r["run_date"] in ("2026-11-30", "2026-12-01"))
    ran: list = []
    for day in ("2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03"):
        sim = tmp_path / f"sim-{day}"
        assert main(["run", "--date", day, "--db", db_url, "--out", str(sim)]) == 0
        simulated = _rows(sim / "charges.csv")
        assert {r["status"] for r in simulated} <= {"simulated"}
        assert sorted(map(_key, simulated)) == sorted(
            _key(r) for r in forecast_rows if r["run_date"] == day), day
        ran += simulated
        assert main(["run", "--date", day, "--post", "--db", db_url,
                     "--out", str(tmp_path / f"post-{day}")]) == 0
    assert len(ran) == len(forecast_rows)
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            twice = conn.execute(sa.text(
                "SELECT call_id FROM call_credits GROUP BY call_id, assignment_id, period_start "
                "HAVING COUNT(*) > 1")).all()
            consumed_on = conn.execute(sa.text(
                "SELECT call_id FROM call_credits GROUP BY call_id "
                "HAVING COUNT(DISTINCT consumed_on) > 1")).all()
            posted_credits = conn.execute(sa.text(
                "SELECT COUNT(*) FROM ledger WHERE kind = 'free_minutes_credit' "
                "AND run_date >= '2026-11-30'")).scalar_one()
    finally:
        engine.dispose()
    assert twice == [] and consumed_on == []
    assert posted_credits == len(credits)  # what the forecast said is what was credited
