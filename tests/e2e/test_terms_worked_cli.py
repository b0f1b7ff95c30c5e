"""Worked examples of terms over time through the command line, on both databases, with the
amounts written out (30-day November, monthly, #27 / SPEC 10), after November was posted:

* a transfer of A1 (5 x 4.00 = 20.00, prorate) from C1 to C2 on 2026-11-16: C1 -10.00, C2
  +10.00 (20.00 x 15 of 30 days), each balance moved once, December bills C2;
* `cancel --from 2026-11-20 --post` of a 5 x 4.00 seat assignment (prorate): -7.33 (20.00 x
  11 of 30 days = 7.333.. rounded half up once) and nothing in December;
* the same cancel without proration: nothing on the date, the period [11-01, 12-01) stands as
  billed (the assignment ends 11-30), December bills nothing;
* a price version from 12-01 (6.00) imported after November was posted: December billed at
  6.00, `rebill --from 2026-10-01 --to 2026-12-31` writes nothing;

and the report page and the forecast page say why each of those lines costs what it costs."""

from __future__ import annotations

import html
import json
from pathlib import Path

from billing_jobs.cli.app import main
from tests.e2e.test_terms_cli import _balance, _check, _count, _sql

CUSTOMERS = """customer_id,name,currency,balance
C1,One,EUR,100
C2,Two,EUR,50
"""
PACKAGES = """package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,frequency_match,free_minutes,destination,minimum_spend,minimum_days,prorate,description
P1,Seat,standard,1,4,0,0,EUR,monthly,1,0,,false,0,true,seat
PN,Fixed seat,standard,1,4,0,0,EUR,monthly,1,0,,false,0,false,no proration
PV,Priced seat,standard,1,4,0,0,EUR,monthly,1,0,,false,0,true,new price from December
"""
ASSIGNMENTS = """assignment_id,customer_id,package_id,quantity,start_date,end_date,auto_decrement,free_minutes
A1,C1,P1,5,2026-11-01,,true,
A5,C1,P1,5,2026-11-01,,true,
A4,C2,PN,5,2026-11-01,,true,
A6,C2,PV,5,2026-11-01,,true,
"""
VERSION = """package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,frequency_match,free_minutes,destination,minimum_spend,minimum_days,prorate,description,effective_from
PV,Priced seat,standard,1,6,0,0,EUR,monthly,1,0,,false,0,true,new price from December,2026-12-01
"""
EUR = 1_000_000


def _ledger(db_url: str, *where: str) -> list[tuple]:
    rows = _sql(db_url, "SELECT run_date, customer_id, assignment_id, kind, period_start, "
                        "quantity, amount_micros FROM ledger"
                        + (" WHERE " + " AND ".join(where) if where else "")
                        + " ORDER BY run_date, customer_id, assignment_id, kind")
    return [(str(d)[:10], c, a, k, str(s)[:10], int(q), int(m)) for d, c, a, k, s, q, m in rows]


def _page(folder: Path, name: str) -> str:
    return html.unescape((folder / name).read_text(encoding="utf-8"))


