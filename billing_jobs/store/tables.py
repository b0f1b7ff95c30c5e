"""The database schema (SQLAlchemy 2 Core). The migrations in `billing_jobs/migrations/versions` create it.

Conventions
-----------
* **Money is BIGINT micro-units**: 1 unit of currency = 1_000_000 micros, stored under the
  SPEC's column names (balance, cost, retail, setup_cost, setup_retail, charge; ledger
  unit_price, amount, cost). Integers are exact on SQLite and PostgreSQL alike and load
  straight into int64 columns; `billing_jobs.engine.money` converts to and from decimal text.
* Dates are DATE; timestamps are timezone-aware TIMESTAMP holding UTC. (SQLite has no
  native types: DATE is 'YYYY-MM-DD' text, TIMESTAMP is 'YYYY-MM-DD HH:MM:SS.ffffff' text in
  UTC, the format SQLAlchemy uses, so text order is time order.)
* The input tables (customers, packages, assignments, usage) have no foreign keys and no
  business-rule CHECKs on purpose: a row that breaks a rule but reached the database some
  other way must be *rejected at run time with its reason* (SPEC section 6), not make the
  whole run unreadable. The output tables (ledger, grants) carry CHECKs for their invariants.
* Exactly-once posting is enforced by UNIQUE constraints: ledger (assignment_id, kind,
  period_start), grants (assignment_id, period_start).
"""

from __future__ import annotations

import sqlalchemy as sa

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

#: Money: integer micro-units (1e-6 of the currency unit).
Money = sa.BigInteger
#: Timestamps: timezone-aware, always UTC.
Timestamp = sa.DateTime(timezone=True)
#: Auto-increment id: BIGINT on PostgreSQL, INTEGER PRIMARY KEY (rowid alias) on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

customers = sa.Table(
    "customers", metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("balance", Money, nullable=False, server_default="0",
              comment="credit left, micro-units (1e-6); may go negative"),
)

packages = sa.Table(
    "packages", metadata,
    sa.Column("package_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("cost", Money, nullable=False, comment="micro-units"),
    sa.Column("retail", Money, nullable=False, comment="micro-units"),
    sa.Column("setup_cost", Money, nullable=False, server_default="0", comment="micro-units"),
    sa.Column("setup_retail", Money, nullable=False, server_default="0", comment="micro-units"),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("frequency", sa.Text, nullable=False),
    sa.Column("frequency_match", sa.Text, nullable=True),
    sa.Column("free_minutes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("destination", sa.Text, nullable=True),
    sa.Column("minimum_spend", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("minimum_days", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("prorate", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
)

assignments = sa.Table(
    "assignments", metadata,
    sa.Column("assignment_id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("package_id", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("start_date", sa.Date, nullable=False),
    sa.Column("end_date", sa.Date, nullable=True, comment="inclusive; NULL = open"),
    sa.Column("auto_decrement", sa.Boolean, nullable=False),
    sa.Column("free_minutes", sa.BigInteger, nullable=True,
              comment="total minutes per period overriding package minutes x quantity"),
    sa.Index(None, "customer_id"),
)

usage = sa.Table(
    "usage", metadata,
    sa.Column("call_id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("start_time", Timestamp, nullable=False),
    sa.Column("destination", sa.Text, nullable=False, server_default=""),
    sa.Column("duration_s", sa.BigInteger, nullable=False),
    sa.Column("charge", Money, nullable=False, comment="micro-units"),
    sa.Index(None, "customer_id", "start_time"),
)

ledger = sa.Table(
    "ledger", metadata,
    sa.Column("ledger_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("run_date", sa.Date, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("assignment_id", sa.Text, nullable=False),
    sa.Column("package_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=True, comment="exclusive; NULL = open"),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("unit_price", Money, nullable=False, comment="micro-units"),
    sa.Column("amount", Money, nullable=False, comment="micro-units, debit > 0"),
    sa.Column("cost", Money, nullable=False, comment="micro-units"),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("auto_decrement", sa.Boolean, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("posted_at", Timestamp, nullable=False),
    sa.UniqueConstraint("assignment_id", "kind", "period_start"),
    sa.CheckConstraint("quantity >= 1", name="quantity"),
    sa.CheckConstraint("unit_price >= 0 AND amount >= 0 AND cost >= 0", name="money"),
    sa.CheckConstraint("kind IN ('setup', 'recurring', 'prorated', 'minimum_spend')", name="kind"),
    sa.CheckConstraint("status IN ('posted', 'invoiced')", name="status"),
    sa.CheckConstraint("period_end IS NULL OR period_end > period_start", name="period"),
    sa.Index(None, "customer_id", "run_date"),
)

grants = sa.Table(
    "grants", metadata,
    sa.Column("grant_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("run_date", sa.Date, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("assignment_id", sa.Text, nullable=False),
    sa.Column("package_id", sa.Text, nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=True, comment="exclusive; NULL = open"),
    sa.Column("destination", sa.Text, nullable=False, server_default=""),
    sa.Column("seconds", sa.BigInteger, nullable=False),
    sa.Column("granted_at", Timestamp, nullable=False),
    sa.UniqueConstraint("assignment_id", "period_start"),
    sa.CheckConstraint("seconds >= 0", name="seconds"),
    sa.CheckConstraint("period_end IS NULL OR period_end > period_start", name="period"),
    sa.Index(None, "customer_id", "period_start"),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.Text, primary_key=True, comment="uuid4 text"),
    sa.Column("run_date", sa.Date, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("customer_filter", sa.Text, nullable=True,
              comment="JSON list of customer ids; NULL = all customers"),
    sa.Column("started_by", sa.Text, nullable=False, server_default=""),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("counts", sa.Text, nullable=True, comment="JSON object"),
    sa.Column("totals", sa.Text, nullable=True, comment="JSON object"),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("code_version", sa.Text, nullable=True),
    sa.CheckConstraint("mode IN ('simulate', 'post')", name="mode"),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="status"),
    sa.Index(None, "run_date", "mode", "status"),
)

INPUT_TABLES = {"customers": customers, "packages": packages,
                "assignments": assignments, "usage": usage}
