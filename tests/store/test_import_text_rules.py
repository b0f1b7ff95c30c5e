"""Ids and text an import refuses, naming row, column and the character (#17 items 6, 10):
control characters (NUL, ESC, C1), invisible characters and decomposed (non-NFC) text in ids
and references, ids longer than 200 characters (a 2,685-character id used to import and then
fail every post of its batch on PostgreSQL). Nothing of a refused file is written."""

from __future__ import annotations

import pytest

from billing_jobs.core.errors import ImportFailed
from billing_jobs.ingest.importer import import_csv

from tests.store.helpers import dump, fresh_engine

HEADER = "customer_id,name,currency,balance\n"
CASES = [
    ("C\x001", "customer_id", "control character U+0000"),
    ("C\x1b1", "customer_id", "control character U+001B"),
    ("C\x851", "customer_id", "control character U+0085"),
    ("\u200bC1", "customer_id", "invisible character U+200B"),
    ("C\u20601", "customer_id", "invisible character U+2060"),
    ("\ufeffC9", "customer_id", "invisible character U+FEFF"),
    ("Cafe\u0301", "customer_id", "not in Unicode NFC form"),
    ("C" + "x" * 2684, "customer_id", "longer than 200 characters (2685)"),
]


@pytest.mark.parametrize("value,column,reason", CASES, ids=[c[2] for c in CASES])
def test_import_refuses_with_row_column_and_character(db_url, tmp_path, value, column, reason):
    engine = fresh_engine(db_url)
    ok = tmp_path / "ok.csv"
    ok.write_text(HEADER + "C1,A,EUR,10\n", encoding="utf-8")
    import_csv(engine, "customers", ok)
    before = dump(engine)
    bad = tmp_path / "bad.csv"
    bad.write_bytes((HEADER + f"C2,B,EUR,1\n{value},N,EUR,1\n").encode("utf-8"))
    with pytest.raises(ImportFailed) as err:
        import_csv(engine, "customers", bad)
    msg = str(err.value)
    assert "row 3" in msg and f"column {column}" in msg and reason in msg, msg
    assert "\n" not in msg and len(msg) < 400
    assert dump(engine) == before  # all or nothing
    engine.dispose()


def test_names_refuse_control_characters_but_keep_accents(db_url, tmp_path):
    engine = fresh_engine(db_url)
    bad = tmp_path / "bad.csv"
    bad.write_bytes((HEADER + "C1,Ma\x00rie,EUR,1\n").encode("utf-8"))
    with pytest.raises(ImportFailed, match="row 2.*column name: control character U\\+0000"):
        import_csv(engine, "customers", bad)
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "Café,Zoë Ærø,EUR,1\n", encoding="utf-8")
    import_csv(engine, "customers", good)
    assert "Café" in str(dump(engine)["customers"])
    engine.dispose()


# ----------------------------------------------------------------- files (#17 item 11)

def _sqlite(tmp_path):
    return fresh_engine(f"sqlite:///{tmp_path / 'files.db'}")


def test_cr_only_line_ends_and_a_header_without_a_final_newline(tmp_path):
    engine = _sqlite(tmp_path)
    cr = tmp_path / "cr.csv"
    cr.write_bytes(b"customer_id,name,currency,balance\rC1,A,EUR,1.50\rC2,B,EUR,2\r")
    assert import_csv(engine, "customers", cr) == 2
    head = tmp_path / "head.csv"
    head.write_bytes(b"customer_id,name,currency,balance")  # no line end at all
    assert import_csv(engine, "customers", head) == 0
    assert len(dump(engine)["customers"]) == 2


def test_a_pipe_is_read_and_a_silent_named_pipe_is_refused(tmp_path, monkeypatch):
    import os

    from billing_jobs.ingest import source

    engine = _sqlite(tmp_path)
    r, w = os.pipe()  # what `--customers <(cat f)` hands over: /dev/fd/N
    os.write(w, (HEADER + "C1,A,EUR,1\n").encode())
    os.close(w)
    try:
        assert import_csv(engine, "customers", f"/dev/fd/{r}") == 1
    finally:
        os.close(r)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    monkeypatch.setattr(source, "FIFO_WAIT_SECONDS", 0.2)
    with pytest.raises(ImportFailed, match="named pipe with nothing written to it"):
        import_csv(engine, "customers", fifo)


