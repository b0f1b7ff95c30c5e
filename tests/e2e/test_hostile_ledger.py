"""Corrections under hostile input (#28 points 5, 8, 12), end to end through the CLI on SQLite
and PostgreSQL: an assignment whose customer an import corrected is rebilled whole onto the new
customer, once, and differences.csv agrees; control and bidirectional characters refused in
what `adjust` stores and printed inert by the views; rebill ranges bounded to the billing
dates, long ranges in steps of one transaction each, with progress, resumable after a kill."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from billing_jobs.cli.app import main
from tests.e2e.test_corrections_cli import _check, _spawn, _sql
from tests.store.test_corrections import PACKAGES

CUSTOMERS2 = "customer_id,name,currency,balance\nC1,Alice,EUR,100\nC2,Bob,EUR,50\n"
HEAD = ("assignment_id,customer_id,package_id,quantity,start_date,end_date,auto_decrement,"
        "free_minutes\n")
ESC = "\x1b"


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _import(db_url: str, tmp_path: Path, *extra: str, assignments: str, tag: str = "") -> None:
    assert main(["import", "--db", db_url,
                 "--customers", _write(tmp_path, "customers.csv", CUSTOMERS2),
                 "--packages", _write(tmp_path, "packages.csv", PACKAGES),
                 "--assignments", _write(tmp_path, f"assignments{tag}.csv", assignments),
                 *extra]) == 0


def _run(db_url: str, tmp_path: Path, day: str, name: str, post: bool = True) -> Path:
    out = tmp_path / name
    assert main(["run", "--db", db_url, "--date", day, *(["--post"] if post else []),
                 "--allow-future", "--out", str(out)]) == 0
    _check(db_url)
    return out


def _balances(db_url: str) -> dict[str, int]:
    return {c: int(b) for c, b in _sql(db_url, "SELECT customer_id, balance_micros "
                                               "FROM customers ORDER BY customer_id")}


def _held(db_url: str) -> dict[tuple[str, str], int]:
    """{(customer, kind): net} of A1's keys, the zero ones left out."""
    rows = _sql(db_url, "SELECT customer_id, kind, SUM(amount_micros) FROM ledger "
                        "WHERE assignment_id = 'A1' GROUP BY customer_id, kind")
    return {(c, k): int(n) for c, k, n in rows if int(n)}


def _out(capsys, args: list[str], code: int = 0) -> tuple[str, str]:
    capsys.readouterr()
    got = main(args)
    cap = capsys.readouterr()
    assert got == code, (cap.out, cap.err)
    return cap.out, cap.err


