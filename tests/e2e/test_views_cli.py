"""The operator views (#11) end to end on SQLite and PostgreSQL: `balances`, `ledger`, `runs`,
`unposted`, as one JSON document or a table, with exact amounts in the currency's minor unit."""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa

from billing_jobs.cli.app import main
from billing_jobs.cli.views import money
from tests.e2e.test_cli import billing_db  # noqa: F401 - the CLI test's imported carrier


def today_is(monkeypatch, day: str) -> None:
    """The CLI's clock says `day` (the billing time zone's today): `unposted` lists dates before
    it only (#30 point 4), so a test of 2027 dates sets a 2027 today."""
    import billing_jobs.cli.views as cli_views

    class _Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=tz)

    monkeypatch.setattr(cli_views, "datetime", _Clock)


def _json(capsys, *args) -> list:
    capsys.readouterr()
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def _table(capsys, *args) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_views_after_a_post_an_adjustment_and_a_gap(billing_db, tmp_path, monkeypatch, capsys):
    db = ("--db", billing_db)
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    today_is(monkeypatch, "2027-01-04")  # the dates below are the past
    assert _json(capsys, "unposted", "--json", *db) == []  # nothing ever posted
    assert main(["run", *db, "--date", "2027-01-01", "--post", "--allow-future"]) == 0

    # C1 EUR 100 - 15.00 - 29.97 - 37.65 = 17.38 (A4 invoiced); C2 JPY 10000 - 334 = 9666
    assert _json(capsys, "balances", "--json", *db) == [
        {"customer_id": "C1", "name": "Alice Telecom", "currency": "EUR", "balance": "17.38",
         "opening_balance": "100.00"},
        {"customer_id": "C2", "name": "Tokyo Trading", "currency": "JPY", "balance": "9666",
         "opening_balance": "10000"},
    ]
    only = _json(capsys, "balances", "--customer", "C2", "--json", *db)
    assert [(r["customer_id"], r["balance"]) for r in only] == [("C2", "9666")]
    text = _table(capsys, "balances", *db)
    assert "17.38" in text and "9666" in text and "Alice Telecom" in text

    rows = _json(capsys, "ledger", "--customer", "C1", "--json", *db)
    got = sorted((r["assignment_id"], r["kind"], r["entry"], r["amount"], r["currency"],
                  r["status"], r["period_start"], r["run_date"]) for r in rows)
    assert got == [
        ("A1", "recurring", "charge", "29.97", "EUR", "posted", "2027-01-01", "2027-01-01"),
        ("A1", "setup", "charge", "15.00", "EUR", "posted", "2027-01-01", "2027-01-01"),
        ("A3", "minimum_spend", "charge", "37.65", "EUR", "posted", "2026-12-01", "2027-01-01"),
        ("A4", "recurring", "charge", "9.99", "EUR", "invoiced", "2027-01-01", "2027-01-01"),
        ("A4", "setup", "charge", "5.00", "EUR", "invoiced", "2027-01-01", "2027-01-01"),
    ]
    assert set(rows[0]) == {"run_id", "run_date", "kind", "entry", "assignment_id", "package_id",
                            "period_start", "period_end", "quantity", "amount", "currency",
                            "auto_decrement", "status", "reason", "posted_at"}
    assert {r["quantity"] for r in rows if r["assignment_id"] == "A1"} == {3}
    assert _json(capsys, "ledger", "--customer", "C1", "--from", "2027-01-02", "--json", *db) == []

    # a manual credit shows as the last row, and the balance moves by exactly it
    assert main(["adjust", *db, "--customer", "C1", "--amount", "-2.50", "--reason",
                 "goodwill", "--key", "gw-1", "--post"]) == 0
    rows = _json(capsys, "ledger", "--customer", "C1", "--json", *db)
    assert len(rows) == 6
    assert (rows[-1]["kind"], rows[-1]["entry"], rows[-1]["amount"], rows[-1]["reason"],
            rows[-1]["assignment_id"]) == ("adjustment", "adjustment", "-2.50", "goodwill", None)
    assert _json(capsys, "balances", "--customer", "C1", "--json", *db)[0]["balance"] == "19.88"
    text = _table(capsys, "ledger", "--customer", "C1", *db)
    for amount in ("29.97", "15.00", "37.65", "9.99", "5.00", "-2.50", "goodwill"):
        assert amount in text

    # 2027-01-02 is skipped, then posted for C2 only; 2027-01-03 posted for all
    assert main(["run", *db, "--date", "2027-01-03", "--post", "--allow-future"]) == 0
    assert _json(capsys, "unposted", "--json", *db) == [
        {"run_date": "2027-01-02", "reason": "no post run", "post_attempts": 0}]
    assert main(["run", *db, "--date", "2027-01-02", "--customer", "C2", "--post", "--allow-future"]) == 0
    [gap] = _json(capsys, "unposted", "--json", *db)
    assert gap["run_date"] == "2027-01-02" and gap["reason"].startswith("posted for C2 only")
    assert "2027-01-02" in _table(capsys, "unposted", *db)

    runs = _json(capsys, "runs", "--json", *db)
    assert [(r["run_date"], r["mode"], r["status"]) for r in runs] == [
        ("2027-01-02", "post", "succeeded"), ("2027-01-03", "post", "succeeded"),
        ("2027-01-01", "post", "succeeded")]
    first = runs[-1]
    assert first["lines"] == 6 and first["lines_by_status"] == {"posted": 4, "invoiced": 2}
    # EUR 15.00 + 29.97 + 37.65 + 5.00 + 9.99 = 97.61 (5 lines); JPY 334 (1 line)
    assert {c: (t["amount"], t["lines"]) for c, t in first["totals"].items()} == {
        "EUR": ("97.61", 5), "JPY": ("334", 1)}
    assert runs[0]["customers"] == ["C2"] and first["customers"] is None
    assert first["started_by"] and first["started_at"] and first["finished_at"]
    assert first["report_folder"].startswith(str(tmp_path / "reports"))
    assert first["report_folder"].endswith(first["run_id"][:8])
    assert [r["run_date"] for r in _json(capsys, "runs", "--last", "1", "--json", *db)] == ["2027-01-02"]
    text = _table(capsys, "runs", *db)
    assert "97.61" in text and "334" in text and "succeeded" in text


