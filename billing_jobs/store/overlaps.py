"""Never charge one assignment's days twice, whatever the posting keys (#17 item 2).

A posting key is (assignment_id, kind, period_start). Correcting an assignment's start date
or a package's frequency after posting makes new keys whose periods overlap posted ones; the
unique key alone would charge the setup fee and the overlapping days again. The rule, held by
the poster (lines held back as `overlaps_posted`), by `rebill` (a clear refusal) and by the
database (trigger of migration 0007, the guarantee behind both):

* families: `setup` (one setup fee per assignment, whatever its period), rental days
  (`recurring` and `prorated` stubs), `minimum_spend` periods;
* a key is *live* while its net over all revisions is not 0 (a reversed or rebilled-to-0 key
  no longer charges its days);
* a line with a non-zero amount must not overlap a live key of its assignment and family
  under another period_start. A line whose own key is already posted stays `already_posted`.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from billing_jobs.core.vocab import SERVICE_KINDS, LineKind
from billing_jobs.store import bulk, ledger

#: {line position: (kind, period_start, run_date) of the live key the line would charge again}
Overlaps = dict[int, tuple[str, str, str]]

_FAMILY = (f"(CASE WHEN {{a}}.kind IN ('{LineKind.RECURRING}', '{LineKind.PRORATED}') "
           "THEN 'rental' ELSE {a}.kind END)")
_KINDS = ", ".join(f"'{k}'" for k in SERVICE_KINDS)
#: the dates of a found overlap, read as dates on both databases
_TYPES = dict(kind=sa.Text, period_start=sa.Date, run_date=sa.Date)


def _live_overlap(new: str) -> str:
    """FROM/WHERE part: ledger rows `l` (revision 0) of a live key overlapping row alias `new`."""
    return (
        f"ledger l WHERE l.assignment_id = {new}.assignment_id AND l.revision = 0 "
        f"AND l.period_start <> {new}.period_start "
        f"AND {_FAMILY.format(a='l')} = {_FAMILY.format(a=new)} "
        f"AND ({new}.kind = '{LineKind.SETUP}' "
        f"OR (l.period_start < COALESCE({new}.period_end, '9999-12-31') "
        f"AND {new}.period_start < COALESCE(l.period_end, '9999-12-31'))) "
        "AND (SELECT SUM(x.amount_micros) FROM ledger x WHERE x.assignment_id = l.assignment_id "
        "AND x.kind = l.kind AND x.period_start = l.period_start) <> 0"
    )


# staged lines {t} (seq, assignment_id, kind, period_start, period_end, amount) that overlap
_STAGED = (
    "SELECT t.seq, l.kind, l.period_start, l.run_date FROM {t} t, " + _live_overlap("t")
    + f" AND t.kind IN ({_KINDS}) AND t.amount <> 0 "
    # a line whose own key is already posted stays `already_posted`
    f"AND NOT {ledger.is_posted('t')}"
)

# one row about to be written (bind parameters a, k, p, e)
_ONE = ("SELECT l.kind, l.period_start, l.run_date FROM (SELECT :a AS assignment_id, "
        ":k AS kind, :p AS period_start, :e AS period_end) n, " + _live_overlap("n")
        + " ORDER BY l.period_start LIMIT 1")


def overlapping(conn: sa.Connection, stage: str) -> Overlaps:
    """The staged lines of table `stage` that would charge days a live key of their assignment
    and family already charged under another period_start: held, not posted."""
    rows = conn.execute(sa.text(_STAGED.format(t=stage)).columns(
        seq=sa.BigInteger, **_TYPES)).all()
    out: Overlaps = {}
    for seq, kind, start, run_date in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
        out.setdefault(int(seq), (str(kind), start.isoformat(), run_date.isoformat()))
    return out


def overlapped_by(conn: sa.Connection, assignment_id: str, kind: str, period_start: date,
                  period_end: date | None) -> tuple[str, str, str] | None:
    """(kind, period_start, run_date) of a live key a new row of this key would overlap."""
    if kind not in SERVICE_KINDS:
        return None
    pg = bulk.is_postgres(conn)
    stmt = sa.text(_ONE.replace(":p AS", "CAST(:p AS date) AS").replace(
        ":e AS", "CAST(:e AS date) AS") if pg else _ONE).columns(**_TYPES)
    row = conn.execute(stmt, {"a": assignment_id, "k": kind, "p": period_start.isoformat(),
                              "e": None if period_end is None else period_end.isoformat()}
                       ).first()
    return None if row is None else (str(row[0]), row[1].isoformat(), row[2].isoformat())
