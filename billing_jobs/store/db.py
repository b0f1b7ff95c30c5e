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

PostgreSQL settings (per connection, #28 item 9): `lock_timeout` ($BILLING_PG_LOCK_TIMEOUT,
60 s) and `statement_timeout` ($BILLING_PG_STATEMENT_TIMEOUT, none): a statement waiting on a
lock another session holds (`LOCK TABLE ledger`) fails after the timeout with a message naming
the table, instead of blocking the run forever with its record left `running`.

Every URL in a message goes through `core.urls.redacted` (#28 item 6): no password, wherever
it sits (userinfo, an unencoded `@` in it, a query parameter); an unreadable URL is not shown.
A malformed URL (no scheme, a port that is not a number, an unknown dialect) is a usage error
(exit 2).
"""

from __future__ import annotations

import ast
import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, unquote

import sqlalchemy as sa
from sqlalchemy import event

from billing_jobs.core import settings
from billing_jobs.core.errors import BillingError, DatabaseError, UsageError
from billing_jobs.core.urls import redacted, scrub, split_authority

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


class DatabaseUrlError(UsageError, DatabaseError):
    """The database URL is malformed: a usage error (exit 2), still a DatabaseError."""


_URL_FORM = "dialect+driver://user:password@host:port/database"


def parse_url(url: str) -> sa.URL:
    """The SQLAlchemy URL of `url` (postgresql:// means psycopg 3). A password holding an
    unencoded `@` (`user:pa@ss@host`) is read up to the last `@` of the authority, as the
    operator meant it. Raises DatabaseUrlError (no password in it) when malformed."""
    text = _normalise_url(url)
    parts = split_authority(text)
    if parts is not None and parts[2] is not None and "@" in parts[2]:
        # an unencoded `@` in the password: SQLAlchemy would read it up to the first `@` and
        # the rest as the host; percent-encode it (already encoded parts stay as they are)
        scheme, user, password, tail = parts
        text = f"{scheme}://{user}:{quote(unquote(password), safe='')}@{tail}"
    try:
        parsed = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise DatabaseUrlError(f"invalid database URL {redacted(text)}: not of the form "
                               f"{_URL_FORM}") from None
    except ValueError:  # int() of the port
        raise DatabaseUrlError(f"invalid database URL {redacted(text)}: the port is not a "
                               "whole number") from None
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise DatabaseUrlError(f"invalid database URL {redacted(parsed)}: the port is not "
                               "between 1 and 65535")
    return parsed


def make_engine(url: str | None = None) -> sa.Engine:
    """Engine for `url`, else $BILLING_DB_URL, else `sqlite:///billing.db`."""
    parsed = parse_url(url or settings.db_url() or DEFAULT_URL)
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
            _configure_postgresql(engine)
        else:
            engine = sa.create_engine(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError) as exc:
        raise DatabaseUrlError(
            f"cannot use database URL {redacted(parsed)}: "
            f"{scrub(_first_line(exc), parsed.password)}"
        ) from None
    return engine


#: PostgreSQL's largest lock_timeout / statement_timeout (milliseconds, a 32-bit int)
_PG_MAX_TIMEOUT_MS = 2_147_483_647


def _configure_postgresql(engine: sa.Engine) -> None:
    lock_ms = min(settings.pg_lock_timeout_s() * 1000, _PG_MAX_TIMEOUT_MS)
    statement_ms = min(settings.pg_statement_timeout_s() * 1000, _PG_MAX_TIMEOUT_MS)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, connection_record):  # noqa: ARG001
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # session settings, outside any transaction
        try:
            with dbapi_connection.cursor() as cur:
                cur.execute(f"SET lock_timeout = {int(lock_ms)}")
                cur.execute(f"SET statement_timeout = {int(statement_ms)}")
        finally:
            dbapi_connection.autocommit = autocommit


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
    """The engine's (or a URL's) URL as it may be shown: core.urls.redacted."""
    if isinstance(engine_or_url, sa.Engine):
        return redacted(engine_or_url.url)
    return redacted(engine_or_url)


#: SQLSTATEs of a wait cut short: lock_timeout, statement_timeout (query canceled)
_LOCK_TIMEOUT, _QUERY_CANCELED = "55P03", "57014"
_TABLE_IN_SQL = re.compile(
    r'\b(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+(?:ONLY\s+)?"?([A-Za-z_][A-Za-z0-9_]*)"?', re.I)
_RELATION_IN_CONTEXT = re.compile(r'relation "([^"]+)"')


def _tables_of(exc: sa.exc.DBAPIError) -> list[str]:
    """The tables a failed statement waited on: the relation PostgreSQL names (a row lock),
    else the tables its SQL touches, in order."""
    diag = getattr(getattr(exc, "orig", None), "diag", None)
    context = (getattr(diag, "context", None) or "") if diag is not None else ""
    found = _RELATION_IN_CONTEXT.findall(context)
    if not found:
        found = _TABLE_IN_SQL.findall(str(getattr(exc, "statement", "") or ""))
    seen: list[str] = []
    for name in found:
        if name.lower() not in seen:
            seen.append(name.lower())
    return seen


_HELD_BY_OTHERS = sa.text(
    "SELECT c.relname, l.mode, l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
    "WHERE l.granted AND l.pid <> pg_backend_pid() AND c.relpersistence <> 't' "
    "AND c.relname = ANY(:names) ORDER BY c.relname, l.pid")


def _held_by_others(engine: sa.Engine, tables: list[str]) -> list[str]:
    """Of `tables`, those another session holds a lock on now ("ledger (AccessExclusiveLock,
    pid 123)"), asked on a fresh connection; [] when that cannot be told."""
    if not tables:
        return []
    try:
        with engine.connect() as conn:
            rows = conn.execute(_HELD_BY_OTHERS, {"names": tables}).all()
    except Exception:  # noqa: BLE001 - a best-effort diagnosis, never a second failure
        return []
    held: dict[str, list[str]] = {}
    for name, mode, pid in rows:
        held.setdefault(name, []).append(f"{mode}, pid {pid}")
    return [f"{name} ({'; '.join(v)})" for name, v in held.items()]


def _reason(engine: sa.Engine, exc: sa.exc.DBAPIError) -> str:
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if code == _LOCK_TIMEOUT:
        tables = _tables_of(exc)
        held = _held_by_others(engine, tables)
        where = (f"table {', '.join(held)}" if held
                 else f"table {' or '.join(t for t in tables if not t.startswith('_'))}"
                 if any(not t.startswith("_") for t in tables) else "a table")
        return (f"gave up waiting for a lock on {where} after "
                f"{settings.pg_lock_timeout_s()} s (BILLING_PG_LOCK_TIMEOUT): another session "
                "holds it (e.g. LOCK TABLE, a long transaction); nothing of this step was "
                "written, run it again when the lock is released")
    if code == _QUERY_CANCELED and "statement timeout" in _first_line(exc):
        tables = _tables_of(exc)
        where = f" on table {', '.join(tables)}" if tables else ""
        return (f"a statement{where} ran longer than {settings.pg_statement_timeout_s()} s "
                "(BILLING_PG_STATEMENT_TIMEOUT) and was cancelled; nothing of this step "
                "was written")
    return scrub(_first_line(exc), engine.url.password)


@contextlib.contextmanager
def db_errors(engine: sa.Engine, what: str) -> Iterator[None]:
    """Turn driver failures (cannot connect, locked, refused, a lock or statement timeout)
    into a one-line DatabaseError; the URL is redacted, the password never shown."""
    try:
        yield
    except BillingError:
        raise
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(f"{what} failed on {describe(engine)}: {_reason(engine, exc)}"
                            ) from exc


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
