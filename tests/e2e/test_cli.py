"""The command line end to end, on SQLite and PostgreSQL: import, simulate, post, re-post,
backfill, --strict, exit codes and one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from billing_jobs.cli.app import main

CUSTOMERS = """customer_id,name,currency,balance
C1,Alice Telecom,EUR,100
C2,Tokyo Trading,JPY,10000
"""
PACKAGES = """package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,frequency_match,free_minutes,destination,minimum_spend,minimum_days,prorate,description
P1,DID rental,standard,4,9.99,0,5,EUR,monthly,,0,,false,0,false,DID
P2,Daily seat,standard,100,333.5,0,0,JPY,daily,,0,,false,0,false,seat
P3,Commitment,standard,0,50,0,0,EUR,monthly,,0,,true,0,false,minimum spend
"""
ASSIGNMENTS = """assignment_id,customer_id,package_id,quantity,start_date,end_date,auto_decrement,free_minutes
A1,C1,P1,3,2027-01-01,,true,
A2,C2,P2,1,2027-01-01,,true,
A3,C1,P3,1,2026-12-01,,true,
A4,C1,P1,1,2027-01-01,,false,
"""
USAGE = """call_id,customer_id,start_time,destination,duration_s,charge
K1,C1,2026-12-15T10:00:00Z,+442071234567,120,12.345678
"""

# What 2027-01-01 owes, written out:
#   A1 setup 5 x 3 = 15.00, recurring 9.99 x 3 = 29.97 (auto-decrement)
#   A2 recurring 333.5 JPY -> 334 (half up to whole yen)
#   A3 minimum spend 50 - 12.345678 = 37.654322 -> 37.65 (period 2026-12-01..2027-01-01)
#   A4 setup 5.00 and recurring 9.99, invoiced (balance untouched)
EXPECTED = {
    ("A1", "setup"): "15.00", ("A1", "recurring"): "29.97", ("A2", "recurring"): "334",
    ("A3", "minimum_spend"): "37.65", ("A4", "setup"): "5.00", ("A4", "recurring"): "9.99",
}


def cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture
def billing_db(db_url, tmp_path):
    for name, text in [("customers", CUSTOMERS), ("packages", PACKAGES),
                       ("assignments", ASSIGNMENTS), ("usage", USAGE)]:
        (tmp_path / f"{name}.csv").write_text(text)
    code = cli("import", "--db", db_url,
               *[arg for name in ("customers", "packages", "assignments", "usage")
                 for arg in (f"--{name}", str(tmp_path / f"{name}.csv"))])
    assert code == 0
    return db_url


def charges(folder: Path) -> dict:
    with open(folder / "charges.csv", newline="") as fh:
        return {(r["assignment_id"], r["kind"]): r for r in csv.DictReader(fh)}


def balances(url: str) -> dict:
    eng = sa.create_engine(url)
    with eng.connect() as conn:
        rows = conn.execute(sa.text("SELECT customer_id, balance_micros FROM customers")).all()
    eng.dispose()
    return {c: Decimal(b) / 1_000_000 for c, b in rows}


def ledger_count(url: str) -> int:
    eng = sa.create_engine(url)
    with eng.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM ledger")).scalar()
    eng.dispose()
    return n


def test_simulate_then_post_then_repost(billing_db, tmp_path, capsys):
    sim = tmp_path / "sim"
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--out", str(sim)) == 0
    lines = charges(sim)
    assert {k: v["amount"] for k, v in lines.items()} == EXPECTED
    assert {v["status"] for v in lines.values()} == {"simulated"}
    assert balances(billing_db) == {"C1": Decimal(100), "C2": Decimal(10000)}
    assert ledger_count(billing_db) == 0
    assert "EUR" in capsys.readouterr().out

    post = tmp_path / "post"
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--post", "--allow-future", "--out", str(post)) == 0
    lines = charges(post)
    assert {k: v["amount"] for k, v in lines.items()} == EXPECTED  # the preview was the charge
    assert lines[("A1", "recurring")]["status"] == "posted"
    assert lines[("A4", "recurring")]["status"] == "invoiced"
    assert balances(billing_db) == {"C1": Decimal("17.38"), "C2": Decimal(9666)}
    assert ledger_count(billing_db) == 6

    again = tmp_path / "again"
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--post", "--allow-future", "--out", str(again)) == 0
    assert {v["status"] for v in charges(again).values()} == {"already_posted"}
    assert balances(billing_db) == {"C1": Decimal("17.38"), "C2": Decimal(9666)}
    assert ledger_count(billing_db) == 6
    summary = json.loads((again / "summary.json").read_text())
    assert summary["status"] == "succeeded"


def test_one_customer_only(billing_db, tmp_path):
    out = tmp_path / "c2"
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--customer", "C2",
               "--post", "--allow-future", "--out", str(out)) == 0
    assert set(charges(out)) == {("A2", "recurring")}
    assert balances(billing_db) == {"C1": Decimal(100), "C2": Decimal(9666)}


def _run_in_fresh_process(db: str, out: Path, *extra: str) -> bool:
    """A simulation of 2027-01-01 in its own interpreter with every frame above the fast-path
    size (BILLING_GX_FAST_ROWS=1); True when Great Expectations was imported."""
    import os

    code = ("import sys\nfrom billing_jobs.cli.app import main\n"
            f"rc = main(['run', '--db', {db!r}, '--date', '2027-01-01', '--out', {str(out)!r}, "
            f"*{list(extra)!r}])\n"
            "print(rc, 'great_expectations' in sys.modules)\n")
    env = dict(os.environ, BILLING_GX_FAST_ROWS="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=str(Path(__file__).parents[2]), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rc, imported = done.stdout.strip().splitlines()[-1].split()
    assert rc == "0"
    return imported == "True"


def test_a_run_for_chosen_customers_checks_the_same_rules_without_great_expectations(
        billing_db, tmp_path):
    """Run Package: a run for chosen customers evaluates every rule in pandas, however large
    its frames, so it never pays GX's start-up; the batch keeps GX; both bill C1 alike."""
    assert _run_in_fresh_process(billing_db, tmp_path / "batch") is True
    assert _run_in_fresh_process(billing_db, tmp_path / "one", "--customer", "C1") is False
    batch = {k: v["amount"] for k, v in charges(tmp_path / "batch").items() if k[0] != "A2"}
    one = {k: v["amount"] for k, v in charges(tmp_path / "one").items()}
    assert one == batch == {k: v for k, v in EXPECTED.items() if k[0] != "A2"}


