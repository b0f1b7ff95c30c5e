"""v_balances and v_ledger: exact decimal amounts next to the currency, on both databases."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from billing_jobs.ingest.importer import import_csv
from billing_jobs.corrections.adjust import adjust
from tests.store.helpers import fresh_engine


def test_views_show_exact_decimals(db_url, tmp_path):
    engine = fresh_engine(db_url)
    path = tmp_path / "customers.csv"
    path.write_text("customer_id,name,currency,balance\nC1,Alice,EUR,100\nC2,Bob,EUR,-0.000001\n")
    import_csv(engine, "customers", path)
    adjust(engine, "C1", 12_345_678, "a debit of 12.345678", post=True, minor_unit_only=False)
    adjust(engine, "C2", -1_000_000_000_001, "a credit", post=True, minor_unit_only=False)
    with engine.connect() as conn:
        bal = {r.customer_id: (Decimal(str(r.balance)), Decimal(str(r.opening_balance)), r.currency)
               for r in conn.execute(sa.text("SELECT * FROM v_balances"))}
        led = conn.execute(sa.text("SELECT customer_id, amount, currency, kind FROM v_ledger "
                                   "ORDER BY customer_id")).all()
    assert bal == {"C1": (Decimal("87.654322"), Decimal("100"), "EUR"),
                   "C2": (Decimal("1000000.000000"), Decimal("-0.000001"), "EUR")}
    assert [(c, Decimal(str(a)), cur, k) for c, a, cur, k in led] == [
        ("C1", Decimal("12.345678"), "EUR", "adjustment"),
        ("C2", Decimal("-1000000.000001"), "EUR", "adjustment")]
    engine.dispose()
