"""Ids and text an import refuses, naming row, column and the character (#17 items 6, 10):
control characters (NUL, ESC, C1), invisible characters and decomposed (non-NFC) text in ids
and references, ids longer than 200 characters (a 2,685-character id used to import and then
fail every post of its batch on PostgreSQL). Nothing of a refused file is written."""

from __future__ import annotations

import pytest

from billing_jobs.errors import ImportFailed
from billing_jobs.store import import_csv

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
