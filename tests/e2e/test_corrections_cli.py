"""`billing-jobs adjust | rebill | reverse` end to end on both databases: printed output, exit
codes, exactly once under reruns, three concurrent processes and a SIGKILL mid-way then resumed;
the balance invariant after every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from billing_jobs.cli.app import main
from billing_jobs.store.db import make_engine
from billing_jobs.store.ledger_invariant import balance_mismatches
from tests.store.test_corrections import ASSIGNMENTS, CUSTOMERS, PACKAGES

ROOT = Path(__file__).resolve().parents[2]


def _prepare(db_url: str, tmp_path: Path) -> None:
    for entity, text in (("customers", CUSTOMERS), ("packages", PACKAGES),
                         ("assignments", ASSIGNMENTS)):
        (tmp_path / f"{entity}.csv").write_text(text)
    assert main(["import", "--db", db_url, "--customers", str(tmp_path / "customers.csv"),
                 "--packages", str(tmp_path / "packages.csv"),
                 "--assignments", str(tmp_path / "assignments.csv")]) == 0
    assert main(["run", "--db", db_url, "--date", "2027-01-01", "--post", "--allow-future",
                 "--out", str(tmp_path / "r1")]) == 0
    _check(db_url)


def _check(db_url: str) -> None:
    engine = make_engine(db_url)
    assert balance_mismatches(engine) == []
    engine.dispose()


def _balance(db_url: str) -> int:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT balance_micros FROM customers")).scalar()
    engine.dispose()
    return int(value)


def _rows(db_url: str) -> int:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT COUNT(*) FROM ledger")).scalar()
    engine.dispose()
    return int(value)


def _sql(db_url: str, text: str):
    engine = make_engine(db_url)
    with engine.begin() as conn:
        result = conn.execute(sa.text(text))
        out = result.all() if text.startswith("SELECT") else None
    engine.dispose()
    return out


def _spawn(*args: str, crash: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("BILLING_CRASH_AT", None)
    if crash:
        env["BILLING_CRASH_AT"] = crash
    return subprocess.Popen([sys.executable, "-m", "billing_jobs.cli.app", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_adjust_cli_prints_and_is_exactly_once_per_key(db_url, tmp_path, capsys):
    _prepare(db_url, tmp_path)
    assert _balance(db_url) == 70_000_000
    args = ["adjust", "--db", db_url, "--customer", "C1", "--amount", "-7.5",
            "--reason", "goodwill", "--key", "G1"]
    assert main(args) == 0  # show only
    assert "would write 1 row" in capsys.readouterr().out and _balance(db_url) == 70_000_000
    assert main(args + ["--post"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 row" in printed and "-7.50 EUR" in printed
    assert main(args + ["--post"]) == 0  # a retry with the same key
    assert "nothing changed" in capsys.readouterr().out
    assert _balance(db_url) == 77_500_000
    _check(db_url)
    assert main(["adjust", "--db", db_url, "--customer", "C1", "--amount", "x",
                 "--reason", "r"]) == 2
    assert main(["adjust", "--db", db_url, "--customer", "NOPE", "--amount", "1",
                 "--reason", "r", "--post"]) == 2


def test_rebill_three_at_once_and_killed_then_resumed(db_url, tmp_path):
    _prepare(db_url, tmp_path)
    _sql(db_url, "UPDATE packages SET retail_micros = 12000000")
    rebill = ["rebill", "--db", db_url, "--from", "2027-01-01", "--to", "2027-01-01", "--post"]
    # SIGKILL after the inserts, before the balance update and commit: nothing is left behind
    killed = _spawn(*rebill, crash="correct_mid:1")
    killed.communicate(timeout=120)
    assert killed.returncode == -9
    assert _balance(db_url) == 70_000_000 and _rows(db_url) == 4
    _check(db_url)
    procs = [_spawn(*rebill) for _ in range(3)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    # one clean run: A1 recurring +4.00 (posted), A2 recurring +2.00 (invoiced), once
    assert _balance(db_url) == 66_000_000 and _rows(db_url) == 6
    _check(db_url)
    assert main(rebill) == 0 and _rows(db_url) == 6  # a rerun writes nothing


def test_reverse_cli_three_at_once_killed_resumed_and_post_again(db_url, tmp_path, capsys):
    _prepare(db_url, tmp_path)
    (run_id,) = _sql(db_url, "SELECT run_id FROM runs WHERE mode = 'post'")[0]
    assert main(["reverse", "--db", db_url, "--run", run_id]) == 0
    assert "would write 4 row" in capsys.readouterr().out and _balance(db_url) == 70_000_000
    killed = _spawn("reverse", "--db", db_url, "--run", run_id, "--post", crash="correct_mid:1")
    killed.communicate(timeout=120)
    assert killed.returncode == -9 and _balance(db_url) == 70_000_000 and _rows(db_url) == 4
    procs = [_spawn("reverse", "--db", db_url, "--run", run_id, "--post") for _ in range(3)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert _balance(db_url) == 100_000_000 and _rows(db_url) == 8
    _check(db_url)
    assert main(["reverse", "--db", db_url, "--run", run_id, "--post"]) == 0
    assert "wrote 0 row" in capsys.readouterr().out and _rows(db_url) == 8
    assert main(["run", "--db", db_url, "--date", "2027-01-01", "--post", "--allow-future",
                 "--out", str(tmp_path / "r2")]) == 0
    assert _balance(db_url) == 70_000_000 and _rows(db_url) == 12
    _check(db_url)
    assert main(["reverse", "--db", db_url, "--run", "no-such-run", "--post"]) == 2
