"""Shared fixtures: a real PostgreSQL server for the session, and `db_url` over both databases.

Any test that takes `db_url` runs twice: once on a fresh SQLite file, once on a fresh
PostgreSQL database. If PostgreSQL cannot be started the PostgreSQL half FAILS with the
reason (never skips).
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from tests.pg_server import PostgresServer, PostgresUnavailable

_PG: dict = {}


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of the session's PostgreSQL server (started on first use)."""
    if os.environ.get("BILLING_TEST_PG_URL"):
        return os.environ["BILLING_TEST_PG_URL"]
    if "error" in _PG:
        pytest.fail(f"PostgreSQL could not be started: {_PG['error']}", pytrace=False)
    if "server" not in _PG:
        try:
            _PG["server"] = PostgresServer().start()
        except PostgresUnavailable as exc:
            _PG["error"] = str(exc)
            pytest.fail(f"PostgreSQL could not be started: {exc}", pytrace=False)
    return _PG["server"].url


def pytest_sessionfinish(session, exitstatus):
    server = _PG.pop("server", None)
    if server is not None:
        server.stop()


def fresh_postgres_database(admin_url: str) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    eng = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database URL on each backend (schema not yet created)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'billing.db'}"
    admin = request.getfixturevalue("pg_admin_url")
    return fresh_postgres_database(admin)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say plainly how many tests ran on each database (the PostgreSQL half never skips)."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for rep in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(rep, "nodeid", "")
            for backend in ("sqlite", "postgresql"):
                if f"[{backend}" in nodeid or f"-{backend}]" in nodeid or f"-{backend}-" in nodeid:
                    counts.setdefault(backend, {}).setdefault(outcome, 0)
                    counts[backend][outcome] += 1
    for backend in ("sqlite", "postgresql"):
        parts = ", ".join(f"{n} {o}" for o, n in sorted(counts.get(backend, {}).items())) or "none"
        terminalreporter.write_line(f"database tests on {backend}: {parts}")
