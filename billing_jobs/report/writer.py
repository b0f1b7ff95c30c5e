"""The report folder of one run: CSVs, summary.json, report.html; and the CLI headline."""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from billing_jobs.engine.frames import BillingResult
from billing_jobs.report import aggregate as agg_mod
from billing_jobs.report.formatting import (
    charges_text,
    format_dates,
    grants_text,
    rejected_text,
    utilisation_text,
)

RUN_INFO_KEYS = ("run_id", "run_date", "mode", "status", "started_by", "customer_ids",
                 "started_at", "finished_at", "message", "unposted_dates", "code_version")


def _jsonable(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def _run_block(run_info: dict) -> dict:
    run = {k: run_info.get(k) for k in RUN_INFO_KEYS}
    for k, v in run_info.items():
        run.setdefault(k, v)
    rd = run.get("run_date")
    if isinstance(rd, (datetime, pd.Timestamp)):
        run["run_date"] = rd.date().isoformat()
    elif isinstance(rd, date):
        run["run_date"] = rd.isoformat()
    run["unposted_dates"] = [d.isoformat() if isinstance(d, date) else str(d)
                             for d in (run.get("unposted_dates") or [])]
    if run.get("customer_ids") is not None:
        run["customer_ids"] = [str(c) for c in run["customer_ids"]]
    return run


_NEEDS_QUOTES = r'[",\r\n]'


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write an all-text/int frame as CSV, quoting only where needed (like csv.QUOTE_MINIMAL).

    When no value contains a comma, quote or line break (the usual case: ids, dates,
    decimals), pyarrow writes it unquoted, about 20x faster than DataFrame.to_csv; otherwise
    pandas writes it with minimal quoting. Both give the same bytes for such data.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    needs_quotes = any(
        (pa.types.is_string(col.type) or pa.types.is_large_string(col.type))
        and bool(pc.any(pc.match_substring_regex(col, _NEEDS_QUOTES)).as_py())
        for col in table.columns
    )
    if needs_quotes or any(set(str(c)) & set(',"\r\n') for c in frame.columns):
        frame.to_csv(path, index=False, lineterminator="\n")
        return
    with open(path, "wb") as fh:
        fh.write((",".join(str(c) for c in frame.columns) + "\n").encode("utf-8"))
        if len(frame):
            pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False,
                                                         quoting_style="none"))


def build_summary(run_info: dict, lines, grants, util, rejected, extended, timings: dict,
                  agg: agg_mod.Aggregates) -> dict:
    run = _run_block(run_info)
    totals, margin = agg_mod.totals_json(agg)
    return {
        "run_id": run.get("run_id"),
        "run_date": run.get("run_date"),
        "mode": run.get("mode"),
        "status": run.get("status"),
        "message": run.get("message"),
        "run": run,
        "counts": agg.counts,
        "totals": totals,
        "margin": margin,
        "top_customers": agg_mod.top_customers_json(agg),
        "free_minutes": {
            "grants": int(len(grants)),
            "seconds_granted": agg.counts["grant_seconds"],
            "utilisation": {
                "periods": int(len(util)),
                "seconds_granted": agg_mod.total(util["seconds_granted"]),
                "seconds_used": agg_mod.total(util["seconds_used"]),
            },
        },
        "extended_assignments": int(len(extended)),
        "extended_ends": [
            {"assignment_id": a, "customer_id": c, "end_date": e or None,
             "effective_end": f or None}
            for a, c, e, f in zip(extended["assignment_id"].astype(str),
                                  extended["customer_id"].astype(str),
                                  format_dates(extended["end_date"]),
                                  format_dates(extended["effective_end"]))
        ],
        "unposted_dates": run["unposted_dates"],
        "timings": {str(k): round(float(v), 3) for k, v in (timings or {}).items()},
    }


