"""Plotly figures for report.html, built from the aggregates (never from raw lines).

Money of different currencies is never drawn on one axis: money charts have one panel per
currency. Bar lengths are floats (display only); hover text shows the exact decimal.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from billing_jobs.engine.money import format_minor
from billing_jobs.report.aggregate import Aggregates
from billing_jobs.report.formatting import KINDS, LINE_STATUSES

MAX_CURRENCY_PANELS = 6
TOP_PACKAGES = 15
TOP_UTIL_CUSTOMERS = 20

AMOUNT_COLOUR = "#2563eb"
COST_COLOUR = "#f59e0b"
USED_COLOUR = "#16a34a"
GRANTED_COLOUR = "#93c5fd"

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


def _count_axis(fig, top: int, **where) -> None:
    """Integer ticks for counts: never 0.5 lines."""
    kw = dict(rangemode="tozero", tickformat=",d")
    if top <= 10:
        kw["dtick"] = 1
    fig.update_yaxes(**kw, **where)


def _layout(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin=dict(l=10, r=10, t=64, b=10),
        font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12),
        # legend in the top margin, above the subplot titles
        legend=dict(orientation="h", yref="container", y=0.995, yanchor="top",
                    xanchor="right", x=1),
        barmode="group",
        bargap=0.25,
        hoverlabel=dict(namelength=-1),
    )
    return fig


def _money_text(values, currency: str) -> list[str]:
    # one call per bar drawn (at most TOP_PACKAGES + 1 per panel), not per line
    return [f"{format_minor(int(v), currency)} {currency}" for v in values]


def _bar_pair(fig, frame: pd.DataFrame, label_col: str, currency: str, row: int, col: int,
              first: bool, horizontal: bool) -> None:
    labels = plain(frame[label_col].astype(str).tolist())
    for what, colour in (("amount", AMOUNT_COLOUR), ("cost", COST_COLOUR)):
        values = _visible(frame[what + "_f"].tolist())
        text = _money_text(frame[what], currency)
        common = dict(name=what, legendgroup=what, showlegend=first, marker_color=colour,
                      customdata=[[t, n] for t, n in zip(text, frame["lines"].tolist())],
                      hovertemplate="%{customdata[0]}<br>%{customdata[1]} lines<extra>"
                                    + what + "</extra>")
        if horizontal:
            fig.add_trace(go.Bar(y=labels, x=values, orientation="h", **common), row=row, col=col)
        else:
            fig.add_trace(go.Bar(x=labels, y=values, **common), row=row, col=col)


def amount_by_package(agg: Aggregates) -> go.Figure | None:
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
        panels.append((cur, title.replace("&", "&amp;").replace("<", "&lt;"),
                       rows.head(TOP_PACKAGES)))
    heights = [max(2, len(p)) * 34 + 40 for _, _, p in panels]
    gap = 70  # px between panels: tick labels + next subplot title
    total_h = sum(heights) + gap * (len(panels) - 1)
    fig = make_subplots(rows=len(panels), cols=1,
                        subplot_titles=[title for _, title, _ in panels],
                        row_heights=[h / total_h for h in heights],
                        vertical_spacing=gap / total_h if len(panels) > 1 else 0.0)
    for i, (cur, _, frame) in enumerate(panels, start=1):
        _bar_pair(fig, frame, "package_id", cur, i, 1, first=(i == 1), horizontal=True)
        fig.update_yaxes(autorange="reversed", automargin=True, row=i, col=1)
    return _layout(fig, total_h + 80)


def amount_by_kind(agg: Aggregates) -> go.Figure | None:
    currencies = agg.currencies[:MAX_CURRENCY_PANELS]
    if not currencies:
        return None
    cols = min(3, len(currencies))
    nrows = math.ceil(len(currencies) / cols)
    fig = make_subplots(rows=nrows, cols=cols,
                        subplot_titles=[f"{cur}: by kind" for cur in currencies],
                        horizontal_spacing=0.12, vertical_spacing=0.22 if nrows > 1 else 0.1)
    order = {k: i for i, k in enumerate(KINDS)}
    for i, cur in enumerate(currencies):
        frame = agg.by_kind[agg.by_kind["currency"] == cur]
        frame = frame.sort_values("kind", key=lambda s: s.map(order).fillna(len(order)))
        _bar_pair(fig, frame, "kind", cur, i // cols + 1, i % cols + 1, first=(i == 0),
                  horizontal=False)
        fig.update_yaxes(title_text=cur, row=i // cols + 1, col=i % cols + 1)
    return _layout(fig, 330 * nrows + 40)


def lines_by_status(counts: dict) -> go.Figure | None:
    if not counts["lines"] and not counts["grants"]:
        return None
    statuses = [s for s in LINE_STATUSES
                if s in counts["lines_by_status"] or s in counts["grants_by_status"]]
    statuses += sorted((set(counts["lines_by_status"]) | set(counts["grants_by_status"]))
                       - set(statuses))
    fig = go.Figure()
    fig.add_trace(go.Bar(x=statuses, y=[counts["lines_by_status"].get(s, 0) for s in statuses],
                         name="charge lines", marker_color=AMOUNT_COLOUR,
                         hovertemplate="%{y} lines<extra>%{x}</extra>"))
    fig.add_trace(go.Bar(x=statuses, y=[counts["grants_by_status"].get(s, 0) for s in statuses],
                         name="free-minute grants", marker_color=USED_COLOUR,
                         hovertemplate="%{y} grants<extra>%{x}</extra>"))
    top = max(list(counts["lines_by_status"].values()) + list(counts["grants_by_status"].values())
              + [0])
    _count_axis(fig, top)
    return _layout(fig, 320)


def utilisation(agg: Aggregates) -> go.Figure | None:
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
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.12,
                        subplot_titles=[title, "Periods by share of minutes used"])
    customers = plain(top["customer_id"].astype(str).tolist())
    granted = _visible((top["seconds_granted"] / 60).round(1).tolist())
    used = _visible((top["seconds_used"] / 60).round(1).tolist())
    fig.add_trace(go.Bar(x=customers, y=granted, name="granted (min)",
                         marker_color=GRANTED_COLOUR,
                         hovertemplate="%{y} min granted<extra>%{x}</extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=customers, y=used, name="used (min)", marker_color=USED_COLOUR,
                         hovertemplate="%{y} min used<extra>%{x}</extra>"), row=1, col=1)
    labels = [b for b, _ in agg.util_histogram]
    fig.add_trace(go.Bar(x=labels, y=[n for _, n in agg.util_histogram], name="periods",
                         marker_color="#64748b", showlegend=False,
                         hovertemplate="%{y} periods<extra>%{x} used</extra>"), row=1, col=2)
    fig.update_yaxes(title_text="minutes", row=1, col=1)
    fig.update_yaxes(title_text="periods", row=1, col=2)
    _count_axis(fig, max([n for _, n in agg.util_histogram] + [0]), row=1, col=2)
    return _layout(fig, 380)
