"""Re-importing customers after billing never gives money back (#30 point 3), both databases.

A customers.csv `balance` is compared with the value the customer's last import set, not with
the balance billing moved: an unchanged file is a no-op; with --set-balances only the customers
whose value in the file changed are adjusted, by that change; the same file twice writes
nothing the second time. Worked on the demo sample after a posted night (the issue's case:
the advised --set-balances gave back every charge, all customers of the demo reset)."""

from __future__ import annotations

import csv
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from billing_jobs.core.errors import ImportFailed
from billing_jobs.demo.sample_data import generate, write_csv
from billing_jobs.ingest import balances as balances_mod
from billing_jobs.ingest.importer import import_csv, import_file
from billing_jobs.run.local import run_billing
from billing_jobs.run.request import RunRequest
from billing_jobs.store.db import make_engine, upgrade
from billing_jobs.store.ledger_invariant import balance_mismatches
from tests.store.helpers import balances

NIGHT = date(2026, 11, 30)


def _ledger(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT ledger_id, customer_id, kind, amount_micros, status, idempotency_key "
            "FROM ledger ORDER BY ledger_id")).all()]


def _imported(engine) -> dict[str, int | None]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT customer_id, imported_balance_micros FROM customers")).all())


@pytest.fixture
def posted_demo(db_url, tmp_path):
    """The demo sample imported and one night posted: (engine, customers.csv path)."""
    engine = make_engine(db_url)
    upgrade(engine)
    frames = generate(customers=12, assignments=80, calls=400, seed=7, as_of=NIGHT)
    paths = write_csv(frames, tmp_path / "sample")
    for entity in ("customers", "packages", "assignments", "usage"):
        import_csv(engine, entity, paths[entity])
    outcome = run_billing(engine, RunRequest(run_date=NIGHT, simulate=False,
                                             out_dir=tmp_path / "report"))
    assert outcome.ok, outcome.message
    yield engine, paths["customers"]
    engine.dispose()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _charged_customer(engine) -> str:
    """A customer the night debited (its balance moved away from its imported value)."""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT customer_id FROM ledger WHERE status = 'posted' GROUP BY customer_id "
            "HAVING SUM(amount_micros) > 0 ORDER BY customer_id")).scalars().first()


def test_unchanged_file_after_a_post_is_a_no_op(posted_demo):
    engine, customers_csv = posted_demo
    before, ledger = balances(engine), _ledger(engine)
    charged = _charged_customer(engine)
    assert charged is not None and before[charged] < _imported(engine)[charged]
    result = import_file(engine, "customers", customers_csv)  # no refusal
    assert result.rows == 12 and result.balance_changes == ()
    again = import_file(engine, "customers", customers_csv, set_balances=True)  # nor with the flag
    assert again.balance_changes == ()
    assert balances(engine) == before and _ledger(engine) == ledger
    assert balance_mismatches(engine) == []


def test_set_balances_adjusts_only_the_changed_customer_by_the_change(posted_demo, tmp_path):
    engine, customers_csv = posted_demo
    before, ledger = balances(engine), _ledger(engine)
    charged = _charged_customer(engine)
    rows = _rows(customers_csv)
    row_no = next(i for i, r in enumerate(rows, start=2) if r["customer_id"] == charged)
    file_value = rows[row_no - 2]["balance"]
    old = _imported(engine)[charged]
    rows[row_no - 2]["balance"] = str(Decimal(file_value) + 10)  # +10.00
    changed = _write_rows(tmp_path / "customers_topup.csv", rows)

    with pytest.raises(ImportFailed) as info:  # without the flag: refused, naming it
        import_csv(engine, "customers", changed)
    message = str(info.value)
    currency = rows[row_no - 2]["currency"]
    assert f"customer {charged!r} (row {row_no})" in message
    assert (f"last import set {balances_mod.money(old, currency)}, "
            f"file {balances_mod.money(old + 10_000_000, currency)}") in message
    shown_balance = re.escape(balances_mod.money(before[charged], currency))
    assert re.search(rf"(?<![\d.]){shown_balance}(?!\d)", message) is None  # not the balance
    assert "1 existing customer(s)" in message and "--set-balances" in message
    assert balances(engine) == before and _ledger(engine) == ledger

    result = import_file(engine, "customers", changed, set_balances=True)
    assert [(c.customer_id, c.row, c.imported_micros, c.file_micros, c.change_micros)
            for c in result.balance_changes] == [
        (charged, row_no, old, old + 10_000_000, 10_000_000)]
    after = balances(engine)
    assert after[charged] == before[charged] + 10_000_000  # the charges are kept
    assert {c: b for c, b in after.items() if c != charged} == \
        {c: b for c, b in before.items() if c != charged}
    new_rows = _ledger(engine)[len(ledger):]
    assert _ledger(engine)[:len(ledger)] == ledger  # nothing posted is touched
    assert [(c, k, a, s) for _, c, k, a, s, _ in new_rows] == [
        (charged, "adjustment", -10_000_000, "posted")]
    assert new_rows[0][5] == result.balance_changes[0].key == f"import:set:{charged}:1"
    assert _imported(engine)[charged] == old + 10_000_000
    sentence = result.balance_changes[0].sentence()
    assert charged in sentence and "customers_topup.csv" in sentence
    assert "balance adjusted by +10" in sentence and f"import:set:{charged}:1" in sentence
    assert balance_mismatches(engine) == []

    # the same file again: nothing
    again = import_file(engine, "customers", changed, set_balances=True)
    assert again.balance_changes == () and len(_ledger(engine)) == len(ledger) + 1
    assert balances(engine) == after and balance_mismatches(engine) == []

    # yesterday's file after today's: the difference back, as asked
    back = import_file(engine, "customers", customers_csv, set_balances=True)
    assert [(c.customer_id, c.change_micros, c.key) for c in back.balance_changes] == [
        (charged, -10_000_000, f"import:set:{charged}:2")]
    assert balances(engine) == before and balance_mismatches(engine) == []
    # and today's again: a third adjustment, its own key (no clash with the first)
    third = import_file(engine, "customers", changed, set_balances=True)
    assert [c.key for c in third.balance_changes] == [f"import:set:{charged}:3"]
    assert balances(engine) == after and balance_mismatches(engine) == []