def _differences(folder: Path) -> list[dict]:
    with open(folder / "differences.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- point 5

def test_a_key_moved_to_another_customer_is_rebilled_whole_once(db_url, tmp_path, capsys):
    # A1 on C1: setup 5.00 + recurring 10.00 (auto-decrement)
    _import(db_url, tmp_path, assignments=HEAD + "A1,C1,P1,1,2027-01-01,,true,\n")
    _run(db_url, tmp_path, "2027-01-01", "r1")
    assert _balances(db_url) == {"C1": 85_000_000, "C2": 50_000_000}
    # an import corrects A1's customer in place (not a `change --customer` transfer)
    _import(db_url, tmp_path, "--correct",
            assignments=HEAD + "A1,C2,P1,1,2027-01-01,,true,\n", tag="2")
    # differences.csv names the keys (differing only by customer) and the rebill to run
    diffs = _differences(_run(db_url, tmp_path, "2027-01-01", "r2", post=False))
    assert {(d["kind"], d["ledger_customer_id"], d["customer_id"]) for d in diffs} == {
        ("setup", "C1", "C2"), ("recurring", "C1", "C2")}
    assert all("rebill --from 2027-01-01 --to 2027-01-01" in d["correction"] for d in diffs)
    # ...which moves each key whole: C1's rows to 0, the full amount on C2, once
    out, _err = _out(capsys, ["rebill", "--db", db_url, "--from", "2027-01-01",
                              "--to", "2027-01-01", "--post"])
    assert "wrote 4 row(s)" in out and "held 10.00 EUR on customer C1" in out
    assert "current data bills customer C2: the key moves whole" in out
    assert _held(db_url) == {("C2", "setup"): 5_000_000, ("C2", "recurring"): 10_000_000}
    assert _balances(db_url) == {"C1": 100_000_000, "C2": 35_000_000}
    _check(db_url)
    out, _err = _out(capsys, ["rebill", "--db", db_url, "--from", "2027-01-01",
                              "--to", "2027-01-01", "--post"])
    assert "wrote 0 row(s)" in out  # a rerun writes nothing
    assert _differences(_run(db_url, tmp_path, "2027-01-01", "r3", post=False)) == []
    # a price fix after the move: the difference on C2 only
    _import(db_url, tmp_path, "--correct", assignments=HEAD + "A1,C2,P1,1,2027-01-01,,true,\n",
            tag="3")
    _sql(db_url, "UPDATE packages SET retail_micros = 12000000")
    assert main(["rebill", "--db", db_url, "--from", "2027-01-01", "--to", "2027-01-01",
                 "--post"]) == 0
    assert _held(db_url) == {("C2", "setup"): 5_000_000, ("C2", "recurring"): 12_000_000}
    assert _balances(db_url) == {"C1": 100_000_000, "C2": 33_000_000}
    _check(db_url)


def test_a_key_already_split_between_customers_is_joined_on_the_billed_one(
        db_url, tmp_path, capsys):
    """The issue's ledger: after a price fix the old rebill split the key, C1 10.00 and
    C2 2.00; differences.csv names it, a rebill moves C1's share to C2, once."""
    _import(db_url, tmp_path, assignments=HEAD + "A1,C1,P1,1,2027-01-01,,true,\n")
    _run(db_url, tmp_path, "2027-01-01", "r1")
    _import(db_url, tmp_path, "--correct",
            assignments=HEAD + "A1,C2,P1,1,2027-01-01,,true,\n", tag="2")
    # what the previous rebill wrote: the +2.00 of a price fix on C2, C1 keeping its 10.00
    _sql(db_url, "UPDATE packages SET retail_micros = 12000000")
    _sql(db_url, "INSERT INTO ledger (run_id, run_date, customer_id, assignment_id, package_id, "
                 "kind, period_start, period_end, quantity, unit_price_micros, amount_micros, "
                 "cost_micros, currency, auto_decrement, status, revision, entry, reason, "
                 "idempotency_key, posted_at) SELECT 'rebill:old', run_date, 'C2', "
                 "assignment_id, package_id, kind, period_start, period_end, quantity, "
                 "12000000, 2000000, 0, currency, auto_decrement, status, 1, 'correction', "
                 "'old split', 'rebill:old', posted_at FROM ledger WHERE kind = 'recurring'")
    _sql(db_url, "UPDATE customers SET balance_micros = balance_micros - 2000000 "
                 "WHERE customer_id = 'C2'")
    _check(db_url)
    diffs = _differences(_run(db_url, tmp_path, "2027-01-01", "r2", post=False))
    recurring = [d for d in diffs if d["kind"] == "recurring"]
    assert len(recurring) == 1 and recurring[0]["ledger_amount"] == recurring[0]["amount"]
    assert "rebill --from 2027-01-01" in recurring[0]["correction"]
    assert main(["rebill", "--db", db_url, "--from", "2027-01-01", "--to", "2027-01-01",
                 "--post"]) == 0
    assert _held(db_url) == {("C2", "setup"): 5_000_000, ("C2", "recurring"): 12_000_000}
    assert _balances(db_url) == {"C1": 100_000_000, "C2": 33_000_000}
    _check(db_url)
    assert _differences(_run(db_url, tmp_path, "2027-01-01", "r3", post=False)) == []


def test_rebill_of_the_old_customer_only_leaves_a_moved_key_to_the_new_one(
        db_url, tmp_path, capsys):
    _import(db_url, tmp_path, assignments=HEAD + "A1,C1,P1,1,2027-01-01,,true,\n")
    _run(db_url, tmp_path, "2027-01-01", "r1")
    _import(db_url, tmp_path, "--correct",
            assignments=HEAD + "A1,C2,P1,1,2027-01-01,,true,\n", tag="2")
    out, _err = _out(capsys, ["rebill", "--db", db_url, "--from", "2027-01-01",
                              "--to", "2027-01-01", "--customer", "C1", "--post"])
    assert "wrote 0 row(s)" in out and "now billed to customer C2" in out
    out, _err = _out(capsys, ["rebill", "--db", db_url, "--from", "2027-01-01",
                              "--to", "2027-01-01", "--customer", "C2", "--post"])
    assert "wrote 4 row(s)" in out
    assert _balances(db_url) == {"C1": 100_000_000, "C2": 35_000_000}
    _check(db_url)


# --------------------------------------------------------------------------- point 8

@pytest.mark.parametrize("option,value,char", [
    ("--reason", f"goodwill{ESC}]0;owned\x07", "U+001B"),
    ("--reason", "credit\x9b2J", "U+009B"),
    ("--reason", "credit\x7f", "U+007F"),
    ("--reason", "tick\u202eet", "U+202E"),
    ("--reason", "a\u2066b", "U+2066"),
    ("--reason", "two\nlines", "U+000A"),
    ("--key", f"K{ESC}[2J", "U+001B"),
    ("--key", "K\u2069", "U+2069"),
    ("--key", "K\u200b1", "U+200B"),
])
def test_adjust_refuses_control_and_bidi_characters(db_url, tmp_path, capsys, option, value,
                                                     char):
    _import(db_url, tmp_path, assignments=HEAD + "A1,C1,P1,1,2027-01-01,,true,\n")
    args = {"--reason": "goodwill", "--key": None, option: value}
    cmd = ["adjust", "--db", db_url, "--customer", "C1", "--amount", "-1", "--post"]
    for name, given in args.items():
        if given is not None:
            cmd += [name, given]
    out, err = _out(capsys, cmd, 2)
    assert option in err and char in err and "nothing stored" in err, err
    assert ESC not in out + err and "\u202e" not in out + err
    assert len(err.strip().splitlines()) == 1
    assert _sql(db_url, "SELECT COUNT(*) FROM ledger")[0][0] == 0
    assert _balances(db_url)["C1"] == 100_000_000


def test_views_print_stored_control_characters_as_visible_text(db_url, tmp_path, capsys,
                                                               monkeypatch):
    _import(db_url, tmp_path, assignments=HEAD + "A1,C1,P1,1,2027-01-01,,true,\n")
    assert main(["adjust", "--db", db_url, "--customer", "C1", "--amount", "-1",
                 "--reason", "goodwill", "--key", "G1", "--post"]) == 0
    # rows written before the rule (or by another tool): ESC sequences, CR, bidi, C1
    hostile = f"ok{ESC}]0;pwned\x07{ESC}[2J\rback\u202eevil\x9b"
    _sql(db_url, f"UPDATE ledger SET reason = '{hostile}', run_id = 'r{ESC}[1m'")
    _sql(db_url, f"UPDATE customers SET name = 'Al{ESC}[31mice\u2067' WHERE customer_id = 'C1'")
    _sql(db_url, f"UPDATE runs SET started_by = 'ops{ESC}]0;x\x07'")
    for width in ("200", "100"):
        monkeypatch.setenv("COLUMNS", width)
        out, err = _out(capsys, ["ledger", "--db", db_url, "--customer", "C1"])
        text = out + err
        assert ESC not in text and "\r" not in text and "\u202e" not in text
        assert "\x9b" not in text and "\x07" not in text
        if width == "200":
            assert "ok\\x1b]0;pwned\\x07\\x1b[2J\\x0dback\\u202eevil\\x9b" in text, text
        else:  # a narrow table folds the cell over lines, next to other columns
            assert "ok\\x1b]0;pwned" in text and "r\\x1b[1m" in text, text
        out, err = _out(capsys, ["balances", "--db", db_url])
        assert ESC not in out and "\u2067" not in out
        assert "Al\\x1b[31mice\\u2067" in out
    _run(db_url, tmp_path, "2027-01-01", "r1")
    _sql(db_url, f"UPDATE runs SET started_by = 'ops{ESC}]0;x\x07'")
    out, err = _out(capsys, ["runs", "--db", db_url])
    assert ESC not in out and "\x07" not in out and "ops\\x1b]0;x\\x07" in out
    # JSON keeps the value (a JSON reader gets the stored text back) and escapes it
    out, err = _out(capsys, ["ledger", "--db", db_url, "--customer", "C1", "--json"])
    assert ESC not in out and "\u202e" not in out and "\x9b" not in out
    import json
    assert json.loads(out)[0]["reason"] == hostile


# --------------------------------------------------------------------------- point 12

@pytest.mark.parametrize("args,named", [
    (["--from", "0001-01-01", "--to", "2027-01-01"], "--from 0001-01-01 is out of range"),
    (["--from", "2027-01-01", "--to", "9999-12-31"], "--to 9999-12-31 is out of range"),
    (["--from", "1999-12-31", "--to", "2000-01-01"], "--from 1999-12-31 is out of range"),
    (["--from", "2027-02-30", "--to", "2027-03-01"], "not a calendar date"),
    (["--from", "2027-03-01", "--to", "2027-02-01"], "is before --from"),
])
def test_rebill_range_outside_the_billing_dates_is_a_usage_error(db_url, tmp_path, capsys,
                                                                  args, named):
    _import(db_url, tmp_path, assignments=HEAD + "A1,C1,P1,1,2027-01-01,,true,\n")
    out, err = _out(capsys, ["rebill", "--db", db_url, *args, "--post"], 2)
    assert named in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "OverflowError" not in err


def _three_months(db_url: str, tmp_path: Path) -> None:
    _import(db_url, tmp_path, assignments=HEAD + "A1,C1,P1,1,2027-01-01,,true,\n")
    for day in ("2027-01-01", "2027-02-01", "2027-03-01"):
        _run(db_url, tmp_path, day, f"r{day}")
    # C1: 100 - 5 setup - 3 x 10 = 65.00
    assert _balances(db_url)["C1"] == 65_000_000
    _sql(db_url, "UPDATE packages SET retail_micros = 12000000")


def _corrections(db_url: str) -> list[str]:
    return [str(d) for (d,) in _sql(db_url, "SELECT period_start FROM ledger "
                                             "WHERE entry = 'correction' ORDER BY period_start")]


def test_a_long_rebill_works_in_steps_with_progress(db_url, tmp_path, capsys):
    _three_months(db_url, tmp_path)
    args = ["rebill", "--db", db_url, "--from", "2027-01-01", "--to", "2027-03-31"]
    out, err = _out(capsys, args)  # simulate: the steps show, nothing written
    assert "would write 3 row(s)" in out
    assert "90 day(s): in steps of 31" in err
    assert [line for line in err.splitlines() if "step " in line] == [
        "rebill: step 1/3 (2027-01-01 to 2027-01-31): would write 1 row(s)",
        "rebill: step 2/3 (2027-02-01 to 2027-03-03): would write 2 row(s)",
        "rebill: step 3/3 (2027-03-04 to 2027-03-31): would write 0 row(s)"]
    assert _corrections(db_url) == []
    out, err = _out(capsys, args + ["--post"])
    assert "wrote 3 row(s)" in out and "step 2/3 (2027-02-01 to 2027-03-03): wrote 2" in err
    assert _corrections(db_url) == ["2027-01-01", "2027-02-01", "2027-03-01"]
    assert _balances(db_url)["C1"] == 59_000_000
    _check(db_url)
    out, err = _out(capsys, args + ["--post"])
    assert "wrote 0 row(s)" in out  # once


def test_a_long_rebill_killed_between_steps_keeps_the_earlier_steps_and_a_rerun_completes(
        db_url, tmp_path, capsys):
    _three_months(db_url, tmp_path)
    args = ["rebill", "--db", db_url, "--from", "2027-01-01", "--to", "2027-03-31", "--post"]
    # SIGKILL in step 2 (the 2nd write), after step 1 committed
    killed = _spawn(*args, crash="correct_mid:2")
    _stdout, stderr = killed.communicate(timeout=300)
    assert killed.returncode == -9, stderr
    assert "step 1/3 (2027-01-01 to 2027-01-31): wrote 1 row(s)" in stderr
    assert _corrections(db_url) == ["2027-01-01"]  # step 1 stands, step 2 left nothing
    assert _balances(db_url)["C1"] == 63_000_000
    _check(db_url)
    out, err = _out(capsys, args)
    assert "wrote 2 row(s)" in out and "step 1/3 (2027-01-01 to 2027-01-31): wrote 0" in err
    assert _corrections(db_url) == ["2027-01-01", "2027-02-01", "2027-03-01"]
    assert _balances(db_url)["C1"] == 59_000_000
    _check(db_url)


def test_a_start_moved_across_steps_is_moved_in_the_last_step(db_url, tmp_path, capsys):
    """A start moved from 2027-03-01 to 2027-01-01: the new key is in step 1, the old in
    step 3; the charge of the new key waits for the last step, after the old is reversed."""
    _import(db_url, tmp_path, assignments=HEAD + "A1,C1,P1,1,2027-03-01,,true,\n")
    _run(db_url, tmp_path, "2027-01-01", "r1")
    _run(db_url, tmp_path, "2027-02-01", "r2")
    _run(db_url, tmp_path, "2027-03-01", "r3")
    assert _balances(db_url)["C1"] == 85_000_000  # setup 5 + March 10
    _import(db_url, tmp_path, "--correct",
            assignments=HEAD + "A1,C1,P1,1,2027-01-01,,true,\n", tag="2")
    args = ["rebill", "--db", db_url, "--from", "2027-01-01", "--to", "2027-03-31"]
    out, err = _out(capsys, args)
    assert "would write 4 row(s)" in out and "step 3/3" in err
    assert "last step (keys whose old key a later step reversed): would write 1 row(s)" in err
    out, err = _out(capsys, args + ["--post"])
    assert "wrote 4 row(s)" in out and "step 3/3" in err
    assert "last step (keys whose old key a later step reversed): wrote 1 row(s)" in err
    # setup on 01-01 and Jan, Feb, Mar: 5 + 30; the old setup of 03-01 reversed
    assert _balances(db_url)["C1"] == 65_000_000
    _check(db_url)
    out, _err = _out(capsys, args + ["--post"])
    assert "wrote 0 row(s)" in out
