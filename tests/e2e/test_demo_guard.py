"""`billing-jobs demo` refuses a database holding rows it did not create (issue #11)."""

from __future__ import annotations

import sqlalchemy as sa

from billing_jobs.cli.app import main
from billing_jobs.store.ledger_invariant import balance_mismatches
from tests.e2e.test_cli import billing_db  # noqa: F401 - a carrier's own customers C1, C2


def _count(db_url, table):
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


def test_demo_refuses_a_carriers_database_unless_forced(billing_db, tmp_path, capsys,
                                                        monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    assert main(["demo", "--db", billing_db]) == 2
    err = capsys.readouterr().err
    assert "holds rows the demo did not create" in err and "2 customers not from the demo" in err
    assert "--force" in err and "Traceback" not in err
    assert _count(billing_db, "customers") == 2  # nothing written
    assert main(["demo", "--db", billing_db, "--force"]) == 0
    assert _count(billing_db, "customers") == 42


def test_demo_refuses_after_a_post_into_its_database(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BILLING_REPORT_DIR", str(tmp_path / "reports"))
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert main(["demo", "--db", url]) == 0
    assert main(["run", "--date", "2026-11-30", "--post", "--db", url]) == 0
    posted = _count(url, "ledger")
    assert posted > 0
    assert main(["demo", "--db", url]) == 2
    assert f"{posted} ledger row(s) (the demo never posts)" in capsys.readouterr().err
    # forced: balances billing moved are kept (the sample's values are what the last import set); the ledger explains them
    assert main(["demo", "--db", url, "--force"]) == 0
    engine = sa.create_engine(url)
    assert balance_mismatches(engine) == []
    engine.dispose()
