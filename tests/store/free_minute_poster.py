"""Child process for tests/store/test_free_minutes.py: one whole run (load, compute, gate,
post) of a billing date, as the CLI does it. Started by a forkserver that has the pipeline
imported already; with `crash_at` (BILLING_CRASH_AT, e.g. 'before_commit:1') it SIGKILLs
itself at that point of the post."""

from __future__ import annotations

import json
import os
import time
from datetime import date
from pathlib import Path

from billing_jobs.run.local import run_billing
from billing_jobs.run.request import RunRequest
from billing_jobs.store.db import make_engine


def post_night(url: str, run_date: str, out: str, go: str | None = None,
               crash_at: str | None = None) -> None:
    if crash_at:
        os.environ["BILLING_CRASH_AT"] = crash_at
    else:
        os.environ.pop("BILLING_CRASH_AT", None)
    engine = make_engine(url)
    if go is not None:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").all()
        Path(out + ".ready").write_text("ready")
        deadline = time.monotonic() + 60
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.002)
    req = RunRequest(run_date=date.fromisoformat(run_date), simulate=False,
                     out_dir=Path(out + ".report"), started_by="test")
    outcome = run_billing(engine, req)
    lines = outcome.result.due_lines
    Path(out).write_text(json.dumps({
        "status": outcome.status, "message": outcome.message,
        "credits": [[a, int(m), s] for a, k, m, s in zip(
            lines["assignment_id"], lines["kind"], lines["amount"], lines["status"])
            if k == "free_minutes_credit"],
    }))
    engine.dispose()
