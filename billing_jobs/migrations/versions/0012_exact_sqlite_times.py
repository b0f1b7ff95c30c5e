"""Exact stored times on SQLite (#28 item 10).

0005's guard checked `usage.start_time` against a GLOB pattern that lets impossible times in:
month 13-19, day 32-39 (and 30 February), hour 24-29 and any trailing text. A call stored at
`2027-13-01 10:00:00` was accepted, then never read: the loader selects calls by text range and
no billing date's window holds it. PostgreSQL's timestamptz already refuses such values.

On SQLite this migration replaces the guard triggers of `usage` with an exact check of the
stored form, `YYYY-MM-DD HH:MM:SS` (UTC) optionally followed by `.` and 1 to 6 digits:

* the first 19 characters must survive a round trip through SQLite's calendar unchanged,
  `datetime(t, '+0 days') = t` (the modifier makes SQLite normalise: 30 February becomes
  2 March, 24:00:00 the next day, month 13 NULL; a `T` separator becomes a space);
* what follows is nothing, or `.` and 1-6 digits; anything else (an offset, text) is refused.

It refuses to upgrade a database already holding such a time, naming the call (as 0005 does),
and keeps 0005's other checks of `usage` as they were.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_jobs.migrations.sqlite_rebuild import replace_guards

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_WHAT = "a timestamp YYYY-MM-DD HH:MM:SS[.ffffff] (UTC) that exists"

#: SQL condition on {c} being a bad stored time (NULL-safe: IS NOT)
BAD_TIME = (
    "typeof({c}) <> 'text' "
    "OR datetime(substr({c}, 1, 19), '+0 days') IS NOT substr({c}, 1, 19) "
    "OR NOT (length({c}) = 19 OR (length({c}) BETWEEN 21 AND 26 AND substr({c}, 20, 1) = '.' "
    "AND substr({c}, 21) NOT GLOB '*[^0-9]*'))"
)

#: the usage rules of 0005, start_time's made exact
USAGE_RULES = [
    ("charge_micros", "an integer number of micro-units", "typeof({c}) <> 'integer'"),
    ("duration_s", "a whole number of seconds", "typeof({c}) <> 'integer'"),
    ("start_time", _WHAT, BAD_TIME),
]
#: 0005's, for the downgrade
_OLD_TIME_GLOB = ("[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:"
                  "[0-6][0-9]*")
_OLD_USAGE_RULES = USAGE_RULES[:2] + [
    ("start_time", "a timestamp YYYY-MM-DD HH:MM:SS (UTC)",
     "typeof({c}) <> 'text' OR {c} NOT GLOB '" + _OLD_TIME_GLOB + "'"),
]


def _q(column: str) -> str:
    return '"' + column + '"'


def _existing_problems(conn) -> list[str]:
    bad = BAD_TIME.format(c=_q("start_time"))
    rows = conn.execute(sa.text(
        f'SELECT call_id, quote(start_time) FROM usage WHERE {bad} LIMIT 10')).all()
    return [f"usage call_id={k!r}: start_time = {v} must be {_WHAT}" for k, v in rows]


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return  # timestamptz refuses impossible times already
    problems = _existing_problems(conn)
    if problems:
        raise RuntimeError(
            "the database holds call times that do not exist (written by another tool): "
            + "; ".join(problems) + " - fix or delete these rows, then upgrade again")
    replace_guards("usage", USAGE_RULES)


def downgrade() -> None:  # pragma: no cover
    if op.get_bind().dialect.name == "sqlite":
        replace_guards("usage", _OLD_USAGE_RULES)
