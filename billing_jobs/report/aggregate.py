"""Aggregates for summary.json and report.html, computed with pandas group-bys.

Money is summed exactly: each int64 micros column is split into a high and a low part
(`m = hi * 10**9 + lo`), both parts are summed by the group-by in int64 (no overflow for
any realistic run), and the two sums are recombined as Python integers. No floats touch
a total; floats are only derived afterwards for chart bar lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd

from billing_jobs.core.frames import (
    DUE_LINE_COLUMNS,
    EXTENDED_END_COLUMNS,
    GRANT_COLUMNS,
    UTILISATION_COLUMNS,
    BillingResult,
)
from billing_jobs.core.money import format_minor
from billing_jobs.core.vocab import DUE_KINDS, LineStatus, RunMode
from billing_jobs.report.formatting import ENTITIES, REJECTED_COLUMNS

_SPLIT = 10**9
MONEY = ("amount", "cost")


# --------------------------------------------------------------------------- input frames

def _ensure(frame: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    if frame is None:
        frame = pd.DataFrame()
    frame = frame.reset_index(drop=True)  # a new frame: the caller's is never modified
    for c in columns:
        if c not in frame.columns:
            frame[c] = pd.Series(dtype="object", index=frame.index)
    return frame


def _as_int(s: pd.Series) -> pd.Series:
    return s.astype("int64")


def _as_dates(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    return pd.to_datetime(s, errors="coerce")


def _with_status(frame: pd.DataFrame, mode: str, what: str) -> pd.DataFrame:
    if "status" not in frame.columns or (len(frame) and frame["status"].isna().all()):
        if mode != RunMode.SIMULATE and len(frame):
            raise ValueError(f"{what} have no status column; a posted run must say what was posted")
        frame["status"] = LineStatus.SIMULATED
    return frame


def normalise_lines(result: BillingResult | None, mode: str) -> pd.DataFrame:
    lines = _ensure(None if result is None else result.due_lines, DUE_LINE_COLUMNS)
    lines = _with_status(lines, mode, "due lines")
    for c in ("quantity", "unit_price", "amount", "cost"):
        lines[c] = _as_int(lines[c])
    for c in ("run_date", "period_start", "period_end"):
        lines[c] = _as_dates(lines[c])
    return lines


def normalise_grants(result: BillingResult | None, mode: str) -> pd.DataFrame:
    grants = _ensure(None if result is None else result.grants, GRANT_COLUMNS)
    grants = _with_status(grants, mode, "grants")
    grants["seconds"] = _as_int(grants["seconds"])
    for c in ("run_date", "period_start", "period_end"):
        grants[c] = _as_dates(grants[c])
    return grants


def normalise_utilisation(result: BillingResult | None) -> pd.DataFrame:
    util = _ensure(None if result is None else result.utilisation, UTILISATION_COLUMNS)
    util["credited"] = util["credited"].fillna(0)  # older results have no credited column
    for c in ("seconds_granted", "seconds_used", "credited"):
        util[c] = _as_int(util[c])
    for c in ("period_start", "period_end"):
        util[c] = _as_dates(util[c])
    return util


def normalise_extended(result: BillingResult | None) -> pd.DataFrame:
    ext = _ensure(None if result is None else getattr(result, "extended_ends", None),
                  EXTENDED_END_COLUMNS)
    for c in ("end_date", "effective_end"):
        ext[c] = _as_dates(ext[c])
    return ext.sort_values(["customer_id", "assignment_id"], kind="stable") if len(ext) else ext


def normalise_rejected(rejected: pd.DataFrame | None) -> pd.DataFrame:
    return _ensure(rejected, REJECTED_COLUMNS)[REJECTED_COLUMNS]


# --------------------------------------------------------------------------- exact sums

def exact_sums(frame: pd.DataFrame, keys: list[str], cols=MONEY) -> pd.DataFrame:
    """Group `frame` by `keys`; exact Python-int sums of the int64 `cols` plus a `lines` count.

    Also adds `<col>_f` float columns (units, not micros) for sorting and chart lengths.
    """
    parts = {k: frame[k] for k in keys}
    for c in cols:
        m = frame[c].to_numpy(dtype="int64")
        hi, lo = np.divmod(m, _SPLIT)
        parts[c + "__hi"] = hi
        parts[c + "__lo"] = lo
    tmp = pd.DataFrame(parts, index=frame.index)
    grouped = tmp.groupby(keys, sort=True, dropna=False)
    sums = grouped.sum()
    out = pd.DataFrame(index=sums.index)
    out["lines"] = grouped.size().astype("int64")
    for c in cols:
        hi = sums[c + "__hi"].astype(object)
        lo = sums[c + "__lo"].astype(object)
        out[c] = hi * _SPLIT + lo
        out[c + "_f"] = (sums[c + "__hi"].astype("float64") * _SPLIT + sums[c + "__lo"]) / 1e6
    return out.reset_index()


def total(series: pd.Series) -> int:
    m = series.to_numpy(dtype="int64")
    hi, lo = np.divmod(m, _SPLIT)
    return int(hi.sum()) * _SPLIT + int(lo.sum())


def margin_pct(revenue: int, margin: int) -> str | None:
    """The margin as a share of the revenue; None (not shown) when the revenue is not
    positive: a share of a negative total (credits exceeding the charges) reads as nonsense,
    e.g. "(100.3%)" for a margin of -3.02 on -3.01 (#30 item 14)."""
    if revenue <= 0:
        return None
    pct = Decimal(margin) * 100 / Decimal(revenue)
    return str(pct.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _money_block(amount: int, cost: int, currency: str, lines: int) -> dict:
    return {
        "lines": int(lines),
        "amount": format_minor(amount, currency),
        "cost": format_minor(cost, currency),
        "margin": format_minor(amount - cost, currency),
    }


def _ordered(keys, preferred) -> list:
    keys = list(keys)
    return [k for k in preferred if k in keys] + sorted(k for k in keys if k not in preferred)


def _value_counts(series: pd.Series, preferred=()) -> dict:
    counts = series.astype(object).fillna("").value_counts()
    return {str(k): int(counts[k]) for k in _ordered(counts.index, preferred)}


# --------------------------------------------------------------------------- the aggregates

@dataclass
class Aggregates:
    """Everything the summary and the page show, already reduced to small frames."""

    currencies: list[str]              # by number of lines, then code
    by_currency: pd.DataFrame          # currency, lines, amount, cost (+ _f)
    by_kind: pd.DataFrame              # currency, kind, ...
    by_status: pd.DataFrame            # currency, status, ...
    by_package: pd.DataFrame           # currency, package_id, ... (all packages)
    top_customers: pd.DataFrame        # currency, customer_id, ... (top N per currency)
    util_by_customer: pd.DataFrame     # customer_id, periods, seconds_granted, seconds_used
    util_histogram: list[tuple[str, int]]
    counts: dict


TOP_CUSTOMERS = 20


def aggregate(lines: pd.DataFrame, grants: pd.DataFrame, util: pd.DataFrame,
              rejected: pd.DataFrame, extended: pd.DataFrame) -> Aggregates:
    by_currency = exact_sums(lines, ["currency"])
    by_currency = by_currency.sort_values(["lines", "currency"], ascending=[False, True],
                                          kind="stable").reset_index(drop=True)
    currencies = [str(c) for c in by_currency["currency"]]

    by_kind = exact_sums(lines, ["currency", "kind"])
    by_status = exact_sums(lines, ["currency", "status"])
    by_package = exact_sums(lines, ["currency", "package_id"])
    by_package = by_package.sort_values(["currency", "amount_f", "package_id"],
                                        ascending=[True, False, True], kind="stable")

    per_customer = exact_sums(lines, ["currency", "customer_id"])
    per_customer = per_customer.sort_values(["currency", "amount_f", "customer_id"],
                                            ascending=[True, False, True], kind="stable")
    top_customers = per_customer.groupby("currency", sort=False).head(TOP_CUSTOMERS)

    if len(util):
        util_by_customer = (util.groupby("customer_id", sort=True)
                            .agg(periods=("assignment_id", "size"),
                                 seconds_granted=("seconds_granted", "sum"),
                                 seconds_used=("seconds_used", "sum"))
                            .reset_index())
        granted = util["seconds_granted"].to_numpy(dtype="float64")
        used = util["seconds_used"].to_numpy(dtype="float64")
        share = np.divide(used, granted, out=np.zeros_like(used), where=granted > 0)
        share = np.clip(share * 100.0, 0.0, 100.0)
        counts_, edges = np.histogram(share, bins=np.arange(0, 101, 10))
        util_histogram = [(f"{int(edges[i])}–{int(edges[i + 1])}%", int(counts_[i]))
                          for i in range(len(counts_))]
    else:
        util_by_customer = pd.DataFrame(columns=["customer_id", "periods", "seconds_granted",
                                                 "seconds_used"])
        util_histogram = []

    customers = pd.concat([lines["customer_id"], grants["customer_id"]]).dropna().nunique()
    rejects_by_entity = {e: 0 for e in ENTITIES}
    rejects_by_entity.update(_value_counts(rejected["entity"]))
    counts = {
        "lines": int(len(lines)),
        "lines_by_status": _value_counts(lines["status"], tuple(LineStatus)),
        "lines_by_kind": _value_counts(lines["kind"], DUE_KINDS),
        "grants": int(len(grants)),
        "grants_by_status": _value_counts(grants["status"], tuple(LineStatus)),
        "grant_seconds": total(grants.loc[grants["status"] != LineStatus.OVERLAPS_POSTED, "seconds"]),
        "customers": int(customers),
        "assignments": int(lines["assignment_id"].nunique()),
        "utilisation_periods": int(len(util)),
        "rejects": int(len(rejected)),
        "rejects_by_entity": rejects_by_entity,
        "extended_assignments": int(len(extended)),
    }
    return Aggregates(currencies, by_currency, by_kind, by_status, by_package, top_customers,
                      util_by_customer, util_histogram, counts)


def totals_json(agg: Aggregates) -> tuple[dict, dict]:
    """(totals per currency with by-kind and by-status blocks, margin per currency)."""
    totals: dict = {}
    margin: dict = {}
    for row in agg.by_currency.itertuples(index=False):  # one row per currency
        cur = row.currency
        block = _money_block(row.amount, row.cost, cur, row.lines)
        block["margin_pct"] = margin_pct(row.amount, row.amount - row.cost)
        kinds = agg.by_kind[agg.by_kind["currency"] == cur].set_index("kind")
        block["by_kind"] = {k: _money_block(kinds.at[k, "amount"], kinds.at[k, "cost"], cur,
                                            kinds.at[k, "lines"])
                            for k in _ordered(kinds.index, DUE_KINDS)}
        stats = agg.by_status[agg.by_status["currency"] == cur].set_index("status")
        block["by_status"] = {s: _money_block(stats.at[s, "amount"], stats.at[s, "cost"], cur,
                                              stats.at[s, "lines"])
                              for s in _ordered(stats.index, tuple(LineStatus))}
        totals[cur] = block
        margin[cur] = {
            "revenue": block["amount"],
            "cost": block["cost"],
            "margin": block["margin"],
            "margin_pct": block["margin_pct"],
        }
    return totals, margin


def top_customers_json(agg: Aggregates) -> dict:
    out: dict = {}
    for cur in agg.currencies:
        rows = agg.top_customers[agg.top_customers["currency"] == cur]
        out[cur] = [dict(customer_id=str(r.customer_id),
                         **_money_block(r.amount, r.cost, cur, r.lines))
                    for r in rows.itertuples(index=False)]
    return out
