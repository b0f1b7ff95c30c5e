"""The forecast's report folder: upcoming_charges.csv, upcoming_by_customer.csv,
rejected.csv, summary.json and forecast.html (one self-contained page, no script).

Written into a temporary folder beside the target and renamed into place, like a run's
report: a half-written forecast is never left behind. Text cells a spreadsheet would
evaluate are neutralised (report.writer.neutralise_formulas); the page escapes every value.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from billing_jobs.core.money import format_minor, format_minor_series
from billing_jobs.core.frames import Forecast
from billing_jobs.core.vocab import LineStatus
from billing_jobs.report import explain
from billing_jobs.report.folders import building, finish
from billing_jobs.report.formatting import format_bools, format_dates, format_micros_series
from billing_jobs.report.html import _env
from billing_jobs.report.writer import _write_csv

PAGE_ROWS = 2000
LINE_CSV_COLUMNS = [
    "run_date", "customer_id", "customer_name", "assignment_id", "package_id", "package_name",
    "kind", "period_start", "period_end_exclusive", "quantity", "unit_price", "amount",
    "currency", "auto_decrement", "status", "provisional",
]


def _money(micros: pd.Series, currency: pd.Series) -> pd.Series:
    if len(micros) == 0:
        return pd.Series([], dtype=object)
    return pd.Series(format_minor_series(micros.reset_index(drop=True),
                                         currency.reset_index(drop=True).astype(str)))


def per_customer(fc: Forecast) -> pd.DataFrame:
    """One row per (customer, currency): upcoming lines, their total (micros), the first
    date a charge falls due, and how much of the total is provisional (minimum spend)."""
    up = fc.lines[fc.lines["status"] == LineStatus.UPCOMING]
    if up.empty:
        return pd.DataFrame(columns=["customer_id", "currency", "lines", "amount",
                                     "provisional_amount", "first_date", "last_date"])
    prov = up["amount"].where(up["provisional"], 0)
    grouped = up.assign(prov=prov).groupby(["customer_id", "currency"], sort=True)
    table = grouped.agg(lines=("amount", "size"), amount=("amount", "sum"),
                        provisional_amount=("prov", "sum"), first_date=("run_date", "min"),
                        last_date=("run_date", "max")).reset_index()
    return table


def line_table(fc: Forecast) -> pd.DataFrame:
    """The forecast's lines as text columns (dates ISO, money in the currency's minor unit)."""
    lines = fc.lines.reset_index(drop=True)
    names = dict(zip(fc.customers["customer_id"], fc.customers["name"]))
    pnames = dict(zip(fc.packages["package_id"], fc.packages.get("name", fc.packages["package_id"])))
    return pd.DataFrame({
        "run_date": format_dates(lines["run_date"]),
        "customer_id": lines["customer_id"].astype(str),
        "customer_name": lines["customer_id"].map(names).fillna("").astype(str),
        "assignment_id": lines["assignment_id"].astype(str),
        "package_id": lines["package_id"].astype(str),
        "package_name": lines["package_id"].map(pnames).fillna("").astype(str),
        "kind": lines["kind"].astype(str),
        "period_start": format_dates(lines["period_start"]),
        "period_end_exclusive": format_dates(lines["period_end"]),
        "quantity": lines["quantity"].astype("int64"),
        "unit_price": format_micros_series(lines["unit_price"]),  # exact: 333.5 JPY stays 333.5
        "amount": _money(lines["amount"], lines["currency"]),
        "currency": lines["currency"].astype(str),
        "auto_decrement": format_bools(lines["auto_decrement"]),  # true/false as charges.csv
        "status": lines["status"].astype(str),
        "provisional": format_bools(lines["provisional"]),
    }, columns=LINE_CSV_COLUMNS)


def explain_context(fc: Forecast) -> dict:
    """What `report.explain.explain_lines` reads: names, the packages' frequency and, from the
    range's inputs, the price versions and the splits of changed assignments (#27)."""
    ctx: dict = {"customers": fc.customers[["customer_id", "name"]].copy()}
    inputs = getattr(fc, "inputs", None)
    source = inputs.packages if inputs is not None else fc.packages
    cols = [c for c in ("package_id", "name", "description", "frequency") if c in source.columns]
    ctx["packages"] = source[cols].copy()
    ctx.update(explain.terms_context(inputs))
    return ctx


