"""Re-import of customers never changes a balance silently (issues #11 and #30, SPEC section 9):
the file's balance is compared with the value the last import set; a changed one is refused
naming the customer, or with --set-balances written as one adjustment ledger row per changed
customer; balance = opening balance - posted ledger, always."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from billing_jobs.cli.app import main
from billing_jobs.core.errors import ImportFailed
from billing_jobs.ingest.importer import import_csv
from billing_jobs.corrections.adjust import adjust
from billing_jobs.store.ledger_invariant import balance_mismatches
from tests.store.helpers import balances, fresh_engine

FIRST = "customer_id,name,currency,balance\nC1,Alice,EUR,100\nC2,Bob,JPY,5000\n"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _adjustments(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT customer_id, amount_micros, reason FROM ledger WHERE kind = 'adjustment' "
            "ORDER BY customer_id, ledger_id")).all()


def test_unchanged_balances_reimport_and_fix_a_name(db_url, tmp_path):
    engine = fresh_engine(db_url)
    import_csv(engine, "customers", _write(tmp_path, "c.csv", FIRST))
    fixed = FIRST.replace("Alice", "Alice Telecom")
    assert import_csv(engine, "customers", _write(tmp_path, "c2.csv", fixed)) == 2
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM customers WHERE customer_id = 'C1'")
                            ).scalar_one() == "Alice Telecom"
    assert balances(engine) == {"C1": 100_000_000, "C2": 5_000_000_000}
    assert _adjustments(engine) == [] and balance_mismatches(engine) == []
    engine.dispose()


def test_a_balance_moved_by_the_ledger_is_kept_by_the_old_file(db_url, tmp_path):
    """The bugs of #11 and #30: re-importing the original file neither wipes the posted debit
    nor is refused; the file's balance is the opening balance, which has not changed."""
    engine = fresh_engine(db_url)
    path = _write(tmp_path, "customers.csv", FIRST)
    import_csv(engine, "customers", path)
    adjust(engine, "C1", 12_340_000, "a posted debit", post=True)  # balance 100 -> 87.66
    before = _adjustments(engine)
    assert import_csv(engine, "customers", path) == 2
    assert import_csv(engine, "customers", path, set_balances=True) == 2
    assert balances(engine) == {"C1": 87_660_000, "C2": 5_000_000_000}  # the debit kept
    assert _adjustments(engine) == before  # no row written
    assert balance_mismatches(engine) == []
    # a changed value is refused naming the value the last import set, not the balance
    changed = _write(tmp_path, "customers2.csv", FIRST.replace("EUR,100", "EUR,90"))
    with pytest.raises(ImportFailed) as info:
        import_csv(engine, "customers", changed)
    message = str(info.value)
    assert "customers2.csv" in message and "'C1' (row 2)" in message and "C2" not in message
    assert "last import set 100.00, file 90.00" in message and "--set-balances" in message
    assert "87.66" not in message
    assert balances(engine) == {"C1": 87_660_000, "C2": 5_000_000_000}  # nothing written
    engine.dispose()


def test_set_balances_writes_the_difference_as_an_adjustment_once(db_url, tmp_path):
    engine = fresh_engine(db_url)
    import_csv(engine, "customers", _write(tmp_path, "c.csv", FIRST))
    topup = _write(tmp_path, "topup.csv",
                   "customer_id,name,currency,balance\nC1,Alice,EUR,150.25\nC2,Bob,JPY,4000\n")
    assert import_csv(engine, "customers", topup, set_balances=True) == 2
    assert balances(engine) == {"C1": 150_250_000, "C2": 4_000_000_000}
    rows = _adjustments(engine)
    # debit > 0 lowers the balance: C1 credited 50.25, C2 debited 1000
    assert [(c, a) for c, a, _ in rows] == [("C1", -50_250_000), ("C2", 1_000_000_000)]
    assert all("topup.csv" in r for _, _, r in rows)
    assert balance_mismatches(engine) == []
    # the same file again: the values it sets are already set, nothing more is written
    assert import_csv(engine, "customers", topup, set_balances=True) == 2
    assert len(_adjustments(engine)) == 2 and balances(engine)["C1"] == 150_250_000
    # after the ledger moves the balance, the same file still writes nothing: the fee stays
    adjust(engine, "C1", 250_000, "a call fee", post=True)
    assert import_csv(engine, "customers", topup, set_balances=True) == 2
    assert len(_adjustments(engine)) == 3  # the fee's row only
    assert balances(engine)["C1"] == 150_000_000 and balance_mismatches(engine) == []
    engine.dispose()


def test_cli_import_refuses_then_sets_with_the_flag(db_url, tmp_path, capsys):
    c = _write(tmp_path, "customers.csv", FIRST)
    assert main(["import", "--db", db_url, "--customers", str(c)]) == 0
    changed = _write(tmp_path, "customers2.csv", FIRST.replace("EUR,100", "EUR,90"))
    assert main(["import", "--db", db_url, "--customers", str(changed)]) == 1
    err = capsys.readouterr().err
    assert "customer 'C1' (row 2): last import set 100.00, file 90.00" in err
    assert "Traceback" not in err
    assert main(["import", "--db", db_url, "--customers", str(changed), "--set-balances"]) == 0
    engine = sa.create_engine(db_url)
    assert balances(engine)["C1"] == 90_000_000 and balance_mismatches(engine) == []
    engine.dispose()
