"""report.html: one self-contained page (Jinja2 template + plotly figures + inline JS/CSS).

plotly.js is inlined once in the page head, so the file opens offline. Detail tables embed
at most TABLE_ROWS rows each as JSON, filtered and paged by a small vanilla script; the
complete detail stays in the CSV files next to the page.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
from functools import lru_cache
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import plotly.io
import plotly.offline
from markupsafe import Markup

from billing_jobs.report import charts
from billing_jobs.report.aggregate import Aggregates
from billing_jobs.report.formatting import format_dates

HERE = Path(__file__).parent
STAGE_NAMES = {
    "load": "load inputs from the database",
    "validate": "check input rows",
    "compute": "compute what is due",
    "gate": "check lines before posting (gate)",
    "post": "post to the ledger",
    "simulate": "compare with the ledger (simulation)",
    "total_before_report": "total before writing the report",
    "report": "write the report",
    "forecast": "simulate the forecast dates",
}
TABLE_ROWS = 2000


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    js = plotly.offline.get_plotlyjs()
    return js.replace("</script", "<\\/script")


AUTOESCAPE = ("html", "j2")


class _CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """The templates' compiled code kept between processes, so a run loads the page's code
    instead of parsing and compiling the template (~25 ms a report). Jinja checks each
    entry against the template's source (checksum) and its own format; the file names add
    the Jinja and Python versions and the environment's options, so a changed template or
    option is compiled afresh. A cache that cannot be read or written is not used: the
    template is compiled as without it."""

    def load_bytecode(self, bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a damaged entry: compile afresh
            bucket.reset()

    def dump_bytecode(self, bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:  # a read-only or full temp folder: nothing kept
            pass


def _compiled_templates(env: jinja2.Environment) -> jinja2.BytecodeCache | None:
    """The cache of `env`'s compiled templates, in the user's private folder of the system
    temp folder (Jinja's default), named by what the compiled code depends on."""
    options = sorted((k, v) for k, v in vars(env).items()
                     if isinstance(v, (bool, int, str, tuple)) and not k.startswith("_"))
    key = hashlib.sha256(repr((jinja2.__version__, sys.version, AUTOESCAPE, options,
                               sorted(env.extensions))).encode()).hexdigest()[:16]
    try:
        return _CompiledTemplates(pattern=f"billing-jobs-{key}-%s.cache")
    except (OSError, RuntimeError):  # no private temp folder: compile each time
        return None


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(list(AUTOESCAPE), default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.bytecode_cache = _compiled_templates(env)
    return env


def _asset(name: str) -> Markup:
    text = (HERE / "assets" / name).read_text(encoding="utf-8")
    return Markup(text.replace("</script", "<\\/script").replace("</style", "<\\/style"))


def script_json(value) -> Markup:
    """JSON safe inside <script type="application/json"> (no '<', '>', '&' left raw)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)


def table_payload(frame: pd.DataFrame, *, total: int | None = None, limit: int = TABLE_ROWS,
                  numeric=(), filters=(), source: str = "") -> dict:
    """The first `limit` rows of an already-formatted frame, as {columns, rows, ...}."""
    head = frame.head(limit)
    rows = head.astype(object).where(head.notna(), "").astype(str).to_numpy().tolist()
    return {
        "columns": [str(c) for c in frame.columns],
        "rows": rows,
        "total": int(len(frame) if total is None else total),
        "numeric": [c for c in numeric if c in frame.columns],
        "filters": [c for c in filters if c in frame.columns],
        "source": source,
    }


def _in_minutes(frame: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """Seconds columns shown as minutes (one decimal when not whole), period_end labelled."""
    out = frame.copy()
    for sec, minutes in columns.items():
        v = pd.to_numeric(out[sec], errors="coerce").fillna(0).astype("int64")
        whole = v % 60 == 0
        out[sec] = np.where(whole, (v // 60).astype(str), (v / 60).round(1).astype(str))
        out = out.rename(columns={sec: minutes})
    if "period_end" in out.columns:
        out = out.rename(columns={"period_end": "period_end (exclusive)"})
    return out


def _figure_html(fig: dict, div_id: str, nonce: str) -> Markup:
    # plain figure dicts (charts.py), not validated again: the JSON is what a go.Figure gave,
    # but for the order of the template's keys (plotly's file order, not its class order)
    html = plotly.io.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                             config=charts.PLOT_CONFIG, default_width="100%",
                             default_height=f"{int(fig['layout'].get('height') or 400)}px",
                             validate=False)
    # every inline script carries the page's nonce: the CSP allows no other inline script
    html = html.replace("<script type=\"text/javascript\">", f'<script nonce="{nonce}">')
    html = html.replace("<script>", f'<script nonce="{nonce}">')
    return Markup(html)


def _package_names(context: dict | None) -> dict:
    ref = (context or {}).get("packages")
    if ref is None or "name" not in ref.columns:
        return {}
    return dict(zip(ref["package_id"].astype(str), ref["name"].fillna("").astype(str)))


def _charts(agg: Aggregates, counts: dict, nonce: str, context: dict | None = None
            ) -> list[dict]:
    specs = [
        ("chart-package", "Amount by package", "wide",
         charts.amount_by_package(agg, _package_names(context)),
         "No charge lines in this run."),
        ("chart-kind", "Amount by kind", "wide", charts.amount_by_kind(agg),
         "No charge lines in this run."),
        ("chart-status", "Lines and grants by status", "", charts.lines_by_status(counts),
         "Nothing computed for this run."),
        ("chart-utilisation", "Free-minute utilisation", "wide", charts.utilisation(agg),
         "No free-minute periods open on the day before the run date."),
    ]
    out = []
    for div_id, title, width, fig, empty in specs:
        out.append({"id": div_id, "title": title, "width": width,
                    "html": _figure_html(fig, div_id, nonce) if fig is not None else None,
                    "empty": empty})
    return out


def render_html(summary: dict, agg: Aggregates, charges: pd.DataFrame, grants: pd.DataFrame,
                util: pd.DataFrame, rejected: pd.DataFrame, extended: pd.DataFrame,
                balances: pd.DataFrame | None = None, total_lines: int | None = None,
                context: dict | None = None, nonce: str | None = None) -> str:
    counts = summary["counts"]
    ext = pd.DataFrame({
        "assignment_id": extended["assignment_id"].astype(str).to_numpy(),
        "customer_id": extended["customer_id"].astype(str).to_numpy(),
        "end_date": format_dates(extended["end_date"]),
        "effective_end": format_dates(extended["effective_end"]),
    })
    util_total = summary["free_minutes"]["utilisation"]
    granted = util_total["seconds_granted"]
    used_pct = (f"{util_total['seconds_used'] * 100 / granted:.1f}" if granted else None)
    tables = {
        "lines": table_payload(
            charges, total=total_lines, numeric=("quantity", "unit_price", "amount", "cost"),
            filters=("status", "kind", "currency"), source="charges.csv"),
        "grants": table_payload(_in_minutes(grants, {"seconds": "minutes"}),
                                numeric=("minutes",), filters=("status",),
                                source="grants.csv (in seconds)"),
        "utilisation": table_payload(
            _in_minutes(util, {"seconds_granted": "minutes_granted",
                               "seconds_used": "minutes_used"}),
            numeric=("minutes_granted", "minutes_used"), source="utilisation.csv (in seconds)"),
        "balances": table_payload(
            balances if balances is not None else pd.DataFrame(
                columns=["customer_id", "name", "currency", "posted_lines", "posted_amount",
                         "balance_before", "balance_after"]),
            numeric=("posted_lines", "posted_amount", "balance_before", "balance_after"),
            filters=("currency",), source="balances.csv"),
        "rejected": table_payload(rejected, filters=("entity",), source="rejected.csv"),
        "extended": table_payload(ext, source="summary.json (extended_ends)"),
    }
    nonce = nonce or secrets.token_urlsafe(18)
    figures = _charts(agg, counts, nonce, context)
    context = {
        "nonce": nonce,
        "stage_names": STAGE_NAMES,
        "s": summary,
        "run": summary["run"],
        "counts": counts,
        "currencies": agg.currencies,
        "charts": figures,
        "used_pct": used_pct,
        "tables": {k: script_json(v) for k, v in tables.items()},
        "table_meta": tables,
        "table_rows": TABLE_ROWS,
        "plotly_js": Markup(_plotly_js()),
        "css": _asset("report.css"),
        "js": _asset("report.js"),
    }
    return _env().get_template("report.html.j2").render(**context)
