"""Issue #28, round 3 of "nothing silently wrong" (docs/decisions.md): the engine, gate and
store side of items 3, 4, 6, 9, 10 and the port of 12. Database tests run on SQLite and
PostgreSQL (the `db_url` fixture) unless the point is SQLite's own."""

from __future__ import annotations

import socket
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command

from billing_jobs.checks.gate import gate
from billing_jobs.cli.app import main
from billing_jobs.core.errors import DatabaseError, GateError, UsageError
from billing_jobs.core.frames import (DUE_LINE_COLUMNS, EXTENDED_END_COLUMNS, GRANT_COLUMNS,
                                      UTILISATION_COLUMNS, BillingInputs, BillingResult,
                                      empty_frame)
from billing_jobs.ingest.importer import import_csv
from billing_jobs.run.local import run_billing
from billing_jobs.run.request import RunRequest
from billing_jobs.core.urls import UNREADABLE, redacted
from billing_jobs.store.db import (DatabaseUrlError, _alembic_config, db_errors, make_engine,
                                   upgrade)
from tests.conftest import fresh_postgres_database

PACKAGES = ("package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
            "free_minutes,destination,minimum_spend,minimum_days\n"
            "UK,UK bundle,free_minutes,0,0,0,0,EUR,monthly,12,^44,false,0\n"
            "MS,Commitment,standard,0,10.00,0,0,EUR,monthly,,,true,0\n")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _run(engine, day: str, tmp_path: Path, simulate=True, customers=None):
    req = RunRequest(run_date=date.fromisoformat(day), simulate=simulate,
                     customer_ids=tuple(customers) if customers else None,
                     out_dir=tmp_path / f"r-{day}-{simulate}-{time.monotonic_ns()}")
    out = run_billing(engine, req)
    assert out.ok, out.message
    return out


def _amounts(out, kind: str) -> dict[str, int]:
    lines = out.result.due_lines
    lines = lines[lines["kind"].astype(str) == kind]
    return {str(c): int(a) for c, a in zip(lines["customer_id"], lines["amount"])}


@pytest.fixture
def fm_ms_db(db_url, tmp_path):
    """C1 holds a 12-minute UK bundle; C2 a 10.00 monthly commitment; C3 both. One 5-minute
    UK call of 5.00 each for C1 and C3 on 5 Jan, consumed (credited 5.00) by the post of 6 Jan."""
    engine = make_engine(db_url)
    upgrade(engine)
    import_csv(engine, "customers", _write(tmp_path / "c.csv",
               "customer_id,name,currency,balance\nC1,One,EUR,50.00\nC2,Two,EUR,50.00\n"
               "C3,Three,EUR,50.00\n"))
    import_csv(engine, "packages", _write(tmp_path / "p.csv", PACKAGES))
    import_csv(engine, "assignments", _write(tmp_path / "a.csv",
               "assignment_id,customer_id,package_id,quantity,start_date,auto_decrement\n"
               "A-C1-UK,C1,UK,1,2027-01-01,true\nA-C2-MS,C2,MS,1,2027-01-01,true\n"
               "A-C3-UK,C3,UK,1,2027-01-01,true\nA-C3-MS,C3,MS,1,2027-01-01,true\n"))
    import_csv(engine, "usage", _write(tmp_path / "u.csv",
               "call_id,customer_id,start_time,destination,duration_s,charge\n"
               "K1,C1,2027-01-05T10:00:00Z,442071234567,300,5.00\n"
               "K3,C3,2027-01-05T10:00:00Z,442071234567,300,5.00\n"))
    out = _run(engine, "2027-01-06", tmp_path, simulate=False)
    assert _amounts(out, "free_minutes_credit") == {"C1": -5_000_000, "C3": -5_000_000}
    yield engine
    engine.dispose()


# -- item 3: a consumed call moved to another customer -------------------------------------

def test_a_consumed_call_moved_to_another_customer_nets_only_its_own_customer(fm_ms_db,
                                                                               tmp_path):
    """K1 was credited to C1; it reaches the database under C2 (not by an import: run-time
    data). C2's spend is its charge, 5.00, never net of C1's credit: the nightly run and a run
    for C2 alone both bill the 10.00 commitment's shortfall as 5.00."""
    with fm_ms_db.begin() as conn:
        conn.execute(sa.text("UPDATE usage SET customer_id = 'C2' WHERE call_id = 'K1'"))
    nightly = _amounts(_run(fm_ms_db, "2027-02-01", tmp_path), "minimum_spend")
    chosen = _amounts(_run(fm_ms_db, "2027-02-01", tmp_path, customers=["C2"]), "minimum_spend")
    assert nightly["C2"] == 5_000_000
    assert chosen == {"C2": 5_000_000}