def test_transfer_cancels_and_a_price_version_after_november_was_posted(db_url, tmp_path,
                                                                         capsys, monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    for name, text in (("customers", CUSTOMERS), ("packages", PACKAGES),
                       ("assignments", ASSIGNMENTS)):
        (tmp_path / f"{name}.csv").write_text(text)
    assert main(["import", "--db", db_url, "--customers", str(tmp_path / "customers.csv"),
                 "--packages", str(tmp_path / "packages.csv"),
                 "--assignments", str(tmp_path / "assignments.csv")]) == 0
    assert main(["backfill", "--db", db_url, "--from", "2026-11-01", "--to", "2026-11-30",
                 "--post"]) == 0
    # November: 20.00 each
    assert _balance(db_url, "C1") == 100 * EUR - 40 * EUR
    assert _balance(db_url, "C2") == 50 * EUR - 40 * EUR
    november = _ledger(db_url)
    assert len(november) == 4
    _check(db_url)

    # --- transfer of A1 from C1 to C2 on 11-16: 20.00 x 15/30 = 10.00 each way, once
    transfer = ["change", "--db", db_url, "--assignment", "A1", "--from", "2026-11-16",
                "--customer", "C2", "--post"]
    for _ in range(2):
        assert main(transfer) == 0
        assert _balance(db_url, "C1") == 60 * EUR + 10 * EUR
        assert _balance(db_url, "C2") == 10 * EUR - 10 * EUR
    assert _ledger(db_url, "assignment_id = 'A1'", "run_date = '2026-11-16'") == [
        ("2026-11-16", "C1", "A1", "change_credit", "2026-11-16", 5, -10 * EUR),
        ("2026-11-16", "C2", "A1", "change_charge", "2026-11-16", 5, 10 * EUR)]
    _check(db_url)

    # --- cancel from 11-20 with proration: 20.00 x 11/30 = 7.333.. -> 7.33 back, once
    cancel = ["cancel", "--db", db_url, "--assignment", "A5", "--from", "2026-11-20", "--post"]
    for _ in range(2):
        assert main(cancel) == 0
        assert _balance(db_url, "C1") == 70 * EUR + 7_330_000
    assert _ledger(db_url, "assignment_id = 'A5'", "kind <> 'recurring'") == [
        ("2026-11-20", "C1", "A5", "change_credit", "2026-11-20", 5, -7_330_000)]

    # --- the same cancel without proration: nothing on the date, November stands
    capsys.readouterr()
    rows = _count(db_url, "ledger")
    assert main(["cancel", "--db", db_url, "--assignment", "A4", "--from", "2026-11-20",
                 "--post"]) == 0
    said = capsys.readouterr().out
    assert "no line on 2026-11-20" in said and "no billing date after it" in said
    assert _count(db_url, "ledger") == rows and _balance(db_url, "C2") == 0
    assert _ledger(db_url, "assignment_id = 'A4'") == [
        ("2026-11-01", "C2", "A4", "recurring", "2026-11-01", 5, 20 * EUR)]
    # ... the assignment ends 11-30: 11-20 and 11-30 write nothing for it (the posts stand)
    for day in ("2026-11-20", "2026-11-30"):
        assert main(["run", "--db", db_url, "--date", day, "--post"]) == 0
    assert _count(db_url, "ledger") == rows
    _check(db_url)

    # --- a price version of PV from 12-01, imported after November was posted
    (tmp_path / "version.csv").write_text(VERSION)
    assert main(["import", "--db", db_url, "--packages", str(tmp_path / "version.csv")]) == 0
    assert _ledger(db_url) == november + [
        ("2026-11-16", "C1", "A1", "change_credit", "2026-11-16", 5, -10 * EUR),
        ("2026-11-16", "C2", "A1", "change_charge", "2026-11-16", 5, 10 * EUR),
        ("2026-11-20", "C1", "A5", "change_credit", "2026-11-20", 5, -7_330_000)]

    # --- December: A1 billed to C2 (20.00), A6 at the new price (6.00 x 5), A4 and A5 nothing
    assert main(["run", "--db", db_url, "--date", "2026-12-01", "--post",
                 "--out", str(tmp_path / "dec")]) == 0
    assert _ledger(db_url, "run_date = '2026-12-01'") == [
        ("2026-12-01", "C2", "A1", "recurring", "2026-12-01", 5, 20 * EUR),
        ("2026-12-01", "C2", "A6", "recurring", "2026-12-01", 5, 30 * EUR)]
    assert _balance(db_url, "C1") == 77_330_000
    assert _balance(db_url, "C2") == -50 * EUR
    _check(db_url)
    capsys.readouterr()
    assert main(["rebill", "--db", db_url, "--from", "2026-10-01", "--to", "2026-12-31"]) == 0
    assert "rebill: would write 0 row(s)" in capsys.readouterr().out

    # --- why: the run's page and the forecast's page say it
    december = _page(tmp_path / "dec", "report.html")
    assert ("recurring, price from 2026-12-01: 6.00 × 5 = 30.00 for 2026-12-01 to 2027-01-01"
            in december)
    assert "recurring: 4.00 × 5 = 20.00 for 2026-12-01 to 2027-01-01" in december
    for day in ("2026-11-16", "2026-11-20"):
        assert main(["run", "--db", db_url, "--date", day, "--out", str(tmp_path / day)]) == 0
    moved = "; transferred from customer C1 (One) to C2 (Two)"
    credit = ("change credit: 5 × Seat (P1) until 2026-11-16 given back: 15 of 30 days × 4.00 "
              "× 5 = -10.00" + moved)
    charge = ("change charge: 5 × Seat (P1) from 2026-11-16: 15 of 30 days × 4.00 × 5 = 10.00"
              + moved)
    cancelled = ("change credit: 5 × Seat (P1) until 2026-11-20 given back: 11 of 30 days × "
                 "4.00 × 5 = -7.33; cancelled from 2026-11-20")
    page = _page(tmp_path / "2026-11-16", "report.html")
    assert credit in page and charge in page
    assert cancelled in _page(tmp_path / "2026-11-20", "report.html")
    assert main(["forecast", "--db", db_url, "--from", "2026-11-16", "--days", "16",
                 "--out", str(tmp_path / "fc")]) == 0
    forecast = _page(tmp_path / "fc", "forecast.html")
    assert "why this amount" in forecast
    for text in (credit, charge, cancelled,
                 "recurring, price from 2026-12-01: 6.00 × 5 = 30.00 for 2026-12-01"):
        assert text in forecast, text
    summary = json.loads((tmp_path / "fc" / "summary.json").read_text())
    assert summary["counts"]["upcoming_lines"] == 0  # everything in it is posted already
