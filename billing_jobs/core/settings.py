"""Every setting read from the environment, in one place (#15).

Each function reads its variable when called (an entry point reads what it needs once per run:
the CLI when it parses a command, an Airflow task when it starts), gives its default, and turns
a malformed value into a one-line message naming the variable. docs/airflow.md lists them;
tests/e2e/test_compose.py checks docker-compose.yml passes each to the task containers.
Fault injection (`BILLING_CRASH_AT`) lives in billing_jobs/core/faults.py.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from billing_jobs.core import booleans
from billing_jobs.core.errors import UsageError

DEFAULT_TZ = "UTC"
DEFAULT_REPORT_DIR = "reports"
DEFAULT_SHARDS = 4
DEFAULT_SHARD_MIN_ASSIGNMENTS = 2_000_000
DEFAULT_GX_FAST_ROWS = 2_000


def _int(name: str, default: int, minimum: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return max(minimum, int(text))
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a whole number") from None


def db_url() -> str | None:
    """$BILLING_DB_URL, else None (the store's default database)."""
    return os.environ.get("BILLING_DB_URL") or None


#: PostgreSQL: how long a statement waits for a lock before the run fails naming it (#28 item 9)
DEFAULT_PG_LOCK_TIMEOUT_S = 60
#: PostgreSQL: the longest a statement may run (0 = no limit: a large night's post is long)
DEFAULT_PG_STATEMENT_TIMEOUT_S = 0


def _seconds(name: str, default: int) -> int:
    """A whole number of seconds >= 0 (0 = no limit); anything else names the variable."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isascii() or not text.isdigit():
        raise UsageError(f"{name}={text!r} is not a whole number of seconds (0 = no limit)")
    return int(text)


def pg_lock_timeout_s() -> int:
    """$BILLING_PG_LOCK_TIMEOUT: seconds a PostgreSQL statement waits for a lock held by
    another session before failing with a message naming the table (default 60; 0 = wait
    forever)."""
    return _seconds("BILLING_PG_LOCK_TIMEOUT", DEFAULT_PG_LOCK_TIMEOUT_S)


def pg_statement_timeout_s() -> int:
    """$BILLING_PG_STATEMENT_TIMEOUT: seconds a PostgreSQL statement may run (default 0 = no
    limit)."""
    return _seconds("BILLING_PG_STATEMENT_TIMEOUT", DEFAULT_PG_STATEMENT_TIMEOUT_S)


def tz() -> str | None:
    """$BILLING_TZ as set (None when unset; the caller checks it and names it when wrong)."""
    return os.environ.get("BILLING_TZ")


def tz_or_default() -> str:
    return os.environ.get("BILLING_TZ", DEFAULT_TZ)


def report_dir() -> Path:
    """$BILLING_REPORT_DIR (default ./reports), as given."""
    return Path(os.environ.get("BILLING_REPORT_DIR", DEFAULT_REPORT_DIR))


def debug() -> bool:
    """$BILLING_DEBUG set: the CLI prints the traceback behind an error message too."""
    return bool(os.environ.get("BILLING_DEBUG"))


def gx_fast_rows() -> int:
    """$BILLING_GX_FAST_ROWS: frames up to this many rows are checked by the pandas path of the
    same rules (default 2,000; 0 = always Great Expectations). A malformed value: the default."""
    try:
        return _int("BILLING_GX_FAST_ROWS", DEFAULT_GX_FAST_ROWS, 0)
    except UsageError:
        return DEFAULT_GX_FAST_ROWS


def shards() -> int:
    """$BILLING_SHARDS (at least 1; default 4)."""
    return _int("BILLING_SHARDS", DEFAULT_SHARDS, 1)


def shard_min_assignments() -> int:
    """$BILLING_SHARD_MIN_ASSIGNMENTS: a run with fewer assignments is not split (default
    2000000)."""
    return _int("BILLING_SHARD_MIN_ASSIGNMENTS", DEFAULT_SHARD_MIN_ASSIGNMENTS, 0)


def handoff_url() -> str | None:
    """$BILLING_HANDOFF_URL (e.g. ``s3://bucket/prefix``), else None: hand-offs stay local."""
    return os.environ.get("BILLING_HANDOFF_URL", "").strip() or None


def handoff_conn_id() -> str | None:
    """$BILLING_HANDOFF_CONN_ID: the Airflow connection holding the hand-off store's credentials."""
    return os.environ.get("BILLING_HANDOFF_CONN_ID") or None


def worker_name() -> str:
    """$BILLING_WORKER_NAME (tests), else host:pid: who holds a run's claim."""
    return os.environ.get("BILLING_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def os_user() -> str | None:
    """$USER: who started a CLI run (else the caller asks the OS)."""
    return os.environ.get("USER") or None


# -- the DAG's deployment settings --------------------------------------------------------


def schedule() -> str:
    return os.environ.get("BILLING_SCHEDULE", "30 2 * * *")


def start_date() -> str:
    return os.environ.get("BILLING_START_DATE", "2026-01-01")


def db_retries() -> int:
    return int(os.environ.get("BILLING_DB_RETRIES", "4"))


def db_retry_delay_s() -> float:
    return float(os.environ.get("BILLING_DB_RETRY_DELAY_S", "30"))


def simulate_default() -> bool:
    """Scheduled runs take the params' defaults: production sets BILLING_SIMULATE_DEFAULT=false
    so that the nightly run posts; a manual run can always choose. Unset or empty: true; any
    other value than the words of core/booleans.py (true/false/1/0/yes/no) is refused."""
    text = os.environ.get("BILLING_SIMULATE_DEFAULT", "").strip()
    if not text:
        return True
    value = booleans.parse_bool(text)
    if value is None:
        raise UsageError(f"BILLING_SIMULATE_DEFAULT={text!r} is not true or false "
                         f"({booleans.SHOWN})")
    return value
