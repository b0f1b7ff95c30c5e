"""A re-run after a re-import shows what the ledger holds for already posted keys, and says
where current data differs and how to correct it (#17 item 3), on both databases."""

from __future__ import annotations

import csv
from datetime import date

from billing_jobs.run.local import run_billing
from billing_jobs.run.request import RunRequest
from billing_jobs.ingest.importer import import_csv

from tests.store.helpers import fresh_engine

PKG = ("package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
       "free_minutes,destination,minimum_spend,minimum_days\n"
       "DID,DID,standard,0,{price},0,0,EUR,monthly,0,,false,0\n")
ASG = "assignment_id,customer_id,package_id,quantity,start_date,auto_decrement\nA1,{c},DID,{q},2027-01-01,true\n"


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_already_posted_shows_the_ledger_and_names_the_difference(db_url, tmp_path):
    engine = fresh_engine(db_url)
    files = {"customers": "customer_id,name,currency,balance\nC1,One,EUR,10\nC2,Two,EUR,0\n",
             "packages": PKG.format(price="2.00"), "assignments": ASG.format(c="C1", q=1)}
    for entity, text in files.items():
        (tmp_path / f"{entity}.csv").write_text(text)
        import_csv(engine, entity, tmp_path / f"{entity}.csv")
    first = run_billing(engine, RunRequest(run_date=date(2027, 1, 1), simulate=False,
                                         out_dir=tmp_path / "r1"))
    assert first.ok
    # a new price, quantity and customer are imported after the post, as a correction (the
    # terms were wrong: an in-place edit of posted terms needs correct=True, SPEC 10)
    (tmp_path / "p2.csv").write_text(PKG.format(price="3.00"))
    (tmp_path / "a2.csv").write_text(ASG.format(c="C2", q=2))
    import_csv(engine, "packages", tmp_path / "p2.csv", correct=True)
    import_csv(engine, "assignments", tmp_path / "a2.csv", correct=True)
    for simulate in (True, False):
        out = run_billing(engine, RunRequest(run_date=date(2027, 1, 1), simulate=simulate,
                                           out_dir=tmp_path / f"r-{simulate}"))
        assert out.ok, out.message
        line, = _rows(out.report_dir / "charges.csv")
        assert (line["customer_id"], line["quantity"], line["amount"], line["status"]) == (
            "C1", "1", "2.00", "already_posted")  # what the ledger holds, not 6.00 for C2
        diff, = _rows(out.report_dir / "differences.csv")
        assert (diff["ledger_customer_id"], diff["customer_id"], diff["ledger_amount"],
                diff["amount"]) == ("C1", "C2", "2.00", "6.00")
        assert diff["correction"].startswith("billing-jobs rebill --from 2027-01-01")
    engine.dispose()