# -- item 4: a shortfall above the commitment ------------------------------------------------

def test_a_consumed_call_repriced_to_zero_never_makes_spend_negative(fm_ms_db, tmp_path):
    """K3 (C3) was credited 5.00; its charge becomes 0.00 in the database. Spend is clamped
    at 0 (never 0.00 - 5.00), so the shortfall is the commitment, 10.00, not 15.00."""
    with fm_ms_db.begin() as conn:
        conn.execute(sa.text("UPDATE usage SET charge_micros = 0 WHERE call_id = 'K3'"))
    for customers in (None, ["C3"]):
        out = _run(fm_ms_db, "2027-02-01", tmp_path, customers=customers)
        assert _amounts(out, "minimum_spend")["C3"] == 10_000_000
    out = _run(fm_ms_db, "2027-02-01", tmp_path, simulate=False)
    assert _amounts(out, "minimum_spend") == {"C2": 10_000_000, "C3": 10_000_000}


def _gate_inputs() -> BillingInputs:
    customers = pd.DataFrame({"customer_id": ["C1"], "name": ["One"], "currency": ["EUR"],
                              "balance": [0]})
    packages = pd.DataFrame({"package_id": ["MS"], "retail": [10_000_000], "minimum_days": [0]})
    assignments = pd.DataFrame({
        "assignment_id": ["A1"], "customer_id": ["C1"], "package_id": ["MS"], "quantity": [2],
        "start_date": pd.to_datetime(["2027-01-01"]), "end_date": pd.to_datetime([None])})
    return BillingInputs(customers=customers, packages=packages, assignments=assignments,
                         usage=pd.DataFrame())


def _ms_result(amount: int, quantity: int = 2, unit: int = 10_000_000) -> BillingResult:
    line = pd.DataFrame([[pd.Timestamp("2027-02-01"), "C1", "A1", "MS", "minimum_spend",
                          pd.Timestamp("2027-01-01"), pd.Timestamp("2027-02-01"), quantity,
                          unit, amount, 0, "EUR", True]], columns=DUE_LINE_COLUMNS)
    return BillingResult(due_lines=line, grants=empty_frame(GRANT_COLUMNS),
                         utilisation=empty_frame(UTILISATION_COLUMNS),
                         extended_ends=empty_frame(EXTENDED_END_COLUMNS))


def test_the_gate_refuses_a_shortfall_above_its_commitment():
    inputs = _gate_inputs()
    gate(_ms_result(20_000_000), inputs)  # exactly the commitment, 10.00 x 2: postable
    with pytest.raises(GateError) as err:
        gate(_ms_result(20_010_000), inputs)
    text = str(err.value)
    assert text.startswith("posting gate failed, nothing posted: ")
    assert "minimum_spend amount <= retail x quantity of its line" in text
    assert "(A1, minimum_spend, 2027-01-01)" in text


# -- item 6 and the port of item 12: no password in any message; a malformed URL exits 2 ----

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url, secret", [
    ("postgresql://u:pw@h:55x33/db", "pw"),                       # a port that is not a number
    ("postgresql://u:Zq9secret@h:99999999999999999999/db", "Zq9secret"),
    ("u:Zq9secret@h/db", "Zq9secret"),                            # no scheme: never echoed
    ("Zq9:secret", "secret"),                                     # no scheme, a `:`
    ("u@Zq9secret", "Zq9secret"),                                 # no scheme, an `@`
    ("nosuchdb://u:Zq9secret@h/db", "Zq9secret"),                 # an unknown dialect
    ("postgresql://u:pa@Zq9secret@h:5x/db", "Zq9secret"),         # `@` in the password
])
def test_a_malformed_database_url_is_a_usage_error_without_the_password(url, secret, capsys,
                                                                       tmp_path):
    with pytest.raises(DatabaseUrlError) as err:
        make_engine(url)
    assert err.value.exit_code == 2 and isinstance(err.value, DatabaseError)
    assert secret not in str(err.value) and "\n" not in str(err.value)
    code = main(["run", "--db", url, "--date", "2027-01-01", "--out", str(tmp_path / "r")])
    printed = capsys.readouterr()
    assert code == 2
    assert secret not in printed.out + printed.err
    assert len(printed.err.strip().splitlines()) == 1