def write_report(out_dir: Path, run_info: dict, result: BillingResult | None,
                 rejected: pd.DataFrame | None, timings: dict | None) -> Path:
    """Write the run's report folder (SPEC §7) and return it.

    `result.due_lines` / `result.grants` carry a `status` column (a simulation without one
    is taken as all `simulated`). Files: charges.csv, grants.csv, utilisation.csv,
    rejected.csv, summary.json, report.html.
    """
    from billing_jobs.report.html import render_html  # plotly import only when writing

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = str(run_info.get("mode") or "simulate")

    lines = agg_mod.normalise_lines(result, mode)
    grants = agg_mod.normalise_grants(result, mode)
    util = agg_mod.normalise_utilisation(result)
    extended = agg_mod.normalise_extended(result)
    rejected = agg_mod.normalise_rejected(rejected)

    charges = charges_text(lines)
    _write_csv(charges, out_dir / "charges.csv")
    grants_txt = grants_text(grants)
    _write_csv(grants_txt, out_dir / "grants.csv")
    util_txt = utilisation_text(util)
    _write_csv(util_txt, out_dir / "utilisation.csv")
    rejected_txt = rejected_text(rejected)
    _write_csv(rejected_txt, out_dir / "rejected.csv")

    agg = agg_mod.aggregate(lines, grants, util, rejected, extended)
    summary = build_summary(run_info, lines, grants, util, rejected, extended, timings or {}, agg)
    summary["report_dir"] = str(out_dir.resolve())
    summary["report_html"] = str((out_dir / "report.html").resolve())

    html = render_html(summary, agg, charges, grants_txt, util_txt, rejected_txt, extended)
    (out_dir / "report.html").write_text(html, encoding="utf-8")

    summary["timings"].setdefault("report", round(time.perf_counter() - started, 3))
    (out_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=_jsonable) + "\n",
        encoding="utf-8")
    return out_dir


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def headline(summary: dict) -> str:
    """A few lines for the terminal: mode, status, lines by status, totals, rejects, path."""
    counts = summary.get("counts", {})
    mode = summary.get("mode") or "?"
    what = "simulation (nothing posted)" if mode == "simulate" else mode
    out = [f"Run {summary.get('run_id') or '-'} for {summary.get('run_date') or '?'}: "
           f"{what}, {summary.get('status') or '?'}"]
    if summary.get("message"):
        out.append(f"  {summary['message']}")
    by_status = ", ".join(f"{k} {v}" for k, v in counts.get("lines_by_status", {}).items())
    out.append(f"  lines {counts.get('lines', 0)}" + (f" ({by_status})" if by_status else "")
               + f"; grants {counts.get('grants', 0)}; customers {counts.get('customers', 0)}")
    for cur, t in summary.get("totals", {}).items():
        pct = f" ({t['margin_pct']}%)" if t.get("margin_pct") is not None else ""
        out.append(f"  {cur}: amount {t['amount']}  cost {t['cost']}  margin {t['margin']}{pct}"
                   f"  [{_n(t['lines'], 'line')}]")
    rejects = counts.get("rejects", 0)
    if rejects:
        parts = ", ".join(f"{k} {v}" for k, v in counts.get("rejects_by_entity", {}).items() if v)
        out.append(f"  rejected {_n(rejects, 'input row')} ({parts}); see rejected.csv")
    else:
        out.append("  rejected 0 input rows")
    if counts.get("extended_assignments"):
        out.append(f"  {_n(counts['extended_assignments'], 'assignment')} billed past the end "
                   "date (minimum_days)")
    unposted = summary.get("unposted_dates") or []
    if unposted:
        shown = ", ".join(unposted[:5]) + (f" (+{len(unposted) - 5} more)" if len(unposted) > 5 else "")
        out.append(f"  WARNING: {_n(len(unposted), 'earlier billing date')} never posted: "
                   f"{shown}; run backfill")
    path = summary.get("report_html") or summary.get("report_dir")
    if path:
        out.append(f"  report: {path}")
    return "\n".join(out)
