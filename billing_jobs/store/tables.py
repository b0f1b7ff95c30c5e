"""The database schema (SQLAlchemy 2 Core). The migrations in `billing_jobs/migrations/versions` create it.

Conventions
-----------
* **Money is BIGINT micro-units**: 1 unit of currency = 1_000_000 micros, and every money
  column says so in its name (`balance_micros`, `charge_micros`, ...): the SPEC's name plus
  `_micros` (see `STORED_NAMES`). Dataframes and CSV files keep the SPEC's names; the loader,
  importer and poster translate with `stored_name`. Integers are exact on SQLite and PostgreSQL
  alike; `billing_jobs.core.money` converts to and from decimal text.
* Dates are DATE; timestamps are timezone-aware TIMESTAMP holding UTC. (SQLite has no
  native types: DATE is 'YYYY-MM-DD' text, TIMESTAMP is 'YYYY-MM-DD HH:MM:SS.ffffff' text in
  UTC, the format SQLAlchemy uses, so text order is time order.)
* The input tables (customers, packages, assignments, usage) have no foreign keys and no
  business-rule CHECKs on purpose: a row that breaks a rule but reached the database some
  other way must be *rejected at run time with its reason* (SPEC section 6), not make the
  whole run unreadable. The output tables (ledger, grants) carry CHECKs for their invariants.
* Exactly-once posting is enforced by UNIQUE constraints: ledger (assignment_id, kind,
  period_start, revision) - revision 0 is the original line of a posting key, later revisions
  are corrections, reversals and re-posts (docs/ledger.md) - and grants (assignment_id,
  period_start).
* The ledger explains every balance: balance_micros = opening_balance_micros - the sum of the
  customer's ledger rows with status 'posted' (debits > 0, credits < 0).
"""

from __future__ import annotations

import sqlalchemy as sa

from billing_jobs.core.vocab import (CREDIT_KINDS, GRANT_KEY, LEDGER_KINDS, NEW_STATUSES,
                                     POSTING_KEY, LedgerEntry, RunMode, RunStatus)

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

#: The money columns as stored: the SPEC's (and dataframes') name + "_micros".
STORED_NAMES = {name: f"{name}_micros" for name in (
    "balance", "opening_balance", "cost", "retail", "setup_cost", "setup_retail", "charge",
    "unit_price", "amount")}


def stored_name(column: str) -> str:
    """The database column holding the dataframe/CSV column `column`."""
    return STORED_NAMES.get(column, column)


def _in(values) -> str:
    """The SQL list of a check constraint: 'a', 'b', ..."""
    return ", ".join(f"'{v}'" for v in values)


#: Timestamps: timezone-aware, always UTC.
Timestamp = sa.DateTime(timezone=True)
#: Auto-increment id: BIGINT on PostgreSQL, INTEGER PRIMARY KEY (rowid alias) on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

customers = sa.Table(
    "customers", metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("balance_micros", Money, nullable=False, server_default="0",
              comment="credit left, micro-units (1e-6); may go negative"),
    sa.Column("opening_balance_micros", Money, nullable=False, server_default="0",
              comment="balance at first import, micro-units; balance = this - posted ledger"),
    sa.Column("imported_balance_micros", Money, nullable=True,
              comment="balance value the customer's last import set, micro-units (NULL: the "
                      "opening balance); a re-import is compared with this, not with the balance"),
)

