"""What the operator reads after real runs, on SQLite and PostgreSQL (#30 items 7, 9, 12, 14):
the sentence the CLI prints and the page's top banner name a posted line that differs from
current data and the rebill that corrects it; utilisation.csv's credited is in the currency's
minor unit; the extended-assignment banner names only this date's; report folders are 0755
under umask 022; the forecast writes true/false like charges.csv."""

from __future__ import annotations

import csv
import json
import os
import re
import stat

import pytest

from billing_jobs.cli.app import main

CUSTOMERS = "customer_id,name,currency,balance\nC1,One,EUR,10\nC2,Two,EUR,0\nJ1,Yen,JPY,1000\n"
PKG = ("package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
       "free_minutes,destination,minimum_spend,minimum_days\n"
       "DID,DID rental,standard,0,{price},0,0,EUR,monthly,0,,false,0\n"
       "FMJ,Yen minutes,free_minutes,0,100,0,0,JPY,monthly,10,,false,0\n"
       "MIN,Long term,standard,0,1,0,0,EUR,monthly,0,,false,90\n")
ASG = ("assignment_id,customer_id,package_id,quantity,start_date,end_date,auto_decrement\n"
       "A1,{c},DID,{q},2027-01-01,,true\n"
       "J1A,J1,FMJ,1,2027-01-01,,true\n"
       # ends 2027-01-10, the package's 90 minimum days carry it to 31 March: extended, but
       # billed only on its monthly dates (1 Jan, 1 Feb, 1 Mar), not on 3 Jan
       "X1,C1,MIN,1,2027-01-01,2027-01-10,true\n")
# J1's calls of 2 January: 7 minutes of 10.4 JPY, then 5 minutes of 7.3 JPY; the 10 free
# minutes cover 10.4 + 7.3 x 180/300 = 14.78 JPY (exact micros), credited as 15 JPY
USAGE = ("call_id,customer_id,start_time,destination,duration_s,charge\n"
         "J-1,J1,2027-01-02T09:00:00Z,81312345678,420,10.4\n"
         "J-2,J1,2027-01-02T10:00:00Z,81312345678,300,7.3\n")


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _import(db_url, tmp_path, *flags, **files) -> None:
    args = []
    for entity, text in files.items():
        (tmp_path / f"{entity}.csv").write_text(text)
        args += [f"--{entity}", str(tmp_path / f"{entity}.csv")]
    assert main(["import", "--db", db_url, *args, *flags]) == 0


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_operator_reads_what_changed_in_minor_units(db_url, tmp_path, capsys, umask_022):
    _import(db_url, tmp_path, customers=CUSTOMERS, packages=PKG.format(price="2.00"),
            assignments=ASG.format(c="C1", q=1), usage=USAGE)
    for day in ("2027-01-01", "2027-01-02", "2027-01-03"):
        assert main(["run", "--date", day, "--post", "--allow-future", "--db", db_url,  # 2027 lies after today
                     "--out", str(tmp_path / f"post-{day}")]) == 0
    post3 = tmp_path / "post-2027-01-03"
    assert stat.S_IMODE(post3.stat().st_mode) == 0o755  # not mkdtemp's 0700
    util = {u["assignment_id"]: u for u in _rows(post3 / "utilisation.csv")}
    assert (util["J1A"]["seconds_used"], util["J1A"]["credited"]) == ("600", "15")  # not 14.78
    credit, = [r for r in _rows(post3 / "charges.csv") if r["kind"] == "free_minutes_credit"]
    assert (credit["assignment_id"], credit["amount"]) == ("J1A", "-15")
    assert [r["covered"] for r in _rows(post3 / "free_minutes.csv")] == ["10", "4"]
    # X1 is extended past its end date, but 3 January bills nothing of it: no banner
    s3 = json.loads((post3 / "summary.json").read_text())
    assert s3["extended_assignments"] == 0 and s3["extended_ends"] == []
    assert 'id="extended-flag"' not in (post3 / "report.html").read_text()
    s1 = json.loads((tmp_path / "post-2027-01-01" / "summary.json").read_text())
    assert [e["assignment_id"] for e in s1["extended_ends"]] == ["X1"]  # billed on 1 Jan

    # a new price, quantity and customer for A1 after its post, entered as a correction (the
    # terms were wrong: SPEC 10 refuses an in-place edit of posted terms without --correct)
    _import(db_url, tmp_path, "--correct", packages=PKG.format(price="3.00"),
            assignments=ASG.format(c="C2", q=2))
    capsys.readouterr()
    sim = tmp_path / "sim"
    assert main(["run", "--date", "2027-01-01", "--db", db_url, "--out", str(sim)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert ("1 posted line differs from current data: A1 recurring from 2027-01-01: the ledger "
            "holds 2.00 EUR (customer C1, quantity 1), current data gives 6.00 EUR (customer "
            "C2, quantity 2) (differences.csv): run `billing-jobs rebill --from 2027-01-01 "
            "--to 2027-01-01` to see the difference, then with --post to post it") in said
    summary = json.loads((sim / "summary.json").read_text())
    assert summary["outcome"]["differing"]["lines"] == 1
    assert summary["outcome"]["differing"]["rebill"] == (
        "billing-jobs rebill --from 2027-01-01 --to 2027-01-01")
    html = (sim / "report.html").read_text()
    top = html[:html.index('<section id="headline">')]
    banner = re.search(r'<div class="alert warn" id="differences">(.*?)</div>', top, re.S)
    assert banner, "the differing key is at the top of the page"
    text = " ".join(re.sub(r"<[^>]+>", " ", banner.group(1)).split())
    assert text.startswith("1 posted line differs from current data")
    assert "A1 recurring from 2027-01-01" in text
    assert "billing-jobs rebill --from 2027-01-01 --to 2027-01-01" in text
    # everything of 1 January is posted: the card does not say it "would be billed"
    card = re.search(r'<div class="card money" data-currency="EUR">(.*?)</dl>', html, re.S)
    assert "would be billed" not in card.group(1)
    assert "already posted earlier, not billed again" in card.group(1)
    assert stat.S_IMODE(sim.stat().st_mode) == 0o755

    # the forecast: true/false like charges.csv, a 0755 folder
    fc = tmp_path / "fc"
    assert main(["forecast", "--days", "1", "--from", "2027-02-01", "--out", str(fc),
                 "--db", db_url]) == 0
    rows = _rows(fc / "upcoming_charges.csv")
    assert rows and {r["auto_decrement"] for r in rows} == {"true"}
    assert {r["provisional"] for r in rows} == {"false"}
    assert stat.S_IMODE(fc.stat().st_mode) == 0o755
    assert "invoiced" not in (fc / "forecast.html").read_text().split("<tbody>")[-1]
