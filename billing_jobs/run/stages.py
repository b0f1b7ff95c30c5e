"""The stages of one billing run: load -> validate -> compute -> gate -> settle, and what a
report needs beside them. The command line (`run.local`) and the Airflow tasks
(`staged.stages`) both call these; neither holds billing logic of its own.
"""

from __future__ import annotations

from contextlib import nullcontext

import pandas as pd
import sqlalchemy as sa

from billing_jobs.calc.billing import compute_billing
from billing_jobs.core.frames import BillingInputs, BillingResult
from billing_jobs.checks import gate, validate_inputs
from billing_jobs.checks.evaluator import interactive
from billing_jobs.core.errors import StrictRejection, UsageError
from billing_jobs.report import explain
from billing_jobs.run.request import RunRequest, Timings
from billing_jobs.store.db import db_errors, read_connection
from billing_jobs.store.load import load_inputs, spend_source
from billing_jobs.store.post import post_result
from billing_jobs.store.tables import customers as customers_t


def load_stage(engine, req: RunRequest, timings: "Timings | None" = None
               ) -> tuple[BillingInputs, pd.DataFrame]:
    """Inputs for the date from the database, validated: (clean inputs, rejected rows)."""
    timings = timings if timings is not None else Timings()
    with timings.stage("load"):
        # minimum spend from the spend rollup when the billing days are UTC days (#29)
        raw = load_inputs(engine, req.run_date, customer_ids=req.customer_ids,
                          spend_from=spend_source(req.tz))
    with timings.stage("validate"):
        clean, rejected = validate_inputs(raw)
    return strict_check(req, clean, rejected)


def strict_check(req: RunRequest, clean: BillingInputs, rejected: pd.DataFrame
                 ) -> tuple[BillingInputs, pd.DataFrame]:
    """--strict: any rejected input row fails the run before anything is posted."""
    if req.strict and len(rejected):
        first = rejected.iloc[0]
        error = StrictRejection(
            f"--strict: {len(rejected)} input row(s) rejected, nothing posted; first: "
            f"{first['entity']} {first['id']}: {first['reason']}")
        error.rejected = rejected  # the report still lists them
        raise error
    return clean, rejected


def compute_stage(inputs: BillingInputs, req: RunRequest) -> BillingResult:
    return compute_billing(inputs, req.run_date, req.tz)


def gate_stage(result: BillingResult, inputs: BillingInputs) -> None:
    gate(result, inputs)


def settle_stage(engine, result: BillingResult, req: RunRequest, run_id: str) -> BillingResult:
    """Post (exactly once) or simulate; returns the result with a `status` per line and grant."""
    return post_result(engine, result, simulate=req.simulate, run_id=run_id)


def currency_context(inputs: BillingInputs | None) -> dict:
    """Each customer's currency, so that the report writes every amount (the credited and
    covered charge of free minutes too) in its minor unit (#30 item 7)."""
    if inputs is None or "currency" not in inputs.customers.columns:
        return {}
    return {"currencies": inputs.customers[["customer_id", "currency"]].copy()}


def report_context(inputs: BillingInputs | None, engine=None, posted: bool = False) -> dict:
    """Names for the report (customers, packages) and, after a post, each customer's balance
    as the database holds it now (balance_after, int micros); with price versions or changes,
    what the explanations of those lines need (`report.explain.terms_context`)."""
    ctx: dict = {}
    if inputs is not None:
        ctx["customers"] = inputs.customers[["customer_id", "name"]].copy()
        ctx.update(currency_context(inputs))
        cols = [c for c in ("package_id", "name", "description", "frequency")
                if c in inputs.packages.columns]
        ctx["packages"] = inputs.packages[cols].copy()
        # price versions and the splits of changed assignments: why a line costs what it
        # costs when terms changed over time (#27)
        ctx.update(explain.terms_context(inputs))
    if posted and engine is not None:
        try:
            ctx["customers"] = _balances_now(engine, ctx.get("customers"))
        except Exception:  # noqa: BLE001 - the report then shows no balances, says nothing false
            pass
    return ctx


def _balances_now(engine, customers: pd.DataFrame | None) -> pd.DataFrame:
    col = (customers_t.c["balance_micros"] if "balance_micros" in customers_t.c
           else customers_t.c["balance"])
    ids = None if customers is None else customers["customer_id"].astype(str).tolist()
    query = sa.select(customers_t.c.customer_id, customers_t.c.name, col.label("balance_after"))
    if ids is not None and len(ids) <= 5000:
        query = query.where(customers_t.c.customer_id.in_(ids))
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["customer_id", "name", "balance_after"])
    frame["balance_after"] = frame["balance_after"].astype(object).map(int)
    return frame


def check_customers(engine, customer_ids: list[str] | None) -> None:
    """--customer ids must exist: 'unknown customer NOPE' (exit 2), never a silent 0-line run."""
    if not customer_ids:
        return
    wanted = sorted({str(c) for c in customer_ids})
    with db_errors(engine, "reading the customers"), read_connection(engine) as conn:
        known = set(conn.execute(sa.select(customers_t.c.customer_id)
                                 .where(customers_t.c.customer_id.in_(wanted))).scalars())
    missing = [c for c in wanted if c not in known]
    if missing:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise UsageError(f"unknown customer{'s' if len(missing) > 1 else ''} {shown}: "
                         "no such customer_id in the database (import it, or check the id)")


def rule_evaluator(customer_ids: list[str] | None):
    """A run for chosen customers (Run Package) checks every frame with the pandas evaluator of
    the same rules, so it never pays Great Expectations' start-up; a batch run keeps GX for
    every frame above the fast-path size (checks.rules)."""
    return interactive() if customer_ids else nullcontext()
