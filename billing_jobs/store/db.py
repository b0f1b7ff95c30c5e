"""Engines and migrations for SQLite (embedded default) and PostgreSQL (production).

SQLite settings (per connection):
* `busy_timeout` 60 s: a writer waits for the lock instead of failing at once.
* WAL journal: readers never block the writer and the writer never blocks readers.
* Foreign keys stay OFF: the schema declares none (see tables.py: rule-breaking input rows
  must reach the run-time validation, which rejects them with their reason).
* pysqlite's own transaction handling is disabled and SQLAlchemy emits the BEGIN itself
  (the recipe in SQLAlchemy's SQLite dialect docs). Transactions start with
  `BEGIN IMMEDIATE`, which takes the write lock at the start: concurrent posters queue on
  the busy timeout instead of failing with "database is locked" on a lock upgrade. Readers
  can ask for `BEGIN DEFERRED` with `conn.execution_options(sqlite_begin="DEFERRED")`
  (see `read_connection`), so a simulation never waits for a poster.
"""

from __future__ import annotations

import ast
import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event

from billing_jobs.core import settings
from billing_jobs.core.errors import BillingError, DatabaseError

DEFAULT_URL = "sqlite:///billing.db"
SQLITE_BUSY_TIMEOUT_S = 60
SQLITE_MIN_VERSION = (3, 35, 0)  # INSERT ... ON CONFLICT ... RETURNING
SQLITE_CACHE_KIB = 512 * 1024  # page cache per connection (upper bound, allocated on use)
ALEMBIC_DIR = Path(__file__).resolve().parents[1] / "migrations"  # inside the package: a wheel migrates too
_PG_MIGRATION_LOCK = 0x62696C6C  # pg_advisory_xact_lock key ("bill") serialising upgrades


def _normalise_url(url: str) -> str:
    # A bare postgresql:// URL would pick psycopg2, which is not installed: use psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str | None = None) -> sa.Engine:
    """Engine for `url`, else $BILLING_DB_URL, else `sqlite:///billing.db`."""
    url = _normalise_url(url or settings.db_url() or DEFAULT_URL)
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DatabaseError(f"invalid database URL {url!r}: {exc}") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            if sqlite3.sqlite_version_info < SQLITE_MIN_VERSION:
                raise DatabaseError(
                    f"SQLite {sqlite3.sqlite_version} is too old: billing needs "
                    f"{'.'.join(map(str, SQLITE_MIN_VERSION))} or newer (RETURNING, upsert)"
                )
            engine = sa.create_engine(
                parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}
            )
            _configure_sqlite(engine)
        elif parsed.get_backend_name() == "postgresql":
            engine = sa.create_engine(
                parsed,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 10},
            )
        else:
            engine = sa.create_engine(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise DatabaseError(
            f"cannot use database URL {parsed.render_as_string(hide_password=True)}: "
            f"{_first_line(exc)}"
        ) from None
    return engine


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, connection_record):  # noqa: ARG001
        # Disable pysqlite's implicit BEGIN: SQLAlchemy emits it in the "begin" event.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = OFF")
        cur.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextlib.contextmanager
def read_connection(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection for reading: one consistent snapshot, never takes the SQLite write lock."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.execution_options(sqlite_begin="DEFERRED")
        else:
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip() or type(orig).__name__
    return text.splitlines()[0].strip()


def describe(engine_or_url) -> str:
    url = engine_or_url.url if isinstance(engine_or_url, sa.Engine) else sa.make_url(engine_or_url)
    return url.render_as_string(hide_password=True)


@contextlib.contextmanager
def db_errors(engine: sa.Engine, what: str) -> Iterator[None]:
    """Turn driver failures (cannot connect, locked, refused) into a one-line DatabaseError."""
    try:
        yield
    except BillingError:
        raise
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DatabaseError) as exc:
        raise DatabaseError(f"{what} failed on {describe(engine)}: {_first_line(exc)}") from exc
    except sa.exc.DBAPIError as exc:  # pragma: no cover - other driver errors
        raise DatabaseError(f"{what} failed on {describe(engine)}: {_first_line(exc)}") from exc


def _alembic_config(connection: sa.Connection | None = None):
    from alembic.config import Config  # Alembic (~0.1 s) only when migrating, not per command

    if not (ALEMBIC_DIR / "env.py").exists():
        raise DatabaseError(f"database migrations not found at {ALEMBIC_DIR}")
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory  # Alembic only when migrating (start-up time)

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext  # Alembic only when migrating

    with db_errors(engine, "reading the schema version"), engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.execution_options(sqlite_begin="DEFERRED")
        return MigrationContext.configure(conn).get_current_revision()


def _script_head() -> str | None:
    """The head revision named by the migration files' `revision` / `down_revision`, read
    without importing Alembic (~0.1 s per process, #13); None unless that is one clear head."""
    revisions, parents = set(), set()
    for path in (ALEMBIC_DIR / "versions").glob("*.py"):
        if path.name.startswith(("__init__", ".#")):  # the files Alembic skips too
            continue
        found = {}
        try:
            body = ast.parse(path.read_text(encoding="utf-8")).body
        except (OSError, SyntaxError, ValueError):
            return None  # Alembic itself names the problem
        for node in body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target = node.target
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError):  # not a literal
                    return None
        revision = found.get("revision")
        if not isinstance(revision, str) or "down_revision" not in found:
            return None
        revisions.add(revision)
        down = found["down_revision"]
        parents.update(down if isinstance(down, (tuple, list)) else [down] if down else [])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _stored_revisions(engine: sa.Engine) -> list[str] | None:
    """The rows of alembic_version; None when they cannot be read (no table yet, no server)."""
    try:
        with read_connection(engine) as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version")
            return [row[0] for row in rows]
    except sa.exc.DBAPIError:
        return None


def upgrade(engine: sa.Engine) -> None:
    """Run the Alembic migrations to head. Idempotent; safe when several processes race."""
    head = _script_head()
    if head is not None and _stored_revisions(engine) == [head]:
        return  # at head (every command's case): one SELECT, Alembic not imported
    from alembic import command  # only when an upgrade is due (start-up time of every command)

    with db_errors(engine, "upgrading the schema"):
        if current_revision(engine) == head_revision():
            return
        with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE serialises concurrent upgrades
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            command.upgrade(_alembic_config(conn), "head")
