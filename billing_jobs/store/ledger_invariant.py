"""The ledger explains every balance (SPEC section 9, docs/ledger.md):

    customers.balance_micros = opening_balance_micros - SUM(ledger.amount_micros
                               WHERE status = 'posted' AND customer_id = that customer)
"""

from __future__ import annotations

import sqlalchemy as sa

from billing_jobs.core.vocab import LineStatus
from billing_jobs.store.db import read_connection

_MISMATCHES = sa.text(
    "SELECT c.customer_id, c.balance_micros, "
    "c.opening_balance_micros - COALESCE(l.total, 0) AS expected "
    "FROM customers c LEFT JOIN (SELECT customer_id, SUM(amount_micros) AS total FROM ledger "
    f"WHERE status = '{LineStatus.POSTED}' GROUP BY customer_id) l "
    "ON l.customer_id = c.customer_id "
    "WHERE c.balance_micros <> c.opening_balance_micros - COALESCE(l.total, 0) "
    "ORDER BY c.customer_id"
)


def balance_mismatches(engine: sa.Engine) -> list[tuple[str, int, int]]:
    """(customer_id, balance_micros, expected_micros) for every customer breaking the invariant."""
    with read_connection(engine) as conn:
        return [(str(c), int(b), int(e)) for c, b, e in conn.execute(_MISMATCHES).all()]
