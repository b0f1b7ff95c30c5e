"""A start date corrected after posting never charges the assignment's days twice (#17 item 2):
the poster holds the overlapping lines (`overlaps_posted`), `rebill` over both dates moves the
charge in one transaction, and the database refuses an overlapping row whoever writes it; on
SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from datetime import date

import pytest
import sqlalchemy as sa

from billing_jobs.core.errors import UsageError
from billing_jobs.run.local import run_billing
from billing_jobs.run.request import RunRequest
from billing_jobs.ingest.importer import import_csv
from billing_jobs.corrections.rebill import rebill

from tests.store.helpers import fresh_engine

PKG = ("package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
       "free_minutes,destination,minimum_spend,minimum_days\n"
       "DID,DID,standard,0,10.00,0,5.00,EUR,monthly,0,,false,0\n")
ASG = ("assignment_id,customer_id,package_id,quantity,start_date,auto_decrement\n"
       "A1,C1,DID,1,{start},true\n")


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _setup(db_url, tmp_path, start="2027-01-15"):
    engine = fresh_engine(db_url)
    files = {"customers": "customer_id,name,currency,balance\nC1,One,EUR,100\n",
             "packages": PKG, "assignments": ASG.format(start=start)}
    for entity, text in files.items():
        (tmp_path / f"{entity}.csv").write_text(text)
        import_csv(engine, entity, tmp_path / f"{entity}.csv")
    return engine


def _post(engine, tmp_path, day, simulate=False):
    out = run_billing(engine, RunRequest(run_date=day, simulate=simulate,
                                       out_dir=tmp_path / f"r-{day}-{simulate}"))
    assert out.ok, out.message
    return out


def _balance(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT balance_micros FROM customers")).scalar_one()


def _live_keys(engine) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT kind, period_start, SUM(amount_micros) FROM ledger "
            "GROUP BY kind, period_start HAVING SUM(amount_micros) <> 0")).all()
    return {(k, str(p)[:10]): int(n) for k, p, n in rows}


def _move_start(engine, tmp_path, start):
    (tmp_path / "moved.csv").write_text(ASG.format(start=start))
    import_csv(engine, "assignments", tmp_path / "moved.csv")


def test_a_moved_start_is_held_then_rebill_moves_the_charge(db_url, tmp_path):
    engine = _setup(db_url, tmp_path)
    _post(engine, tmp_path, date(2027, 1, 15))
    assert _balance(engine) == 85_000_000  # 100 - setup 5 - January 10
    _move_start(engine, tmp_path, "2027-01-10")
    for simulate in (True, False):  # the simulation shows what the post does
        out = _post(engine, tmp_path, date(2027, 1, 10), simulate=simulate)
        lines = {(r["kind"], r["period_start"]): (r["amount"], r["status"])
                 for r in _rows(out.report_dir / "charges.csv")}
        assert lines == {("setup", "2027-01-10"): ("5.00", "overlaps_posted"),
                         ("recurring", "2027-01-10"): ("10.00", "overlaps_posted")}
        diffs = _rows(out.report_dir / "differences.csv")
        assert len(diffs) == 2
        assert all("rebill --from 2027-01-10 --to 2027-01-15" in d["correction"] for d in diffs)
        summary = json.loads((out.report_dir / "summary.json").read_text())
        assert "2 lines for 15.00 EUR" in summary["outcome"]["sentence"]
        assert summary["outcome"]["overlaps_posted_lines"] == 2
    assert _balance(engine) == 85_000_000  # nothing charged twice
    # the next billing date on the new calendar overlaps January's posted days: held too
    out = _post(engine, tmp_path, date(2027, 2, 10))
    (line,) = _rows(out.report_dir / "charges.csv")
    assert (line["period_start"], line["status"]) == ("2027-02-10", "overlaps_posted")
    assert _balance(engine) == 85_000_000
    # a rebill that does not reach the old date is refused, naming the key and the range
    with pytest.raises(UsageError, match=r"rebill --from 2027-01-10 --to 2027-01-15"):
        rebill(engine, date(2027, 1, 10), date(2027, 1, 10), simulate=False)
    assert _balance(engine) == 85_000_000
    # over both dates: the old keys reversed, the new ones charged, in one transaction
    shown = rebill(engine, date(2027, 1, 10), date(2027, 1, 15), simulate=True)
    assert sorted(r["amount_micros"] for r in shown.rows) == [-10_000_000, -5_000_000,
                                                              5_000_000, 10_000_000]
    assert _balance(engine) == 85_000_000
    done = rebill(engine, date(2027, 1, 10), date(2027, 1, 15), simulate=False)
    assert done.count == 4
    assert _live_keys(engine) == {("setup", "2027-01-10"): 5_000_000,
                                  ("recurring", "2027-01-10"): 10_000_000}
    assert _balance(engine) == 85_000_000
    assert rebill(engine, date(2027, 1, 10), date(2027, 1, 15), simulate=False).count == 0
    # now February posts on the new calendar, once
    out = _post(engine, tmp_path, date(2027, 2, 10))
    (line,) = _rows(out.report_dir / "charges.csv")
    assert line["status"] == "posted"
    assert _balance(engine) == 75_000_000
    engine.dispose()


def test_the_database_refuses_an_overlapping_row_whoever_writes_it(db_url, tmp_path):
    engine = _setup(db_url, tmp_path)
    _post(engine, tmp_path, date(2027, 1, 15))
    insert = sa.text(
        "INSERT INTO ledger (run_id, run_date, customer_id, assignment_id, package_id, kind, "
        "period_start, period_end, quantity, unit_price_micros, amount_micros, cost_micros, "
        "currency, auto_decrement, status, posted_at, revision, entry) VALUES ('x', :d, 'C1', "
        "'A1', 'DID', :k, :p, :e, 1, 10000000, :amt, 0, 'EUR', true, 'posted', :d, 0, 'charge')")
    bad = [dict(k="recurring", p=date(2027, 2, 1), e=date(2027, 3, 1), amt=10_000_000),
           dict(k="prorated", p=date(2027, 1, 10), e=date(2027, 1, 16), amt=1_000_000),
           dict(k="setup", p=date(2027, 1, 10), e=None, amt=5_000_000)]
    for row in bad:
        with pytest.raises(sa.exc.DBAPIError, match="live posting key of the same kind"):
            with engine.begin() as conn:
                conn.execute(insert, dict(row, d=date(2027, 1, 20)))
    fine = [dict(k="recurring", p=date(2027, 2, 15), e=date(2027, 3, 15), amt=10_000_000),
            dict(k="minimum_spend", p=date(2027, 1, 10), e=date(2027, 2, 10), amt=1_000_000),
            dict(k="recurring", p=date(2027, 1, 1), e=date(2027, 1, 15), amt=0)]
    with engine.begin() as conn:
        for row in fine:  # adjoining days, another family, a zero amount
            conn.execute(insert, dict(row, d=date(2027, 1, 20)))
    engine.dispose()