@pytest.mark.parametrize("url, secret, shown", [
    ("postgresql://nobody:Zq9secret@127.0.0.1:{port}/x", "Zq9secret",
     "postgresql+psycopg://nobody:***@127.0.0.1:{port}/x"),
    ("postgresql://nobody@127.0.0.1:{port}/x?password=Zq9secret", "Zq9secret",
     "postgresql+psycopg://nobody@127.0.0.1:{port}/x?password=***"),
    ("postgresql://nobody:pa@Zq9secret@127.0.0.1:{port}/x", "Zq9secret",
     "postgresql+psycopg://nobody:***@127.0.0.1:{port}/x"),
    ("postgresql://nobody:s/3@Zq9secret@127.0.0.1:{port}/x?sslpassword=Zq9secret&"
     "application_name=a@b", "Zq9secret",
     "postgresql+psycopg://nobody:***@127.0.0.1:{port}/x?application_name=a%40b&"
     "sslpassword=***"),
])
def test_no_password_in_a_database_failure_wherever_it_sits(url, secret, shown):
    port = _closed_port()
    engine = make_engine(url.format(port=port))
    assert engine.url.host == "127.0.0.1"  # an unencoded `@` stays in the password
    with pytest.raises(DatabaseError) as err:
        upgrade(engine)
    text = str(err.value)
    assert secret not in text and "\n" not in text
    assert f" failed on {shown.format(port=port)}: " in text


@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:pa@ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h/db?sslmode=require&password=X", "postgresql://u@h/db?sslmode=require&password=***"),
    ("sqlite:////tmp/a@b/billing.db", "sqlite:////tmp/a@b/billing.db"),
    ("sqlite:///billing.db?password=X", "sqlite:///billing.db?password=***"),
    ("host/db", "'host/db'"),  # no scheme, nothing that can hold a password: shown quoted
    ("nonsense", "'nonsense'"),
    ("host:5432/db", UNREADABLE),
    ("user:X@host/db", UNREADABLE),
    ("postgresql://u:X@h/db\nnext line", UNREADABLE),
])
def test_redacted_hides_the_password_wherever_it_sits(url, shown):
    assert redacted(url) == shown


# -- item 9: PostgreSQL waits on a lock no longer than BILLING_PG_LOCK_TIMEOUT ---------------

@pytest.fixture
def pg_url(pg_admin_url):
    return fresh_postgres_database(pg_admin_url)


def test_a_post_blocked_by_lock_table_ledger_fails_naming_the_lock(pg_url, tmp_path,
                                                                   monkeypatch, capsys):
    engine = make_engine(pg_url)
    upgrade(engine)
    import_csv(engine, "customers", _write(tmp_path / "c.csv",
               "customer_id,name,currency,balance\nC2,Two,EUR,50.00\n"))
    import_csv(engine, "packages", _write(tmp_path / "p.csv", PACKAGES))
    import_csv(engine, "assignments", _write(tmp_path / "a.csv",
               "assignment_id,customer_id,package_id,quantity,start_date,auto_decrement\n"
               "A-C2-MS,C2,MS,1,2027-01-01,true\n"))
    monkeypatch.setenv("BILLING_PG_LOCK_TIMEOUT", "1")
    holder = make_engine(pg_url).connect()
    holder.begin()
    holder.exec_driver_sql("LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        code = main(["run", "--db", pg_url, "--date", "2027-02-01", "--post", "--allow-future",
                     "--out", str(tmp_path / "post")])
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    err = capsys.readouterr().err.strip()
    assert code == 1 and waited < 30
    first = err.splitlines()[0]  # the run's one-line outcome, then the report's place
    assert first.startswith("2027-02-01: failed: nothing posted, because ")
    assert "gave up waiting for a lock on table ledger (AccessExclusiveLock, pid " in first
    assert " after 1 s (BILLING_PG_LOCK_TIMEOUT): another session holds it" in first
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM runs")).scalars().all()
        posted = conn.execute(sa.text("SELECT count(*) FROM ledger")).scalar()
    assert status == ["failed"] and posted == 0  # the record says so; it is not `running`
    engine.dispose()


def test_the_pg_timeouts_are_set_on_every_connection(pg_url, monkeypatch):
    monkeypatch.setenv("BILLING_PG_LOCK_TIMEOUT", "7")
    monkeypatch.setenv("BILLING_PG_STATEMENT_TIMEOUT", "3600")
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "7s"
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "1h"
    engine.dispose()
    monkeypatch.delenv("BILLING_PG_LOCK_TIMEOUT")
    monkeypatch.delenv("BILLING_PG_STATEMENT_TIMEOUT")
    engine = make_engine(pg_url)
    with engine.connect() as conn:  # the defaults: 60 s for a lock, no statement limit
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1min"
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
    engine.dispose()


