"""Operator trust in the correction commands (#30 points 2, 5, 6, 7; #28 points 1 and 7), end to
end through the CLI on SQLite and PostgreSQL: `adjust` exactly once without a key (retried,
three at once), the preview's key is the post's, amounts finer than the minor unit refused,
user keys kept out of the system namespaces; `rebill --from` a change date inside a period;
`unposted` brings back a reversed date and never lists dates after today; no message or row
reason in micros; text from data printed as typed (`[/]`)."""

from __future__ import annotations

import re
from pathlib import Path

from billing_jobs.cli.app import main
from tests.e2e.test_corrections_cli import _balance, _check, _prepare, _rows, _spawn, _sql
from tests.e2e.test_views_cli import today_is
from tests.store.test_corrections import ASSIGNMENTS, CUSTOMERS, PACKAGES


def _out(capsys, args: list[str], code: int = 0) -> str:
    capsys.readouterr()
    assert main(args) == code, capsys.readouterr()
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "micros" not in text, text  # amounts are decimals of the currency (#30 point 7)
    return text


def _key(text: str) -> str:
    m = re.search(r"^idempotency key: (\S+)", text, re.MULTILINE)
    assert m, text
    return m.group(1)


def _no_micros_in_reasons(db_url: str) -> None:
    reasons = [r for (r,) in _sql(db_url, "SELECT reason FROM ledger") if r]
    assert not [r for r in reasons if "micros" in r], reasons


def test_adjust_without_a_key_posts_once_and_the_preview_key_is_the_posted_key(
        db_url, tmp_path, capsys):
    _prepare(db_url, tmp_path)  # C1 EUR 100.00 - 30.00 posted = 70.00; 4 ledger rows
    args = ["adjust", "--db", db_url, "--customer", "C1", "--amount", "-5.00",
            "--reason", "goodwill"]
    shown = _out(capsys, args)
    assert "would write 1 row" in shown and "would be posted" in shown
    assert " posted " not in shown.replace("would be posted", "")  # the preview posts nothing
    preview_key = _key(shown)
    assert preview_key.startswith("adjust:") and not preview_key.startswith("adjust:adjust:")
    done = _out(capsys, args + ["--post"])
    assert "wrote 1 row" in done and "-5.00 EUR" in done and _key(done) == preview_key
    again = _out(capsys, args + ["--post"])  # the same command retried
    assert "nothing changed" in again and "--key" in again and _key(again) == preview_key
    assert _balance(db_url) == 75_000_000 and _rows(db_url) == 5
    [(key, run_id)] = _sql(db_url, "SELECT idempotency_key, run_id FROM ledger "
                                   "WHERE kind = 'adjustment'")
    assert key == preview_key and run_id == preview_key  # no adjust:adjust:...
    # the printed key given back (e.g. the preview was yesterday's) is the same adjustment
    assert "nothing changed" in _out(capsys, args + ["--key", preview_key, "--post"])
    assert _rows(db_url) == 5

    # a deliberate second one, with its own key; it too is once
    second = _out(capsys, args + ["--key", "ticket-42", "--post"])
    assert "wrote 1 row" in second and _key(second) == "adjust:user:ticket-42"
    assert "nothing changed" in _out(capsys, args + ["--key", "ticket-42", "--post"])
    assert "nothing changed" in _out(capsys, args + ["--key", "adjust:user:ticket-42", "--post"])
    assert _balance(db_url) == 80_000_000 and _rows(db_url) == 6
    # the same key for another amount is refused, in the currency's unit
    refused = _out(capsys, ["adjust", "--db", db_url, "--customer", "C1", "--amount", "7",
                            "--reason", "goodwill", "--key", "ticket-42", "--post"], 2)
    assert "-5.00 EUR" in refused and "nothing written" in refused
    _check(db_url)
    _no_micros_in_reasons(db_url)


def test_a_key_stored_before_user_keys_had_a_namespace_still_counts(db_url, tmp_path, capsys):
    _prepare(db_url, tmp_path)
    args = ["adjust", "--db", db_url, "--customer", "C1", "--amount", "2.50",
            "--reason", "late fee", "--key", "OLD-1", "--post"]
    assert "wrote 1 row" in _out(capsys, args)
    # as the previous version stored it: the key raw, the run id adjust:<key>
    _sql(db_url, "UPDATE ledger SET idempotency_key = 'OLD-1', run_id = 'adjust:OLD-1' "
                 "WHERE kind = 'adjustment'")
    again = _out(capsys, args)
    assert "nothing changed" in again and _key(again) == "OLD-1"
    assert _rows(db_url) == 5 and _balance(db_url) == 67_500_000
    _check(db_url)


