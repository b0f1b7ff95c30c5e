"""Importing terms over time (SPEC 10, #27), both databases: price versions from packages.csv,
term edits over posted lines refused unless the import is a correction, an end moved earlier
recorded as a cancel, and changes files recorded once."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from billing_jobs.core.entities import file_row
from billing_jobs.core.errors import ImportFailed
from billing_jobs.core.vocab import LineKind
from billing_jobs.ingest.importer import import_file
from billing_jobs.store.load import load_inputs
from billing_jobs.store.tables import assignment_changes, assignments, ledger, package_versions
from tests.store.helpers import fresh_engine

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)
PACKAGE_HEADER = ("package_id,name,type,cost,retail,setup_cost,setup_retail,currency,frequency,"
                  "free_minutes,minimum_spend,minimum_days,prorate,effective_from")
SEAT = "P1,Seat,standard,1,4,0,0,EUR,monthly,0,false,0,true"


def _csv(tmp_path: Path, name: str, *lines: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _packages(tmp_path, *rows, name="packages.csv") -> Path:
    return _csv(tmp_path, name, PACKAGE_HEADER, *rows)


def _assignments(tmp_path, *rows, name="assignments.csv") -> Path:
    return _csv(tmp_path, name,
                "assignment_id,customer_id,package_id,quantity,start_date,end_date,"
                "auto_decrement", *rows)


def _line(**over) -> dict:
    row = dict(run_id="r", run_date=date(2026, 11, 1), customer_id="C1", assignment_id="A1",
               package_id="P1", kind=LineKind.RECURRING, period_start=date(2026, 11, 1),
               period_end=date(2026, 12, 1), quantity=5, unit_price_micros=4_000_000,
               amount_micros=20_000_000, cost_micros=5_000_000, currency="EUR",
               auto_decrement=True, status="posted", posted_at=NOW)
    row.update(over)
    return row


@pytest.fixture
def billed(db_url, tmp_path):
    """C1 (EUR) and C2, package P1 (4.00 a month, prorated), A1: 5 seats of C1 from
    1 October; October and November posted."""
    engine = fresh_engine(db_url)
    import_file(engine, "customers", _csv(tmp_path, "customers.csv",
                                          "customer_id,name,currency,balance",
                                          "C1,One,EUR,100", "C2,Two,EUR,0", "C3,Dollar,USD,0"))
    import_file(engine, "packages", _packages(
        tmp_path, SEAT + ",", "P2,Seat plus,standard,1,6,0,0,EUR,monthly,0,false,0,true,",
        "P-W,Weekly,standard,1,6,0,0,EUR,weekly,0,false,0,true,"))
    import_file(engine, "assignments", _assignments(
        tmp_path, "A1,C1,P1,5,2026-10-01,,true", "A2,C2,P1,1,2026-10-01,,true"))
    with engine.begin() as conn:
        conn.execute(ledger.insert(), [
            _line(run_id="oct", run_date=date(2026, 10, 1), period_start=date(2026, 10, 1),
                  period_end=date(2026, 11, 1)),
            _line(run_id="nov")])
    yield engine
    engine.dispose()


def _versions(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(
            package_versions.c.package_id, package_versions.c.effective_from,
            package_versions.c.retail_micros, package_versions.c.recorded_at,
            package_versions.c.recorded_by, package_versions.c.source).order_by(
            package_versions.c.package_id, package_versions.c.effective_from)).all()]


def _changes(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(assignment_changes).order_by(
            assignment_changes.c.change_id)).mappings()]


def _ledger(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(ledger).order_by(
            ledger.c.ledger_id)).all()]


def _assignment(engine, aid: str) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(assignments).where(
            assignments.c.assignment_id == aid)).mappings().one())


# ----------------------------------------------------------------------------- versions

def test_a_version_is_imported_read_back_by_load_and_leaves_november_alone(billed, tmp_path):
    engine = billed
    before = _ledger(engine)
    path = _packages(tmp_path, SEAT + ",", SEAT.replace(",4,", ",6,") + ",2026-12-01",
                     name="prices.csv")
    done = import_file(engine, "packages", path)
    assert done.versions == 1
    [(pid, day, retail, _at, by, source)] = _versions(engine)
    assert (pid, day, retail, source) == ("P1", date(2026, 12, 1), 6_000_000, "prices.csv")
    assert re.fullmatch(r".+@.+", by)
    inputs = load_inputs(engine, date(2026, 12, 1))
    assert inputs.versions[["package_id", "effective_from", "retail"]].to_dict("records") == [
        dict(package_id="P1", effective_from=pd.Timestamp("2026-12-01"), retail=6_000_000)]
    # the package's own terms (those of November) are unchanged, and so is the ledger
    assert inputs.packages.set_index("package_id").loc["P1", "retail"] == 4_000_000
    assert _ledger(engine) == before
    # the same file again: a no-op (the version keeps when and by whom it was recorded)
    again = import_file(engine, "packages", path)
    assert again.versions == 0
    assert _versions(engine) == [(pid, day, retail, _at, by, source)]


def test_a_version_row_must_match_the_package(billed, tmp_path):
    engine = billed
    path = _packages(tmp_path, SEAT.replace("monthly", "weekly") + ",2026-12-01")
    with pytest.raises(ImportFailed) as err:
        import_file(engine, "packages", path)
    assert "row 2 (package_id 'P1'), column frequency" in str(err.value)
    assert "'weekly' differs from the package's 'monthly'" in str(err.value)
    path = _packages(tmp_path, "P9,Nine,standard,1,4,0,0,EUR,monthly,0,false,0,true,2026-12-01")
    with pytest.raises(ImportFailed, match=r"row 2 \(package_id 'P9'\): a version of a package "
                                           "that does not exist"):
        import_file(engine, "packages", path)
    assert _versions(engine) == []


def test_a_version_and_its_package_in_one_file(db_url, tmp_path):
    engine = fresh_engine(db_url)
    path = _packages(tmp_path, SEAT + ",2027-01-01", SEAT + ",",
                     SEAT.replace(",4,", ",5,") + ",2027-02-01")
    assert import_file(engine, "packages", path).versions == 2
    assert [(p, d, r) for p, d, r, *_ in _versions(engine)] == [
        ("P1", date(2027, 1, 1), 4_000_000), ("P1", date(2027, 2, 1), 5_000_000)]
    dup = _packages(tmp_path, SEAT + ",2027-01-01", SEAT + ",2027-01-01", name="dup.csv")
    with pytest.raises(ImportFailed, match=r"row 3 .*duplicate id 'P1' from '2027-01-01' "
                                           r"\(first on row 2\)"):
        import_file(engine, "packages", dup)


def test_a_version_is_editable_until_used_then_refused_with_the_rule(billed, tmp_path):
    engine = billed
    import_file(engine, "packages", _packages(tmp_path, SEAT.replace(",4,", ",6,") +
                                              ",2026-12-01"))
    edited = _packages(tmp_path, SEAT.replace(",4,", ",7,") + ",2026-12-01", name="v2.csv")
    assert import_file(engine, "packages", edited).versions == 1  # unused: replaced
    assert [r[2] for r in _versions(engine)] == [7_000_000]
    with engine.begin() as conn:
        conn.execute(ledger.insert().values(**_line(
            run_id="dec", run_date=date(2026, 12, 1), period_start=date(2026, 12, 1),
            period_end=date(2027, 1, 1), unit_price_micros=7_000_000,
            amount_micros=35_000_000)))
    again = _packages(tmp_path, SEAT.replace(",4,", ",8,") + ",2026-12-01", name="v3.csv")
    with pytest.raises(ImportFailed) as err:
        import_file(engine, "packages", again)
    message = str(err.value)
    assert "v3.csv: row 2 (package_id 'P1'): the version from 2026-12-01 priced" in message
    assert "posted period(s) from 2026-12-01" in message and "append-only" in message
    assert [r[2] for r in _versions(engine)] == [7_000_000]


def test_a_new_version_before_posted_periods_is_a_correction(billed, tmp_path):
    engine = billed
    path = _packages(tmp_path, SEAT.replace(",4,", ",6,") + ",2026-11-01")
    with pytest.raises(ImportFailed, match=r"a version from 2026-11-01 would reprice 1 posted "
                                           r"period\(s\) from 2026-11-01.*--correct"):
        import_file(engine, "packages", path)
    assert _versions(engine) == []
    assert import_file(engine, "packages", path, correct=True).versions == 1


# ----------------------------------------------------------------------------- corrections

def test_an_in_place_retail_edit_after_posting_is_refused_unless_a_correction(billed, tmp_path):
    engine = billed
    path = _packages(tmp_path, SEAT.replace(",4,", ",5,") + ",")
    with pytest.raises(ImportFailed) as err:
        import_file(engine, "packages", path)
    message = str(err.value)
    assert ("packages.csv: row 2 (package_id 'P1'): retail 4 -> 5 would reprice 2 posted "
            "period(s) from 2026-10-01, 2026-11-01") in message
    assert "effective_from" in message and "--correct" in message
    assert load_inputs(engine, date(2026, 12, 1)).packages.set_index(
        "package_id").loc["P1", "retail"] == 4_000_000
    import_file(engine, "packages", path, correct=True)
    assert load_inputs(engine, date(2026, 12, 1)).packages.set_index(
        "package_id").loc["P1", "retail"] == 5_000_000


def test_periods_after_the_first_version_are_not_the_base_terms(billed, tmp_path):
    engine = billed
    import_file(engine, "packages", _packages(tmp_path, SEAT.replace(",4,", ",6,") +
                                              ",2026-10-01"), correct=True)
    # every posted period is priced by the version: the base terms priced nothing
    import_file(engine, "packages", _packages(tmp_path, SEAT.replace(",4,", ",5,") + ",",
                                              name="base.csv"))


def test_an_assignment_edit_over_posted_lines_is_refused_unless_a_correction(billed, tmp_path):
    engine = billed
    path = _assignments(tmp_path, "A1,C1,P1,8,2026-10-01,,true", "A3,C2,P1,2,2026-12-01,,true")
    with pytest.raises(ImportFailed) as err:
        import_file(engine, "assignments", path)
    assert ("row 2 (assignment_id 'A1'): quantity 5 -> 8 would reprice 2 posted period(s) "
            "from 2026-10-01, 2026-11-01") in str(err.value)
    assert _assignment(engine, "A1")["quantity"] == 5
    with pytest.raises(ImportFailed, match="customer_id 'C1' -> 'C2'"):
        import_file(engine, "assignments", _assignments(
            tmp_path, "A1,C2,P1,5,2026-10-01,,true", name="moved.csv"))
    import_file(engine, "assignments", path, correct=True)
    assert _assignment(engine, "A1")["quantity"] == 8
    assert _assignment(engine, "A3")["quantity"] == 2
    # an assignment without posted lines is updated as before
    import_file(engine, "assignments", _assignments(tmp_path, "A2,C2,P1,3,2026-10-01,,true",
                                                    name="a2.csv"))
    assert _assignment(engine, "A2")["quantity"] == 3


def test_an_end_moved_earlier_over_posted_lines_is_a_cancel_recorded_once(billed, tmp_path):
    engine = billed
    path = _assignments(tmp_path, "A1,C1,P1,5,2026-10-01,2026-11-15,true")
    done = import_file(engine, "assignments", path)
    assert done.changes == 1
    assert done.notes == ("assignments.csv row 2: assignment 'A1' end moved from open to "
                          "2026-11-15 with posted lines after it: recorded as a cancel from "
                          "2026-11-16 (the assignment keeps its end)",)
    [change] = _changes(engine)
    assert (change["assignment_id"], change["effective_from"], change["cancel"],
            change["quantity"], change["source"]) == ("A1", date(2026, 11, 16), True, None,
                                                      "assignments.csv")
    assert "@" in change["recorded_by"]
    assert _assignment(engine, "A1")["end_date"] is None  # the base row keeps its end
    again = import_file(engine, "assignments", path)
    assert again.changes == 0 and again.notes == ()
    assert len(_changes(engine)) == 1
    loaded = load_inputs(engine, date(2026, 12, 1)).changes
    assert loaded[["assignment_id", "cancel"]].values.tolist() == [["A1", True]]


def test_an_end_moved_earlier_without_posted_lines_after_it_is_written(billed, tmp_path):
    engine = billed
    # November's period ends on 1 December: an end on 30 November cuts no posted period
    import_file(engine, "assignments", _assignments(
        tmp_path, "A1,C1,P1,5,2026-10-01,2026-11-30,true", "A2,C2,P1,1,2026-10-01,2026-10-20,true"))
    assert _assignment(engine, "A1")["end_date"] == date(2026, 11, 30)
    assert _assignment(engine, "A2")["end_date"] == date(2026, 10, 20)  # nothing posted
    assert _changes(engine) == []


def test_an_end_corrected_is_written_in_place(billed, tmp_path):
    engine = billed
    import_file(engine, "assignments", _assignments(
        tmp_path, "A1,C1,P1,5,2026-10-01,2026-11-15,true"), correct=True)
    assert _assignment(engine, "A1")["end_date"] == date(2026, 11, 15)
    assert _changes(engine) == []


# ----------------------------------------------------------------------------- changes files

CHANGES_HEADER = "assignment_id,effective_from,quantity,package_id,free_minutes,customer_id,cancel"


def test_a_changes_file_is_recorded_once(billed, tmp_path):
    engine = billed
    path = _csv(tmp_path, "changes.csv", CHANGES_HEADER,
                "A1,2026-12-10,8,,,,", "A1,2027-01-01,,P2,,,", "A2,2026-12-01,,,,C1,",
                "A2,2027-03-01,,,,,true")
    done = import_file(engine, "changes", path)
    assert (done.rows, done.changes) == (4, 4)
    rows = _changes(engine)
    assert [(r["assignment_id"], r["effective_from"], r["quantity"], r["package_id"],
             r["customer_id"], r["cancel"]) for r in rows] == [
        ("A1", date(2026, 12, 10), 8, None, None, False),
        ("A1", date(2027, 1, 1), None, "P2", None, False),
        ("A2", date(2026, 12, 1), None, None, "C1", False),
        ("A2", date(2027, 3, 1), None, None, None, True)]
    assert {r["source"] for r in rows} == {"changes.csv"}
    assert import_file(engine, "changes", path).changes == 0
    assert len(_changes(engine)) == 4
    # checked on the terms in force: quantity 8 from 10 December is no change from January on
    same = _csv(tmp_path, "same.csv", "assignment_id,effective_from,quantity", "A1,2027-01-05,8")
    with pytest.raises(ImportFailed, match=r"row 2 \(assignment_id 'A1'\): changes nothing: "
                                           r"quantity 8 already in force on 2027-01-05"):
        import_file(engine, "changes", same)


@pytest.mark.parametrize("row, rule", [
    ("A9,2026-12-10,8,,,,", "assignment 'A9' does not exist"),
    ("A1,2026-12-10,0,,,,", "quantity must be at least 1 (got 0)"),
    ("A1,2026-12-10,,P-W,,,", "package 'P-W' frequency 'weekly' differs from 'P1''s 'monthly'"),
    ("A1,2026-12-10,,P9,,,", "package 'P9' does not exist"),
    ("A1,2026-12-10,,,,C3,", "customer 'C3' currency 'USD' differs from package 'P1''s 'EUR'"),
    ("A1,2026-12-10,,,,C9,", "customer 'C9' does not exist"),
    ("A1,2026-12-10,5,,,,", "changes nothing: quantity 5 already in force on 2026-12-10"),
    ("A1,2026-12-10,,,,,", "no field to change"),
    ("A1,2026-09-01,6,,,,", "effective_from 2026-09-01 is before the assignment's start_date"),
])
def test_a_bad_change_row_is_refused_naming_row_and_rule_with_nothing_written(
        billed, tmp_path, row, rule):
    engine = billed
    path = _csv(tmp_path, "changes.csv", CHANGES_HEADER, "A2,2026-12-10,4,,,,", row)
    with pytest.raises(ImportFailed) as err:
        import_file(engine, "changes", path)
    assert f"changes.csv: row 3 (assignment_id '{row.split(',')[0]}'): {rule}" in str(err.value)
    assert "nothing recorded" in str(err.value)
    assert _changes(engine) == []


def test_a_malformed_changes_file_names_row_and_column(billed, tmp_path):
    path = _csv(tmp_path, "changes.csv", "assignment_id,effective_from,quantity",
                "A1,2026-13-01,4")
    with pytest.raises(ImportFailed, match=r"changes.csv row 2 .*assignment_id 'A1', column "
                                           r"effective_from: not a valid date"):
        import_file(billed, "changes", path)


def test_the_import_files_own_columns_are_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()
    for entity in ("packages", "changes"):
        assert file_row(entity) in doc.splitlines()


# ----------------------------------------------------------------------------- history

def test_history_lists_versions_and_changes_in_effective_order(billed, tmp_path):
    import json

    from billing_jobs.core.errors import UsageError
    from billing_jobs.store.history import assignment_history, package_history

    engine = billed
    # recorded out of order: the history is in effective order
    import_file(engine, "packages", _packages(tmp_path, SEAT.replace(",4,", ",7,") +
                                              ",2027-02-01", name="feb.csv"))
    import_file(engine, "packages", _packages(tmp_path, SEAT.replace(",4,", ",6,") +
                                              ",2026-12-01", name="dec.csv"))
    import_file(engine, "changes", _csv(tmp_path, "later.csv", CHANGES_HEADER,
                                        "A1,2027-01-01,,P2,,C2,"))
    import_file(engine, "changes", _csv(tmp_path, "earlier.csv", CHANGES_HEADER,
                                        "A1,2026-12-10,8,,,,"))
    import_file(engine, "assignments", _assignments(
        tmp_path, "A1,C1,P1,5,2026-10-01,2026-11-15,true"))
    history = package_history(engine, "P1")
    json.dumps(history)  # plain data
    assert history["package"]["retail"] == "4" and history["package"]["currency"] == "EUR"
    assert [(v["effective_from"], v["changes"], v["source"]) for v in history["versions"]] == [
        ("2026-12-01", {"retail": {"old": "4", "new": "6"}}, "dec.csv"),
        ("2027-02-01", {"retail": {"old": "6", "new": "7"}}, "feb.csv")]
    assert all("@" in v["recorded_by"] and v["recorded_at"] for v in history["versions"])
    history = assignment_history(engine, "A1")
    json.dumps(history)
    assert history["assignment"]["quantity"] == 5
    assert [(c["effective_from"], c["kind"], c["changes"], c["source"])
            for c in history["changes"]] == [
        ("2026-11-16", "cancel", {}, "assignments.csv"),
        ("2026-12-10", "change", {"quantity": {"old": 5, "new": 8}}, "earlier.csv"),
        ("2027-01-01", "change", {"package_id": {"old": "P1", "new": "P2"},
                                  "customer_id": {"old": "C1", "new": "C2"}}, "later.csv")]
    with pytest.raises(UsageError, match="no assignment 'A9'"):
        assignment_history(engine, "A9")
    with pytest.raises(UsageError, match="no package 'P9'"):
        package_history(engine, "P9")
