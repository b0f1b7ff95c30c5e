"""Names and explanations for the report: who each line is for, what the package is, and why
the amount is what it is. Vectorised over the (at most TABLE_ROWS) rows the page embeds, and
over customers for the balance table; nothing here loops per line in Python.

Context (all optional, from the run's inputs and the database):
  customers: customer_id, name, balance_after (int micros, after the run)
  packages:  package_id, name, description, frequency
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing_jobs.core.money import format_minor, format_minor_series
from billing_jobs.core.vocab import LineKind, LineStatus
from billing_jobs.report.formatting import format_micros_series

FREQ_OFFSETS = {"daily": pd.DateOffset(days=1), "weekly": pd.DateOffset(weeks=1),
                "monthly": pd.DateOffset(months=1), "yearly": pd.DateOffset(years=1)}


def _s(values) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object)).fillna("").astype(str)


def names(frame: pd.DataFrame, context: dict | None, key: str, table: str,
          columns: tuple[str, ...]) -> pd.DataFrame:
    """frame[key] looked up in context[table] -> the columns (text, '' when unknown)."""
    ref = (context or {}).get(table)
    out = pd.DataFrame(index=range(len(frame)))
    if ref is None or not len(ref) or not len(frame):
        for c in columns:
            out[c] = pd.Series([""] * len(frame), dtype=object)
        return out
    ref = ref.drop_duplicates(key).set_index(key)
    ids = frame[key].astype(str).to_numpy()
    for c in columns:
        col = ref[c] if c in ref.columns else pd.Series(dtype=object)
        out[c] = _s(col.reindex(ids).to_numpy())
    return out


def explain_lines(lines: pd.DataFrame, context: dict | None) -> np.ndarray:
    """One sentence per line saying how its amount follows from price, quantity and days."""
    n = len(lines)
    if n == 0:
        return np.array([], dtype=object)
    lines = lines.reset_index(drop=True)
    cur = lines["currency"].astype(str)
    qty = lines["quantity"].astype("int64")
    unit = lines["unit_price"].astype("int64")
    amount = lines["amount"].astype("int64")
    gross = unit * qty
    money = lambda m: format_minor_series(pd.Series(m, dtype="int64"), cur)  # noqa: E731
    plain = lambda m: pd.Series(format_micros_series(pd.Series(m, dtype="int64")))  # noqa: E731
    unit_t, qty_t, gross_t, amount_t = plain(unit), qty.astype(str), plain(gross), money(amount)
    start = pd.to_datetime(lines["period_start"])
    end = pd.to_datetime(lines["period_end"])
    start_t = start.dt.strftime("%Y-%m-%d").fillna("")
    end_t = end.dt.strftime("%Y-%m-%d").fillna("open")
    kind = lines["kind"].astype(str)

    text = ("recurring: " + unit_t + " × " + qty_t + " = " + amount_t + " for " + start_t
            + " to " + end_t + " (end exclusive)")
    text = text.where(kind != LineKind.SETUP, "setup fee: " + unit_t + " × " + qty_t + " = " + amount_t)

    # prorated: the stub's days out of its full period's days (the period the stub cuts)
    stub_days = (end - start).dt.days
    freq = names(lines, context, "package_id", "packages", ("frequency",))["frequency"]
    full_start = pd.Series(pd.NaT, index=lines.index, dtype="datetime64[s]")
    for f, off in FREQ_OFFSETS.items():  # one vectorised shift per frequency (four at most)
        sel = (freq == f) & end.notna()
        if sel.any():
            full_start[sel] = (end[sel] - off).astype("datetime64[s]")
    full_days = (end - full_start).dt.days
    has_full = full_days.notna() & (full_days > 0)
    pr = ("prorated: " + gross_t + " (" + unit_t + " × " + qty_t + ") × "
          + stub_days.astype("Int64").astype(str) + " stub days / "
          + full_days.astype("Int64").astype(str).where(has_full, "?")
          + " days of the full period = " + amount_t + "; stub " + start_t + " to " + end_t
          + " (end exclusive)")
    text = text.where(kind != LineKind.PRORATED, pr)

    # minimum spend: commitment, spend, shortfall (the amount); spend = commitment - shortfall
    spend_t = plain(gross - amount)
    ms = ("minimum spend: commitment " + gross_t + " (" + unit_t + " × " + qty_t
          + "), calls charged " + spend_t + " from " + start_t + " to " + end_t
          + " (end exclusive), shortfall charged " + amount_t)
    ms = ms.where(amount != 0, "minimum spend: commitment " + gross_t + " met by calls charged "
                  + start_t + " to " + end_t + " (end exclusive): nothing to charge")
    text = text.where(kind != LineKind.MINIMUM_SPEND, ms)

    credit = ("free-minute credit: calls from " + start_t + " to " + end_t
              + " (end exclusive) covered by this assignment's free minutes, credited "
              + amount_t)
    if "covered_seconds" in lines.columns:
        mins = (lines["covered_seconds"].fillna(0).astype("int64") / 60).round(1).astype(str)
        credit = credit + " (" + mins + " minutes covered)"
    text = text.where(kind != LineKind.FREE_MINUTES_CREDIT, credit)
    return text.to_numpy(dtype=object)


def balances(lines: pd.DataFrame, context: dict | None) -> pd.DataFrame:
    """Per customer touched by posted lines: balance before and after (text, minor units).

    after = the balance in the database after the run; before = after + the amounts this run
    posted with auto_decrement (status `posted`; credits are negative amounts).
    """
    cols = ["customer_id", "name", "currency", "posted_lines", "posted_amount",
            "balance_before", "balance_after"]
    ctx = (context or {}).get("customers")
    posted = lines[lines["status"].astype(str) == LineStatus.POSTED]
    if ctx is None or "balance_after" not in ctx.columns or not len(posted):
        return pd.DataFrame(columns=cols)
    m = posted["amount"].to_numpy(dtype="int64")
    hi, lo = np.divmod(m, 10**9)
    g = (pd.DataFrame({"customer_id": posted["customer_id"].astype(str).to_numpy(),
                       "currency": posted["currency"].astype(str).to_numpy(), "hi": hi, "lo": lo})
         .groupby(["customer_id", "currency"], sort=True)
         .agg(posted_lines=("hi", "size"), hi=("hi", "sum"), lo=("lo", "sum")).reset_index())
    total = g["hi"].astype(object) * 10**9 + g["lo"].astype(object)
    ref = ctx.drop_duplicates("customer_id").set_index("customer_id")
    after = ref["balance_after"].reindex(g["customer_id"]).to_numpy()
    known = pd.notna(after)
    after_obj = np.where(known, after, 0).astype(object)
    before = np.array([int(a) + int(t) for a, t in zip(after_obj, total)], dtype=object)  # per customer
    cur = g["currency"]

    def fmt(values) -> pd.Series:
        # Python ints may pass int64 only for absurd balances; format exactly then
        return pd.Series([format_minor(int(v), c) for v, c in zip(values, cur)], dtype=object)

    out = pd.DataFrame({
        "customer_id": g["customer_id"],
        "name": _s(ref["name"].reindex(g["customer_id"]).to_numpy()) if "name" in ref.columns
        else "",
        "currency": cur,
        "posted_lines": g["posted_lines"].astype("int64"),
        "posted_amount": fmt(total),
        "balance_before": fmt(before).where(known, ""),
        "balance_after": fmt(after_obj).where(known, ""),
    }, columns=cols)
    return out
