"""Operator actions that never quietly give wrong money (#30 points 4, 8, 14), on SQLite and
PostgreSQL, through the command line: a future date is not posted by a typo, `runs` tells the
truth (what a run charged, its folder, an interrupted or vanished run), Ctrl-C and SIGTERM
close the run record, `-h` and one-line usage errors, tables that fit 100 columns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from billing_jobs.cli.app import main
from billing_jobs.run.request import billing_today
from billing_jobs.store.db import make_engine
from billing_jobs.store.runs import start_run
from tests.e2e.test_cli import billing_db, ledger_count  # noqa: F401 - the CLI test's carrier

COMMANDS = ["import", "upgrade-db", "run", "backfill", "demo", "adjust", "rebill", "reverse",
            "balances", "ledger", "runs", "unposted", "forecast"]


def _runs(capsys, db: str) -> list[dict]:
    capsys.readouterr()
    assert main(["runs", "--json", "--db", db]) == 0
    return json.loads(capsys.readouterr().out)


def _one_line_error(capsys, args: list[str], code: int = 2) -> str:
    capsys.readouterr()
    assert main(args) == code, args
    cap = capsys.readouterr()
    assert cap.out == "", (args, cap.out)
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, cap.err)
    assert "Traceback" not in cap.err
    return lines[0]


# -- point 4: a mistyped year posts ----------------------------------------------------------


def test_a_future_date_is_not_posted_without_allow_future(billing_db, tmp_path, capsys):
    db = ["--db", billing_db]
    line = _one_line_error(capsys, ["run", *db, "--date", "2099-12-31", "--post"])
    assert "2099-12-31" in line and "--allow-future" in line
    assert ledger_count(billing_db) == 0 and _runs(capsys, billing_db) == []  # nothing written
    # a simulation of the same date is allowed (a report, nothing posted)
    assert main(["run", *db, "--date", "2099-12-31", "--out", str(tmp_path / "sim")]) == 0
    assert ledger_count(billing_db) == 0
    # prepaid in advance: said explicitly, it posts
    assert main(["run", *db, "--date", "2099-12-31", "--post", "--allow-future",
                 "--out", str(tmp_path / "post")]) == 0
    assert ledger_count(billing_db) > 0
    assert [r["mode"] for r in _runs(capsys, billing_db)] == ["post", "simulate"]


def test_a_backfill_reaching_past_today_posts_nothing(billing_db, capsys):
    db = ["--db", billing_db]
    today = billing_today("UTC")
    first = date(2027, 1, 1)
    last = max(today + timedelta(days=1), first + timedelta(days=2))
    first_future = max(first, today + timedelta(days=1))
    line = _one_line_error(capsys, ["backfill", *db, "--from", first.isoformat(),
                                    "--to", last.isoformat(), "--post"])
    assert f"{first_future} is after today ({today} in UTC)" in line
    assert ledger_count(billing_db) == 0 and _runs(capsys, billing_db) == []
    # the billing time zone decides what today is: a zone far ahead is still refused
    kiritimati = billing_today("Pacific/Kiritimati")  # UTC+14
    line = _one_line_error(capsys, ["backfill", *db, "--from", str(kiritimati - timedelta(1)),
                                    "--to", str(kiritimati + timedelta(1)), "--post",
                                    "--tz", "Pacific/Kiritimati"])
    assert f"{kiritimati + timedelta(1)} is after today ({kiritimati} in Pacific/Kiritimati)" \
        in line
    assert ledger_count(billing_db) == 0


def test_a_backfill_with_allow_future_posts_the_range(billing_db, capsys):
    assert main(["backfill", "--db", billing_db, "--from", "2027-01-01", "--to", "2027-01-02",
                 "--post", "--allow-future"]) == 0
    assert ledger_count(billing_db) > 0


def test_refuse_future_post_names_the_first_future_date():
    from billing_jobs.core.errors import UsageError
    from billing_jobs.run.request import RunRequest

    today = date(2027, 3, 10)
    RunRequest(run_date=today, simulate=False).refuse_future_post(today=today)  # today: fine
    RunRequest(run_date=date(2030, 1, 1)).refuse_future_post(today=today)  # a simulation
    RunRequest(run_date=date(2030, 1, 1), simulate=False,
               allow_future=True).refuse_future_post(today=today)
    with pytest.raises(UsageError, match="2027-03-11 is after today"):
        RunRequest(run_date=date(2027, 3, 1), simulate=False).refuse_future_post(
            date(2027, 3, 31), today=today)


# -- point 8: `runs` tells the truth ---------------------------------------------------------


def test_runs_show_what_each_run_charged_and_its_folder(billing_db, tmp_path, capsys,
                                                        monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    db = ["--db", billing_db]
    sim, first, again = tmp_path / "sim", tmp_path / "first", tmp_path / "again"
    assert main(["run", *db, "--date", "2027-01-01", "--out", str(sim)]) == 0
    assert main(["run", *db, "--date", "2027-01-01", "--post", "--allow-future",
                 "--out", str(first)]) == 0
    assert main(["run", *db, "--date", "2027-01-01", "--post", "--allow-future",
                 "--out", str(again)]) == 0
    assert main(["run", *db, "--date", "2027-01-01", "--post", "--allow-future"]) == 0
    newest, repost, post, simulation = _runs(capsys, billing_db)
    # a re-post charged nothing: no totals, 0 new of 6 lines (not the earlier post's 97.61)
    assert (repost["new_lines"], repost["lines"], repost["totals"]) == (0, 6, {})
    assert (newest["new_lines"], newest["totals"]) == (0, {})
    charged = {"EUR": ("97.61", 5), "JPY": ("334", 1)}
    assert {c: (t["amount"], t["lines"]) for c, t in post["totals"].items()} == charged
    assert {c: (t["amount"], t["lines"]) for c, t in simulation["totals"].items()} == charged
    assert post["totals"]["EUR"]["cost"] == "16.00"  # A1 4 x 3 + A4 4 x 1: the setups cost 0
    # --out folders are stored on the run; the default folder too
    assert [simulation["report_folder"], post["report_folder"], repost["report_folder"]] == [
        str(sim), str(first), str(again)]
    assert newest["report_folder"].startswith(str(tmp_path / "reports"))
    assert all(r["status"] == "succeeded" and r["process"] is None for r in (newest, post))
    capsys.readouterr()
    assert main(["runs", *db]) == 0
    text = capsys.readouterr().out
    assert "0/6" in text and "6/6" in text and "97.61" in text and str(sim) in text


def test_a_running_record_whose_process_is_gone_says_so(billing_db, capsys, monkeypatch):
    engine = make_engine(billing_db)
    assert main(["upgrade-db", "--db", billing_db]) == 0
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = start_run(engine, date(2027, 1, 1), "post", None, "cli:test", pid=gone.pid)
    alive = start_run(engine, date(2027, 1, 2), "post", None, "cli:test", pid=os.getpid())
    elsewhere = start_run(engine, date(2027, 1, 3), "post", None, "cli:test", pid=os.getpid())
    airflow = start_run(engine, date(2027, 1, 4), "post", None, "airflow:x")  # no pid
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE runs SET host = 'billing-02' WHERE run_id = :r"),
                     {"r": elsewhere})
    engine.dispose()
    by_id = {r["run_id"]: r for r in _runs(capsys, billing_db)}
    assert by_id[dead]["process"] == "process gone"
    assert by_id[alive]["process"] is None and by_id[airflow]["process"] is None
    assert by_id[elsewhere]["process"].startswith("on host billing-02")
    assert all(r["status"] == "running" for r in by_id.values())
    monkeypatch.setenv("COLUMNS", "100")
    capsys.readouterr()
    assert main(["runs", "--db", billing_db]) == 0
    text = capsys.readouterr().out
    assert "(process gone)" in text and "(on host billing-02" in text


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(db: str, tmp_path: Path, *args: str, night: int = 1) -> tuple[subprocess.Popen, Path]:
    """The CLI in a process of its own, paused before posting its `night`-th date."""
    ready = tmp_path / "paused.pid"
    env = dict(os.environ, BILLING_PAUSE_AT=f"before_settle:{night}:{ready}",
               BILLING_REPORT_DIR=str(tmp_path / "reports"))
    # Ctrl-C as at an operator's terminal: SIGINT at its default in the CLI's process even
    # when this suite was started in the background (a shell starts background jobs with
    # SIGINT ignored, the child inherits that, and Python then never raises KeyboardInterrupt)
    proc = subprocess.Popen([sys.executable, "-m", "billing_jobs.cli", *args, "--db", db],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the run never paused (exit {proc.returncode}): {out} {err}")
        time.sleep(0.05)
    assert int(ready.read_text()) == proc.pid
    return proc, ready


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_run_stopped_by_a_signal_is_recorded_interrupted(billing_db, tmp_path, capsys, sig,
                                                           code):
    proc, _ = _spawn(billing_db, tmp_path, "run", "--date", "2027-01-01", "--post",
                     "--allow-future")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    name = sig.name
    assert lines[0].startswith(f"interrupted ({name}")
    assert "recorded as interrupted" in lines[0] and "nothing was posted" in lines[0]
    assert "nothing half-written" in lines[0]
    [run] = _runs(capsys, billing_db)
    assert run["status"] == "interrupted" and run["process"] is None
    assert run["message"].startswith(f"interrupted by {name}")
    assert run["report_folder"] and run["run_id"] in lines[0]
    summary = json.loads((Path(run["report_folder"]) / "summary.json").read_text())
    assert summary["status"] == "failed" and f"interrupted by {name}" in summary["message"]
    assert ledger_count(billing_db) == 0
    # the interrupted date is posted whole by the next run
    assert main(["run", "--db", billing_db, "--date", "2027-01-01", "--post",
                 "--allow-future"]) == 0
    assert ledger_count(billing_db) == 6


def test_a_backfill_stopped_by_ctrl_c_keeps_the_dates_it_finished(billing_db, tmp_path,
                                                                  capsys):
    # paused before posting its second date: the first is posted and stands
    proc, _ = _spawn(billing_db, tmp_path, "backfill", "--from", "2027-01-01", "--to",
                     "2027-01-03", "--post", "--allow-future", night=2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    [line] = err.strip().splitlines()
    assert "of 2027-01-02 stopped and is recorded as interrupted" in line
    assert "1 earlier date(s) of the backfill finished and stand" in line
    assert out.startswith("2027-01-01: posted 6 new lines")
    assert [(r["run_date"], r["status"]) for r in _runs(capsys, billing_db)] == [
        ("2027-01-02", "interrupted"), ("2027-01-01", "succeeded")]
    assert ledger_count(billing_db) == 6  # 2027-01-01 whole, nothing of 2027-01-02
    # the backfill run again posts the rest, nothing twice
    assert main(["backfill", "--db", billing_db, "--from", "2027-01-01", "--to", "2027-01-03",
                 "--post", "--allow-future"]) == 0
    assert ledger_count(billing_db) == 8  # + A2's daily seat on the 2nd and the 3rd


# -- point 14: -h, one-line usage errors, 100 columns ----------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_dash_h_is_help_everywhere(command, capsys):
    assert main([command, "-h"]) == 0
    assert "Usage: billing-jobs" in capsys.readouterr().out


def test_dash_h_top_level(capsys):
    assert main(["-h"]) == 0
    assert "-h, --help" in capsys.readouterr().out


def test_bad_options_are_one_line_exit_2(tmp_path, capsys):
    db = ["--db", f"sqlite:///{tmp_path / 'b.db'}"]
    cases = {
        ("run", "--dat", "2027-01-01"): "No such option: --dat",
        ("nosuch",): "No such command",
        ("runs", "--last", "1e20"): "--last",
        ("runs", "--last", "100000000000000000000"): "--last",
        ("runs", "--last", "0"): "--last",
        ("run", "--db", db[1], "--date"): "--date",
        ("run", "--date", "2027-01-01", "--db", "postgresql://h:55x33/db"): "55x33",
    }
    for args, words in cases.items():
        line = _one_line_error(capsys, [*args, *(db if "--db" not in args else [])])
        assert words in line, (args, line)


def test_data_is_never_markup(billing_db, tmp_path, capsys, monkeypatch):
    db = ["--db", billing_db]
    line = _one_line_error(capsys, ["ledger", "--customer", "[/]C9", *db])
    assert "[/]C9" in line
    engine = sa.create_engine(billing_db)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET customer_id = '[/]C9' WHERE customer_id = 'C2'"))
        conn.execute(sa.text("UPDATE assignments SET customer_id = '[/]C9' "
                             "WHERE customer_id = 'C2'"))
    engine.dispose()
    monkeypatch.setenv("USER", "[bold]op[/]")
    assert main(["run", *db, "--date", "2027-01-01", "--post", "--allow-future"]) == 0
    capsys.readouterr()
    assert main(["ledger", "--customer", "[/]C9", *db]) == 0
    assert "ledger of [/]C9" in capsys.readouterr().out
    assert main(["runs", *db]) == 0
    assert "[bold]op[/]" in "".join(capsys.readouterr().out.split())
    # an import file whose name has brackets
    folder = tmp_path / "[red]in[x]"
    folder.mkdir()
    (folder / "customers.csv").write_text("customer_id,name,currency,balance\nC7,X,EUR,1\n")
    capsys.readouterr()
    assert main(["import", *db, "--customers", str(folder / "customers.csv")]) == 0


def test_runs_and_ledger_fit_100_columns(billing_db, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "a-rather-long-report-root" / "x"))
    db = ["--db", billing_db]
    assert main(["run", *db, "--date", "2027-01-01", "--post", "--allow-future"]) == 0
    assert main(["run", *db, "--date", "2027-01-01"]) == 0
    assert main(["adjust", *db, "--customer", "C1", "--amount", "-2.50", "--reason",
                 "goodwill after the outage of the Frankfurt trunk on the night of the 3rd",
                 "--key", "gw-1", "--post"]) == 0
    wide = {}
    for columns in ("100", "240"):
        monkeypatch.setenv("COLUMNS", columns)
        for args in (["runs"], ["ledger", "--customer", "C1"]):
            capsys.readouterr()
            assert main([*args, *db]) == 0
            text = capsys.readouterr().out
            width = max(len(line) for line in text.splitlines())
            assert width <= int(columns), (columns, args, text)
            wide[(columns, args[0])] = text
    [run] = [r for r in _runs(capsys, billing_db) if r["mode"] == "post"]
    assert run["run_id"][:8] + "…" in wide[("100", "runs")]  # shortened, with an ellipsis
    assert run["run_id"] in wide[("240", "runs")]  # whole when it fits
    assert run["run_id"][:8] + "…" in wide[("100", "ledger")]
    assert "goodwill" in wide[("100", "ledger")] and "97.61" in wide[("100", "runs")]
    # --json is unchanged by the width: whole ids
    monkeypatch.setenv("COLUMNS", "100")
    assert _runs(capsys, billing_db)[0]["run_id"] in {r["run_id"] for r in _runs(capsys, billing_db)}
    assert len(_runs(capsys, billing_db)[0]["run_id"]) == 36
