"""The report folder of one run: CSVs, summary.json, report.html; and the CLI headline."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from billing_jobs.core.frames import DIFFERENCE_COLUMNS, BillingResult
from billing_jobs.core.money import format_minor
from billing_jobs.core.vocab import NEW_STATUSES, LineKind, LineStatus, RunMode, RunStatus
from billing_jobs.report import aggregate as agg_mod
from billing_jobs.report import explain
from billing_jobs.report.formatting import (
    charges_text,
    format_dates,
    grants_text,
    rejected_text,
    utilisation_text,
    free_minutes_text,
    differences_text,
    FREE_MINUTES_CSV_COLUMNS,
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

# CSV injection (OWASP "CSV Injection"): a text cell starting with one of these is run as a
# formula by spreadsheet programs. Such cells get a leading single quote; columns that the
# report computes as numbers (amounts such as -0.72) are left as they are.
FORMULA_START = r"^[=+\-@\t\r]"
_FORMULA_START = re.compile(FORMULA_START)  # the same test for one header name
NUMERIC_COLUMNS = frozenset({
    "quantity", "unit_price", "amount", "cost", "seconds", "seconds_granted", "seconds_used",
    "ledger_amount", "ledger_quantity", "credited", "covered", "minutes_left",
    "minutes", "minutes_granted", "minutes_used", "balance_before", "balance_after",
    "commitment", "spend", "shortfall", "stub_days", "period_days", "covered_minutes",
    "posted_amount",
})


def neutralise_formulas(frame: pd.DataFrame, numeric=NUMERIC_COLUMNS) -> pd.DataFrame:
    """Prefix ' to text cells a spreadsheet would evaluate (vectorised, per column)."""
    out = {}
    for c in frame.columns:
        col = frame[c]
        if (not len(col) or c in numeric
                or not (col.dtype == object or pd.api.types.is_string_dtype(col))):
            out[c] = col  # no cell to neutralise (an empty table keeps its columns as they are)
            continue
        text = col.astype(object).where(col.notna(), "").astype(str)
        risky = text.str.contains(FORMULA_START, regex=True)
        out[c] = text.where(~risky, "'" + text) if risky.any() else col
    header = [("'" + str(c)) if _FORMULA_START.search(str(c)) else c for c in frame.columns]
    result = pd.DataFrame(out, columns=list(frame.columns))
    result.columns = header
    return result


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write an all-text/int frame as CSV, quoting only where needed (like csv.QUOTE_MINIMAL).

    When no value contains a comma, quote or line break (the usual case: ids, dates,
    decimals), pyarrow writes it unquoted, about 20x faster than DataFrame.to_csv; otherwise
    pandas writes it with minimal quoting. Both give the same bytes for such data.
    """
    frame = neutralise_formulas(frame)
    header_plain = not any(set(str(c)) & set(',"\r\n') for c in frame.columns)
    if not len(frame) and header_plain:  # the header alone: as below, without pyarrow
        path.write_bytes((",".join(str(c) for c in frame.columns) + "\n").encode("utf-8"))
        return
    # one chunk per column: pyarrow's CSV writer mishandles an empty chunk without a data
    # buffer (what concatenating an empty and a full pandas string column gives)
    table = pa.Table.from_pandas(frame, preserve_index=False).combine_chunks()
    needs_quotes = any(
        (pa.types.is_string(col.type) or pa.types.is_large_string(col.type))
        and bool(pc.any(pc.match_substring_regex(col, _NEEDS_QUOTES)).as_py())
        for col in table.columns
    )
    if needs_quotes or not header_plain:
        frame.to_csv(path, index=False, lineterminator="\n")
        return
    with open(path, "wb") as fh:
        fh.write((",".join(str(c) for c in frame.columns) + "\n").encode("utf-8"))
        if len(frame):
            pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False,
                                                         quoting_style="none"))


def build_summary(run_info: dict, lines, grants, util, rejected, extended, timings: dict,
                  agg: agg_mod.Aggregates, differing: pd.DataFrame | None = None) -> dict:
    """`differing`: the already posted keys whose current data differs from the ledger
    (`ledger_differences`), named in the outcome sentence."""
    run = _run_block(run_info)
    totals, margin = agg_mod.totals_json(agg)
    return {
        "run_id": run.get("run_id"),
        "run_date": run.get("run_date"),
        "mode": run.get("mode"),
        "status": run.get("status"),
        "message": run.get("message"),
        "run": run,
        "outcome": outcome_block(agg, run, differing),
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


@dataclass
class Report:
    """One run's report, built in memory (`build_report`): the summary and every table the
    files and the page are written from."""

    summary: dict
    tables: dict[str, pd.DataFrame]  # CSV file name -> its text frame, in writing order
    agg: agg_mod.Aggregates
    page_lines: pd.DataFrame
    extended: pd.DataFrame
    context: dict | None = None


def build_report(run_info: dict, result: BillingResult | None, rejected: pd.DataFrame | None,
                 timings: dict | None, context: dict | None = None) -> Report:
    """The report of a run (SPEC §7) as a value: nothing is written.

    `result.due_lines` / `result.grants` carry a `status` column (a simulation without one
    is taken as all `simulated`)."""
    mode = str(run_info.get("mode") or RunMode.SIMULATE)
    lines = agg_mod.normalise_lines(result, mode)
    grants = agg_mod.normalise_grants(result, mode)
    util = agg_mod.normalise_utilisation(result)
    extended = billed_extended(agg_mod.normalise_extended(result), lines)
    rejected = agg_mod.normalise_rejected(rejected)

    consumption = getattr(result, "consumption", None) if result is not None else None
    differences = getattr(result, "differences", None) if result is not None else None
    balances = explain.balances(lines, context) if mode != RunMode.SIMULATE else explain.balances(
        lines.iloc[0:0], None)
    tables = {
        "charges.csv": charges_text(lines),
        "grants.csv": grants_text(grants),
        "utilisation.csv": utilisation_text(
            util, customer_currencies(util["customer_id"], context, lines)),
        "free_minutes.csv": free_minutes_text(
            consumption, customer_currencies(consumption["customer_id"], context, lines))
        if consumption is not None and len(consumption)
        else free_minutes_text(pd.DataFrame(columns=FREE_MINUTES_CSV_COLUMNS)),
        "differences.csv": differences_text(differences),
        "rejected.csv": rejected_text(rejected),
        "balances.csv": balances,
    }

    agg = agg_mod.aggregate(lines, grants, util, rejected, extended)
    differing = ledger_differences(differences, lines)
    summary = build_summary(run_info, lines, grants, util, rejected, extended, timings or {}, agg,
                            differing)
    _name_customers(summary, context)
    summary["balances"] = {"customers": int(len(balances))}
    diff_txt = tables["differences.csv"]
    summary["differences"] = {
        "keys": int(len(diff_txt)),
        "note": ("already posted lines whose current data differs from the ledger: charges.csv "
                 "shows the ledger's values; differences.csv lists both and the correction")
        if len(diff_txt) else ""}
    page_lines = _page_lines(lines, tables["charges.csv"], context)
    # plain JSON values (numpy scalars, dates as text), as summary.json will hold them
    summary = json.loads(json.dumps(summary, default=_jsonable))
    return Report(summary, tables, agg, page_lines, extended, context)


def write_files(report: Report, out_dir: Path, named_as: Path | None = None) -> dict:
    """Write every file of `report` but summary.json into `out_dir`; returns the summary,
    naming the folder the report ends up in (`named_as`, default `out_dir`). The caller
    writes the summary last (`write_summary`, or report.folders.finish)."""
    from billing_jobs.report.html import render_html  # plotly import only when writing

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, table in report.tables.items():
        _write_csv(table, out_dir / name)
    final = Path(named_as if named_as is not None else out_dir).resolve()
    summary = dict(report.summary, report_dir=str(final),
                   report_html=str(final / "report.html"))
    summary["timings"] = dict(summary["timings"])
    t = report.tables
    html = render_html(summary, report.agg, report.page_lines, t["grants.csv"],
                       t["utilisation.csv"], t["rejected.csv"], report.extended,
                       balances=t["balances.csv"], total_lines=len(t["charges.csv"]),
                       context=report.context)
    (out_dir / "report.html").write_text(html, encoding="utf-8")
    summary["timings"].setdefault("report", round(time.perf_counter() - started, 3))
    return summary


def summary_text(summary: dict) -> str:
    """summary.json's text."""
    return json.dumps(summary, indent=2, ensure_ascii=False, default=_jsonable) + "\n"


