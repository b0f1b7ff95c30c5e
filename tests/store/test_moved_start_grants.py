"""A start date corrected after a free-minute grant was posted never gives the overlapping
days' minutes twice (#17 item 2): the new calendar's overlapping grants are held
(`overlaps_posted`) while the posted grant keeps serving its own period, `rebill` over both
dates moves the grant and the minutes it used, and the database refuses an overlapping grant
whoever writes it; on SQLite and PostgreSQL.

Worked example: a 12-minute UK bundle (5.00 EUR a month) starting 15 Jan 2027, moved to
10 Jan after the grant of 15 Jan (720 s) was posted. 5-minute UK calls of 0.30 on 20 and 21 Jan
and one on 12 Feb.
"""

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
       "UK,UK bundle,free_minutes,0,5.00,0,0,EUR,monthly,12,^44,false,0\n")
ASG = ("assignment_id,customer_id,package_id,quantity,start_date,auto_decrement\n"
       "A1,C1,UK,1,{start},true\n")
CALLS = "call_id,customer_id,start_time,destination,duration_s,charge\n"


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _import(engine, tmp_path, entity, text):
    path = tmp_path / f"{entity}-{abs(hash(text))}.csv"
    path.write_text(text)
    import_csv(engine, entity, path)


def _call(call_id, day):
    return f"{call_id},C1,{day}T10:00:00Z,442071234567,300,0.30\n"


def _post(engine, tmp_path, day, simulate=False):
    out = run_billing(engine, RunRequest(run_date=day, simulate=simulate,
                                       out_dir=tmp_path / f"r-{day}-{simulate}"))
    assert out.ok, out.message
    return out


def _grants(engine) -> dict:
    """{period_start: (seconds, withdrawn?)}"""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT period_start, seconds, withdrawn_at FROM grants ORDER BY period_start")).all()
    return {str(p)[:10]: (int(s), w is not None) for p, s, w in rows}


def _counters(engine) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT period_start, seconds_used, credited_micros FROM grant_usage "
            "ORDER BY period_start")).all()
    return {str(p)[:10]: (int(u), int(c)) for p, u, c in rows}


def _credits(engine) -> list:
    with engine.connect() as conn:
        return [(str(p)[:10], int(a)) for p, a in conn.execute(sa.text(
            "SELECT period_start, amount_micros FROM ledger WHERE kind = 'free_minutes_credit' "
            "ORDER BY period_start, revision")).all()]


def _call_grants(engine) -> dict:
    with engine.connect() as conn:
        return {c: str(p)[:10] for c, p in conn.execute(sa.text(
            "SELECT call_id, period_start FROM call_credits")).all()}


