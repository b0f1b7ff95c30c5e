"""Migration 0010: versions and changes are rows the database keeps as written (SPEC 10)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa

from billing_jobs.core.vocab import LineKind
from billing_jobs.store.tables import assignment_changes, ledger, package_versions
from tests.store.helpers import fresh_engine

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _line(**over):
    row = dict(run_id="r", run_date=date(2026, 11, 10), customer_id="C1", assignment_id="A1",
               package_id="P1", kind=LineKind.RECURRING, period_start=date(2026, 11, 1),
               period_end=date(2026, 12, 1), quantity=5, unit_price_micros=4_000_000,
               amount_micros=20_000_000, cost_micros=0, currency="EUR", auto_decrement=True,
               status="posted", posted_at=NOW)
    row.update(over)
    return row


def _version(**over):
    row = dict(package_id="P1", effective_from=date(2026, 12, 1), cost_micros=0,
               retail_micros=6_000_000, setup_cost_micros=0, setup_retail_micros=0,
               free_minutes=0, recorded_at=NOW, recorded_by="op@host", source="packages.csv")
    row.update(over)
    return row


def test_change_lines_are_ledger_kinds_and_a_credit_may_be_negative(db_url):
    engine = fresh_engine(db_url)
    with engine.begin() as conn:
        conn.execute(ledger.insert(), [
            _line(kind=LineKind.CHANGE_CREDIT, period_start=date(2026, 11, 10),
                  amount_micros=-14_000_000),
            _line(kind=LineKind.CHANGE_CHARGE, period_start=date(2026, 11, 10), quantity=8,
                  amount_micros=22_400_000)])
    with pytest.raises(sa.exc.IntegrityError):  # a charge line still may not be negative
        with engine.begin() as conn:
            conn.execute(ledger.insert().values(**_line(
                kind=LineKind.CHANGE_CHARGE, period_start=date(2026, 11, 20),
                amount_micros=-1)))
    with engine.connect() as conn:
        amounts = sorted(conn.execute(sa.select(ledger.c.amount_micros)).scalars())
    assert amounts == [-14_000_000, 22_400_000]


def test_recorded_changes_are_never_edited_or_deleted(db_url):
    engine = fresh_engine(db_url)
    with engine.begin() as conn:
        conn.execute(assignment_changes.insert().values(
            assignment_id="A1", effective_from=date(2026, 11, 10), quantity=8,
            recorded_at=NOW, recorded_by="op@host", source="change", idempotency_key="k1"))
    for stmt in (assignment_changes.update().values(quantity=9), assignment_changes.delete()):
        with pytest.raises(sa.exc.DatabaseError):
            with engine.begin() as conn:
                conn.execute(stmt)
    with engine.connect() as conn:
        assert conn.execute(sa.select(assignment_changes.c.quantity)).scalars().all() == [8]


def test_a_version_is_editable_until_a_posted_line_used_it(db_url):
    engine = fresh_engine(db_url)
    with engine.begin() as conn:
        conn.execute(package_versions.insert().values(**_version()))
        conn.execute(package_versions.update().values(retail_micros=7_000_000))  # unused yet
        # a posted line of an earlier period does not use the version
        conn.execute(ledger.insert().values(**_line()))
        conn.execute(package_versions.update().values(retail_micros=6_000_000))
        conn.execute(ledger.insert().values(**_line(
            run_date=date(2026, 12, 1), period_start=date(2026, 12, 1),
            period_end=date(2027, 1, 1), unit_price_micros=6_000_000, amount_micros=30_000_000)))
    for stmt in (package_versions.update().values(retail_micros=1), package_versions.delete()):
        with pytest.raises(sa.exc.DatabaseError):
            with engine.begin() as conn:
                conn.execute(stmt)
    with engine.connect() as conn:
        assert conn.execute(sa.select(package_versions.c.retail_micros)).scalars().all() \
            == [6_000_000]


def test_ledger_triggers_survive_the_rebuild(db_url):
    """0007's guarantee still holds after 0010 rebuilt SQLite's ledger: two live keys of one
    assignment may not charge the same days."""
    engine = fresh_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO customers (customer_id, name, currency, balance_micros,"
                             " opening_balance_micros) VALUES ('C1', '', 'EUR', 0, 0)"))
        conn.execute(ledger.insert().values(**_line()))
    with pytest.raises(sa.exc.DatabaseError):
        with engine.begin() as conn:
            conn.execute(ledger.insert().values(**_line(
                run_id="r2", period_start=date(2026, 11, 15), period_end=date(2026, 12, 15))))
