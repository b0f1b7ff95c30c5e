"""Everything between the database and the engine (SQLite embedded, PostgreSQL production)."""

from billing_jobs.store.db import make_engine, upgrade
from billing_jobs.store.importer import import_csv
from billing_jobs.store.load import load_inputs
from billing_jobs.store.post import post_result

__all__ = ["make_engine", "upgrade", "load_inputs", "import_csv", "post_result"]
