"""`billing-jobs demo` never mixes its sample into a database it did not fill (issue #11).

The demo's sample is deterministic (fixed seed), so the rows the demo creates are known by
id. A database holding any other customer, package or assignment, or any ledger row (the
demo only simulates, it never posts), holds rows the demo did not create.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from billing_jobs.store.db import read_connection
from billing_jobs.store.tables import assignments, customers, ledger, packages

_ENTITIES = ((customers, "customer_id"), (packages, "package_id"),
             (assignments, "assignment_id"))


def foreign_rows(engine: sa.Engine, sample: dict[str, pd.DataFrame]) -> list[str]:
    """What the database holds that the demo's `sample` frames did not create, in words."""
    found = []
    with read_connection(engine) as conn:
        for table, key in _ENTITIES:
            ids = set(conn.execute(sa.select(table.c[key])).scalars())
            other = ids - set(sample[table.name][key].astype(str))
            if other:
                shown = ", ".join(sorted(other)[:3])
                found.append(f"{len(other)} {table.name} not from the demo (e.g. {shown})")
        posted = conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar_one()
        if posted:
            found.append(f"{posted} ledger row(s) (the demo never posts)")
    return found
