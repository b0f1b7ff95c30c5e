"""Plotly figures for report.html, built from the aggregates (never from raw lines).

Money of different currencies is never drawn on one axis: money charts have one panel per
currency. Bar lengths are floats (display only); hover text shows the exact decimal.

The figures are plain plotly figure dicts ({"data": [...], "layout": {...}}), rendered with
`plotly.io.to_html(fig, validate=False)`: building them as `go.Figure` objects validated every
property and expanded the template through plotly's validators: 0.17 s of a one-customer
report, now 0.03 s (#13). `_grid` lays out subplots exactly as `plotly.subplots.make_subplots`
does for a plain grid; tests/report/test_charts.py checks the grid against make_subplots and that
plotly's validation accepts every figure unchanged.
"""

from __future__ import annotations

import json
import math
import pkgutil
from functools import lru_cache

import pandas as pd

from billing_jobs.core.money import format_minor
from billing_jobs.core.vocab import DUE_KINDS, LineStatus
from billing_jobs.report.aggregate import Aggregates

MAX_CURRENCY_PANELS = 6
TOP_PACKAGES = 15
TOP_UTIL_CUSTOMERS = 20

AMOUNT_COLOUR = "#2563eb"
COST_COLOUR = "#f59e0b"
USED_COLOUR = "#16a34a"
GRANTED_COLOUR = "#93c5fd"
TEMPLATE = "plotly_white"
TITLE_FONT = {"size": 16}  # make_subplots' subplot title font

PLOT_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}


def plain(values) -> list[str]:
    """Labels as plain text: plotly renders a subset of HTML in labels and hover text, so
    '<', '>' and '&' in ids and names are written as entities and shown as typed (#17.9)."""
    return [str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            for v in values]


MIN_BAR_SHARE = 0.01  # a non-zero bar is drawn at least 1% of its panel's largest bar


def _visible(values: list[float]) -> list[float]:
    top = max((abs(v) for v in values), default=0.0)
    floor = top * MIN_BAR_SHARE
    return [(max(v, floor) if v > 0 else (min(v, -floor) if v < 0 else 0.0)) for v in values]


@lru_cache(maxsize=1)
def _template_json() -> bytes:
    # the file `plotly.io.templates[TEMPLATE]` reads, without building a validated Template
    return pkgutil.get_data("plotly", f"package_data/templates/{TEMPLATE}.json")


def _template() -> dict:
    return json.loads(_template_json())  # a fresh copy per figure


def _figure() -> dict:
    return {"data": [], "layout": {}}


def _grid(rows: int, cols: int, titles: list[str], *, horizontal_spacing: float = 0.0,
          vertical_spacing: float = 0.0, row_heights: list[float] | None = None,
          column_widths: list[float] | None = None) -> dict:
    """A figure with a rows × cols grid of x/y subplots, row 1 at the top: the axes' domains and
    the subplot titles as `make_subplots(start_cell="top-left")` computes them (same formulas,
    same order of float operations). Cell (row, col) uses axes number (row - 1) * cols + col.
    A spacing between a single row or column does not count (make_subplots' defaults do not
    matter there)."""
    if column_widths is None:
        widths = [(1.0 - horizontal_spacing * (cols - 1)) / cols] * cols
    else:
        total = float(sum(column_widths))
        widths = [(1.0 - horizontal_spacing * (cols - 1)) * (w / total) for w in column_widths]
    if row_heights is None:
        heights = [(1.0 - vertical_spacing * (rows - 1)) / rows] * rows
    else:
        total = float(sum(row_heights))
        heights = [(1.0 - vertical_spacing * (rows - 1)) * (h / total)
                   for h in row_heights][::-1]  # bottom row first, as the grid's y runs
    layout: dict = {}
    annotations = []
    for r in range(rows):  # r = 0 is the top row
        y_s = sum(heights[:rows - 1 - r]) + (rows - 1 - r) * vertical_spacing
        y_e = y_s + heights[-1 - r]
        for c in range(cols):
            x_s = sum(widths[:c]) + c * horizontal_spacing
            x_domain = [max(0.0, x_s), min(1.0, x_s + widths[c])]
            y_domain = [max(0.0, min(1.0, y_s)), min(1.0, max(0.0, y_e))]
            n = r * cols + c + 1
            suffix = str(n) if n > 1 else ""
            layout["xaxis" + suffix] = {"anchor": "y" + suffix, "domain": x_domain}
            layout["yaxis" + suffix] = {"anchor": "x" + suffix, "domain": y_domain}
            if n <= len(titles) and titles[n - 1]:
                annotations.append({"font": dict(TITLE_FONT), "showarrow": False,
                                    "text": titles[n - 1], "x": sum(x_domain) / 2.0,
                                    "xanchor": "center", "xref": "paper", "y": y_domain[1],
                                    "yanchor": "bottom", "yref": "paper"})
    if annotations:  # plotly keeps no empty list
        layout["annotations"] = annotations
    return {"data": [], "layout": layout}