def test_a_concurrent_change_of_the_imported_value_fails_the_file(posted_demo, tmp_path,
                                                                  monkeypatch):
    """The customer row is updated by compare-and-set: had another import set the value after
    this one read it, this one writes nothing."""
    engine, customers_csv = posted_demo
    before, ledger = balances(engine), _ledger(engine)
    rows = _rows(customers_csv)
    rows[0]["balance"] = "123.45"
    changed = _write_rows(tmp_path / "c2.csv", rows)
    real = balances_mod._changed

    def stale(conn, frame, name):
        found = real(conn, frame, name)
        return [balances_mod.replace(c, imported_micros=c.imported_micros + 1) for c in found]

    monkeypatch.setattr(balances_mod, "_changed", stale)
    with pytest.raises(ImportFailed, match="changed while this import ran; nothing written"):
        import_csv(engine, "customers", changed, set_balances=True)
    assert balances(engine) == before and _ledger(engine) == ledger
    assert balance_mismatches(engine) == []


def test_changes_in_every_chunk_are_reported(db_url, tmp_path):
    engine = make_engine(db_url)
    upgrade(engine)
    header = "customer_id,name,currency,balance\n"
    first = tmp_path / "c.csv"
    first.write_text(header + "".join(f"C{i},n,EUR,{i}\n" for i in range(1, 6)))
    import_csv(engine, "customers", first)
    second = tmp_path / "c2.csv"
    second.write_text(header + "".join(
        f"C{i},n,EUR,{i + 1 if i in (1, 5) else i}\n" for i in range(1, 6)))
    result = import_file(engine, "customers", second, set_balances=True, chunk_rows=2)
    assert [(c.customer_id, c.row, c.change_micros) for c in result.balance_changes] == [
        ("C1", 2, 1_000_000), ("C5", 6, 1_000_000)]
    assert balances(engine)["C5"] == 6_000_000 and balance_mismatches(engine) == []
    engine.dispose()


def test_new_customers_get_their_imported_value(db_url, tmp_path):
    engine = make_engine(db_url)
    upgrade(engine)
    path = tmp_path / "c.csv"
    path.write_text("customer_id,name,currency,balance\nC1,a,EUR,-5.5\nC2,b,JPY,700\n")
    assert import_file(engine, "customers", path).balance_changes == ()
    assert _imported(engine) == {"C1": -5_500_000, "C2": 700_000_000}
    # a customer written by another tool (NULL): its opening balance counts
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO customers (customer_id, name, currency, "
                             "balance_micros, opening_balance_micros) "
                             "VALUES ('C3', 'c', 'EUR', 4000000, 4000000)"))
    path.write_text("customer_id,name,currency,balance\nC3,c,EUR,4\n")
    assert import_file(engine, "customers", path).balance_changes == ()
    path.write_text("customer_id,name,currency,balance\nC3,c,EUR,4.001\n")
    with pytest.raises(ImportFailed, match=r"customer 'C3' \(row 2\): last import set 4.00, "
                                           r"file 4.001"):
        import_csv(engine, "customers", path)
    engine.dispose()
