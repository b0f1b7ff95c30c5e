"""Child process for the store tests: post the synthetic result once.

`post_once` runs in a child started by multiprocessing's *forkserver* (see
test_post_processes.py): the server imports pandas/pyarrow/SQLAlchemy once, and each child is
a fresh fork of it, so a child costs milliseconds instead of seconds of imports, and a
SIGKILL kills a real, separate process. It can also be run by hand:

    python -m tests.store.poster_script DB_URL N_CUSTOMERS BATCH OUT_JSON [GO_FILE] [CRASH_AT]
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

from billing_jobs.store.db import make_engine, upgrade

from billing_jobs.store.post import post_result
from tests.store.helpers import synthetic_result


def post_once(url: str, n: int, batch: int, out: str, go: str | None = None,
              crash_at: str | None = None) -> None:
    """Post synthetic_result(n) in batches of `batch` customers and write the statuses to
    `out` (JSON). With `go`, write `out`.ready and wait for the file `go` before posting.
    With `crash_at` (e.g. 'mid_batch:2'), SIGKILL at that point (BILLING_CRASH_AT)."""
    if crash_at:
        os.environ["BILLING_CRASH_AT"] = crash_at
    else:
        os.environ.pop("BILLING_CRASH_AT", None)
    engine = make_engine(url)
    result = synthetic_result(n)
    if go is not None:
        with engine.connect() as conn:  # connected before the start signal
            conn.exec_driver_sql("SELECT 1").all()
        Path(out + ".ready").write_text("ready")
        deadline = time.monotonic() + 60
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.002)
    settled = post_result(engine, result, simulate=False, run_id=str(uuid.uuid4()),
                          batch_customers=batch)
    lines = settled.due_lines
    Path(out).write_text(json.dumps({
        "lines": [[a, k, str(p.date()), s] for a, k, p, s in zip(
            lines["assignment_id"], lines["kind"], lines["period_start"], lines["status"])],
        "grants": [[a, str(p.date()), s] for a, p, s in zip(
            settled.grants["assignment_id"], settled.grants["period_start"],
            settled.grants["status"])],
    }))
    engine.dispose()


def upgrade_once(url: str, ready: str, go: str) -> None:
    """Wait for the file `go`, then run the migrations (several children race)."""
    engine = make_engine(url)
    Path(ready).write_text("ready")
    deadline = time.monotonic() + 60
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    upgrade(engine)
    engine.dispose()


if __name__ == "__main__":
    url, n, batch, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    go = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
    post_once(url, n, batch, out, go, sys.argv[6] if len(sys.argv) > 6 else None)