def _cell(row: int, col: int, cols: int) -> str:
    """Axis suffix of grid cell (row, col): "" for the first, then "2", "3"..."""
    n = (row - 1) * cols + col
    return str(n) if n > 1 else ""


def _add(fig: dict, trace: dict, cell: str | None = None) -> None:
    """Append a bar trace (keys in plotly's own order), on subplot `cell` of a grid."""
    trace["type"] = "bar"
    if cell is not None:
        trace["xaxis"] = "x" + cell
        trace["yaxis"] = "y" + cell
    fig["data"].append(trace)


def _yaxis(fig: dict, cell: str = "") -> dict:
    return fig["layout"].setdefault("yaxis" + cell, {})


def _count_axis(fig: dict, top: int, cell: str = "") -> None:
    """Integer ticks for counts: never 0.5 lines."""
    axis = _yaxis(fig, cell)
    axis.update(rangemode="tozero", tickformat=",d")
    if top <= 10:
        axis["dtick"] = 1


def _layout(fig: dict, height: int) -> dict:
    fig["layout"].update(
        template=_template(),
        margin=dict(l=10, r=10, t=64, b=10),
        font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12),
        # legend in the top margin, above the subplot titles
        legend=dict(orientation="h", yref="container", y=0.995, yanchor="top",
                    xanchor="right", x=1),
        hoverlabel=dict(namelength=-1),
        height=height,
        barmode="group",
        bargap=0.25,
    )
    return fig


def _money_text(values, currency: str) -> list[str]:
    # one call per bar drawn (at most TOP_PACKAGES + 1 per panel), not per line
    return [f"{format_minor(int(v), currency)} {currency}" for v in values]


def _bar_pair(fig: dict, frame: pd.DataFrame, label_col: str, currency: str, cell: str,
              first: bool, horizontal: bool) -> None:
    labels = plain(frame[label_col].astype(str).tolist())
    for what, colour in (("amount", AMOUNT_COLOUR), ("cost", COST_COLOUR)):
        values = _visible(frame[what + "_f"].tolist())
        text = _money_text(frame[what], currency)
        trace = {"customdata": [[t, n] for t, n in zip(text, frame["lines"].tolist())],
                 "hovertemplate": "%{customdata[0]}<br>%{customdata[1]} lines<extra>"
                                  + what + "</extra>",
                 "legendgroup": what, "marker": {"color": colour}, "name": what}
        if horizontal:
            trace.update(orientation="h", showlegend=first, x=values, y=labels)
        else:
            trace.update(showlegend=first, x=labels, y=values)
        _add(fig, trace, cell)


#: a package name longer than this is cut (with …) in a bar label
PACKAGE_LABEL_CHARS = 40


def package_labels(package_ids, names: dict | None) -> list[str]:
    """'name (id)' for a package with a name (#30 item 14), the id alone otherwise; ids are
    unique, so the labels are too (one bar each)."""
    out = []
    for pid in package_ids:
        pid = str(pid)
        name = str((names or {}).get(pid) or "").strip()
        if len(name) > PACKAGE_LABEL_CHARS:
            name = name[:PACKAGE_LABEL_CHARS - 1] + "…"
        out.append(f"{name} ({pid})" if name and name != pid else pid)
    return out


def amount_by_package(agg: Aggregates, names: dict | None = None) -> dict | None:
    """`names`: package_id -> name, shown beside the id on each bar."""
    currencies = agg.currencies[:MAX_CURRENCY_PANELS]
    if not currencies:
        return None
    panels = []
    for cur in currencies:
        rows = agg.by_package[agg.by_package["currency"] == cur]
        title = f"{cur}: amount and cost by package"
        if len(rows) > TOP_PACKAGES:
            rest = rows.iloc[TOP_PACKAGES:]
            # the rest is named in the title, not drawn: one bar for hundreds of packages
            # would dwarf the ones an analyst looks at
            title = (f"{cur}: top {TOP_PACKAGES} of {len(rows)} packages by amount "
                     f"(other {len(rest)}: {format_minor(sum(rest['amount']), cur)} {cur})")
        top = rows.head(TOP_PACKAGES)
        top = top.assign(package=package_labels(top["package_id"], names))
        panels.append((cur, title.replace("&", "&amp;").replace("<", "&lt;"), top))
    heights = [max(2, len(p)) * 34 + 40 for _, _, p in panels]
    gap = 70  # px between panels: tick labels + next subplot title
    total_h = sum(heights) + gap * (len(panels) - 1)
    fig = _grid(len(panels), 1, [title for _, title, _ in panels],
                row_heights=[h / total_h for h in heights],
                vertical_spacing=gap / total_h if len(panels) > 1 else 0.0)
    for i, (cur, _, frame) in enumerate(panels, start=1):
        cell = _cell(i, 1, 1)
        _bar_pair(fig, frame, "package", cur, cell, first=(i == 1), horizontal=True)
        _yaxis(fig, cell).update(autorange="reversed", automargin=True)
    return _layout(fig, total_h + 80)