def test_backfill_posts_in_order_and_missed_dates_are_named(billing_db, tmp_path, monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--post", "--allow-future") == 0
    # 2027-01-02 is skipped: posting 2027-01-03 names it
    out = tmp_path / "d3"
    assert cli("run", "--db", billing_db, "--date", "2027-01-03", "--post", "--allow-future", "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unposted_dates"] == ["2027-01-02"]
    # a backfill over the range posts the missing night and nothing twice
    assert cli("backfill", "--db", billing_db, "--from", "2027-01-01", "--to", "2027-01-03", "--post", "--allow-future") == 0
    # JPY daily seat: 1st, 2nd and 3rd posted once each
    assert balances(billing_db)["C2"] == Decimal(10000 - 3 * 334)
    eng = sa.create_engine(billing_db)
    with eng.connect() as conn:
        periods = conn.execute(sa.text(
            "SELECT period_start FROM ledger WHERE assignment_id = 'A2' ORDER BY period_start")).all()
    eng.dispose()
    assert len(periods) == 3


def test_strict_fails_before_posting_when_a_row_is_rejected(billing_db, tmp_path, capsys):
    eng = sa.create_engine(billing_db)
    with eng.begin() as conn:  # a bad row that reached the database another way
        conn.execute(sa.text("UPDATE assignments SET quantity = 0 WHERE assignment_id = 'A4'"))
    eng.dispose()
    out = tmp_path / "strict"
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--post", "--allow-future", "--strict",
               "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "--strict" in err and "A4" in err and "Traceback" not in err
    assert ledger_count(billing_db) == 0
    assert balances(billing_db) == {"C1": Decimal(100), "C2": Decimal(10000)}
    # without --strict the run goes on and the row is in rejected.csv
    out = tmp_path / "lenient"
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--out", str(out)) == 0
    rejected = list(csv.DictReader(open(out / "rejected.csv", newline="")))
    assert [(r["entity"], r["id"]) for r in rejected] == [("assignments", "A4")]
    assert "quantity" in rejected[0]["reason"]
    assert ("A4", "recurring") not in charges(out)


def test_malformed_import_is_one_line_and_writes_nothing(db_url, tmp_path, capsys):
    bad = tmp_path / "customers.csv"
    bad.write_text("customer_id,name,currency,balance\nC1,Alice,EUR,10\nC2,Bob,EUR,ten\n")
    assert cli("import", "--db", db_url, "--customers", str(bad)) == 1
    err = capsys.readouterr().err.strip()
    assert "row 3" in err and "balance" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    eng = sa.create_engine(db_url)
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM customers")).scalar() == 0
    eng.dispose()


@pytest.mark.parametrize("args", [
    ["run", "--date", "2027-02-30"],
    ["run"],
    ["backfill", "--from", "2027-01-05", "--to", "2027-01-01"],
    ["import"],
])
def test_bad_arguments_exit_2_without_traceback(args, tmp_path):
    res = subprocess.run([sys.executable, "-m", "billing_jobs.cli.app", *args,
                          "--db", f"sqlite:///{tmp_path / 'x.db'}"],
                         capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.strip()


def test_demo_runs_twice(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert cli("demo", "--db", url) == 0
    assert cli("demo", "--db", url) == 0
    reports = sorted((tmp_path / "reports").iterdir())
    assert len(reports) == 2
    first, second = (charges(r) for r in reports)
    assert first == second and len(first) > 20
    assert {"setup", "recurring", "minimum_spend"} <= {k[1] for k in first}
    assert (reports[-1] / "report.html").stat().st_size > 100_000


# ------------------------------------------------------------------ #14: what the CLI says


def test_headlines_say_what_happened_and_backfill_skips_empty_days(billing_db, tmp_path, capsys):
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--out", str(tmp_path / "s")) == 0
    assert "simulated: would post 6 new lines" in capsys.readouterr().out
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--post", "--allow-future",
               "--out", str(tmp_path / "p")) == 0
    text = capsys.readouterr().out
    assert "posted 6 new lines for 97.61 EUR, 334 JPY" in text
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--post", "--allow-future",
               "--out", str(tmp_path / "again")) == 0
    text = capsys.readouterr().out
    assert "posted nothing new; 6 lines were already posted earlier, nothing charged twice" in text
    html = (tmp_path / "again" / "report.html").read_text()
    assert "NOTHING NEW POSTED" in html and ">POSTED<" not in html
    rows = list(csv.DictReader(open(tmp_path / "p" / "balances.csv", newline="")))
    c1 = {r["customer_id"]: r for r in rows}["C1"]
    assert (c1["name"], c1["balance_before"], c1["balance_after"]) == ("Alice Telecom", "100.00",
                                                                      "17.38")
    # backfill for one customer: one folder per date with something in it, totals at the end
    out = tmp_path / "bf"
    assert cli("backfill", "--db", billing_db, "--from", "2027-01-01", "--to", "2027-01-03",
               "--post", "--allow-future", "--customer", "C2", "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["2027-01-01", "2027-01-02", "2027-01-03"]
    assert "2027-01-02: posted 1 new line for 334 JPY" in text
    assert "posted 2 new line(s) for 668 JPY; 1 line(s) already posted earlier" in text
    assert balances(billing_db)["C2"] == Decimal(10000 - 3 * 334)
    out2 = tmp_path / "bf2"
    assert cli("backfill", "--db", billing_db, "--from", "2027-01-02", "--to", "2027-01-03",
               "--post", "--allow-future", "--customer", "C1", "--out", str(out2)) == 0
    assert "no report folder written" in capsys.readouterr().out
    assert not out2.exists() or not any(out2.iterdir())


def test_a_failed_strict_run_says_so_once_and_never_posted(billing_db, tmp_path, capsys):
    eng = sa.create_engine(billing_db)
    with eng.begin() as conn:
        conn.execute(sa.text("UPDATE assignments SET quantity = 0 WHERE assignment_id = 'A4'"))
    eng.dispose()
    out = tmp_path / "strict"
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--post", "--allow-future", "--strict",
               "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert err.count("--strict:") == 1 and "failed: nothing posted, because --strict" in err
    html = (out / "report.html").read_text()
    assert "FAILED · nothing posted" in html and ">POSTED<" not in html
    assert "Nothing was due on this date" not in html


@pytest.mark.parametrize("args,expected", [
    (["run", "--date", "2027-02-30"], "2027-02-30 is not a calendar date (February 2027 has 28 days)"),
    (["run", "--date", "9999-12-31"], "out of range: billing dates run from 2000-01-01 to 2199-12-31"),
    (["run", "--date", "2027-01-01", "--tz", "Mars/Base"], "--tz 'Mars/Base' is not a time zone"),
    (["run", "--date", "2027-01-01", "--customer", "NOPE"], "unknown customer NOPE"),
])
def test_bad_values_are_one_line_naming_the_value(billing_db, args, expected, capsys):
    assert cli(*args, "--db", billing_db) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1


def test_db_nonsense_and_empty_tz_exit_2(tmp_path, monkeypatch):
    res = subprocess.run([sys.executable, "-m", "billing_jobs.cli.app", "run", "--date", "2027-01-01",
                          "--db", "nonsense"], capture_output=True, text=True)
    assert res.returncode == 2 and "nonsense" in res.stderr and "Traceback" not in res.stderr
    env = {**__import__("os").environ, "BILLING_TZ": ""}
    res = subprocess.run([sys.executable, "-m", "billing_jobs.cli.app", "run", "--date", "2027-01-01",
                          "--db", f"sqlite:///{tmp_path / 'x.db'}"], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 2 and "BILLING_TZ '' is not a time zone" in res.stderr


def test_version_and_help_without_type_tags():
    res = subprocess.run([sys.executable, "-m", "billing_jobs.cli.app", "--version"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("billing-jobs ")
    res = subprocess.run([sys.executable, "-m", "billing_jobs.cli.app", "run", "--help"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "<list[str]>" not in res.stdout and "<bool>" not in res.stdout
    assert "--tz ZONE" in res.stdout and "--force" in res.stdout


def test_out_onto_a_non_empty_folder_refuses_unless_force(billing_db, tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--out", str(out)) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--out", str(out),
               "--force") == 0
    assert not (out / "keep.txt").exists() and (out / "charges.csv").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_a_report_that_cannot_be_written_after_a_post_is_said_as_such(billing_db, tmp_path,
                                                                       capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--post", "--allow-future",
               "--out", str(blocker / "sub")) == 1
    err = capsys.readouterr().err
    assert "the report could not be written" in err and "the run itself succeeded" in err
    assert ledger_count(billing_db) == 6  # the posting stands
    eng = sa.create_engine(billing_db)
    with eng.connect() as conn:
        status, counts = conn.execute(sa.text("SELECT status, counts FROM runs")).one()
    eng.dispose()
    assert status == "succeeded" and json.loads(counts)["lines"] == 6


def test_started_by_falls_back_to_the_os_login(billing_db, tmp_path, monkeypatch):
    import getpass

    monkeypatch.delenv("USER", raising=False)
    assert cli("run", "--db", billing_db, "--date", "2027-01-01", "--out", str(tmp_path / "u")) == 0
    s = json.loads((tmp_path / "u" / "summary.json").read_text())
    assert s["run"]["started_by"] == f"cli:{getpass.getuser()}"


def test_after_a_failed_post_the_report_says_which_lines_the_ledger_holds(billing_db):
    """#17.4: lines are marked by the ledger rows with this run_id, not all 'not_posted'."""
    from datetime import date

    from billing_jobs.run import lifecycle, stages
    from billing_jobs.run.request import RunRequest
    from billing_jobs.core.frames import BillingResult
    from billing_jobs.store.db import make_engine
    from billing_jobs.store.post import post_result

    engine = make_engine(billing_db)
    req = RunRequest(run_date=date(2027, 1, 1), simulate=False)
    run_id = lifecycle.begin_run(engine, req)
    inputs, _ = stages.load_stage(engine, req)
    result = stages.compute_stage(inputs, req)
    part = result.due_lines[result.due_lines["customer_id"] == "C2"]
    post_result(engine, BillingResult(part, result.grants.iloc[0:0], result.utilisation),
                simulate=False, run_id=run_id)  # batch 1 committed, then the post "failed"
    marked = lifecycle.posted_by_run(engine, run_id, result).due_lines
    got = dict(zip(marked["assignment_id"] + "/" + marked["kind"], marked["status"]))
    assert got == {"A2/recurring": "posted", "A1/setup": "not_posted",
                   "A1/recurring": "not_posted", "A3/minimum_spend": "not_posted",
                   "A4/setup": "not_posted", "A4/recurring": "not_posted"}
    assert lifecycle.close_run(engine, run_id, "failed", {"counts": {"lines": 6}}, "boom") == ""
    engine.dispose()
    eng = sa.create_engine(billing_db)
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM runs")).scalar() == "failed"
    eng.dispose()