def _balance(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT balance_micros FROM customers")).scalar_one()


@pytest.fixture
def moved(db_url, tmp_path):
    """Posted 15, 21 and 22 Jan on the old calendar, then the start moved to 10 Jan."""
    engine = fresh_engine(db_url)
    _import(engine, tmp_path, "customers", "customer_id,name,currency,balance\nC1,One,EUR,100\n")
    _import(engine, tmp_path, "packages", PKG)
    _import(engine, tmp_path, "assignments", ASG.format(start="2027-01-15"))
    _import(engine, tmp_path, "usage", CALLS + _call("U1", "2027-01-20"))
    _post(engine, tmp_path, date(2027, 1, 15))
    _post(engine, tmp_path, date(2027, 1, 21))  # consumes U1
    assert _grants(engine) == {"2027-01-15": (720, False)}
    assert _counters(engine) == {"2027-01-15": (300, 300_000)}
    assert _balance(engine) == 95_300_000  # 100 - 5.00 + 0.30
    _import(engine, tmp_path, "assignments", ASG.format(start="2027-01-10"))
    yield engine
    engine.dispose()


def test_the_new_calendar_grant_is_held_and_the_posted_one_keeps_serving(moved, tmp_path):
    engine = moved
    _import(engine, tmp_path, "usage", CALLS + _call("U2", "2027-01-21"))
    # the post of 22 Jan: the new calendar's 10 Jan grant overlaps the posted 15 Jan one;
    # U2 is consumed by the posted grant (its own period holds 21 Jan), credited once
    _post(engine, tmp_path, date(2027, 1, 22))
    assert _counters(engine) == {"2027-01-15": (600, 600_000)}
    assert _credits(engine) == [("2027-01-20", -300_000), ("2027-01-21", -300_000)]
    # the held date of the new calendar: its grant is shown held, never granted
    for simulate in (True, False):
        out = _post(engine, tmp_path, date(2027, 1, 10), simulate=simulate)
        (grant,) = _rows(out.report_dir / "grants.csv")
        assert (grant["period_start"], grant["status"]) == ("2027-01-10", "overlaps_posted")
        diffs = [d for d in _rows(out.report_dir / "differences.csv")
                 if d["kind"] == "free_minutes_grant"]
        assert len(diffs) == 1
        assert "rebill --from 2027-01-10 --to 2027-01-15" in diffs[0]["correction"]
        summary = json.loads((out.report_dir / "summary.json").read_text())
        assert summary["outcome"]["overlaps_posted_grants"] == 1
        assert "1 free-minute grant" in summary["outcome"]["sentence"]
    assert _grants(engine) == {"2027-01-15": (720, False)}  # no second grant
    assert _balance(engine) == 95_600_000  # setup/recurring of 10 Jan held, nothing twice


def test_rebill_moves_the_grant_and_its_used_minutes(moved, tmp_path):
    engine = moved
    _post(engine, tmp_path, date(2027, 1, 10))  # held lines and grant
    # a rebill not reaching the old date is refused for the charges, nothing written
    with pytest.raises(UsageError, match=r"rebill --from 2027-01-10 --to 2027-01-15"):
        rebill(engine, date(2027, 1, 10), date(2027, 1, 10), simulate=False)
    shown = rebill(engine, date(2027, 1, 10), date(2027, 1, 15), simulate=True)
    assert any("withdrawn" in n for n in shown.notes)
    assert any("(A1, from 2027-01-10) granted: 12 minutes" in n for n in shown.notes)
    assert _grants(engine) == {"2027-01-15": (720, False)}  # a simulation writes nothing
    done = rebill(engine, date(2027, 1, 10), date(2027, 1, 15), simulate=False)
    assert _grants(engine) == {"2027-01-10": (720, False), "2027-01-15": (720, True)}
    # U1 (20 Jan) moved to the new grant, whose period holds it; nothing credited again
    assert _call_grants(engine) == {"U1": "2027-01-10"}
    assert _counters(engine) == {"2027-01-10": (300, 300_000), "2027-01-15": (0, 0)}
    assert _credits(engine) == [("2027-01-20", -300_000)]
    assert done.count == 2  # the recurring charge moved from 15 to 10 Jan
    assert _balance(engine) == 95_300_000
    again = rebill(engine, date(2027, 1, 10), date(2027, 1, 15), simulate=False)
    assert again.count == 0 and again.notes == []
    # February on the new calendar: granted once, its calls consume it
    _import(engine, tmp_path, "usage", CALLS + _call("U3", "2027-02-12"))
    _post(engine, tmp_path, date(2027, 2, 10))
    assert _grants(engine)["2027-02-10"] == (720, False)
    _post(engine, tmp_path, date(2027, 2, 13))
    assert _counters(engine)["2027-02-10"] == (300, 300_000)
    assert _balance(engine) == 95_300_000 - 5_000_000 + 300_000


def test_a_start_moved_later_leaves_calls_without_a_grant_said(moved, tmp_path):
    engine = moved
    _import(engine, tmp_path, "assignments", ASG.format(start="2027-01-21"))
    _post(engine, tmp_path, date(2027, 1, 21))  # held: the 21 Jan grant overlaps 15 Jan's
    assert _grants(engine) == {"2027-01-15": (720, False)}
    done = rebill(engine, date(2027, 1, 15), date(2027, 1, 21), simulate=False)
    assert _grants(engine) == {"2027-01-15": (720, True), "2027-01-21": (720, False)}
    # U1 (20 Jan) is before the new start: it stays on the withdrawn grant, and that is said
    assert _call_grants(engine) == {"U1": "2027-01-15"}
    assert any("300 s of its calls fall on days no grant of the new calendar holds" in n
               for n in done.notes)
    assert _counters(engine) == {"2027-01-15": (300, 300_000)}


def test_the_database_refuses_an_overlapping_grant_whoever_writes_it(moved):
    engine = moved
    insert = sa.text(
        "INSERT INTO grants (run_id, run_date, customer_id, assignment_id, package_id, "
        "period_start, period_end, destination, seconds, granted_at) VALUES ('x', :d, 'C1', "
        "'A1', 'UK', :p, :e, '^44', 720, :t)")
    with pytest.raises(sa.exc.DatabaseError, match="live grant of the same assignment"):
        with engine.begin() as conn:
            conn.execute(insert, {"d": date(2027, 1, 10), "p": date(2027, 1, 10),
                                  "e": date(2027, 2, 10), "t": "2027-01-10 00:00:00"})
    # a period that does not overlap is fine
    with engine.begin() as conn:
        conn.execute(insert, {"d": date(2027, 2, 15), "p": date(2027, 2, 15),
                              "e": date(2027, 3, 15), "t": "2027-02-15 00:00:00"})
    # reinstating a withdrawn grant that overlaps a live one is refused too
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE grants SET withdrawn_at = '2027-02-16 00:00:00' "
                             "WHERE period_start = :p"), {"p": date(2027, 1, 15)})
        conn.execute(insert, {"d": date(2027, 1, 20), "p": date(2027, 1, 20),
                              "e": date(2027, 2, 15), "t": "2027-01-20 00:00:00"})
    with pytest.raises(sa.exc.DatabaseError, match="live grant of the same assignment"):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE grants SET withdrawn_at = NULL "
                                 "WHERE period_start = :p"), {"p": date(2027, 1, 15)})
    assert _grants(engine) == {"2027-01-15": (720, True), "2027-01-20": (720, False),
                               "2027-02-15": (720, False)}
