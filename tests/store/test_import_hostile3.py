"""Nothing silently wrong, round 3: import (#28 items 4, 8, 11 and the import parts of 12), on
SQLite and PostgreSQL. Every refusal names the row, the id and the rule, and writes nothing.

* a consumed call (free minutes credited it) cannot change its customer, charge, start time,
  duration or destination; the same call imported again unchanged is a no-op;
* names and descriptions refuse bidirectional overrides / isolates and invisible format
  characters; `core.text.check_stored_text` holds the same rules for commands;
* the currency of a customer or package with posted lines cannot change; currency codes are
  stored upper-case;
* a header longer than the read window, and a row longer than the reader's block, are refused
  naming row 1 / the row and its column.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from billing_jobs.core.errors import ImportFailed, UsageError
from billing_jobs.core.text import TextRefused, check_stored_text
from billing_jobs.corrections.reverse import reverse
from billing_jobs.ingest import source as source_mod
from billing_jobs.ingest.importer import import_csv
from billing_jobs.run.local import run_billing
from billing_jobs.run.request import RunRequest

from tests.store.helpers import dump, fresh_engine

CUSTOMERS_HEADER = "customer_id,name,currency,balance\n"
PACKAGES_HEADER = ("package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
                   "free_minutes,destination,minimum_spend,minimum_days,description\n")
USAGE_HEADER = "call_id,customer_id,start_time,destination,duration_s,charge\n"
CALLS = [("U0", "C1", "2027-01-05T10:00:00Z", "442071234567", 300, "0.30"),
         ("U1", "C1", "2027-01-05T11:00:00Z", "442071234567", 300, "0.30")]


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _calls(rows) -> str:
    return USAGE_HEADER + "".join(f"{c},{cu},{t},{d},{s},{m}\n" for c, cu, t, d, s, m in rows)


def _refused(engine, entity: str, path: Path, *parts: str, chunk_rows: int = 1000) -> str:
    """Import `path`, expect ImportFailed holding every part, and nothing written."""
    before = dump(engine)
    with pytest.raises(ImportFailed) as err:
        import_csv(engine, entity, path, chunk_rows=chunk_rows)
    msg = str(err.value)
    for part in parts:
        assert part in msg, msg
    assert "\n" not in msg and len(msg) < 1200, msg
    assert dump(engine) == before  # all or nothing
    return msg


@pytest.fixture
def posted(db_url, tmp_path):
    """C1 (EUR) with a 12-minute UK bundle, two 5-minute calls of 0.30 on 5 Jan consumed and
    credited by the post of 6 Jan; C2 (EUR) and C3 (EUR, nothing posted)."""
    engine = fresh_engine(db_url)
    import_csv(engine, "customers", _write(tmp_path / "c.csv", CUSTOMERS_HEADER
               + "C1,One,EUR,10.00\nC2,Two,EUR,10.00\nC3,Three,EUR,10.00\n"))
    import_csv(engine, "packages", _write(tmp_path / "p.csv", PACKAGES_HEADER
               + "UK,UK bundle,free_minutes,0,5.00,0,0,EUR,monthly,12,^44,false,0,\n"
               + "SPARE,Spare,standard,0,1.00,0,0,EUR,monthly,0,,false,0,\n"))
    import_csv(engine, "assignments", _write(tmp_path / "a.csv",
               "assignment_id,customer_id,package_id,quantity,start_date,auto_decrement\n"
               "A1,C1,UK,1,2027-01-01,true\n"))
    import_csv(engine, "usage", _write(tmp_path / "u.csv", _calls(CALLS)))
    result = run_billing(engine, RunRequest(run_date=date(2027, 1, 6), simulate=False,
                                            out_dir=tmp_path / f"r-{time.monotonic_ns()}"))
    assert result.ok, result.message
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM call_credits")).scalar() == 2
    yield engine, result.run_id
    engine.dispose()


# ------------------------------------------------------------------ item 4: consumed calls

def test_a_consumed_call_cannot_change_silently(posted, tmp_path):
    engine, run_id = posted
    cases = [
        (("U0", "C1", "2027-01-05T10:00:00Z", "442071234567", 300, "0.00"), "charge 0.30 -> 0.00"),
        (("U0", "C2", "2027-01-05T10:00:00Z", "442071234567", 300, "0.30"),
         "customer_id 'C1' -> 'C2'"),
        (("U0", "C1", "2027-01-06T10:00:00Z", "442071234567", 300, "0.30"),
         "start_time 2027-01-05T10:00:00+00:00 -> 2027-01-06T10:00:00+00:00"),
        (("U0", "C1", "2027-01-05T10:00:00Z", "442071234567", 30, "0.30"), "duration_s 300 -> 30"),
        (("U0", "C1", "2027-01-05T10:00:00Z", "912071234567", 300, "0.30"),
         "destination '442071234567' -> '912071234567'"),
    ]
    for row, change in cases:
        bad = _write(tmp_path / "bad.csv", _calls([("N1", "C2", "2027-01-05T09:00:00Z", "1", 1,
                                                    "0.01"), row]))
        msg = _refused(engine, "usage", bad, "bad.csv: row 3 (call_id 'U0')", change,
                       f"run {run_id}", "billing date 2027-01-06",
                       f"reverse --run {run_id} --post", "nothing imported")
        assert "free minutes already credited" in msg, msg


def test_two_changes_of_one_call_are_named_together(posted, tmp_path):
    engine, run_id = posted
    bad = _write(tmp_path / "bad.csv", _calls([
        ("U0", "C2", "2027-01-05T10:00:00Z", "442071234567", 300, "0.00"),
        ("U1", "C1", "2027-01-05T11:00:00Z", "442071234567", 300, "0.10")]))
    _refused(engine, "usage", bad, "row 2 (call_id 'U0')", "customer_id 'C1' -> 'C2', "
             "charge 0.30 -> 0.00", "row 3 (call_id 'U1')", "charge 0.30 -> 0.10")
    # streamed one row at a time: the change in a later chunk, after rows written
    later = _write(tmp_path / "later.csv", _calls([
        ("N1", "C2", "2027-01-05T09:00:00Z", "1", 1, "0.01"),
        ("U0", "C1", "2027-01-05T10:00:00Z", "442071234567", 300, "0.30"),
        ("U1", "C1", "2027-01-05T11:00:00Z", "442071234567", 300, "0.10")]))
    _refused(engine, "usage", later, "later.csv: row 4 (call_id 'U1')", "charge 0.30 -> 0.10",
             chunk_rows=1)


def test_a_consumed_call_imported_again_unchanged_is_a_no_op(posted, tmp_path):
    engine, run_id = posted
    before = dump(engine)
    # the same calls, the instant written with an offset, the number with a leading +
    same = _write(tmp_path / "same.csv", _calls([
        ("U0", "C1", "2027-01-05T11:00:00+01:00", "+442071234567", 300, "0.300"),
        ("U1", "C1", "2027-01-05T11:00:00Z", "442071234567", 300, "0.30")]))
    assert import_csv(engine, "usage", same) == 2
    after = dump(engine)
    for table in ("ledger", "call_credits", "grant_usage", "customers"):
        assert after[table] == before[table], table
    # a new call beside them is a new call
    new = _write(tmp_path / "new.csv", _calls([("U9", "C1", "2027-01-05T12:00:00Z", "4420", 60,
                                                "0.05")]))
    assert import_csv(engine, "usage", new) == 1


def test_after_reversing_the_run_the_call_may_change(posted, tmp_path):
    engine, run_id = posted
    reverse(engine, run_id, simulate=False)
    fixed = _write(tmp_path / "fixed.csv", _calls([
        ("U0", "C1", "2027-01-05T10:00:00Z", "442071234567", 300, "0.00")]))
    assert import_csv(engine, "usage", fixed) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT charge_micros FROM usage WHERE call_id = 'U0'")).scalar() == 0


# ------------------------------------------------------------------ item 11: currency

def test_currency_of_a_customer_with_posted_lines_cannot_change(posted, tmp_path):
    engine, _run = posted
    bad = _write(tmp_path / "c2.csv", CUSTOMERS_HEADER + "C3,Three,JPY,10\nC1,One,JPY,10.00\n")
    _refused(engine, "customers", bad, "c2.csv: row 3 (customer_id 'C1')",
             "currency 'EUR' -> 'JPY'", "posted ledger line(s) in EUR", "new customer_id",
             "nothing imported")
    # a customer without posted lines may change its currency; a change of case is none
    ok = _write(tmp_path / "c3.csv", CUSTOMERS_HEADER + "C3,Three,JPY,10\nC1,One,eur,10.00\n")
    assert import_csv(engine, "customers", ok) == 2
    with engine.connect() as conn:
        assert dict(conn.execute(sa.text("SELECT customer_id, currency FROM customers")).all()
                    ) == {"C1": "EUR", "C2": "EUR", "C3": "JPY"}


def test_currency_of_a_package_with_posted_lines_cannot_change(posted, tmp_path):
    engine, _run = posted
    bad = _write(tmp_path / "p2.csv", PACKAGES_HEADER
                 + "SPARE,Spare,standard,0,1.00,0,0,USD,monthly,0,,false,0,\n"
                 + "UK,UK bundle,free_minutes,0,5.00,0,0,JPY,monthly,12,^44,false,0,\n")
    _refused(engine, "packages", bad, "p2.csv: row 3 (package_id 'UK')",
             "currency 'EUR' -> 'JPY'", "posted ledger line(s) in EUR", "new package_id",
             "nothing imported")
    ok = _write(tmp_path / "p3.csv", PACKAGES_HEADER
                + "SPARE,Spare,standard,0,1.00,0,0,usd,monthly,0,,false,0,\n"
                + "UK,UK bundle,free_minutes,0,5.00,0,0,Eur,monthly,12,^44,false,0,\n")
    assert import_csv(engine, "packages", ok) == 2
    with engine.connect() as conn:
        assert dict(conn.execute(sa.text("SELECT package_id, currency FROM packages")).all()
                    ) == {"SPARE": "USD", "UK": "EUR"}


def test_currency_codes_are_stored_upper_case(db_url, tmp_path):
    engine = fresh_engine(db_url)
    import_csv(engine, "customers", _write(tmp_path / "c.csv", CUSTOMERS_HEADER
               + "C1,One,eur,1\nC2,Two, Gbp ,1\n"))
    import_csv(engine, "packages", _write(tmp_path / "p.csv", PACKAGES_HEADER
               + "P1,Seat,standard,0,1.00,0,0,eur,monthly,0,,false,0,\n"))
    with engine.connect() as conn:
        assert dict(conn.execute(sa.text("SELECT customer_id, currency FROM customers")).all()
                    ) == {"C1": "EUR", "C2": "GBP"}
        assert conn.execute(sa.text("SELECT currency FROM packages")).scalar() == "EUR"
    engine.dispose()


# ------------------------------------------------------------------ item 8: names

TEXT_CASES = [
    ("Acme\u202eslaes", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("Acme\u202a", "U+202A (LEFT-TO-RIGHT EMBEDDING)"),
    ("\u2066Acme\u2069", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
    ("Ac\u2068me", "U+2068 (FIRST STRONG ISOLATE)"),
    ("Ac\u200bme", "U+200B (ZERO WIDTH SPACE)"),
    ("Ac\u00adme", "U+00AD (SOFT HYPHEN)"),
    ("Acme\U000e0041", "U+E0041 (TAG LATIN CAPITAL LETTER A)"),
]


@pytest.mark.parametrize("value,reason", TEXT_CASES, ids=[c[1][:6] for c in TEXT_CASES])
def test_names_and_descriptions_refuse_bidi_and_invisible_format_characters(
        db_url, tmp_path, value, reason):
    engine = fresh_engine(db_url)
    msg = _refused(engine, "customers", _write(tmp_path / "c.csv", CUSTOMERS_HEADER
                   + f"C1,Fine,EUR,1\nC2,{value},EUR,1\n"),
                   "c.csv row 3 (row 1 is the header), customer_id 'C2', column name: "
                   f"format character {reason} not allowed in text")
    assert value not in msg  # the value is shown escaped
    _refused(engine, "packages", _write(tmp_path / "p.csv", PACKAGES_HEADER
             + f"P1,Seat,standard,0,1.00,0,0,EUR,monthly,0,,false,0,{value}\n"),
             "p.csv row 2 (row 1 is the header), package_id 'P1', column description: "
             f"format character {reason}")
    engine.dispose()


def test_free_text_keeps_what_scripts_need(db_url, tmp_path):
    engine = fresh_engine(db_url)
    names = ["\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian with ZWNJ
             "\U0001f469\u200d\U0001f4bb Dev",  # emoji sequence with ZWJ
             "\u05e9\u05dc\u05d5\u05dd\u200f 123",  # Hebrew with RLM
             "Zoë Ærø\tline"]
    import_csv(engine, "customers", _write(tmp_path / "c.csv", CUSTOMERS_HEADER + "".join(
        f"C{i},\"{n}\",EUR,1\n" for i, n in enumerate(names))))
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT customer_id, name FROM customers")).all())
    assert stored == {f"C{i}": n for i, n in enumerate(names)}
    engine.dispose()


def test_ids_refuse_isolates_and_every_format_character(db_url, tmp_path):
    engine = fresh_engine(db_url)
    for value, code in (("C\u20661", "U+2066"), ("C\u200d1", "U+200D"), ("C\u00ad1", "U+00AD")):
        _refused(engine, "customers", _write(tmp_path / "c.csv",
                 CUSTOMERS_HEADER + f"{value},N,EUR,1\n"),
                 "row 2 (row 1 is the header), column customer_id: "
                 f"invisible character {code} not allowed in an id")
    engine.dispose()


def test_check_stored_text_is_the_import_rule_for_commands():
    assert check_stored_text("--reason", "refund for ticket 42\nsecond line") == (
        "refund for ticket 42\nsecond line")
    assert check_stored_text("--reason", None) is None
    for value, part in (("x\u202ey", "format character U+202E (RIGHT-TO-LEFT OVERRIDE)"),
                        ("x\u2069", "U+2069 (POP DIRECTIONAL ISOLATE)"),
                        ("x\x1by", "control character U+001B"),
                        ("x" * 4001, "longer than 4000 characters (4001)")):
        with pytest.raises(TextRefused) as err:
            check_stored_text("--reason", value)
        assert str(err.value).startswith("--reason: ") and part in str(err.value)
        assert "nothing stored" in str(err.value)
        assert isinstance(err.value, UsageError)  # exit 2, one line
    with pytest.raises(TextRefused, match="source: not in Unicode NFC form"):
        check_stored_text("source", "Cafe\u0301.csv", is_id=True)
    with pytest.raises(TextRefused, match="invisible character U\\+200D not allowed in an id"):
        check_stored_text("source", "a\u200db", is_id=True)
    assert check_stored_text("source", "customers-2027-01.csv", is_id=True)
    with pytest.raises(TextRefused, match="label: control character U\\+000A"):
        check_stored_text("label", "two\nlines", one_line=True)


# ------------------------------------------------------------------ item 12: sizes

def test_a_header_longer_than_the_read_window_is_refused_as_such(db_url, tmp_path, monkeypatch):
    monkeypatch.setattr(source_mod, "_HEAD_BYTES", 4096)
    engine = fresh_engine(db_url)
    # a real header with a long last cell: cut at the window it would read as other columns
    long = _write(tmp_path / "long.csv", "customer_id,name,currency,balance," + "name," * 2000
                  + "x\nC1,A,EUR,1\n")
    msg = _refused(engine, "customers", long,
                   "long.csv row 1 (the header): longer than 4 KB without a line end")
    assert "appears twice" not in msg
    # a one-line file (no line end at all) is the same
    _refused(engine, "customers", _write(tmp_path / "one.csv", "x" * 10_000),
             "one.csv row 1 (the header): longer than 4 KB")
    # within the window all is as before
    import_csv(engine, "customers", _write(tmp_path / "ok.csv", CUSTOMERS_HEADER + "C1,A,EUR,1\n"))
    engine.dispose()


@pytest.fixture
def small_blocks(monkeypatch):
    """The reader's block lowered to 64 KB (scanned 8 KB at a time): a 1 MB row is 'huge'."""
    monkeypatch.setattr(source_mod, "_BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(source_mod, "_SCAN_BYTES", 8 << 10)


def test_a_huge_row_is_refused_naming_its_row_and_column(db_url, tmp_path, small_blocks):
    engine = fresh_engine(db_url)
    huge = "x" * (1 << 20)
    _refused(engine, "customers", _write(tmp_path / "huge.csv",
             CUSTOMERS_HEADER + f"C1,{huge},EUR,1\n"),
             "huge.csv row 2 (row 1 is the header), column name: the row is longer than 64 KB",
             "a missing line end?")
    # no line end at the end of the file either; CRLF line ends and blank lines before it
    _refused(engine, "customers", _write(tmp_path / "crlf.csv",
             CUSTOMERS_HEADER.replace("\n", "\r\n") + "\r\nC0,A,EUR,1\r\n\r\nC1,B,"
             + huge + ",1"),
             "crlf.csv row 3 (row 1 is the header), column currency: the row is longer than "
             "64 KB")
    # an unclosed quote turns the rest of the file into one value
    rows = "".join(f"C{i},N,EUR,1\n" for i in range(2, 40_000))
    _refused(engine, "customers", _write(tmp_path / "quote.csv",
             CUSTOMERS_HEADER + "C0,A,EUR,1\nC1,\"Acme,EUR,1\n" + rows),
             "quote.csv row 3 (row 1 is the header), column name: the row is longer than "
             "64 KB", "a quote that is never closed?")
    # beyond the header's columns
    _refused(engine, "customers", _write(tmp_path / "wide.csv",
             CUSTOMERS_HEADER + "C1,A,EUR,1," + huge + "\n"),
             "wide.csv row 2 (row 1 is the header), field 5 (the header has 4 columns)")
    # rows under the block import as before
    import_csv(engine, "customers", _write(tmp_path / "ok.csv",
               CUSTOMERS_HEADER + f"C1,{'y' * 4000},EUR,1\n"))
    engine.dispose()


def test_a_file_name_breaking_the_text_rules_is_refused(db_url, tmp_path, monkeypatch):
    """An import records its file's name (price versions, changes, balance adjustments)."""
    engine = fresh_engine(db_url)
    before = dump(engine)
    for name, part in (("vsc.\u202ecustomers.csv", "format character U+202E"),
                       ("new\nline.csv", "control character U+000A")):
        path = _write(tmp_path / name, CUSTOMERS_HEADER + "C1,A,EUR,1\n")
        with pytest.raises(ImportFailed) as err:
            import_csv(engine, "customers", path)
        msg = str(err.value)
        assert msg.startswith("file name: ") and part in msg and "rename the file" in msg, msg
        assert name not in msg and "\n" not in msg
    assert dump(engine) == before
    engine.dispose()


def test_who_recorded_a_change_is_stored_readable(monkeypatch):
    from billing_jobs.ingest import changes
    monkeypatch.setattr(changes.getpass, "getuser", lambda: "ops\u202enimda")
    by = changes.recorded_by()
    assert "\u202e" not in by and by.startswith("ops\\u202enimda@")
    monkeypatch.setattr(changes.getpass, "getuser", lambda: "zoë")
    assert changes.recorded_by().startswith("zoë@")
