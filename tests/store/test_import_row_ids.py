"""A malformed import row is named by row, id and column (#30 point 10): the id is named when
the id cell itself is readable; an unreadable id is the row's own problem and is not echoed."""

from __future__ import annotations

import pytest

from billing_jobs.core.errors import ImportFailed
from billing_jobs.ingest.importer import import_csv
from tests.store.helpers import fresh_engine

PKG_HEADER = ("package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
              "frequency_match,free_minutes,destination,minimum_spend,minimum_days,prorate,"
              "description\n")
PKG_NEGATIVE = PKG_HEADER + "P-NEG,DID,standard,0,-10,0,5,EUR,monthly,,0,,false,0,true,DID\n"
USAGE_HEADER = "call_id,customer_id,start_time,destination,duration_s,charge\n"


def _refused(engine, tmp_path, name, entity, text, **kw) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ImportFailed) as info:
        import_csv(engine, entity, path, **kw)
    return str(info.value)


def test_a_malformed_cell_names_the_rows_id(db_url, tmp_path):
    engine = fresh_engine(db_url)
    message = _refused(engine, tmp_path, "pkg_negative.csv", "packages", PKG_NEGATIVE)
    assert message == ("pkg_negative.csv row 2 (row 1 is the header), package_id 'P-NEG', "
                       "column retail: negative amount not allowed: '-10'")
    # any column order: the id is the row's id, not the first cell
    reordered = ("customer_id,balance,currency,name\n"
                 "C1,1,EUR,a\nC2,1.1234567,EUR,b\n")
    message = _refused(engine, tmp_path, "c.csv", "customers", reordered)
    assert message.startswith("c.csv row 3 (row 1 is the header), customer_id 'C2', "
                              "column balance: ")
    engine.dispose()


def test_the_id_of_a_row_in_a_later_chunk(db_url, tmp_path):
    engine = fresh_engine(db_url)
    (tmp_path / "c.csv").write_text("customer_id,name,currency,balance\nC1,a,EUR,1\n")
    import_csv(engine, "customers", tmp_path / "c.csv")
    calls = "".join(f"X{i},C1,2027-01-01T10:00:00Z,44,60,1.5\n" for i in range(1, 5))
    text = USAGE_HEADER + calls + "X5,C1,2027-01-01T10:00:00Z,44,sixty,1.5\n"
    message = _refused(engine, tmp_path, "usage.csv", "usage", text, chunk_rows=2)
    assert message == ("usage.csv row 6 (row 1 is the header), call_id 'X5', column duration_s: "
                       "not an integer: 'sixty'")
    engine.dispose()


def test_an_unreadable_or_empty_id_is_not_named_twice(db_url, tmp_path):
    engine = fresh_engine(db_url)
    # a control character in the id: the id cell is the problem, shown escaped once
    text = USAGE_HEADER + "X\x07,C1,2027-01-01T10:00:00Z,44,60,abc\n"
    message = _refused(engine, tmp_path, "usage.csv", "usage", text)
    assert message.startswith("usage.csv row 2 (row 1 is the header), column call_id: "
                              "control character U+0007")
    assert "'X\\x07', column" not in message and "\x07" not in message
    # an empty id: the missing value is the problem
    message = _refused(engine, tmp_path, "usage.csv", "usage",
                       USAGE_HEADER + ",C1,2027-01-01T10:00:00Z,44,60,abc\n")
    assert message.startswith("usage.csv row 2 (row 1 is the header), column call_id: "
                              "missing value")
    # a repeated id names the value itself (no id before the column)
    message = _refused(engine, tmp_path, "usage.csv", "usage", USAGE_HEADER
                       + "X1,C1,2027-01-01T10:00:00Z,44,60,1\nX1,C1,2027-01-01T10:00:00Z,44,60,1\n")
    assert message == ("usage.csv row 3 (row 1 is the header), column call_id: duplicate id "
                       "'X1' (first on row 2)")
    engine.dispose()


def test_business_rule_and_balance_messages_name_the_id(db_url, tmp_path):
    """The other import messages naming a row already name its id: a business rule
    (file_rules) and a changed balance (balances)."""
    engine = fresh_engine(db_url)
    path = tmp_path / "c.csv"
    path.write_text("customer_id,name,currency,balance\nC1,a,EUR,1\n")
    import_csv(engine, "customers", path)
    assert "row 2 (call_id 'X1')" in _refused(
        engine, tmp_path, "u.csv", "usage", USAGE_HEADER + "X1,NOPE,2027-01-01T10:00:00Z,44,60,1\n")
    assert "customer 'C1' (row 2)" in _refused(
        engine, tmp_path, "c2.csv", "customers", "customer_id,name,currency,balance\nC1,a,EUR,2\n")
    engine.dispose()
