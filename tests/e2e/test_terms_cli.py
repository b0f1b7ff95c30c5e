"""`billing-jobs change | cancel | history` end to end on both databases (SPEC 10, #27): the
preview writes nothing, `--post` posts the lines of a date already posted once (reruns and three
processes at once included), the nightly post writes them otherwise, the next billing date bills
the new terms, rebill afterwards finds nothing, a void corrects everything to 0 once, a bad
package change is refused (exit 2), and history lists the changes; the balance invariant after
every command."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from billing_jobs.cli import app as app_module
from billing_jobs.cli import terms
from billing_jobs.cli.app import main
from billing_jobs.store.db import make_engine
from billing_jobs.store.ledger_invariant import balance_mismatches

ROOT = Path(__file__).resolve().parents[2]
if not any(c.name == "change" for c in app_module.app.registered_commands):
    terms.register(app_module.app)  # until cli/app.py registers the group
#: the CLI with the terms group, for subprocesses
_RUNNER = ("import sys; from billing_jobs.cli import app, terms\n"
           "if not any(c.name == 'change' for c in app.app.registered_commands):\n"
           "    terms.register(app.app)\n"
           "sys.exit(app.main(sys.argv[1:]))")

CUSTOMERS = """customer_id,name,currency,balance
C1,One,EUR,100
C2,Two,EUR,50
"""
PACKAGES = """package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,frequency_match,free_minutes,destination,minimum_spend,minimum_days,prorate,description
P1,Seat,standard,1,4,0,5,EUR,monthly,1,0,,false,0,true,seat
P2,Seat plus,standard,1,6,0,0,EUR,monthly,1,0,,false,0,true,seat plus
PW,Weekly seat,standard,1,6,0,0,EUR,weekly,1,0,,false,0,true,weekly
PF,Minutes,free_minutes,1,3,0,0,EUR,monthly,1,100,^44,false,0,true,minutes
"""
ASSIGNMENTS = """assignment_id,customer_id,package_id,quantity,start_date,end_date,auto_decrement,free_minutes
A1,C1,P1,5,2026-11-01,,true,
A2,C1,PF,1,2026-11-01,,true,
A3,C2,P1,2,2026-11-01,,true,
"""
USAGE = """call_id,customer_id,start_time,destination,duration_s,charge
K1,C1,2026-11-05T10:00:00Z,441234,600,1.00
"""


def _prepare(db_url: str, tmp_path: Path, usage: bool = False) -> None:
    files = {"customers": CUSTOMERS, "packages": PACKAGES, "assignments": ASSIGNMENTS,
             "usage": USAGE}
    args = ["import", "--db", db_url]
    for entity, text in files.items():
        if entity == "usage" and not usage:
            continue
        (tmp_path / f"{entity}.csv").write_text(text)
        args += [f"--{entity}", str(tmp_path / f"{entity}.csv")]
    assert main(args) == 0
    # November posted through the 12th
    assert main(["backfill", "--db", db_url, "--from", "2026-11-01", "--to", "2026-11-12",
                 "--post"]) == 0
    _check(db_url)


def _sql(db_url: str, text: str, **params):
    engine = make_engine(db_url)
    with engine.begin() as conn:
        result = conn.execute(sa.text(text), params)
        rows = result.all() if text.lstrip().startswith("SELECT") else None
    engine.dispose()
    return rows


def _check(db_url: str) -> None:
    engine = make_engine(db_url)
    assert balance_mismatches(engine) == []
    engine.dispose()


def _balance(db_url: str, customer: str) -> int:
    return int(_sql(db_url, "SELECT balance_micros FROM customers WHERE customer_id = :c",
                    c=customer)[0][0])


def _count(db_url: str, table: str) -> int:
    return int(_sql(db_url, f"SELECT COUNT(*) FROM {table}")[0][0])


def _spawn(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("BILLING_CRASH_AT", None)
    return subprocess.Popen([sys.executable, "-c", _RUNNER, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_change_after_the_date_was_posted(db_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    _prepare(db_url, tmp_path)
    # setup 25.00 + recurring 20.00 (A1) + recurring 3.00 (A2)
    assert _balance(db_url, "C1") == 52_000_000
    rows = _count(db_url, "ledger")
    change = ["change", "--db", db_url, "--assignment", "A1", "--from", "2026-11-10",
              "--quantity", "8"]

    capsys.readouterr()
    assert main(change) == 0  # a preview
    printed = capsys.readouterr().out
    assert "change_credit  C1  -14.00 EUR" in printed
    assert "change_charge  C1  22.40 EUR" in printed
    assert "8 x P1 at 4.00 charged from 2026-11-10: 21 of 30 days" in printed
    assert "next billing date 2026-12-01: recurring 32.00 EUR" in printed
    assert "nothing written" in printed
    assert _count(db_url, "ledger") == rows and _count(db_url, "assignment_changes") == 0
    assert _balance(db_url, "C1") == 52_000_000

    assert main(change + ["--post"]) == 0
    printed = capsys.readouterr().out
    assert "recorded" in printed and "posted its lines now (2 new)" in printed
    assert _balance(db_url, "C1") == 52_000_000 - 8_400_000
    assert _count(db_url, "ledger") == rows + 2
    _check(db_url)

    assert main(change + ["--post"]) == 0  # a retry
    printed = capsys.readouterr().out
    assert "already recorded under this key: nothing changed" in printed
    assert "(0 new)" in printed
    assert _balance(db_url, "C1") == 52_000_000 - 8_400_000
    assert _count(db_url, "ledger") == rows + 2
    assert _count(db_url, "assignment_changes") == 1

    # three at once: the free-minute assignment A2 from 1 to 3 units, once
    args = ("change", "--db", db_url, "--assignment", "A2", "--from", "2026-11-10",
            "--quantity", "3", "--post")
    procs = [_spawn(*args) for _ in range(3)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert sum("posted its lines now (2 new)" in o for o, _e in outs) == 1, outs
    # -3.00 x 21/30 + 9.00 x 21/30 = 4.20, once
    assert _balance(db_url, "C1") == 52_000_000 - 8_400_000 - 4_200_000
    assert _count(db_url, "ledger") == rows + 4
    assert _count(db_url, "assignment_changes") == 2
    grants = _sql(db_url, "SELECT period_start, period_end, seconds FROM grants "
                          "WHERE assignment_id = 'A2' AND withdrawn_at IS NULL "
                          "ORDER BY period_start")
    # the old grant cut to [11-01, 11-10): 100 min x 9/30; the new one 300 min x 21/30
    assert [(str(s)[:10], str(e)[:10], int(n)) for s, e, n in grants] == [
        ("2026-11-01", "2026-11-10", 1800), ("2026-11-10", "2026-12-01", 12600)]
    _check(db_url)

    # the December post bills 8 seats (and 3 units of minutes)
    assert main(["run", "--db", db_url, "--date", "2026-12-01", "--post", "--customer",
                 "C1"]) == 0
    december = _sql(db_url, "SELECT assignment_id, quantity, amount_micros FROM ledger "
                            "WHERE run_date = '2026-12-01' AND kind = 'recurring' "
                            "ORDER BY assignment_id")
    assert [(a, int(q), int(m)) for a, q, m in december] == [
        ("A1", 8, 32_000_000), ("A2", 3, 9_000_000)]
    _check(db_url)

    capsys.readouterr()
    assert main(["rebill", "--db", db_url, "--from", "2026-10-01", "--to", "2026-12-31",
                 "--customer", "C1"]) == 0
    assert "rebill: would write 0 row(s)" in capsys.readouterr().out

    # history lists the change
    assert main(["history", "--db", db_url, "--assignment", "A1", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [(e["effective_from"], e["event"], e["quantity"]) for e in entries] == [
        ("2026-11-01", "start", 5), ("2026-11-10", "change", 8)]
    assert entries[1]["source"] == "change" and "@" in entries[1]["recorded_by"]
    assert main(["history", "--db", db_url, "--assignment", "A1"]) == 0
    assert "quantity 8" in capsys.readouterr().out


def test_refusals_name_the_rule(db_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    _prepare(db_url, tmp_path)
    rows = _count(db_url, "ledger")
    base = ["change", "--db", db_url, "--assignment", "A1"]
    cases = [
        (["--from", "2026-11-15", "--package", "PW", "--post"], "frequency"),
        (["--from", "2026-11-15", "--package", "NOPE"], "does not exist"),
        (["--from", "2026-10-15", "--quantity", "3"], "before the assignment's start_date"),
        (["--from", "2026-11-15", "--quantity", "5"], "changes nothing"),
        (["--from", "2026-11-15", "--quantity", "0"], "quantity must be at least 1"),
        (["--from", "2026-11-15"], "no field to change"),
    ]
    for extra, words in cases:
        capsys.readouterr()
        assert main(base + extra) == 2, extra
        said = capsys.readouterr().err
        assert words in said and said.count("\n") == 1, (extra, said)
    assert main(["change", "--db", db_url, "--assignment", "NOPE", "--from", "2026-11-15",
                 "--quantity", "2"]) == 2
    assert main(["cancel", "--db", db_url, "--assignment", "A1"]) == 2
    assert _count(db_url, "ledger") == rows and _count(db_url, "assignment_changes") == 0
    # a change dated after today is recorded for the future
    assert main(base + ["--from", "2099-01-01", "--quantity", "2", "--post"]) == 0
    assert "the post of 2099-01-01 will write its lines" in capsys.readouterr().out
    assert _count(db_url, "assignment_changes") == 1 and _count(db_url, "ledger") == rows


def test_change_before_posting_is_written_by_the_nightly_post(db_url, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    _prepare(db_url, tmp_path)
    rows = _count(db_url, "ledger")
    assert main(["change", "--db", db_url, "--assignment", "A3", "--from", "2026-11-20",
                 "--quantity", "3", "--post"]) == 0
    assert "the post of 2026-11-20 will write its lines" in capsys.readouterr().out
    assert _count(db_url, "ledger") == rows
    before = _balance(db_url, "C2")
    assert main(["run", "--db", db_url, "--date", "2026-11-20", "--post"]) == 0
    lines = _sql(db_url, "SELECT kind, quantity, amount_micros FROM ledger WHERE "
                         "assignment_id = 'A3' AND period_start = '2026-11-20' ORDER BY kind")
    # 8.00 x 11/30 back, 12.00 x 11/30 charged
    assert [(k, int(q), int(m)) for k, q, m in lines] == [
        ("change_charge", 3, 4_400_000), ("change_credit", 2, -2_930_000)]
    assert _balance(db_url, "C2") == before - 1_470_000
    _check(db_url)
    assert main(["change", "--db", db_url, "--assignment", "A3", "--from", "2026-11-20",
                 "--quantity", "3", "--post"]) == 0  # a retry after the nightly post
    assert _count(db_url, "ledger") == rows + 2 and _balance(db_url, "C2") == before - 1_470_000


def test_void_corrects_everything_to_zero_once(db_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    _prepare(db_url, tmp_path, usage=True)
    # the call of 11-05 (10 minutes to 44...) was consumed by A2's grant: credit -1.00
    credit = _sql(db_url, "SELECT amount_micros FROM ledger WHERE assignment_id = 'A2' "
                          "AND kind = 'free_minutes_credit'")
    assert [int(m) for (m,) in credit] == [-1_000_000]
    assert _count(db_url, "call_credits") == 1
    assert _balance(db_url, "C1") == 100_000_000 - 25_000_000 - 20_000_000 - 3_000_000 \
        + 1_000_000
    rows = _count(db_url, "ledger")
    void = ["cancel", "--db", db_url, "--assignment", "A2", "--void"]
    capsys.readouterr()
    assert main(void) == 0
    printed = capsys.readouterr().out
    assert "would write 2 correction row(s)" in printed and "nothing written" in printed
    assert _count(db_url, "ledger") == rows and _count(db_url, "call_credits") == 1

    assert main(void + ["--post"]) == 0
    assert "wrote 2 correction row(s)" in capsys.readouterr().out
    assert _balance(db_url, "C1") == 100_000_000 - 25_000_000 - 20_000_000
    nets = _sql(db_url, "SELECT kind, SUM(amount_micros) FROM ledger WHERE assignment_id = "
                        "'A2' GROUP BY kind ORDER BY kind")
    assert [(k, int(n)) for k, n in nets] == [("free_minutes_credit", 0), ("recurring", 0)]
    assert _sql(db_url, "SELECT COUNT(*) FROM grants WHERE assignment_id = 'A2' AND "
                        "withdrawn_at IS NULL")[0][0] == 0
    assert _count(db_url, "call_credits") == 0
    assert _sql(db_url, "SELECT SUM(seconds_used), SUM(credited_micros) FROM grant_usage "
                        "WHERE assignment_id = 'A2'")[0] in ((0, 0), (None, None))
    _check(db_url)

    assert main(void + ["--post"]) == 0  # twice = once
    assert "already voided: nothing changed" in capsys.readouterr().out
    assert _count(db_url, "ledger") == rows + 2
    assert _count(db_url, "assignment_changes") == 1

    # setup included: A1 too
    assert main(["cancel", "--db", db_url, "--assignment", "A1", "--void", "--post"]) == 0
    assert _balance(db_url, "C1") == 100_000_000
    _check(db_url)
    # afterwards nightly posts and rebill compute nothing for them
    rows = _count(db_url, "ledger")
    assert main(["run", "--db", db_url, "--date", "2026-12-01", "--post", "--customer",
                 "C1"]) == 0
    assert _count(db_url, "ledger") == rows
    capsys.readouterr()
    assert main(["rebill", "--db", db_url, "--from", "2026-11-01", "--to", "2026-12-01",
                 "--customer", "C1"]) == 0
    assert "rebill: would write 0 row(s)" in capsys.readouterr().out
    assert main(["change", "--db", db_url, "--assignment", "A2", "--from", "2026-11-20",
                 "--quantity", "2"]) == 2
    assert main(["history", "--db", db_url, "--assignment", "A2", "--json"]) == 0
    events = [e["event"] for e in json.loads(capsys.readouterr().out)]
    assert events == ["start", "void"]


def test_cancel_twice_and_three_at_once_is_one_cancel(db_url, tmp_path, capsys, monkeypatch):
    """`cancel --from` and `cancel --void`, run twice and three at once, equal one run."""
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    _prepare(db_url, tmp_path)
    rows = _count(db_url, "ledger")
    c1, c2 = _balance(db_url, "C1"), _balance(db_url, "C2")

    # twice: A1 (5 x 4.00 = 20.00) cancelled from 11-10: 20.00 x 21/30 = 14.00 back, once
    cancel = ["cancel", "--db", db_url, "--assignment", "A1", "--from", "2026-11-10", "--post"]
    capsys.readouterr()
    assert main(cancel) == 0
    assert "posted its lines now (1 new)" in capsys.readouterr().out
    assert main(cancel) == 0
    printed = capsys.readouterr().out
    assert "already recorded under this key: nothing changed" in printed and "(0 new)" in printed
    assert _balance(db_url, "C1") == c1 + 14_000_000
    assert _count(db_url, "ledger") == rows + 1 and _count(db_url, "assignment_changes") == 1
    _check(db_url)

    # three at once: A3 (2 x 4.00 = 8.00) cancelled from 11-10: 8.00 x 21/30 = 5.60, once
    args = ("cancel", "--db", db_url, "--assignment", "A3", "--from", "2026-11-10", "--post")
    procs = [_spawn(*args) for _ in range(3)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert sum("posted its lines now (1 new)" in o for o, _e in outs) == 1, outs
    assert _balance(db_url, "C2") == c2 + 5_600_000
    credits = _sql(db_url, "SELECT customer_id, assignment_id, period_start, amount_micros "
                           "FROM ledger WHERE kind = 'change_credit' ORDER BY assignment_id")
    assert [(c, a, str(s)[:10], int(m)) for c, a, s, m in credits] == [
        ("C1", "A1", "2026-11-10", -14_000_000), ("C2", "A3", "2026-11-10", -5_600_000)]
    assert _count(db_url, "ledger") == rows + 2 and _count(db_url, "assignment_changes") == 2
    _check(db_url)

    # void twice (A2: its recurring 3.00 back) ...
    void = ["cancel", "--db", db_url, "--assignment", "A2", "--void", "--post"]
    assert main(void) == 0
    assert "wrote 1 correction row(s)" in capsys.readouterr().out
    assert main(void) == 0
    assert "already voided: nothing changed" in capsys.readouterr().out
    assert _balance(db_url, "C1") == c1 + 14_000_000 + 3_000_000
    assert _count(db_url, "ledger") == rows + 3 and _count(db_url, "assignment_changes") == 3
    # ... and three at once (A1: setup 25.00, recurring 20.00 and the change credit -14.00)
    args = ("cancel", "--db", db_url, "--assignment", "A1", "--void", "--post")
    procs = [_spawn(*args) for _ in range(3)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert sum("wrote 3 correction row(s)" in o for o, _e in outs) == 1, outs
    # the other two wrote nothing and say so (void reads "already voided" under the lock)
    assert sum("already voided: nothing changed" in o for o, _e in outs) == 2, outs
    assert _balance(db_url, "C1") == 100_000_000
    assert _count(db_url, "ledger") == rows + 6 and _count(db_url, "assignment_changes") == 4
    nets = _sql(db_url, "SELECT assignment_id, SUM(amount_micros) FROM ledger WHERE "
                        "assignment_id IN ('A1', 'A2') GROUP BY assignment_id "
                        "ORDER BY assignment_id")
    assert [(a, int(n)) for a, n in nets] == [("A1", 0), ("A2", 0)]
    _check(db_url)


#: what a crash must not change and a resumed run must equal: every column but the surrogate
#: ids (a PostgreSQL sequence is not rolled back) and the wall-clock stamps
_DUMPED = ("customers", "assignments", "assignment_changes", "ledger", "grants", "grant_usage",
           "call_credits", "package_versions")
_VOLATILE = {"ledger_id", "grant_id", "change_id", "posted_at", "recorded_at", "granted_at",
             "withdrawn_at", "updated_at"}


def _dump(db_url: str) -> dict[str, list[tuple]]:
    engine = make_engine(db_url)
    out = {}
    with engine.connect() as conn:
        for table in _DUMPED:
            result = conn.execute(sa.text(f"SELECT * FROM {table}"))
            keep = [i for i, c in enumerate(result.keys()) if c not in _VOLATILE]
            names = [c for c in result.keys() if c not in _VOLATILE]
            rows = sorted(tuple(str(r[i]) for i in keep) for r in result.all())
            out[table] = [tuple(names)] + rows
    engine.dispose()
    return out


def _copy_database(db_url: str, tmp_path: Path) -> str:
    """An identical copy of the prepared database (SQLite: its backup; PostgreSQL: a database
    made from it as a template)."""
    if db_url.startswith("sqlite"):
        copy = tmp_path / "clean.db"
        source = sqlite3.connect(db_url.split("///", 1)[1])
        target = sqlite3.connect(copy)
        source.backup(target)  # with what the write-ahead log holds
        target.close()
        source.close()
        return f"sqlite:///{copy}"
    base, name = db_url.rsplit("/", 1)
    engine = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    clean = name + "_clean"
    with engine.connect() as conn:
        conn.exec_driver_sql(  # the template must have no other session
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    engine.dispose()
    admin = sa.create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{clean}" TEMPLATE "{name}"')
    admin.dispose()
    return f"{base}/{clean}"


def test_change_killed_mid_transaction_then_resumed_equals_one_clean_run(db_url, tmp_path,
                                                                         monkeypatch):
    """SIGKILL inside `change --post`'s transaction (`mid_batch`: the change row recorded and
    the ledger rows inserted, before the debit, the grant cut and the new grant; the only
    fault point `store.post.post_in` passes) leaves nothing of it, however often; run again,
    the ledger, balances, change rows and grants equal one clean run's."""
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    _prepare(db_url, tmp_path, usage=True)
    clean_url = _copy_database(db_url, tmp_path)
    before = _dump(db_url)
    assert _dump(clean_url) == before
    # A2 (free minutes, 1 -> 3 units from 11-10): two lines, a grant cut and a new grant
    args = ("change", "--db", db_url, "--assignment", "A2", "--from", "2026-11-10",
            "--quantity", "3", "--post")
    for point in ("mid_batch:1", "mid_batch:1"):
        env = dict(os.environ, PYTHONPATH=str(ROOT), BILLING_CRASH_AT=point)
        proc = subprocess.run([sys.executable, "-c", _RUNNER, *args], env=env,
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == -signal.SIGKILL, (point, proc.stdout, proc.stderr)
        assert _dump(db_url) == before, point  # nothing half-written
        _check(db_url)
    resumed = _spawn(*args)
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0 and "posted its lines now (2 new)" in out, (out, err)

    clean = _spawn(*(a if a != db_url else clean_url for a in args))
    out, err = clean.communicate(timeout=240)
    assert clean.returncode == 0 and "posted its lines now (2 new)" in out, (out, err)
    after = _dump(db_url)
    assert after == _dump(clean_url)
    assert after != before
    # what one run writes: -3.00 x 21/30 + 9.00 x 21/30 once, the grant cut and the new grant
    assert _balance(db_url, "C1") == _balance(clean_url, "C1")
    assert _count(db_url, "assignment_changes") == 1
    grants = _sql(db_url, "SELECT period_start, period_end, seconds FROM grants "
                          "WHERE assignment_id = 'A2' AND withdrawn_at IS NULL "
                          "ORDER BY period_start")
    assert [(str(s)[:10], str(e)[:10], int(n)) for s, e, n in grants] == [
        ("2026-11-01", "2026-11-10", 1800), ("2026-11-10", "2026-12-01", 12600)]
    _check(db_url)
    _check(clean_url)
