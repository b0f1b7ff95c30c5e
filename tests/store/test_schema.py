"""Schema, migrations and engine set-up on both databases."""

from __future__ import annotations

import socket
from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from billing_jobs.core.errors import DatabaseError
from billing_jobs.store.db import make_engine, upgrade
from billing_jobs.store.db import _alembic_config, current_revision, head_revision
from billing_jobs.store.tables import ledger, metadata

from tests.store.helpers import fresh_engine


def test_upgrade_creates_schema_matching_tables_and_is_idempotent(db_url):
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)  # second call: nothing to do, no error
    assert current_revision(engine) == head_revision()
    names = set(sa.inspect(engine).get_table_names())
    assert {"customers", "packages", "assignments", "usage", "ledger", "grants", "runs"} <= names
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                 metadata)
    assert diffs == [], f"migration and tables.py disagree: {diffs}"
    indexes = {tuple(ix["column_names"]) for ix in sa.inspect(engine).get_indexes("usage")}
    assert ("customer_id", "start_time") in indexes
    indexes = {tuple(ix["column_names"]) for ix in sa.inspect(engine).get_indexes("assignments")}
    assert ("customer_id",) in indexes
    engine.dispose()


def _ledger_row(**over):
    row = dict(run_id="r", run_date=date(2027, 3, 1), customer_id="C1", assignment_id="A1",
               package_id="P1", kind="recurring", period_start=date(2027, 3, 1),
               period_end=date(2027, 4, 1), quantity=1, unit_price_micros=1_000_000,
               amount_micros=1_000_000, cost_micros=0, currency="EUR", auto_decrement=True,
               status="posted", posted_at=datetime(2027, 3, 1, tzinfo=timezone.utc))
    row.update(over)
    return row


BROKEN_LEDGER_ROWS = [
    {"quantity": -1}, {"amount_micros": -1}, {"cost_micros": -1}, {"unit_price_micros": -5},
    {"entry": "edit"},
    {"kind": "refund"}, {"status": "simulated"}, {"period_end": date(2027, 2, 1)},
]


def test_ledger_check_constraints_refuse_broken_rows(db_url):
    engine = fresh_engine(db_url)
    for bad in BROKEN_LEDGER_ROWS:
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(ledger.insert().values(**_ledger_row(**bad)))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar() == 0
    engine.dispose()


def test_ledger_key_is_unique(db_url):
    engine = fresh_engine(db_url)
    with engine.begin() as conn:
        conn.execute(ledger.insert().values(**_ledger_row()))
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(ledger.insert().values(**_ledger_row(run_id="other", amount_micros=5)))
    engine.dispose()


def test_money_is_exact_bigint(db_url):
    engine = fresh_engine(db_url)
    big = 10**12 * 10**6 + 1  # one trillion units and one micro
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO customers (customer_id, name, currency, balance_micros) "
                             "VALUES ('C1', 'x', 'EUR', :b)"), {"b": -big})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT balance_micros FROM customers")).scalar() == -big
    engine.dispose()


def test_sqlite_connection_settings(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    engine.dispose()


def test_make_engine_defaults_to_env_then_embedded_file(monkeypatch, tmp_path):
    monkeypatch.setenv("BILLING_DB_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert make_engine().url.database == str(tmp_path / "env.db")
    monkeypatch.delenv("BILLING_DB_URL")
    assert str(make_engine().url) == "sqlite:///billing.db"
    assert make_engine("postgresql://u@h/db").url.drivername == "postgresql+psycopg"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url", [
    "postgresql://nobody:secret@127.0.0.1:{port}/nothing",
    "sqlite:////nonexistent-dir/x/billing.db",
])
def test_unreachable_database_is_one_line_database_error(url):
    engine = make_engine(url.format(port=_closed_port()))
    with pytest.raises(DatabaseError) as info:
        upgrade(engine)
    message = str(info.value)
    assert "\n" not in message and "secret" not in message
    assert " failed on " in message  # what was being done, and where (password hidden)


def test_bad_url_is_database_error():
    with pytest.raises(DatabaseError):
        make_engine("not a url at all")
    with pytest.raises(DatabaseError):
        make_engine("nosuchdb://x/y")


def test_0002_converts_an_existing_database(db_url):
    """A database made by 0001 with posted money keeps every amount under the new names, and
    its opening balances make balance = opening - posted ledger hold at once."""
    engine = make_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO customers (customer_id, name, currency, balance) "
                             "VALUES ('C1', 'x', 'EUR', 70000000), ('C2', 'y', 'EUR', 5)"))
        conn.execute(sa.text(
            "INSERT INTO ledger (run_id, run_date, customer_id, assignment_id, package_id, kind, "
            "period_start, quantity, unit_price, amount, cost, currency, auto_decrement, status, "
            "posted_at) VALUES ('r', '2027-03-01', 'C1', 'A1', 'P1', 'recurring', '2027-03-01', "
            "3, 10000000, 30000000, 0, 'EUR', true, 'posted', '2027-03-01 00:00:00'), "
            "('r', '2027-03-01', 'C1', 'A2', 'P1', 'recurring', '2027-03-01', 1, 7, 7, 0, "
            "'EUR', false, 'invoiced', '2027-03-01 00:00:00')"))
    upgrade(engine)
    with engine.connect() as conn:
        customers = conn.execute(sa.text(
            "SELECT customer_id, balance_micros, opening_balance_micros FROM customers "
            "ORDER BY customer_id")).all()
        rows = conn.execute(sa.text(
            "SELECT assignment_id, amount_micros, unit_price_micros, revision, entry "
            "FROM ledger ORDER BY assignment_id")).all()
    assert [tuple(c) for c in customers] == [("C1", 70_000_000, 100_000_000), ("C2", 5, 5)]
    assert [tuple(r) for r in rows] == [("A1", 30_000_000, 10_000_000, 0, "charge"),
                                        ("A2", 7, 7, 0, "charge")]
    engine.dispose()
