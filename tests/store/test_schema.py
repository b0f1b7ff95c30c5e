"""Schema, migrations and engine set-up on both databases."""

from __future__ import annotations

import socket
from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from billing_jobs.errors import DatabaseError
from billing_jobs.store import make_engine, upgrade
from billing_jobs.store.db import current_revision, head_revision
from billing_jobs.store.tables import ledger, metadata

from tests.store.helpers import fresh_engine


def test_upgrade_creates_schema_matching_tables_and_is_idempotent(db_url):
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)  # second call: nothing to do, no error
    assert current_revision(engine) == head_revision() == "0001"
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
               period_end=date(2027, 4, 1), quantity=1, unit_price=1_000_000,
               amount=1_000_000, cost=0, currency="EUR", auto_decrement=True,
               status="posted", posted_at=datetime(2027, 3, 1, tzinfo=timezone.utc))
    row.update(over)
    return row


BROKEN_LEDGER_ROWS = [
    {"quantity": 0}, {"amount": -1}, {"cost": -1}, {"unit_price": -5},
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
            conn.execute(ledger.insert().values(**_ledger_row(run_id="other", amount=5)))
    engine.dispose()


def test_money_is_exact_bigint(db_url):
    engine = fresh_engine(db_url)
    big = 10**12 * 10**6 + 1  # one trillion units and one micro
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO customers (customer_id, name, currency, balance) "
                             "VALUES ('C1', 'x', 'EUR', :b)"), {"b": -big})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT balance FROM customers")).scalar() == -big
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