def amount_by_kind(agg: Aggregates) -> dict | None:
    currencies = agg.currencies[:MAX_CURRENCY_PANELS]
    if not currencies:
        return None
    cols = min(3, len(currencies))
    nrows = math.ceil(len(currencies) / cols)
    fig = _grid(nrows, cols, [f"{cur}: by kind" for cur in currencies],
                horizontal_spacing=0.12, vertical_spacing=0.22 if nrows > 1 else 0.1)
    order = {k: i for i, k in enumerate(DUE_KINDS)}
    for i, cur in enumerate(currencies):
        frame = agg.by_kind[agg.by_kind["currency"] == cur]
        frame = frame.sort_values("kind", key=lambda s: s.map(order).fillna(len(order)))
        cell = _cell(i // cols + 1, i % cols + 1, cols)
        _bar_pair(fig, frame, "kind", cur, cell, first=(i == 0), horizontal=False)
        _yaxis(fig, cell)["title"] = {"text": cur}
    return _layout(fig, 330 * nrows + 40)


def lines_by_status(counts: dict) -> dict | None:
    if not counts["lines"] and not counts["grants"]:
        return None
    statuses = [str(s) for s in LineStatus
                if s in counts["lines_by_status"] or s in counts["grants_by_status"]]
    statuses += sorted((set(counts["lines_by_status"]) | set(counts["grants_by_status"]))
                       - set(statuses))
    fig = _figure()
    _add(fig, {"hovertemplate": "%{y} lines<extra>%{x}</extra>",
               "marker": {"color": AMOUNT_COLOUR}, "name": "charge lines", "x": statuses,
               "y": [counts["lines_by_status"].get(s, 0) for s in statuses]})
    _add(fig, {"hovertemplate": "%{y} grants<extra>%{x}</extra>",
               "marker": {"color": USED_COLOUR}, "name": "free-minute grants", "x": statuses,
               "y": [counts["grants_by_status"].get(s, 0) for s in statuses]})
    top = max(list(counts["lines_by_status"].values()) + list(counts["grants_by_status"].values())
              + [0])
    _count_axis(fig, top)
    return _layout(fig, 320)


def utilisation(agg: Aggregates) -> dict | None:
    per_customer = agg.util_by_customer
    if not len(per_customer):
        return None
    top = per_customer.sort_values(["seconds_granted", "customer_id"], ascending=[False, True],
                                   kind="stable").head(TOP_UTIL_CUSTOMERS)
    title = "Minutes granted vs used"
    if len(per_customer) > len(top) and len(top) > 1:
        title += f" (top {len(top)} of {len(per_customer)} customers)"
    elif len(top) > 1:
        title += f" ({len(top)} customers)"
    fig = _grid(1, 2, [title, "Periods by share of minutes used"], column_widths=[0.62, 0.38],
                horizontal_spacing=0.12)
    customers = plain(top["customer_id"].astype(str).tolist())
    granted = _visible((top["seconds_granted"] / 60).round(1).tolist())
    used = _visible((top["seconds_used"] / 60).round(1).tolist())
    _add(fig, {"hovertemplate": "%{y} min granted<extra>%{x}</extra>",
               "marker": {"color": GRANTED_COLOUR}, "name": "granted (min)", "x": customers,
               "y": granted}, "")
    _add(fig, {"hovertemplate": "%{y} min used<extra>%{x}</extra>",
               "marker": {"color": USED_COLOUR}, "name": "used (min)", "x": customers,
               "y": used}, "")
    labels = [b for b, _ in agg.util_histogram]
    _add(fig, {"hovertemplate": "%{y} periods<extra>%{x} used</extra>",
               "marker": {"color": "#64748b"}, "name": "periods", "showlegend": False,
               "x": labels, "y": [n for _, n in agg.util_histogram]}, "2")
    _yaxis(fig, "")["title"] = {"text": "minutes"}
    _yaxis(fig, "2")["title"] = {"text": "periods"}
    _count_axis(fig, max([n for _, n in agg.util_histogram] + [0]), "2")
    return _layout(fig, 380)
