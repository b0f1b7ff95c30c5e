"""The throw-away PostgreSQL server now lives in bench/pg_server.py (bench must not import
tests/); re-exported here for the test session."""

from bench.pg_server import PostgresServer, PostgresUnavailable  # noqa: F401
