"""`rebill` for free-minute grants: a moved start date moves the grant and the minutes it used
(#17 item 2, docs/free_minutes.md "Corrections").

Per billing date of the rebill range, inside rebill's one transaction:

1. a live grant the date granted that current data no longer computes (the old calendar) is
   withdrawn (`withdrawn_by_run` = `rebill:<date>`);
2. a grant current data computes for a posted date and that is not live is granted (its run
   `rebill:<date>`); one that would still overlap a live grant outside the range is refused,
   naming both and the range to use (the database refuses it anyway, migration 0008);
3. the calls a withdrawn grant consumed move to the live grant of the same assignment whose
   period holds the call's day (billing time zone): `call_credits` rows re-pointed, both
   counters (`grant_usage`) recomputed from them. Nothing is credited or charged again: the
   credit lines already posted stand (they were the calls' covered charge).

What cannot move is said, not hidden: calls of days no new grant holds, and a new grant whose
moved calls use more than it gives (the difference was credited under the old calendar; an
operator decides on an `adjust`).
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa

from billing_jobs.core.errors import UsageError
from billing_jobs.core.vocab import KeySpace, correction_key
from billing_jobs.corrections.rows import dated_records, period_overlaps
from billing_jobs.store import bulk

#: the grants' dates, read as dates on both databases
_DATES = dict(period_start=sa.Date, period_end=sa.Date, run_date=sa.Date)


def _holds(start: date, end: date | None, day: date) -> bool:
    return start <= day and (end is None or day < end)


def _local_day(start_time, tz: str) -> date:
    t = pd.Timestamp(start_time)
    t = t.tz_localize("UTC") if t.tzinfo is None else t
    return t.tz_convert(tz).date()


def _live(conn, assignment_id: str) -> list[tuple[date, date | None, int, str]]:
    rows = conn.execute(sa.text(
        "SELECT period_start, period_end, seconds, customer_id FROM grants "
        "WHERE assignment_id = :a AND withdrawn_at IS NULL ORDER BY period_start"
    ).columns(**_DATES), {"a": assignment_id}).all()
    return [(p, e, int(s), str(c)) for p, e, s, c in rows]


def rebill_grants(conn: sa.Connection,
                  plans: list[tuple[date, pd.DataFrame, bool, tuple[date, date] | None]],
                  first: date, last: date, customer_ids, tz: str) -> list[str]:
    """Bring the live grants of each (date, computed grants, date was posted, window) of
    `plans` to what current data computes; with a window (a date outside the range whose
    periods overlap it), only the grants whose period overlaps the window. Return one line per
    change and per minute that could not move (see the module docstring). Runs inside the
    caller's transaction."""
    stamp = bulk.now_value(conn)
    notes: list[str] = []
    withdrawn: list[tuple[str, date]] = []
    wanted: list[dict] = []
    for day, grants, posted, window in plans:
        sql = ("SELECT assignment_id, period_start, period_end FROM grants WHERE run_date = :d "
               "AND withdrawn_at IS NULL")
        params: dict = {"d": day}
        stmt = sa.text(sql)
        if customer_ids:
            stmt = sa.text(sql + " AND customer_id IN :cs").bindparams(
                sa.bindparam("cs", expanding=True))
            params["cs"] = list(customer_ids)
        stored = {(str(a), p) for a, p, e in conn.execute(stmt.columns(**_DATES), params).all()
                  if window is None or period_overlaps(p, e, *window)}
        computed = {(str(r["assignment_id"]), r["period_start"]): r
                    for r in dated_records(grants)
                    if window is None
                    or period_overlaps(r["period_start"], r["period_end"], *window)}
        for key in sorted(stored - set(computed)):
            conn.execute(sa.text(
                "UPDATE grants SET withdrawn_at = :t, withdrawn_by_run = :b "
                "WHERE assignment_id = :a AND period_start = :p AND withdrawn_at IS NULL"),
                {"t": stamp, "b": correction_key(KeySpace.REBILL, day), "a": key[0],
                 "p": key[1]})
            withdrawn.append(key)
            notes.append(f"grant ({key[0]}, from {key[1]}) withdrawn: current data no longer "
                         f"gives it on {day}")
        if posted:
            wanted += [dict(r, run_date=day) for k, r in sorted(computed.items())
                       if k not in stored]
    for r in wanted:
        a, start, end = str(r["assignment_id"]), r["period_start"], r["period_end"]
        live = _live(conn, a)
        if any(s == start for s, _e, _n, _c in live):
            continue  # granted already (under another date of the range, or before)
        for s, e, _n, _c in live:
            if s < (end or date.max) and start < (e or date.max):
                run_day = conn.execute(sa.text(
                    "SELECT run_date FROM grants WHERE assignment_id = :a AND period_start = :p"
                ).columns(**_DATES), {"a": a, "p": s}).scalar()
                other = run_day.isoformat()
                lo, hi = min(first.isoformat(), other), max(last.isoformat(), other)
                raise UsageError(
                    f"rebill: grant ({a}, from {start}) would give minutes for days the live "
                    f"grant ({a}, from {s}) of run date {other} still gives; rebill --from {lo} "
                    f"--to {hi} moves the grant; nothing written")
        conn.execute(sa.text(
            "INSERT INTO grants (run_id, run_date, customer_id, assignment_id, package_id, "
            "period_start, period_end, destination, seconds, granted_at) VALUES (:run, :d, "
            ":c, :a, :pk, :p, :e, :dest, :s, :t) ON CONFLICT (assignment_id, period_start) "
            "DO UPDATE SET run_id = excluded.run_id, run_date = excluded.run_date, "
            "seconds = excluded.seconds, period_end = excluded.period_end, "
            "destination = excluded.destination, granted_at = excluded.granted_at, "
            "withdrawn_at = NULL, withdrawn_by_run = NULL WHERE grants.withdrawn_at IS NOT NULL"),
            {"run": correction_key(KeySpace.REBILL, r["run_date"]), "d": r["run_date"],
             "c": str(r["customer_id"]), "a": a, "pk": str(r["package_id"]), "p": start,
             "e": end, "dest": str(r["destination"] or ""), "s": int(r["seconds"]), "t": stamp})
        notes.append(f"grant ({a}, from {start}) granted: {int(r['seconds']) // 60} minutes")
    notes += _move_consumption(conn, withdrawn, tz)
    return notes