def page_lines(fc: Forecast, lines: pd.DataFrame) -> list[dict]:
    """The rows the page shows (the first PAGE_ROWS): the CSV's text and why each amount is
    what it is (the run report's sentence: `report.explain.explain_lines`)."""
    head = lines.head(PAGE_ROWS)
    why = explain.explain_lines(fc.lines.head(PAGE_ROWS), explain_context(fc))
    return head.assign(explanation=why).to_dict("records")


def customer_table(fc: Forecast) -> pd.DataFrame:
    table = per_customer(fc)
    names = dict(zip(fc.customers["customer_id"], fc.customers["name"]))
    balances = fc.customers.set_index("customer_id")["balance"]
    return pd.DataFrame({
        "customer_id": table["customer_id"].astype(str),
        "customer_name": table["customer_id"].map(names).fillna("").astype(str),
        "currency": table["currency"].astype(str),
        "lines": table["lines"].astype("int64"),
        "amount": _money(table["amount"], table["currency"]),
        "provisional_amount": _money(table["provisional_amount"], table["currency"]),
        "balance_now": _money(table["customer_id"].map(balances).fillna(0).astype("int64"),
                              table["currency"]),
        "first_date": format_dates(table["first_date"]),
        "last_date": format_dates(table["last_date"]),
    })


def totals(fc: Forecast) -> dict[str, str]:
    up = fc.lines[fc.lines["status"] == LineStatus.UPCOMING]
    sums = up.groupby("currency")["amount"].sum()
    return {str(c): format_minor(int(v), str(c)) for c, v in sums.sort_index().items()}


def summary_of(fc: Forecast) -> dict:
    lines = fc.lines
    upcoming = int((lines["status"] == LineStatus.UPCOMING).sum())
    return {
        "kind": "forecast",
        "first_date": fc.first.isoformat(), "last_date": fc.last.isoformat(),
        "days": (fc.last - fc.first).days + 1, "tz": fc.tz,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {"upcoming_lines": upcoming,
                   "already_posted_lines": int((lines["status"] == LineStatus.ALREADY_POSTED).sum()),
                   "provisional_lines": int(lines["provisional"].sum()),
                   "customers": int(lines.loc[lines["status"] == LineStatus.UPCOMING,
                                              "customer_id"].nunique()),
                   "grants": int((fc.grants["status"] == LineStatus.UPCOMING).sum()) if len(fc.grants) else 0,
                   "rejects": int(len(fc.rejected))},
        "totals": totals(fc),
    }


def headline(summary: dict) -> str:
    c = summary["counts"]
    money = ", ".join(f"{v} {k}" for k, v in summary["totals"].items()) or "nothing"
    text = (f"forecast {summary['first_date']}..{summary['last_date']}: "
            f"{c['upcoming_lines']} upcoming line(s) for {c['customers']} customer(s), {money}")
    if c["already_posted_lines"]:
        text += f"; {c['already_posted_lines']} line(s) in the range are posted already"
    if c["provisional_lines"]:
        text += (f"; {c['provisional_lines']} minimum-spend line(s) are provisional "
                 "(calls still to come lower them)")
    if c["rejects"]:
        text += f"; {c['rejects']} input row(s) rejected and left out (rejected.csv)"
    return text + ". Nothing was posted."


def write_forecast_report(fc: Forecast, out_dir: Path) -> tuple[Path, dict]:
    out_dir = Path(out_dir)
    with building(out_dir) as tmp:
        lines = line_table(fc)
        per = customer_table(fc)
        _write_csv(lines, tmp / "upcoming_charges.csv")
        _write_csv(per, tmp / "upcoming_by_customer.csv")
        _write_csv(fc.rejected.astype(str), tmp / "rejected.csv")
        summary = summary_of(fc)
        summary["headline"] = headline(summary)
        summary["report_dir"] = str(out_dir.resolve())
        nonce = secrets.token_urlsafe(18)
        html = _env().get_template("forecast.html.j2").render(
            summary=summary, nonce=nonce, customers=per.head(PAGE_ROWS).to_dict("records"),
            customers_total=len(per), lines=page_lines(fc, lines),
            lines_total=len(lines), page_rows=PAGE_ROWS,
            rejected=fc.rejected.astype(str).head(200).to_dict("records"),
            rejected_total=len(fc.rejected))
        (tmp / "forecast.html").write_text(html, encoding="utf-8")
        return finish(tmp, out_dir, summary), summary
