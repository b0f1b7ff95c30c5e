"""Corrections on both databases, amounts written out: adjust, rebill (price, quantity, end date
moved earlier with trailing proration, assignment deleted, start moved), reverse and re-post.
The balance invariant is checked after every command."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from billing_jobs.core.errors import UsageError
from billing_jobs.run.local import run_billing
from billing_jobs.run.request import RunRequest
from billing_jobs.ingest.importer import import_csv
from billing_jobs.store.db import make_engine, upgrade
from billing_jobs.corrections.adjust import adjust
from billing_jobs.corrections.rebill import rebill
from billing_jobs.corrections.reverse import reverse
from billing_jobs.store.ledger_invariant import balance_mismatches

D = date(2027, 1, 1)
CUSTOMERS = "customer_id,name,currency,balance\nC1,Alice,EUR,100\n"
PACKAGES = ("package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
            "frequency_match,free_minutes,destination,minimum_spend,minimum_days,prorate,"
            "description\n"
            "P1,DID,standard,0,10,0,5,EUR,monthly,,0,,false,0,true,DID\n")
ASSIGNMENTS = ("assignment_id,customer_id,package_id,quantity,start_date,end_date,"
               "auto_decrement,free_minutes\n"
               "A1,C1,P1,2,2027-01-01,,true,\n"
               "A2,C1,P1,1,2027-01-01,,false,\n")


def setup_db(db_url: str, tmp_path: Path):
    engine = make_engine(db_url)
    upgrade(engine)
    for entity, text in (("customers", CUSTOMERS), ("packages", PACKAGES),
                         ("assignments", ASSIGNMENTS)):
        path = tmp_path / f"{entity}.csv"
        path.write_text(text)
        import_csv(engine, entity, path)
    return engine


def post(engine, tmp_path, day=D):
    outcome = run_billing(engine, RunRequest(run_date=day, simulate=False,
                                           out_dir=tmp_path / f"r{day}_{len(list(tmp_path.iterdir()))}"))
    assert outcome.ok, outcome.message
    assert balance_mismatches(engine) == []
    return outcome


def balance(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT balance_micros FROM customers "
                                    "WHERE customer_id = 'C1'")).scalar()


def nets(engine) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT assignment_id, kind, SUM(amount_micros), COUNT(*) FROM ledger "
            "WHERE assignment_id IS NOT NULL GROUP BY assignment_id, kind")).all()
    return {(a, k): (int(s), int(n)) for a, k, s, n in rows}


def sql(engine, text: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(text))


def test_adjust_once_per_key_and_simulate_changes_nothing(db_url, tmp_path):
    engine = setup_db(db_url, tmp_path)
    shown = adjust(engine, "C1", -12_500_000, "goodwill", idempotency_key="K1")
    assert shown.count == 0 and balance(engine) == 100_000_000
    done = adjust(engine, "C1", -12_500_000, "goodwill", idempotency_key="K1", post=True)
    assert done.count == 1 and balance(engine) == 112_500_000  # a credit of 12.50
    again = adjust(engine, "C1", -12_500_000, "goodwill", idempotency_key="K1", post=True)
    assert again.count == 0 and balance(engine) == 112_500_000
    with pytest.raises(UsageError):
        adjust(engine, "C1", 1_000_000, "other", idempotency_key="K1", post=True)
    assert balance_mismatches(engine) == []
    engine.dispose()


def test_rebill_price_quantity_end_date_and_deleted(db_url, tmp_path):
    engine = setup_db(db_url, tmp_path)
    post(engine, tmp_path)
    # A1: setup 5 x 2 = 10.00, recurring 10 x 2 = 20.00 (debited); A2: 5.00 + 10.00 invoiced
    assert balance(engine) == 70_000_000
    assert rebill(engine, D, D, simulate=False).count == 0  # nothing changed, nothing written

    sql(engine, "UPDATE packages SET retail_micros = 12000000")  # price fixed: 12
    shown = rebill(engine, D, D)
    assert sorted((r["assignment_id"], r["amount_micros"]) for r in shown.rows) == [
        ("A1", 4_000_000), ("A2", 2_000_000)]
    assert balance(engine) == 70_000_000  # simulate wrote nothing
    assert rebill(engine, D, D, simulate=False).count == 2
    assert balance(engine) == 66_000_000 and balance_mismatches(engine) == []
    assert rebill(engine, D, D, simulate=False).count == 0  # rerun: nothing
    assert balance(engine) == 66_000_000

    sql(engine, "UPDATE assignments SET quantity = 3 WHERE assignment_id = 'A1'")
    assert rebill(engine, D, D, simulate=False).count == 2  # setup +5.00, recurring +12.00
    assert balance(engine) == 49_000_000 and balance_mismatches(engine) == []
    assert nets(engine)[("A1", "setup")] == (15_000_000, 2)
    assert nets(engine)[("A1", "recurring")] == (36_000_000, 3)

    # end moved earlier to 2027-01-10: 10 of 31 days kept: 12 x 3 x 10/31 = 11.612903 -> 11.61
    sql(engine, "UPDATE assignments SET end_date = '2027-01-10' WHERE assignment_id = 'A1'")
    assert rebill(engine, D, D, simulate=False).count == 1  # recurring -24.39
    assert nets(engine)[("A1", "recurring")] == (11_610_000, 4)
    assert balance(engine) == 73_390_000 and balance_mismatches(engine) == []

    sql(engine, "DELETE FROM assignments WHERE assignment_id = 'A2'")  # should never have existed
    assert rebill(engine, D, D, simulate=False).count == 2
    assert nets(engine)[("A2", "setup")] == (0, 2) and nets(engine)[("A2", "recurring")] == (0, 3)
    assert balance(engine) == 73_390_000  # A2 was invoiced: the balance never moved for it

    sql(engine, "UPDATE assignments SET end_date = '2026-12-01' WHERE assignment_id = 'A1'")
    assert rebill(engine, D, D, simulate=False).count == 2  # end before start: full reversal
    assert nets(engine)[("A1", "setup")][0] == 0 and nets(engine)[("A1", "recurring")][0] == 0
    assert balance(engine) == 100_000_000 and balance_mismatches(engine) == []
    assert rebill(engine, D, D, simulate=False).count == 0
    engine.dispose()


def test_rebill_start_moved_reverses_old_keys(db_url, tmp_path):
    engine = setup_db(db_url, tmp_path)
    post(engine, tmp_path)
    sql(engine, "UPDATE assignments SET start_date = '2027-01-05' WHERE assignment_id = 'A1'")
    rebill(engine, D, D, simulate=False)
    assert nets(engine)[("A1", "setup")][0] == 0 and nets(engine)[("A1", "recurring")][0] == 0
    assert balance(engine) == 100_000_000 and balance_mismatches(engine) == []
    engine.dispose()


def test_reverse_twice_then_post_again(db_url, tmp_path):
    engine = setup_db(db_url, tmp_path)
    run = post(engine, tmp_path)
    assert balance(engine) == 70_000_000
    shown = reverse(engine, run.run_id)
    assert len(shown.rows) == 4 and balance(engine) == 70_000_000
    assert reverse(engine, run.run_id, simulate=False).count == 4
    assert balance(engine) == 100_000_000 and balance_mismatches(engine) == []
    assert reverse(engine, run.run_id, simulate=False).count == 0
    assert balance(engine) == 100_000_000
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT reversed_at IS NOT NULL FROM runs WHERE run_id = :r"),
                            {"r": run.run_id}).scalar()
    sql(engine, "UPDATE packages SET retail_micros = 12000000")
    assert rebill(engine, D, D, simulate=False).count == 0  # reversed keys: not posted, not rebilled
    assert balance(engine) == 100_000_000 and balance_mismatches(engine) == []
    sql(engine, "UPDATE packages SET retail_micros = 10000000")
    post(engine, tmp_path)  # the date posts again from current data, as revision 2
    assert balance(engine) == 70_000_000
    assert nets(engine)[("A1", "recurring")] == (20_000_000, 3)
    post(engine, tmp_path)  # and only once
    assert balance(engine) == 70_000_000 and nets(engine)[("A1", "recurring")][1] == 3
    engine.dispose()


def test_post_refuses_a_balance_beyond_the_bound(db_url, tmp_path):
    engine = setup_db(db_url, tmp_path)
    sql(engine, "UPDATE customers SET balance_micros = -8999999990000000, "
                "opening_balance_micros = -8999999990000000")
    outcome = run_billing(engine, RunRequest(run_date=D, simulate=False, out_dir=tmp_path / "r"))
    assert not outcome.ok and "customer C1" in outcome.message and "bound" in outcome.message
    assert balance(engine) == -8_999_999_990_000_000 and nets(engine) == {}
    assert balance_mismatches(engine) == []
    engine.dispose()
