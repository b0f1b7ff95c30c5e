"""Alembic environment for billing_jobs.

Configured from code (`billing_jobs.store.db.upgrade`): there is no alembic.ini at runtime.
The caller passes an open SQLAlchemy Connection, already inside a transaction, in
`config.attributes["connection"]`; the migrations run in that transaction and the caller
commits. Offline mode (`alembic upgrade --sql`) is supported for reviewing the DDL.
"""

from __future__ import annotations

from alembic import context

from billing_jobs.store.tables import metadata

config = context.config


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # plain `alembic` command line use
        from billing_jobs.store.db import make_engine

        engine = make_engine(config.get_main_option("sqlalchemy.url") or None)
        with engine.begin() as conn:
            _run(conn)
        engine.dispose()
        return
    _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
