"""CSV import: round trips, upsert by id, and malformed files that change nothing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from billing_jobs.core.errors import ImportFailed
from billing_jobs.ingest.importer import import_csv
from billing_jobs.store.load import load_inputs

from tests.store.helpers import dump, fresh_engine

CUSTOMERS = """customer_id,name,currency,balance
C1,Alice,EUR,10.5
C2,"Bob, Inc",JPY,-3.25
C3,Zoë,BHD,0.0125
"""
PACKAGES = """package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,frequency_match,free_minutes,destination,minimum_spend,minimum_days,prorate,description
P1,DID rental,standard,1,2.5,0,5,EUR,monthly,1|15,,,false,0,true,"two
lines"
P2,UK minutes,free_minutes,0,3.000001,,,EUR,daily,,100,^44|^91,no,30,,
P3,Commitment,standard,0,100,0,0,EUR,yearly,,0,,YES,365,0,minimum spend
"""
ASSIGNMENTS = """assignment_id,customer_id,package_id,quantity,start_date,end_date,auto_decrement,free_minutes
A1,C1,P1,2,2027-01-01,,true,
A2,C1,P2,1,2027-01-05,2027-03-01,0,250
A3,C1,P3,1,2028-02-29,,Yes,
"""
USAGE = """call_id,customer_id,start_time,destination,duration_s,charge
X1,C1,2027-01-01T10:00:00Z,+441234,60,0.0125
X2,C1,2027-01-01 11:00:00,,0,0
X3,C1,2027-01-02T01:00:00.250+02:00,91,5,1
X4,C2,2027-01-01T12:00:00.123456Z,44,7,.5
"""


def write(tmp_path: Path, name: str, text: str, *, bom: bool = False) -> Path:
    path = tmp_path / name
    data = text.encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def test_round_trip_of_every_entity(db_url, tmp_path):
    engine = fresh_engine(db_url)
    assert import_csv(engine, "customers", write(tmp_path, "customers.csv", CUSTOMERS)) == 3
    # a UTF-8 BOM (as Excel writes it) is accepted
    assert import_csv(engine, "packages", write(tmp_path, "packages.csv", PACKAGES, bom=True)) == 3
    assert import_csv(engine, "assignments", write(tmp_path, "assignments.csv", ASSIGNMENTS)) == 3
    assert import_csv(engine, "usage", write(tmp_path, "usage.csv", USAGE)) == 4

    inputs = load_inputs(engine, date(2027, 1, 2), usage_since=date(2027, 1, 1))
    c = inputs.customers.set_index("customer_id")
    assert c.loc["C1", "balance"] == 10_500_000
    assert c.loc["C2", "balance"] == -3_250_000 and c.loc["C2", "name"] == "Bob, Inc"
    assert c.loc["C3", "balance"] == 12_500 and c.loc["C3", "name"] == "Zoë"

    p = inputs.packages.set_index("package_id")
    assert p.loc["P1", "retail"] == 2_500_000 and p.loc["P1", "setup_retail"] == 5_000_000
    assert p.loc["P1", "frequency_match"] == "1|15" and p.loc["P1", "description"] == "two\nlines"
    assert bool(p.loc["P1", "prorate"]) and not bool(p.loc["P1", "minimum_spend"])
    assert p.loc["P2", "retail"] == 3_000_001 and p.loc["P2", "setup_cost"] == 0
    assert p.loc["P2", "free_minutes"] == 100 and p.loc["P2", "destination"] == "^44|^91"
    assert p.loc["P2", "frequency_match"] is None and p.loc["P2", "minimum_days"] == 30
    assert bool(p.loc["P3", "minimum_spend"]) and p.loc["P3", "destination"] == ""

    a = inputs.assignments.set_index("assignment_id")
    assert a.loc["A1", "quantity"] == 2 and a.loc["A1", "start_date"] == pd.Timestamp("2027-01-01")
    assert pd.isna(a.loc["A1", "end_date"]) and pd.isna(a.loc["A1", "free_minutes"])
    assert a.loc["A2", "end_date"] == pd.Timestamp("2027-03-01") and a.loc["A2", "free_minutes"] == 250
    assert bool(a.loc["A1", "auto_decrement"]) and not bool(a.loc["A2", "auto_decrement"])
    assert a.loc["A3", "start_date"] == pd.Timestamp("2028-02-29")

    u = inputs.usage.set_index("call_id")
    assert u.loc["X1", "start_time"] == pd.Timestamp("2027-01-01T10:00:00Z")
    assert u.loc["X2", "start_time"] == pd.Timestamp("2027-01-01T11:00:00Z")  # no offset: UTC
    assert u.loc["X3", "start_time"] == pd.Timestamp("2027-01-01T23:00:00.250Z")
    assert u.loc["X4", "start_time"] == pd.Timestamp("2027-01-01T12:00:00.123456Z")
    assert list(u.loc[["X1", "X2", "X3", "X4"], "charge"]) == [12_500, 0, 1_000_000, 500_000]
    assert u.loc["X2", "destination"] == "" and u.loc["X1", "destination"] == "+441234"
    engine.dispose()


def test_import_updates_by_id(db_url, tmp_path):
    engine = fresh_engine(db_url)
    import_csv(engine, "customers", write(tmp_path, "customers.csv", CUSTOMERS))
    # an existing customer's name is updated; its balance is unchanged (the rule on changed
    # balances is tested in test_import_balances.py)
    update = "customer_id,name,currency,balance\nC1,Alice Ltd,EUR,10.5\nC4,Dan,USD,1\n"
    assert import_csv(engine, "customers", write(tmp_path, "customers2.csv", update)) == 2
    rows = {r[0]: r[1:] for r in dump(engine)["customers"]}
    # (name, currency, balance, opening balance = the first import's, the value the last
    # import set)
    assert rows == {
        "C1": ("Alice Ltd", "EUR", 10_500_000, 10_500_000, 10_500_000),
        "C2": ("Bob, Inc", "JPY", -3_250_000, -3_250_000, -3_250_000),
        "C3": ("Zoë", "BHD", 12_500, 12_500, 12_500),
        "C4": ("Dan", "USD", 1_000_000, 1_000_000, 1_000_000),
    }
    import_csv(engine, "usage", write(tmp_path, "usage.csv", USAGE))
    again = "call_id,customer_id,start_time,destination,duration_s,charge\nX1,C1,2027-01-01T10:00:00Z,+441234,61,0.02\n"
    import_csv(engine, "usage", write(tmp_path, "usage2.csv", again))
    usage = {r[0]: r for r in dump(engine)["usage"]}
    assert len(usage) == 4 and usage["X1"][4:] == (61, 20_000)
    engine.dispose()


HEADER_U = "call_id,customer_id,start_time,destination,duration_s,charge\n"
GOOD_U = "X1,C1,2027-01-01T10:00:00Z,44,60,1.5\n"

# (file name, entity, content, words the message must contain)
MALFORMED = [
    ("usage.csv", "usage", HEADER_U + GOOD_U + "X2,C1,2027-01-01T10:00:00Z,44,60,abc\n",
     ["usage.csv row 3", "column charge", "not a decimal number", "'abc'", "header"]),
    ("usage.csv", "usage", HEADER_U + GOOD_U + "X2,C1,2027-01-01T10:00:00Z,44,60,1.1234567\n",
     ["row 3", "column charge", "more than 6 decimal places"]),
    ("usage.csv", "usage", HEADER_U + GOOD_U + "X2,C1,2027-01-01T10:00:00Z,44,60,-1\n",
     ["row 3", "column charge", "negative"]),
    ("usage.csv", "usage", HEADER_U + GOOD_U + "X2,C1,2027-02-30T10:00:00Z,44,60,1\n",
     ["row 3", "column start_time", "ISO 8601", "2027-02-30"]),
    ("usage.csv", "usage", HEADER_U + GOOD_U + "X2,C1,yesterday,44,60,1\n",
     ["row 3", "column start_time"]),
    ("usage.csv", "usage", HEADER_U + GOOD_U + "X2,C1,2027-01-01T10:00:00Z,44,1.5,1\n",
     ["row 3", "column duration_s", "not an integer"]),
    ("usage.csv", "usage", HEADER_U + GOOD_U + "X1,C1,2027-01-01T10:00:00Z,44,60,1\n",
     ["row 3", "column call_id", "duplicate id 'X1'", "row 2"]),
    ("usage.csv", "usage", HEADER_U + GOOD_U + ",C1,2027-01-01T10:00:00Z,44,60,1\n",
     ["row 3", "column call_id", "missing value"]),
    ("usage.csv", "usage", HEADER_U + GOOD_U + "X2,C1,2027-01-01T10:00:00Z,44,60\n",
     ["row 3", "expected 6 fields, found 5"]),
    ("usage.csv", "usage", "call_id,customer_id,start_time,destination,duration_s\n" + "X1,C1,2027-01-01,44,60\n",
     ["missing column", "'charge'"]),
    ("usage.csv", "usage", HEADER_U.strip() + ",note\n" + GOOD_U.strip() + ",hi\n",
     ["unknown column", "'note'"]),
    ("usage.csv", "usage", "call_id,customer_id,start_time,destination,duration_s,charge,charge\n",
     ["column 'charge' appears twice"]),
    ("usage.csv", "usage", "", ["usage.csv", "empty file"]),
    ("usage.csv", "usage", "\n\n", ["empty file"]),
    ("assignments.csv", "assignments",
     "assignment_id,customer_id,package_id,quantity,start_date,end_date,auto_decrement,free_minutes\n"
     "A1,C1,P1,1,2027-01-01,,true,\nA2,C1,P1,1,2027-02-30,,true,\n",
     ["assignments.csv row 3", "column start_date", "not a valid date", "2027-02-30"]),
    ("assignments.csv", "assignments",
     "assignment_id,customer_id,package_id,quantity,start_date,end_date,auto_decrement,free_minutes\n"
     "A1,C1,P1,1,2027-01-01,,maybe,\n",
     ["row 2", "column auto_decrement", "not a boolean"]),
    ("customers.csv", "customers", "customer_id,name,currency,balance\nC9,Eve,EUR,1e5\n",
     ["customers.csv row 2", "column balance", "not a decimal number"]),
]


def test_malformed_files_change_nothing_and_say_where(db_url, tmp_path):
    engine = fresh_engine(db_url)
    import_csv(engine, "customers", write(tmp_path, "c0.csv", CUSTOMERS))
    import_csv(engine, "usage", write(tmp_path, "u0.csv", USAGE))
    before = dump(engine)
    for i, (name, entity, text, words) in enumerate(MALFORMED):
        (tmp_path / f"case{i}").mkdir()
        path = write(tmp_path / f"case{i}", name, text)
        with pytest.raises(ImportFailed) as info:
            import_csv(engine, entity, path)
        message = str(info.value)
        assert "\n" not in message, message
        for word in words:
            assert word in message, f"case {i}: {word!r} not in {message!r}"
        assert dump(engine) == before, f"case {i} changed the database"
    engine.dispose()


def test_non_utf8_file_is_refused_with_its_line(db_url, tmp_path):
    engine = fresh_engine(db_url)
    path = tmp_path / "customers.csv"
    path.write_bytes(b"customer_id,name,currency,balance\nC1,Alice,EUR,1\nC2,Ren\xe9,EUR,2\n")
    with pytest.raises(ImportFailed, match=r"customers.csv line 3: not UTF-8"):
        import_csv(engine, "customers", path)
    assert dump(engine)["customers"] == []
    engine.dispose()


def test_one_bad_row_in_a_big_file_writes_nothing(db_url, tmp_path):
    engine = fresh_engine(db_url)
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,name,currency,balance\n"
                         + "".join(f"C{i},Customer {i},EUR,0\n" for i in range(50)))
    import_csv(engine, "customers", customers)
    n = 20_000
    lines = [HEADER_U.strip()] + [
        f"X{i},C{i % 50},2027-01-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z,"
        f"4420{i},{i % 600},0.{i % 1000:03d}" for i in range(n)
    ]
    lines[15_001] = lines[15_001].rsplit(",", 1)[0] + ",1.2.3"
    path = tmp_path / "usage.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportFailed, match=r"usage.csv row 15002 .*column charge"):
        import_csv(engine, "usage", path)
    assert dump(engine)["usage"] == []
    lines[15_001] = lines[15_001].rsplit(",", 1)[0] + ",-1.23"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportFailed, match=r"usage.csv"):
        import_csv(engine, "usage", path)
    assert dump(engine)["usage"] == []
    lines[15_001] = lines[15_001].rsplit(",", 1)[0] + ",1.23"
    path.write_text("\n".join(lines) + "\n")
    assert import_csv(engine, "usage", path) == n
    usage = load_inputs(engine, date(2027, 1, 1), usage_since=date(2027, 1, 1)).usage
    assert len(usage) == n and usage["charge"].sum() == sum(
        (i % 1000) * 1000 for i in range(n) if i != 15_000) + 1_230_000
    engine.dispose()


def test_unknown_entity_and_missing_file(db_url, tmp_path):
    engine = fresh_engine(db_url)
    with pytest.raises(ImportFailed, match="unknown entity 'calls'"):
        import_csv(engine, "calls", tmp_path / "x.csv")
    with pytest.raises(ImportFailed, match="file not found"):
        import_csv(engine, "usage", tmp_path / "nope.csv")
    engine.dispose()


def test_business_rules_are_refused_at_import_naming_row_and_rule(db_url, tmp_path):
    """A well-formed row that breaks a business rule is refused at import, with its CSV row,
    its id and the rule; nothing from the file is written."""
    engine = fresh_engine(db_url)
    (tmp_path / "customers.csv").write_text(
        "customer_id,name,currency,balance\nC1,Alice,EUR,10\n")
    import_csv(engine, "customers", tmp_path / "customers.csv")
    (tmp_path / "packages.csv").write_text(
        "package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
        "frequency_match,free_minutes,destination,minimum_spend,minimum_days,prorate,description\n"
        "P1,DID,standard,1,2,0,0,EUR,monthly,,0,,false,0,false,ok\n"
        "P2,Weekly,standard,1,2,0,0,EUR,weekly,9,0,,false,0,false,bad match day\n")
    with pytest.raises(ImportFailed, match=r"packages.csv: row 3 \(package_id 'P2'\): .*9"):
        import_csv(engine, "packages", tmp_path / "packages.csv")
    assert dump(engine)["packages"] == []
    (tmp_path / "packages.csv").write_text(
        "package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
        "frequency_match,free_minutes,destination,minimum_spend,minimum_days,prorate,description\n"
        "P1,DID,standard,1,2,0,0,EUR,monthly,,0,,false,0,false,ok\n")
    import_csv(engine, "packages", tmp_path / "packages.csv")
    (tmp_path / "assignments.csv").write_text(
        "assignment_id,customer_id,package_id,quantity,start_date,end_date,auto_decrement,free_minutes\n"
        "A1,C1,P1,1,2027-01-01,,true,\n"
        "A2,C1,P1,0,2027-01-01,,true,\n"
        "A3,C9,P1,1,2027-01-01,,true,\n")
    with pytest.raises(ImportFailed) as info:
        import_csv(engine, "assignments", tmp_path / "assignments.csv")
    message = str(info.value)
    assert "row 3 (assignment_id 'A2')" in message and "quantity" in message
    assert "(and 1 more)" in message
    assert dump(engine)["assignments"] == []
    engine.dispose()
