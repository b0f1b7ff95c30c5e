"""Posting across processes: concurrent posters, and SIGKILL at every stage of a batch.

Each child is a separate process running tests/store/poster_script.post_once, started by a
multiprocessing *forkserver* that has pandas, pyarrow and SQLAlchemy imported already (a
spawned interpreter would spend seconds importing them for every child). The children
open their own database connections.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import time
import uuid
from pathlib import Path

import pytest

from billing_jobs.store.post import post_result
from billing_jobs.store.db import current_revision, head_revision

from tests.conftest import fresh_postgres_database
from tests.store.poster_script import post_once, upgrade_once
from tests.store.helpers import (
    INITIAL_BALANCE,
    balances,
    customer_ids,
    dump,
    expected_debits,
    fresh_engine,
    per_customer_counts,
    seed_customers,
    synthetic_result,
)

_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["billing_jobs.store", "tests.store.helpers",
                             "tests.store.poster_script"])


def _child(db_url: str, n: int, batch: int, out: Path, go: Path | None = None,
           crash_at: str | None = None):
    proc = _CTX.Process(target=post_once, args=(db_url, n, batch, str(out),
                                                str(go) if go else None, crash_at))
    proc.start()
    return proc


def _other_database(db_url: str, request, tmp_path: Path) -> str:
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'reference.db'}"
    return fresh_postgres_database(request.getfixturevalue("pg_admin_url"))


# ----------------------------------------------------------------------------- concurrency

def test_three_processes_posting_at_once_post_each_key_once(db_url, tmp_path):
    n, batch = 30, 4
    engine = fresh_engine(db_url)
    seed_customers(engine, n)
    go = tmp_path / "go"
    outs = [tmp_path / f"out{i}.json" for i in range(3)]
    children = [_child(db_url, n, batch, out, go) for out in outs]
    deadline = time.monotonic() + 90
    while not all(Path(str(o) + ".ready").exists() for o in outs):
        assert time.monotonic() < deadline, "children did not start"
        assert all(c.is_alive() for c in children), [c.exitcode for c in children]
        time.sleep(0.01)
    go.write_text("go")
    for c in children:
        c.join(timeout=120)
        assert c.exitcode == 0, f"poster failed with exit code {c.exitcode}"

    result = synthetic_result(n)
    # in the database: every key exactly once, every balance debited exactly once
    ledger = dump(engine)["ledger"]
    assert len(ledger) == len(result.due_lines)
    assert balances(engine) == {c: INITIAL_BALANCE - d for c, d in expected_debits(result).items()}
    assert len(dump(engine)["grants"]) == len(result.grants)
    # in the reports: each key written by exactly one process, already_posted in the others
    reports = [json.loads(o.read_text()) for o in outs]
    for kind, width in (("lines", 3), ("grants", 2)):
        writers: dict[tuple, list[str]] = {}
        for rep in reports:
            for row in rep[kind]:
                writers.setdefault(tuple(row[:width]), []).append(row[width])
        for key, statuses in writers.items():
            assert len(statuses) == 3
            assert sorted(statuses).count("already_posted") == 2, (key, statuses)
    engine.dispose()


def test_concurrent_upgrades_of_a_fresh_database(db_url, tmp_path):
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(3)]
    children = [_CTX.Process(target=upgrade_once, args=(db_url, str(r), str(go))) for r in ready]
    for c in children:
        c.start()
    deadline = time.monotonic() + 90
    while not all(r.exists() for r in ready):
        assert time.monotonic() < deadline and all(c.is_alive() for c in children)
        time.sleep(0.01)
    go.write_text("go")
    for c in children:
        c.join(timeout=120)
        assert c.exitcode == 0, f"upgrade failed in a child (exit code {c.exitcode})"
    engine = fresh_engine(db_url)  # upgrade once more: already at head
    assert current_revision(engine) == head_revision()
    engine.dispose()


# ----------------------------------------------------------------------------- crashes

N_CRASH, BATCH = 10, 3  # batches: C0001-3, C0004-6, C0007-9, C0010


def _batch_customers(upto: int) -> set[str]:
    return set(customer_ids(N_CRASH)[: upto * BATCH])


@pytest.mark.parametrize("point,batch", [
    ("before_commit", 1), ("mid_batch", 1), ("after_commit", 1),
    ("before_commit", 2), ("mid_batch", 2), ("after_commit", 2),
])
def test_sigkill_then_rerun_equals_one_clean_run(db_url, tmp_path, request, point, batch):
    result = synthetic_result(N_CRASH)
    debits = expected_debits(result)
    lines_per_customer = result.due_lines.groupby("customer_id").size().to_dict()
    grants_per_customer = result.grants.groupby("customer_id").size().to_dict()

    engine = fresh_engine(db_url)
    seed_customers(engine, N_CRASH)
    child = _child(db_url, N_CRASH, BATCH, tmp_path / "out.json", crash_at=f"{point}:{batch}")
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL, f"child exit code {child.exitcode}"
    assert not (tmp_path / "out.json").exists()

    # after the crash: whole customers posted (the committed batches), the rest untouched
    posted = _batch_customers(batch if point == "after_commit" else batch - 1)
    ledger_counts = per_customer_counts(engine, "ledger")
    grant_counts = per_customer_counts(engine, "grants")
    bal = balances(engine)
    for c in customer_ids(N_CRASH):
        if c in posted:
            assert ledger_counts.get(c) == lines_per_customer[c], c
            assert grant_counts.get(c, 0) == grants_per_customer.get(c, 0), c
            assert bal[c] == INITIAL_BALANCE - debits[c], c
        else:
            assert c not in ledger_counts and c not in grant_counts, f"{c} half posted"
            assert bal[c] == INITIAL_BALANCE, c

    # the next run completes the rest
    rerun = post_result(engine, result, simulate=False, run_id=str(uuid.uuid4()),
                        batch_customers=BATCH)
    again = rerun.due_lines["customer_id"].isin(posted)
    assert (rerun.due_lines.loc[again, "status"] == "already_posted").all()
    assert (rerun.due_lines.loc[~again, "status"] != "already_posted").all()

    # ... and ends exactly where one clean run ends
    reference = fresh_engine(_other_database(db_url, request, tmp_path))
    seed_customers(reference, N_CRASH)
    post_result(reference, result, simulate=False, run_id=str(uuid.uuid4()), batch_customers=BATCH)
    assert dump(engine, stable=True) == dump(reference, stable=True)
    engine.dispose()
    reference.dispose()