def test_a_file_that_is_not_ours_is_not_echoed(tmp_path):
    engine = _sqlite(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$s3cr3t-hash:19000:0:99999:7:::\n")
    link = tmp_path / "customers.csv"
    link.symlink_to(secret)
    with pytest.raises(ImportFailed) as err:
        import_csv(engine, "customers", link)
    assert "s3cr3t" not in str(err.value) and "not a customers header" in str(err.value)


def test_a_negative_amount_too_large_keeps_its_sign(tmp_path):
    engine = _sqlite(tmp_path)
    neg = tmp_path / "neg.csv"
    neg.write_text(HEADER + "C1,A,EUR,-99999999999999999999\n")
    with pytest.raises(ImportFailed, match="'-99999999999999999999'"):
        import_csv(engine, "customers", neg)


# ----------------------------------------------------------------- bounds (#17 item 8)

def test_a_balance_beyond_the_posting_bound_is_refused_at_import(db_url, tmp_path):
    """Import, validation and posting hold one bound (9e9 units): a balance that imports can
    always be posted to."""
    engine = fresh_engine(db_url)
    for value in ("9000000000.000001", "-9000000001"):
        path = tmp_path / "big.csv"
        path.write_text(HEADER + f"C1,A,EUR,{value}\n")
        with pytest.raises(ImportFailed, match=r"column balance: balance beyond the bound "
                                               r"\+/-9000000000 units: '" + value):
            import_csv(engine, "customers", path)
    path.write_text(HEADER + "C1,A,EUR,-9000000000\n")
    assert import_csv(engine, "customers", path) == 1
    engine.dispose()


def test_a_stored_balance_beyond_the_bound_is_rejected_naming_it():
    from billing_jobs.checks import validate_inputs
    from tests.checks._data import raw_inputs

    raw = raw_inputs()
    raw.customers.loc[0, "balance"] = 9 * 10**15 + 1
    _clean, rejected = validate_inputs(raw)
    reasons = rejected.loc[rejected["entity"] == "customers", "reason"].tolist()
    assert any("balance is out of range" in r and "9000000000 either way" in r for r in reasons)


# ------------------------------------------- ids that reached the database another way

def test_a_stored_id_breaking_the_text_rules_is_rejected_at_run_time(db_url, tmp_path):
    """Another tool wrote the rows: the run rejects each, naming the rule, and bills the rest."""
    import csv
    from datetime import date

    import sqlalchemy as sa

    from billing_jobs.run.local import run_billing
    from billing_jobs.run.request import RunRequest

    engine = fresh_engine(db_url)
    ok = tmp_path / "ok.csv"
    ok.write_text(HEADER + "C1,A,EUR,10\n", encoding="utf-8")
    import_csv(engine, "customers", ok)
    bad = ["\u200bC1", "Cafe\u0301"] + (["C\x001"] if engine.dialect.name == "sqlite" else [])
    with engine.begin() as conn:  # PostgreSQL refuses NUL in text itself
        for value in bad:
            conn.execute(sa.text("INSERT INTO customers (customer_id, name, currency) "
                                 "VALUES (:c, 'x', 'EUR')"), {"c": value})
    out = run_billing(engine, RunRequest(run_date=date(2027, 1, 1), simulate=True,
                                       out_dir=tmp_path / "r"))
    assert out.ok, out.message
    with open(out.report_dir / "rejected.csv", newline="", encoding="utf-8") as fh:
        got = {r["id"]: r["reason"] for r in csv.DictReader(fh) if r["entity"] == "customers"}
    assert set(got) == set(bad)
    assert "invisible character U+200B" in got["\u200bC1"]
    assert "not in Unicode NFC form" in got["Cafe\u0301"]
    if "C\x001" in got:
        assert "control character U+0000" in got["C\x001"]
    engine.dispose()