def write_report(out_dir: Path, run_info: dict, result: BillingResult | None,
                 rejected: pd.DataFrame | None, timings: dict | None,
                 context: dict | None = None) -> Path:
    """Write the run's report folder (SPEC §7) and return it. Files: charges.csv, grants.csv,
    utilisation.csv, free_minutes.csv, differences.csv, rejected.csv, balances.csv,
    report.html, and summary.json last."""
    out_dir = Path(out_dir)
    summary = write_files(build_report(run_info, result, rejected, timings, context), out_dir)
    (out_dir / "summary.json").write_text(summary_text(summary), encoding="utf-8")
    return out_dir


def billed_extended(extended: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """The assignments the package's minimum days extended that this date bills past their
    end date (#30 item 9): a line of the assignment whose period runs past the end date
    (period_end, exclusive, after end_date + 1 day) or has no end (a setup fee, an open
    period). An extended assignment with no such line is not this date's news."""
    if not len(extended) or not len(lines):
        return extended.iloc[0:0]
    end = pd.to_datetime(lines["period_end"])
    ends = pd.Series(pd.to_datetime(extended["end_date"]).to_numpy(),
                     index=extended["assignment_id"].astype(str).to_numpy())
    ends = ends[~ends.index.duplicated()]
    own_end = pd.to_datetime(pd.Series(
        ends.reindex(lines["assignment_id"].astype(str).to_numpy()).to_numpy()))
    past = (own_end.notna().to_numpy()
            & (end.isna().to_numpy()
               | (end.to_numpy() > (own_end + pd.Timedelta(days=1)).to_numpy())))
    billed = set(lines["assignment_id"].astype(str).to_numpy()[past])
    return extended[extended["assignment_id"].astype(str).isin(billed)]


def ledger_differences(differences: pd.DataFrame | None, lines: pd.DataFrame) -> pd.DataFrame:
    """The rows of `differences` that are keys this run found already posted (the ledger holds
    other values than current data computes): not the held lines and grants of a moved start
    (`overlaps_posted`, said in the sentence already). Each row gets the `run_date` of its
    line, for the rebill range."""
    empty = pd.DataFrame(columns=[*DIFFERENCE_COLUMNS, "run_date"])
    if differences is None or not len(differences) or not len(lines):
        return empty
    old = lines[lines["status"].astype(str) == LineStatus.ALREADY_POSTED]
    if not len(old):
        return empty
    key = ["assignment_id", "kind", "period_start"]

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(assignment_id=frame["assignment_id"].astype(str),
                            kind=frame["kind"].astype(str),
                            period_start=pd.to_datetime(frame["period_start"]).astype(
                                "datetime64[s]"))

    days = keyed(old)[[*key, "run_date"]].drop_duplicates(key)
    out = keyed(differences.reset_index(drop=True)).merge(days, on=key, how="inner")
    return out.sort_values(["run_date", "assignment_id", "kind", "period_start"],
                           kind="stable").reset_index(drop=True)


def customer_currencies(customer_ids: pd.Series, context: dict | None,
                        lines: pd.DataFrame) -> np.ndarray:
    """Each customer's currency: from the run's customers (`context["currencies"]`:
    customer_id, currency), else from the run's lines (a package's currency is its
    customer's); '' when neither knows it."""
    known: dict = {}
    if not len(customer_ids):
        return np.array([], dtype=object)
    if len(lines):  # one pair per customer (a million lines: a few thousand customers)
        pairs = lines[["customer_id", "currency"]].drop_duplicates("customer_id")
        known.update(zip(pairs["customer_id"].astype(str), pairs["currency"].astype(str)))
    ref = (context or {}).get("currencies")
    if ref is not None and len(ref):
        known.update(zip(ref["customer_id"].astype(str), ref["currency"].astype(str)))
    ids = pd.Series(np.asarray(customer_ids, dtype=object)).astype(str)
    return ids.map(known).fillna("").to_numpy(dtype=object)


def _name_customers(summary: dict, context: dict | None) -> None:
    ref = (context or {}).get("customers")
    names = (dict(zip(ref["customer_id"].astype(str), ref["name"].fillna("").astype(str)))
             if ref is not None and "name" in ref.columns else {})
    for rows in summary.get("top_customers", {}).values():
        for r in rows:
            r["name"] = names.get(r["customer_id"], "")


def _page_lines(lines: pd.DataFrame, charges: pd.DataFrame, context: dict | None) -> pd.DataFrame:
    """The rows the page embeds: names, description and the explanation beside the CSV text."""
    from billing_jobs.report.html import TABLE_ROWS  # plotly import only when writing

    head, text = lines.head(TABLE_ROWS), charges.head(TABLE_ROWS).reset_index(drop=True)
    cust = explain.names(head, context, "customer_id", "customers", ("name",))
    pkg = explain.names(head, context, "package_id", "packages", ("name", "description"))
    return pd.DataFrame({
        "customer_id": text["customer_id"], "customer": cust["name"],
        "assignment_id": text["assignment_id"], "package_id": text["package_id"],
        "package": pkg["name"], "description": pkg["description"], "kind": text["kind"],
        "period_start": text["period_start"], "period_end (exclusive)": text["period_end"],
        "quantity": text["quantity"], "unit_price": text["unit_price"],
        "amount": text["amount"], "cost": text["cost"], "currency": text["currency"],
        "why this amount": explain.explain_lines(head, context),
        "auto_decrement": text["auto_decrement"], "status": text["status"],
    })


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def headline(summary: dict) -> str:
    """A few lines for the terminal: mode, status, lines by status, totals, rejects, path."""
    counts = summary.get("counts", {})
    mode = summary.get("mode") or "?"
    what = "simulation (nothing posted)" if mode == RunMode.SIMULATE else mode
    out = [f"{summary.get('run_date') or '?'}: {outcome_sentence(summary)}",
           f"  run {summary.get('run_id') or '-'}: {what}, {summary.get('status') or '?'}"]
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


# --------------------------------------------------------------------------- what happened

def _amounts_text(amounts: dict) -> str:
    return ", ".join(f"{a} {c}" for c, a in amounts.items()) if amounts else "0"


def outcome_block(agg: agg_mod.Aggregates, run: dict,
                  differing: pd.DataFrame | None = None) -> dict:
    """What the run did, in counts and exact amounts per currency, and in one sentence.
    `differing` (`ledger_differences`): posted keys current data no longer agrees with; the
    sentence names them and the correction (#30 item 12)."""
    mode = str(run.get("mode") or RunMode.SIMULATE)
    status = str(run.get("status") or "")
    by = agg.by_status
    new_st = (LineStatus.SIMULATED,) if mode == RunMode.SIMULATE else NEW_STATUSES

    micros: dict = {}

    def pick(statuses, keep=False) -> tuple[int, dict]:
        rows = by[by["status"].isin(statuses)]
        lines = int(rows["lines"].sum()) if len(rows) else 0
        amounts = {}
        for cur in agg.currencies:  # one row per currency and status: a handful
            sel = rows[rows["currency"] == cur]
            if len(sel):
                m = sum(int(v) for v in sel["amount"])
                amounts[cur] = format_minor(m, cur)
                if keep:
                    micros[cur] = m
        return lines, amounts

    new_lines, new_amounts = pick(new_st, keep=True)
    invoiced_lines, _ = pick((LineStatus.INVOICED,)) if mode != RunMode.SIMULATE else (0, {})
    old_lines, old_amounts = pick((LineStatus.ALREADY_POSTED,))
    not_lines, not_amounts = pick((LineStatus.NOT_POSTED,))
    held_lines, held_amounts = pick((LineStatus.OVERLAPS_POSTED,))
    block = {
        "kind": "", "new_lines": new_lines, "new_amounts": new_amounts,
        "invoiced_lines": invoiced_lines, "already_posted_lines": old_lines,
        "already_posted_amounts": old_amounts, "not_posted_lines": not_lines,
        "not_posted_amounts": not_amounts, "new_micros": micros,
        "overlaps_posted_lines": held_lines, "overlaps_posted_amounts": held_amounts,
        "differing": differing_block(differing),
    }
    reason = str(run.get("message") or "").strip() or "of an unknown error"
    if status == RunStatus.FAILED:
        if new_lines and mode != RunMode.SIMULATE:
            block["kind"] = "partly_posted"
            text = (f"failed after posting {_n(new_lines, 'line')} for "
                    f"{_amounts_text(new_amounts)} (those stand and will not be charged again)"
                    f"; {_n(not_lines, 'other line')} {'was' if not_lines == 1 else 'were'} "
                    f"not posted, because {reason}")
        else:
            block["kind"] = "failed"
            text = (("failed: nothing simulated, because " if mode == RunMode.SIMULATE
                     else "failed: nothing posted, because ") + reason)
        block["sentence"] = text
        return block
    sim = mode == RunMode.SIMULATE
    block["kind"] = "simulated" if sim else ("posted" if new_lines else "nothing_new")
    if new_lines:
        text = (("simulated: would post " if sim else "posted ")
                + f"{_n(new_lines, 'new line')} for {_amounts_text(new_amounts)}")
        if invoiced_lines:  # never in a simulation
            text += (f" ({invoiced_lines} of them invoiced: balance untouched)")
    else:
        text = "simulated: nothing new would be posted" if sim else "posted nothing new"
    if old_lines:
        text += (f"; {_n(old_lines, 'line')} {'was' if old_lines == 1 else 'were'} already "
                 + ("posted earlier and would not be charged again" if sim
                    else "posted earlier, nothing charged twice"))
    elif not new_lines and not held_lines:
        text += ": nothing is due on this date" if sim else ": nothing was due on this date"
    text += _held_text(held_lines, held_amounts, "would be held" if sim else "held")
    held_grants = int(agg.counts.get("grants_by_status", {}).get(LineStatus.OVERLAPS_POSTED, 0))
    block["overlaps_posted_grants"] = held_grants
    if held_grants:
        text += (f"; {_n(held_grants, 'free-minute grant')} "
                 f"{'would be held' if sim else 'held'}, not granted: "
                 f"{'it overlaps' if held_grants == 1 else 'they overlap'} a live grant of the "
                 "same assignment (moved start date?); differences.csv names the rebill that "
                 "moves it")
    if block["differing"]["lines"]:
        text += "; " + block["differing"]["text"]
    if sim:
        text += "; nothing was written to the database"
    block["sentence"] = text
    return block


#: how many differing keys the sentence names (the rest: differences.csv)
NAMED_DIFFERENCES = 3


def _difference_text(row) -> str:
    """'A1 recurring from 2027-01-01: the ledger holds 2.00 EUR (C1, quantity 1), current
    data gives 6.00 EUR (C2, quantity 2)'."""
    cur = str(row.currency)
    start = pd.Timestamp(row.period_start).date().isoformat()
    ledger = [f"{format_minor(int(row.ledger_amount), cur)} {cur}"]
    now = [f"{format_minor(int(row.amount), cur)} {cur}"]
    if str(row.ledger_customer_id) != str(row.customer_id):
        ledger.append(f"customer {row.ledger_customer_id}")
        now.append(f"customer {row.customer_id}")
    if int(row.ledger_quantity) != int(row.quantity):
        ledger.append(f"quantity {int(row.ledger_quantity)}")
        now.append(f"quantity {int(row.quantity)}")

    def side(parts):
        return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")

    return (f"{row.assignment_id} {row.kind} from {start}: the ledger holds {side(ledger)}, "
            f"current data gives {side(now)}")


def differing_block(differing: pd.DataFrame | None) -> dict:
    """The posted keys whose current data differs from the ledger, for the sentence and the
    top of the page: how many, the first few named, and the command that corrects them."""
    if differing is None or not len(differing):
        return {"lines": 0, "text": "", "keys": [], "rebill": "", "credits": 0}
    n = len(differing)
    credit = (differing["kind"].astype(str) == LineKind.FREE_MINUTES_CREDIT).to_numpy()
    named = [_difference_text(r) for r in differing.head(NAMED_DIFFERENCES).itertuples()]
    text = (f"{_n(n, 'posted line')} {'differs' if n == 1 else 'differ'} from current data: "
            + "; ".join(named)
            + (f"; and {n - NAMED_DIFFERENCES} more" if n > NAMED_DIFFERENCES else "")
            + " (differences.csv)")
    rebill = ""
    if (~credit).any():
        days = pd.to_datetime(differing.loc[~credit, "run_date"])
        rebill = (f"billing-jobs rebill --from {days.min().date().isoformat()} "
                  f"--to {days.max().date().isoformat()}")
        text += f": run `{rebill}` to see the difference, then with --post to post it"
    if credit.any():
        text += ((" and" if rebill else ":") + f" {_n(int(credit.sum()), 'free-minute credit')}"
                 " follow the recorded consumption: reverse the run and post again, or adjust")
    return {"lines": n, "text": text, "keys": named, "rebill": rebill,
            "credits": int(credit.sum())}


def _held_text(lines: int, amounts: dict, verb: str) -> str:
    if not lines:
        return ""
    return (f"; {_n(lines, 'line')} for {_amounts_text(amounts)} {verb}, not charged: "
            f"{'it overlaps' if lines == 1 else 'they overlap'} days of the same assignment "
            "already charged under another period start (moved start date?); differences.csv "
            "names the rebill that moves the charge")


def outcome_sentence(summary: dict) -> str:
    o = summary.get("outcome") or {}
    return o.get("sentence") or f"{summary.get('status') or '?'}"