packages = sa.Table(
    "packages", metadata,
    sa.Column("package_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("cost_micros", Money, nullable=False, comment="micro-units"),
    sa.Column("retail_micros", Money, nullable=False, comment="micro-units"),
    sa.Column("setup_cost_micros", Money, nullable=False, server_default="0", comment="micro-units"),
    sa.Column("setup_retail_micros", Money, nullable=False, server_default="0", comment="micro-units"),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("frequency", sa.Text, nullable=False),
    sa.Column("frequency_match", sa.Text, nullable=True),
    sa.Column("free_minutes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("destination", sa.Text, nullable=True),
    sa.Column("minimum_spend", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("minimum_days", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("prorate", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("free_minutes_mode", sa.Text, nullable=True,
              comment="'credit' (NULL/empty: free minutes credit the bill) or 'report'"),
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

#: Versions of a package's money terms, each in force from a date (SPEC 10). The packages row
#: holds the terms in force before the first version. Append-only once posted lines were
#: priced with a version (migration 0010's triggers).
package_versions = sa.Table(
    "package_versions", metadata,
    sa.Column("package_id", sa.Text, primary_key=True),
    sa.Column("effective_from", sa.Date, primary_key=True),
    sa.Column("cost_micros", Money, nullable=False, comment="micro-units"),
    sa.Column("retail_micros", Money, nullable=False, comment="micro-units"),
    sa.Column("setup_cost_micros", Money, nullable=False, comment="micro-units"),
    sa.Column("setup_retail_micros", Money, nullable=False, comment="micro-units"),
    sa.Column("free_minutes", sa.BigInteger, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.Column("recorded_by", sa.Text, nullable=False, comment="who: user and host"),
    sa.Column("source", sa.Text, nullable=False, comment="what: the file or the command"),
)

#: Changes of an assignment from a date (SPEC 10): each row sets the fields it names (NULL:
#: unchanged) from effective_from on; `cancel` ends the assignment from that date, `void`
#: withdraws it from its start. Rows are events: never updated or deleted (migration 0010).
assignment_changes = sa.Table(
    "assignment_changes", metadata,
    sa.Column("change_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("assignment_id", sa.Text, nullable=False),
    sa.Column("effective_from", sa.Date, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=True),
    sa.Column("package_id", sa.Text, nullable=True),
    sa.Column("free_minutes", sa.BigInteger, nullable=True),
    sa.Column("customer_id", sa.Text, nullable=True),
    sa.Column("cancel", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("void", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.Column("recorded_by", sa.Text, nullable=False, comment="who: user and host"),
    sa.Column("source", sa.Text, nullable=False, comment="what: the file or the command"),
    sa.Column("idempotency_key", sa.Text, nullable=False,
              comment="a retried command or re-imported file records nothing twice"),
    sa.UniqueConstraint("idempotency_key"),
    sa.CheckConstraint("quantity IS NULL OR quantity >= 1", name="quantity"),
    sa.CheckConstraint("free_minutes IS NULL OR free_minutes >= 0", name="free_minutes"),
    sa.Index(None, "assignment_id", "effective_from"),
)

usage = sa.Table(
    "usage", metadata,
    sa.Column("call_id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("start_time", Timestamp, nullable=False),
    sa.Column("destination", sa.Text, nullable=False, server_default=""),
    sa.Column("duration_s", sa.BigInteger, nullable=False),
    sa.Column("charge_micros", Money, nullable=False, comment="micro-units"),
    sa.Index(None, "customer_id", "start_time"),
)

ledger = sa.Table(
    "ledger", metadata,
    sa.Column("ledger_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("run_date", sa.Date, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("assignment_id", sa.Text, nullable=True, comment="NULL: customer-level adjustment"),
    sa.Column("package_id", sa.Text, nullable=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=True, comment="exclusive; NULL = open"),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("unit_price_micros", Money, nullable=False, comment="micro-units"),
    sa.Column("amount_micros", Money, nullable=False, comment="micro-units, debit > 0, credit < 0"),
    sa.Column("cost_micros", Money, nullable=False, comment="micro-units"),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("auto_decrement", sa.Boolean, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("posted_at", Timestamp, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False, server_default="0",
              comment="0 = original line of the posting key; 1.. = later rows for the key"),
    sa.Column("entry", sa.Text, nullable=False, server_default=LedgerEntry.CHARGE),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("reverses_run_id", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.Text, nullable=True),
    sa.UniqueConstraint(*POSTING_KEY, "revision"),
    sa.UniqueConstraint("idempotency_key"),
    sa.CheckConstraint("quantity >= 0", name="quantity"),
    sa.CheckConstraint("unit_price_micros >= 0", name="unit_price"),
    sa.CheckConstraint(f"entry <> '{LedgerEntry.CHARGE}' OR kind IN ({_in(CREDIT_KINDS)}) "
                       "OR (amount_micros >= 0 AND cost_micros >= 0)", name="money"),
    sa.CheckConstraint(f"kind IN ({_in(LEDGER_KINDS)})", name="kind"),
    sa.CheckConstraint(f"entry IN ({_in(LedgerEntry)})", name="entry"),
    sa.CheckConstraint(f"status IN ({_in(NEW_STATUSES)})", name="status"),
    sa.CheckConstraint("period_end IS NULL OR period_end > period_start", name="period"),
    sa.Index(None, "customer_id", "run_date"),
    sa.Index(None, "run_id"),
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
    sa.Column("withdrawn_at", Timestamp, nullable=True),
    sa.Column("withdrawn_by_run", sa.Text, nullable=True),
    sa.UniqueConstraint(*GRANT_KEY),
    sa.CheckConstraint("seconds >= 0", name="seconds"),
    sa.CheckConstraint("period_end IS NULL OR period_end > period_start", name="period"),
    sa.Index(None, "customer_id", "period_start"),
    sa.Index(None, "period_end"),
)

grant_usage = sa.Table(
    "grant_usage", metadata,
    sa.Column("assignment_id", sa.Text, primary_key=True),
    sa.Column("period_start", sa.Date, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("period_end", sa.Date, nullable=True, comment="exclusive; NULL = open"),
    sa.Column("seconds_granted", sa.BigInteger, nullable=False),
    sa.Column("seconds_used", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("credited_micros", Money, nullable=False, server_default="0",
              comment="covered charge credited, micro-units (>= 0)"),
    sa.Column("updated_by_run", sa.Text, nullable=True),
    sa.CheckConstraint("seconds_used >= 0", name="seconds_used"),
    sa.CheckConstraint("credited_micros >= 0", name="credited"),
    sa.Index(None, "customer_id"),
)

call_credits = sa.Table(
    "call_credits", metadata,
    sa.Column("call_id", sa.Text, primary_key=True),
    sa.Column("assignment_id", sa.Text, primary_key=True),
    sa.Column("period_start", sa.Date, primary_key=True, comment="the grant's period start"),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("start_time", Timestamp, nullable=False),
    sa.Column("consumed_on", sa.Date, nullable=False, comment="the billing date that consumed it"),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("seconds", sa.BigInteger, nullable=False),
    sa.Column("covered_micros", Money, nullable=False, comment="0 for a report-only package"),
    sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.CheckConstraint("seconds > 0", name="seconds"),
    sa.CheckConstraint("covered_micros >= 0", name="covered"),
    sa.Index(None, "customer_id", "start_time"),
    sa.Index(None, "customer_id", "consumed_on"),
    sa.Index(None, "run_id"),
)

#: Spend per customer and UTC calendar day (migration 0013, #29): the sum of the calls' charges
#: and of their free-minute credits, kept equal to `usage` and `call_credits` by database triggers
#: in the same transaction as every write to those tables (import, post, reverse, void, rebill).
#: Minimum spend sums O(customer-days) of it instead of every call of the period
#: (`store/spend_rollup.py`). A row may hold zeros after calls moved away.
daily_spend = sa.Table(
    "daily_spend", metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True, comment="the UTC day of the calls' start"),
    sa.Column("charged_micros", Money, nullable=False, server_default="0",
              comment="sum of usage.charge_micros, micro-units"),
    sa.Column("credited_micros", Money, nullable=False, server_default="0",
              comment="sum of call_credits.covered_micros, micro-units"),
    sa.Column("calls", sa.BigInteger, nullable=False, server_default="0",
              comment="number of usage rows"),
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
    sa.Column("reversed_at", Timestamp, nullable=True),
    sa.Column("reversed_by_run", sa.Text, nullable=True),
    sa.Column("host", sa.Text, nullable=True, comment="the host whose process runs it"),
    sa.Column("pid", sa.Integer, nullable=True,
              comment="its process id, when one process runs it all (not Airflow)"),
    sa.Column("report_dir", sa.Text, nullable=True, comment="the report folder written"),
    sa.CheckConstraint(f"mode IN ({_in(RunMode)})", name="mode"),
    sa.CheckConstraint(f"status IN ({_in(RunStatus)})", name="status"),
    sa.Index(None, "run_date", "mode", "status"),
)
