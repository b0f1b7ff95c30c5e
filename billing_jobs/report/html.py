"""report.html: one self-contained page (Jinja2 template + plotly figures + inline JS/CSS).

plotly.js is inlined once in the page head, so the file opens offline. Detail tables embed
at most TABLE_ROWS rows each as JSON, filtered and paged by a small vanilla script; the
complete detail stays in the CSV files next to the page.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jinja2
import pandas as pd
import plotly.offline
from markupsafe import Markup

from billing_jobs.report import charts
from billing_jobs.report.aggregate import Aggregates
from billing_jobs.report.formatting import format_dates

HERE = Path(__file__).parent
TABLE_ROWS = 2000


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    js = plotly.offline.get_plotlyjs()
    return js.replace("</script", "<\\/script")


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


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


def _figure_html(fig, div_id: str) -> Markup:
    return Markup(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                              config=charts.PLOT_CONFIG, default_width="100%",
                              default_height=f"{int(fig.layout.height or 400)}px"))


def _charts(agg: Aggregates, counts: dict) -> list[dict]:
    specs = [
        ("chart-package", "Amount by package", "wide", charts.amount_by_package(agg),
         "No charge lines in this run."),
        ("chart-kind", "Amount by kind", "span2", charts.amount_by_kind(agg),
         "No charge lines in this run."),
        ("chart-status", "Lines and grants by status", "", charts.lines_by_status(counts),
         "Nothing computed for this run."),
        ("chart-utilisation", "Free-minute utilisation", "wide", charts.utilisation(agg),
         "No free-minute periods open on the day before the run date."),
    ]
    out = []
    for div_id, title, width, fig, empty in specs:
        out.append({"id": div_id, "title": title, "width": width,
                    "html": _figure_html(fig, div_id) if fig is not None else None,
                    "empty": empty})
    return out


def render_html(summary: dict, agg: Aggregates, charges: pd.DataFrame, grants: pd.DataFrame,
                util: pd.DataFrame, rejected: pd.DataFrame, extended: pd.DataFrame) -> str:
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
            charges, numeric=("quantity", "unit_price", "amount", "cost"),
            filters=("status", "kind", "currency"), source="charges.csv"),
        "grants": table_payload(grants, numeric=("seconds",), filters=("status",),
                                source="grants.csv"),
        "utilisation": table_payload(util, numeric=("seconds_granted", "seconds_used"),
                                     source="utilisation.csv"),
        "rejected": table_payload(rejected, filters=("entity",), source="rejected.csv"),
        "extended": table_payload(ext, source="summary.json (extended_ends)"),
    }
    context = {
        "s": summary,
        "run": summary["run"],
        "counts": counts,
        "currencies": agg.currencies,
        "charts": _charts(agg, counts),
        "used_pct": used_pct,
        "tables": {k: script_json(v) for k, v in tables.items()},
        "table_meta": tables,
        "table_rows": TABLE_ROWS,
        "plotly_js": Markup(_plotly_js()),
        "css": _asset("report.css"),
        "js": _asset("report.js"),
    }
    return _env().get_template("report.html.j2").render(**context)