def test_unknown_customer_and_bad_arguments_are_one_line_exit_2(billing_db, capsys):
    db = ("--db", billing_db)
    for args in (["ledger", "--customer", "NOPE"], ["balances", "--customer", "NOPE", "--json"],
                 ["ledger", "--customer", "C1", "--from", "2027-02-01", "--to", "2027-01-01"],
                 ["ledger", "--customer", "C1", "--from", "tomorrow"], ["runs", "--last", "0"]):
        capsys.readouterr()
        assert main([*args, *db]) == 2, args
        cap = capsys.readouterr()
        assert cap.out == "" and len(cap.err.strip().splitlines()) == 1, (args, cap.err)
        assert "Traceback" not in cap.err
    assert "NOPE" in (main(["ledger", "--customer", "NOPE", *db]), capsys.readouterr().err)[1]
    assert _json(capsys, "runs", "--json", *db) == []
    engine = sa.create_engine(billing_db)
    with engine.begin() as conn:  # a name that looks like rich markup prints as typed
        conn.execute(sa.text("UPDATE customers SET name = '[red]Evil[/red]' WHERE customer_id = 'C2'"))
    engine.dispose()
    assert "[red]Evil[/red]" in _table(capsys, "balances", *db)
    assert _json(capsys, "ledger", "--customer", "C1", "--json", *db) == []


def test_money_keeps_digits_finer_than_the_minor_unit():
    assert money(17_380_000, "EUR") == "17.38"
    assert money(-2_500_000, "EUR") == "-2.50"
    assert money(9_666_000_000, "JPY") == "9666"
    assert money(12_345_678, "EUR") == "12.345678"  # never rounded away
    assert money(1_250_000, "KWD") == "1.250"
