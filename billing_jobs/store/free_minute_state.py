"""Read the free-minute state a billing date needs (docs/free_minutes.md): the counters of
the grants that can still take calls, and the recorded consumption of the calls the date
reads. Both bounded by the date, never by the length of the history:

* counters (grant_usage) of grant periods ending after the first day a post of the date can
  consume (D - 1 - LATE_CALL_DAYS);
* call_credits of the selected customers' calls from `since` (the first instant the date's
  usage read starts at): they are excluded from consumption and netted off minimum spend;
* the live grants (not withdrawn) whose period ends after that same first day: a grant of the
  current calendar overlapping one of them under another period_start is held (#17 item 2).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Sequence

import pandas as pd
import sqlalchemy as sa

from billing_jobs.calc.free_minutes import LATE_CALL_DAYS
from billing_jobs.core.frames import (CONSUMED_COLUMNS, COUNTER_COLUMNS, GRANTED_COLUMNS,
                                        frame_of_rows)
from billing_jobs.store.tables import call_credits, grant_usage, grants

_IN_CHUNK = 5000


def _in_chunks(ids: Sequence[str] | None):
    if ids is None:
        yield None
        return
    ids = list(ids)
    for i in range(0, len(ids), _IN_CHUNK):
        yield ids[i:i + _IN_CHUNK]


def _fetch(conn: sa.Connection, query) -> list[tuple]:
    """The rows as the driver returns them (plain tuples; SQLite dates and timestamps as the
    stored text): `frame_of_rows` types them column by column, where SQLAlchemy's Row objects
    and per-value result processing cost ~10 us a row (1.4M call credits: 17 s -> ~2 s)."""
    result = conn.execute(query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def read_state(conn: sa.Connection, first_date: date, since: datetime | None,
               customer_ids: Sequence[str] | None
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(counters, consumed, granted) for billing dates from `first_date` on (COUNTER_COLUMNS,
    CONSUMED_COLUMNS, GRANTED_COLUMNS). `since` None: no calls are read, so no consumption
    either."""
    lo = first_date - timedelta(days=1 + LATE_CALL_DAYS)
    g = grant_usage.c
    counters_rows: list = []
    consumed_rows: list = []
    granted_rows: list = []
    gr = grants.c
    for chunk in _in_chunks(customer_ids):
        if chunk is not None and not chunk:
            continue
        q = sa.select(g.customer_id, g.assignment_id, g.period_start, g.period_end,
                      g.seconds_granted, g.seconds_used, g.credited_micros).where(
            sa.or_(g.period_end.is_(None), g.period_end > lo))
        if chunk is not None:
            q = q.where(g.customer_id.in_(chunk))
        counters_rows += _fetch(conn, q)
        q = sa.select(gr.run_date, gr.customer_id, gr.assignment_id, gr.period_start,
                      gr.period_end, gr.destination, gr.seconds).where(
            gr.withdrawn_at.is_(None), sa.or_(gr.period_end.is_(None), gr.period_end > lo))
        if chunk is not None:
            q = q.where(gr.customer_id.in_(chunk))
        granted_rows += _fetch(conn, q)
        if since is not None:
            c = call_credits.c
            q = sa.select(c.call_id, c.customer_id, c.assignment_id, c.period_start,
                          c.start_time, c.consumed_on, c.seconds, c.covered_micros,
                          c.late).where(c.start_time >= since)
            if chunk is not None:
                q = q.where(c.customer_id.in_(chunk))
            consumed_rows += _fetch(conn, q)
    return (frame_of_rows(counters_rows, COUNTER_COLUMNS),
            frame_of_rows(consumed_rows, CONSUMED_COLUMNS),
            frame_of_rows(granted_rows, GRANTED_COLUMNS))
