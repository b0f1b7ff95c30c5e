"""Migration 0009 gives every existing customer the balance value its imports left (#30 point 3):
the opening balance, or the value an earlier --set-balances import set (its file's value), so
that re-importing yesterday's files after the upgrade is a no-op."""

from __future__ import annotations

from datetime import date, datetime, timezone

import sqlalchemy as sa
from alembic import command

from billing_jobs.ingest.importer import import_file
from billing_jobs.store.db import _alembic_config, make_engine, upgrade
from billing_jobs.store.ledger_invariant import balance_mismatches
from billing_jobs.store.tables import ledger as ledger_t
from tests.store.helpers import balances

DAY = date(2027, 1, 1)
NOW = datetime(2027, 1, 1, tzinfo=timezone.utc)
HASH = "ab" * 32


def _row(n: int, customer: str, amount: int, *, run_id: str = "run-1", entry: str = "charge",
         status: str = "posted", key: str | None = None) -> dict:
    return dict(run_id=run_id, run_date=DAY, customer_id=customer,
                assignment_id=None if entry == "adjustment" else f"A{n}",
                package_id=None if entry == "adjustment" else "P1",
                kind="adjustment" if entry == "adjustment" else "recurring",
                period_start=DAY, period_end=None, quantity=1, unit_price_micros=abs(amount),
                amount_micros=amount, cost_micros=0, currency="EUR",
                auto_decrement=status == "posted", status=status, posted_at=NOW, revision=0,
                entry=entry, reason=None, reverses_run_id=None, idempotency_key=key)


def _old_import(customer: str, amount: int, digest: str = HASH) -> dict:
    """An adjustment row as the --set-balances import before 0009 wrote it."""
    return _row(0, customer, amount, run_id=f"import:{digest[:16]}", entry="adjustment",
                key=f"import:{digest}:{customer}")


def test_0009_backfills_the_value_the_last_import_set(db_url, tmp_path):
    engine = make_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0008")
    # C1: opening 100; a post of 10; a --set-balances import to 150.25 (from 90: -60.25);
    #     a post of 5 -> balance 145.25, last import set 150.25
    # C2: opening 50; a post of 3 and an invoiced 7 -> balance 47, last import set 50
    # C3: opening 20; imports to 30 then to 25 (a post of 1 between) -> last import set 25
    rows = [_row(1, "C1", 10_000_000), _old_import("C1", -60_250_000),
            _row(2, "C1", 5_000_000),
            _row(3, "C2", 3_000_000), _row(4, "C2", 7_000_000, status="invoiced"),
            _old_import("C3", -10_000_000), _row(5, "C3", 1_000_000),
            _old_import("C3", 4_000_000, digest="cd" * 32)]
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO customers (customer_id, name, currency, balance_micros, "
            "opening_balance_micros) VALUES ('C1', 'a', 'EUR', 145250000, 100000000), "
            "('C2', 'b', 'EUR', 47000000, 50000000), ('C3', 'c', 'EUR', 25000000, 20000000)"))
        for row in rows:  # one at a time: ledger_id in this order
            conn.execute(ledger_t.insert(), row)
    assert balance_mismatches(engine) == []
    upgrade(engine)
    with engine.connect() as conn:
        imported = dict(conn.execute(sa.text(
            "SELECT customer_id, imported_balance_micros FROM customers")).all())
    assert imported == {"C1": 150_250_000, "C2": 50_000_000, "C3": 25_000_000}
    # the files those imports read, imported again after the upgrade: nothing moves
    path = tmp_path / "customers.csv"
    path.write_text("customer_id,name,currency,balance\nC1,a,EUR,150.25\nC2,b,EUR,50\n"
                    "C3,c,EUR,25\n")
    before = balances(engine)
    assert import_file(engine, "customers", path, set_balances=True).balance_changes == ()
    assert balances(engine) == before and balance_mismatches(engine) == []
    # a changed value: adjusted by the change, its key not clashing with the old rows
    path.write_text("customer_id,name,currency,balance\nC3,c,EUR,26\n")
    done = import_file(engine, "customers", path, set_balances=True).balance_changes
    assert [(c.customer_id, c.change_micros, c.key) for c in done] == [
        ("C3", 1_000_000, "import:set:C3:3")]
    assert balances(engine)["C3"] == 26_000_000 and balance_mismatches(engine) == []
    engine.dispose()