def test_three_adjusts_at_once_post_one_row(db_url, tmp_path):
    _prepare(db_url, tmp_path)
    procs = [_spawn("adjust", "--db", db_url, "--customer", "C1", "--amount", "-5",
                    "--reason", "goodwill", "--post") for _ in range(3)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert sum("wrote 1 row" in o for o, _e in outs) == 1, outs
    assert sum("nothing changed" in o for o, _e in outs) == 2, outs
    assert len({_key(o) for o, _e in outs}) == 1
    assert _rows(db_url) == 5 and _balance(db_url) == 75_000_000
    _check(db_url)


def test_amounts_finer_than_the_minor_unit_are_refused(db_url, tmp_path, capsys):
    _prepare(db_url, tmp_path)
    for post in ([], ["--post"]):
        text = _out(capsys, ["adjust", "--db", db_url, "--customer", "C1", "--amount", "1.234",
                             "--reason", "fee", *post], 2)
        assert "1.234" in text and "minor unit of EUR" in text and "2 decimal places" in text
        assert len(text.strip().splitlines()) == 1 and "Traceback" not in text
    assert _rows(db_url) == 4 and _balance(db_url) == 70_000_000
    assert "wrote 1 row" in _out(capsys, ["adjust", "--db", db_url, "--customer", "C1",
                                          "--amount", "1.23", "--reason", "fee", "--post"])
    assert "wrote 1 row" in _out(capsys, ["adjust", "--db", db_url, "--customer", "C1",
                                          "--amount", "1.2300", "--reason", "fee 2", "--post"])
    assert _balance(db_url) == 67_540_000
    _check(db_url)


def test_markup_in_reasons_and_ids_prints_as_typed(db_url, tmp_path, capsys):
    """#28 point 1: a command that committed never crashes printing what it wrote."""
    for entity, text in (("customers", CUSTOMERS), ("packages", PACKAGES),
                         ("assignments", ASSIGNMENTS)):
        text = text.replace("C1", "C[/]1").replace("A1", "A[/]1").replace("P1", "P[bold]1")
        (tmp_path / f"{entity}.csv").write_text(text)
    db = ["--db", db_url]
    assert main(["import", *db, "--customers", str(tmp_path / "customers.csv"),
                 "--packages", str(tmp_path / "packages.csv"),
                 "--assignments", str(tmp_path / "assignments.csv")]) == 0
    assert main(["run", *db, "--date", "2027-01-01", "--post", "--allow-future", "--out", str(tmp_path / "r")]) == 0
    adj = ["adjust", *db, "--customer", "C[/]1", "--amount", "-5", "--reason",
           "goodwill [/] credit [red]", "--post"]
    done = _out(capsys, adj)
    assert "goodwill [/] credit [red]" in done and "C[/]1" in done and _key(done)
    assert "nothing changed" in _out(capsys, adj)  # the retry credits nothing again
    assert _rows(db_url) == 5
    _sql(db_url, "UPDATE packages SET retail_micros = 12000000")
    rebilled = _out(capsys, ["rebill", *db, "--from", "2027-01-01", "--to", "2027-01-01",
                             "--post"])
    assert "wrote 2 row" in rebilled and "A[/]1" in rebilled
    (run_id,) = _sql(db_url, "SELECT run_id FROM runs WHERE mode = 'post'")[0]
    reversed_ = _out(capsys, ["reverse", *db, "--run", run_id, "--post"])
    assert "wrote 4 row" in reversed_ and "A[/]1" in reversed_ and "C[/]1" in reversed_
    missing = _out(capsys, ["reverse", *db, "--run", "x[/]y", "--post"], 2)
    assert "x[/]y" in missing
    _check(db_url)
    _no_micros_in_reasons(db_url)


def test_a_user_key_in_a_system_namespace_cannot_block_reverse(db_url, tmp_path, capsys):
    """#28 point 7: `adjust --key reverse:<run>:...` once made `reverse --run` write nothing for
    that key and mark the run reversed, the charge kept."""
    _prepare(db_url, tmp_path)
    (run_id,) = _sql(db_url, "SELECT run_id FROM runs WHERE mode = 'post'")[0]
    system = f"reverse:{run_id}:A1:recurring:2027-01-01"
    done = _out(capsys, ["adjust", "--db", db_url, "--customer", "C1", "--amount", "1",
                         "--reason", "r", "--key", system, "--post"])
    assert _key(done) == f"adjust:user:{system}"
    shown = _out(capsys, ["reverse", "--db", db_url, "--run", run_id])
    assert "would write 4 row" in shown and "would be posted" in shown
    assert "wrote 4 row" in _out(capsys, ["reverse", "--db", db_url, "--run", run_id, "--post"])
    assert _balance(db_url) == 99_000_000  # 100.00 back, the 1.00 debit kept
    _check(db_url)


def test_a_system_key_taken_before_the_namespace_does_not_block_reverse(db_url, tmp_path,
                                                                        capsys):
    _prepare(db_url, tmp_path)
    (run_id,) = _sql(db_url, "SELECT run_id FROM runs WHERE mode = 'post'")[0]
    system = f"reverse:{run_id}:A1:recurring:2027-01-01"
    _out(capsys, ["adjust", "--db", db_url, "--customer", "C1", "--amount", "1",
                  "--reason", "r", "--key", "squat", "--post"])
    # as the previous version stored `--key <system>`: raw, run id adjust:<key>
    _sql(db_url, f"UPDATE ledger SET idempotency_key = '{system}', run_id = 'adjust:{system}' "
                 "WHERE kind = 'adjustment'")
    assert "wrote 4 row" in _out(capsys, ["reverse", "--db", db_url, "--run", run_id, "--post"])
    assert "wrote 0 row" in _out(capsys, ["reverse", "--db", db_url, "--run", run_id, "--post"])
    assert _balance(db_url) == 99_000_000 and _rows(db_url) == 9
    nets = dict(_sql(db_url, "SELECT kind, SUM(amount_micros) FROM ledger "
                             "WHERE assignment_id = 'A1' GROUP BY kind"))
    assert {k: int(v) for k, v in nets.items()} == {"setup": 0, "recurring": 0}
    _check(db_url)


def test_rebill_from_a_change_date_inside_a_period_finds_the_period(db_url, tmp_path, capsys):
    """#30 point 5: A1 (2 x 10.00 monthly, prorate) ends 2027-01-10, inside the January period
    billed on 2027-01-01; `rebill --from 2027-01-10` finds it: 10 of 31 days, 20 x 10/31 =
    6.45, a correction of -13.55."""
    _prepare(db_url, tmp_path)
    _sql(db_url, "UPDATE assignments SET end_date = '2027-01-10' WHERE assignment_id = 'A1'")
    rebill = ["rebill", "--db", db_url, "--from", "2027-01-10", "--to", "2027-01-12"]
    shown = _out(capsys, rebill)
    assert "would write 1 row" in shown and "-13.55 EUR" in shown
    assert "2027-01-01" in shown and "recomputed too" in shown
    done = _out(capsys, rebill + ["--post"])
    assert "wrote 1 row" in done and "held 20.00 EUR" in done and "says 6.45 EUR" in done
    assert _balance(db_url) == 83_550_000
    assert "wrote 0 row" in _out(capsys, rebill + ["--post"])  # once
    # the billing date's own range agrees: nothing left to correct
    assert "wrote 0 row" in _out(capsys, ["rebill", "--db", db_url, "--from", "2027-01-01",
                                          "--to", "2027-01-01", "--post"])
    # a range after the period finds nothing to do, and says no date was added
    later = _out(capsys, ["rebill", "--db", db_url, "--from", "2027-02-01", "--to",
                          "2027-02-01"])
    assert "recomputed too" not in later
    _check(db_url)
    _no_micros_in_reasons(db_url)


def test_unposted_brings_back_a_reversed_date_and_stops_at_today(db_url, tmp_path, capsys,
                                                                 monkeypatch):
    _prepare(db_url, tmp_path)  # 2027-01-01 posted
    db = ["--db", db_url]
    today_is(monkeypatch, "2027-01-03")
    assert main(["run", *db, "--date", "2027-01-02", "--post", "--allow-future", "--out", str(tmp_path / "r2")]) == 0
    assert "0 billing date" in _out(capsys, ["unposted", *db])
    (run_id,) = _sql(db_url, "SELECT run_id FROM runs WHERE run_date = '2027-01-01'")[0]
    _out(capsys, ["reverse", *db, "--run", run_id, "--post"])
    listed = _out(capsys, ["unposted", *db, "--json"])
    assert '"2027-01-01"' in listed and "reversed" in listed and '"2027-01-02"' not in listed
    # posting the date again takes it off the list
    assert main(["run", *db, "--date", "2027-01-01", "--post", "--allow-future", "--out", str(tmp_path / "r3")]) == 0
    assert "0 billing date" in _out(capsys, ["unposted", *db])
    # a post far ahead (a mistyped year) never lists the dates up to it: only before today
    assert main(["run", *db, "--date", "2099-01-01", "--post", "--allow-future", "--out", str(tmp_path / "r4")]) == 0
    assert "0 billing date" in _out(capsys, ["unposted", *db])
    today_is(monkeypatch, "2027-01-06")
    listed = _out(capsys, ["unposted", *db, "--json"])
    assert re.findall(r'"(\d{4}-\d{2}-\d{2})"', listed) == ["2027-01-03", "2027-01-04",
                                                              "2027-01-05"]