@pytest.mark.parametrize("value", ["soon", "-1", "1.5"])
def test_a_malformed_timeout_setting_names_the_variable(value, monkeypatch, tmp_path):
    monkeypatch.setenv("BILLING_PG_LOCK_TIMEOUT", value)
    with pytest.raises(UsageError, match="BILLING_PG_LOCK_TIMEOUT"):
        make_engine("postgresql://u@127.0.0.1/db")


def test_a_statement_past_the_statement_timeout_fails_readably(pg_url, monkeypatch):
    monkeypatch.setenv("BILLING_PG_STATEMENT_TIMEOUT", "1")
    engine = make_engine(pg_url)
    with pytest.raises(DatabaseError) as err:
        with db_errors(engine, "reading"), engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_sleep(5)")
    assert "ran longer than 1 s (BILLING_PG_STATEMENT_TIMEOUT) and was cancelled" \
        in str(err.value)
    engine.dispose()


# -- item 10: SQLite refuses impossible call times (migration 0012) --------------------------

_CALL = ("INSERT INTO usage (call_id, customer_id, start_time, destination, duration_s, "
         "charge_micros) VALUES (:id, 'C1', :t, '44', 60, 300000)")
_TIME_REFUSED = "usage.start_time must be a timestamp YYYY-MM-DD HH:MM:SS"


@pytest.mark.parametrize("value", [
    "2027-13-01 10:00:00", "2027-19-01 10:00:00", "2027-00-01 10:00:00",
    "2027-01-32 10:00:00", "2027-01-39 10:00:00", "2027-02-30 10:00:00",
    "2027-02-29 10:00:00", "2027-04-31 10:00:00", "2027-01-01 24:00:00",
    "2027-01-01 29:00:00", "2027-01-01 10:60:00", "2027-01-01 10:00:60",
    "2027-01-01 10:00:00abc", "2027-01-01 10:00:00 ", "2027-01-01 10:00:00+02:00",
    "2027-01-01T10:00:00", "2027-01-01 10:00:00.", "2027-01-01 10:00:00.1234567",
    "2027-01-01 10:00:00.12a", " 2027-01-01 10:00:00", "2027-1-01 10:00:00",
])
def test_sqlite_refuses_a_call_time_that_does_not_exist(tmp_path, value):
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(engine)
    with pytest.raises(sa.exc.IntegrityError, match=_TIME_REFUSED):
        with engine.begin() as conn:
            conn.execute(sa.text(_CALL), {"id": "K1", "t": value})
    with engine.begin() as conn:
        conn.execute(sa.text(_CALL), {"id": "K2", "t": "2027-01-01 10:00:00"})
    with pytest.raises(sa.exc.IntegrityError, match=_TIME_REFUSED):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE usage SET start_time = :t"), {"t": value})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT call_id, start_time FROM usage")).all() == [
            ("K2", "2027-01-01 10:00:00")]
    engine.dispose()


@pytest.mark.parametrize("value", [
    "2027-01-01 10:00:00", "2028-02-29 10:00:00", "2027-12-31 23:59:59",
    "2027-01-01 23:59:59.999999", "2027-01-01 10:00:00.5", "2027-01-01 10:00:00.000000",
])
def test_sqlite_accepts_every_time_that_exists_in_the_stored_forms(tmp_path, value):
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(_CALL), {"id": "K1", "t": value})
        conn.execute(sa.text("UPDATE usage SET start_time = :t"), {"t": value})
    engine.dispose()


def test_upgrade_to_0012_refuses_a_database_holding_an_impossible_time(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0011")
        conn.execute(sa.text(_CALL), {"id": "K13", "t": "2027-13-01 10:00:00"})
    with pytest.raises(Exception, match=r"usage call_id='K13': start_time = "
                                        r"'2027-13-01 10:00:00' must be a timestamp"):
        upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE usage SET start_time = '2027-12-01 10:00:00'"))
    upgrade(engine)  # fixed: the upgrade goes through, the exact guard is in place
    with pytest.raises(sa.exc.IntegrityError, match=_TIME_REFUSED):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE usage SET start_time = '2027-12-01 24:00:00'"))
    engine.dispose()


def test_a_call_written_by_the_import_still_goes_in(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(engine)
    import_csv(engine, "customers", _write(tmp_path / "c.csv",
               "customer_id,name,currency,balance\nC1,One,EUR,0\n"))
    import_csv(engine, "usage", _write(tmp_path / "u.csv",
               "call_id,customer_id,start_time,destination,duration_s,charge\n"
               "K1,C1,2028-02-29T23:59:59+01:00,44,60,0.30\n"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT start_time FROM usage")).scalar() == \
            "2028-02-29 22:59:59.000000"
    engine.dispose()