def _move_consumption(conn, withdrawn: list[tuple[str, date]], tz: str) -> list[str]:
    """Re-point the calls each withdrawn grant consumed to the live grant of the assignment
    whose period holds the call's day, then recompute the counters of every grant touched."""
    touched: set[tuple[str, date]] = set()
    notes: list[str] = []
    for a, old in withdrawn:
        calls = conn.execute(sa.text(
            "SELECT call_id, start_time, seconds, covered_micros FROM call_credits "
            "WHERE assignment_id = :a AND period_start = :p ORDER BY start_time, call_id"),
            {"a": a, "p": old}).all()
        if not calls:
            continue
        touched.add((a, old))
        live = _live(conn, a)
        for call_id, start_time, seconds, covered in calls:
            day = _local_day(start_time, tz)
            to = next((s for s, e, _n, _c in live if _holds(s, e, day)), None)
            if to is None:
                continue
            there = conn.execute(sa.text(
                "SELECT seconds FROM call_credits WHERE call_id = :c AND assignment_id = :a "
                "AND period_start = :p"), {"c": call_id, "a": a, "p": to}).first()
            if there is None:
                conn.execute(sa.text(
                    "UPDATE call_credits SET period_start = :to WHERE call_id = :c "
                    "AND assignment_id = :a AND period_start = :p"),
                    {"to": to, "c": call_id, "a": a, "p": old})
            else:  # the call already had a part on that grant: one part now
                conn.execute(sa.text(
                    "UPDATE call_credits SET seconds = seconds + :s, "
                    "covered_micros = covered_micros + :m WHERE call_id = :c "
                    "AND assignment_id = :a AND period_start = :p"),
                    {"s": int(seconds), "m": int(covered), "c": call_id, "a": a, "p": to})
                conn.execute(sa.text(
                    "DELETE FROM call_credits WHERE call_id = :c AND assignment_id = :a "
                    "AND period_start = :p"), {"c": call_id, "a": a, "p": old})
            touched.add((a, to))
    for a, start in sorted(touched):
        used, covered = conn.execute(sa.text(
            "SELECT COALESCE(SUM(seconds), 0), COALESCE(SUM(covered_micros), 0) "
            "FROM call_credits WHERE assignment_id = :a AND period_start = :p"),
            {"a": a, "p": start}).one()
        used, covered = int(used), int(covered)
        g = conn.execute(sa.text(
            "SELECT customer_id, period_end, seconds, withdrawn_at FROM grants "
            "WHERE assignment_id = :a AND period_start = :p").columns(**_DATES),
            {"a": a, "p": start}).one()
        conn.execute(sa.text(
            "INSERT INTO grant_usage (assignment_id, period_start, customer_id, period_end, "
            "seconds_granted, seconds_used, credited_micros, updated_by_run) VALUES (:a, :p, "
            ":c, :e, :g, :u, :m, 'rebill') ON CONFLICT (assignment_id, period_start) DO UPDATE "
            "SET seconds_used = excluded.seconds_used, credited_micros = "
            "excluded.credited_micros, updated_by_run = excluded.updated_by_run"),
            {"a": a, "p": start, "c": str(g[0]), "e": g[1], "g": int(g[2]), "u": used,
             "m": covered})
        if g[3] is not None and used:
            notes.append(f"grant ({a}, from {start}) withdrawn: {used} s of its calls fall on "
                         "days no grant of the new calendar holds; their credit stays "
                         "(adjust if it should not)")
        elif g[3] is None and used > int(g[2]):
            notes.append(f"grant ({a}, from {start}): the calls moved to it used {used} s of "
                         f"its {int(g[2])} s; the {used - int(g[2])} s over were credited "
                         "under the old calendar (adjust if they should not be)")
    return notes
