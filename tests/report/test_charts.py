"""The report's figures are plain dicts (#13): plotly's own validation must accept each one
unchanged, and the subplot grid must be the one make_subplots lays out."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from billing_jobs.core.frames import BillingResult
from billing_jobs.report import aggregate as agg_mod
from billing_jobs.report import charts
from billing_jobs.report.html import _figure_html
from tests.report import scenario

CURRENCIES = ["EUR", "USD", "JPY", "KWD", "GBP", "CHF", "SEK", "NOK"]


def _result(n_cur: int, n_pkg: int, n_util: int, hostile: bool = False) -> BillingResult:
    r = scenario.big_result(400, seed=3)
    lines = r.due_lines
    lines["currency"] = [CURRENCIES[i % n_cur] for i in range(len(lines))]
    lines["package_id"] = [f"P{(i * 7) % n_pkg}" + ("<&>" if hostile else "")
                           for i in range(len(lines))]
    util = r.utilisation.head(n_util).copy()
    util["customer_id"] = [f"U{i}" + ("<b>" if hostile else "") for i in range(len(util))]
    return BillingResult(due_lines=lines, grants=r.grants.head(n_util).copy(),
                         utilisation=util, extended_ends=r.extended_ends)


def _aggregates(result: BillingResult):
    return agg_mod.aggregate(agg_mod.normalise_lines(result, "post"),
                             agg_mod.normalise_grants(result, "post"),
                             agg_mod.normalise_utilisation(result),
                             agg_mod.normalise_rejected(scenario.rejected()),
                             agg_mod.normalise_extended(result))


CASES = {
    "scenario": scenario.result(),
    "one of each": _result(1, 1, 1),
    "two currencies, 20 packages": _result(2, 20, 5),
    "four currencies, hostile labels": _result(4, 16, 30, hostile=True),
    "eight currencies, 40 packages": _result(8, 40, 21),
}


def _figures(agg) -> list[dict]:
    figs = [charts.amount_by_package(agg), charts.amount_by_kind(agg),
            charts.lines_by_status(agg.counts), charts.utilisation(agg)]
    assert all(f is not None for f in figs)
    return figs


@pytest.mark.parametrize("case", list(CASES))
def test_plotly_validation_accepts_every_figure_unchanged(case):
    for fig in _figures(_aggregates(CASES[case])):
        validated = go.Figure(fig).to_dict()
        assert validated == fig
        # what the page embeds: the same JSON as the validated figure's
        assert json.loads(json.dumps(validated)) == json.loads(json.dumps(fig))


def _layout_of(fig) -> dict:
    layout = fig.to_dict()["layout"]
    layout.pop("template", None)
    return layout


@pytest.mark.parametrize("rows, cols, kw", [
    (1, 1, {"vertical_spacing": 0.0, "row_heights": [1.0]}),
    (3, 1, {"vertical_spacing": 70 / 612, "row_heights": [0.4, 0.2, 0.25]}),
    (6, 1, {"vertical_spacing": 0.05, "row_heights": [108, 142, 550, 74, 108, 600]}),
    (1, 1, {"horizontal_spacing": 0.12, "vertical_spacing": 0.1}),
    (1, 3, {"horizontal_spacing": 0.12, "vertical_spacing": 0.1}),
    (2, 3, {"horizontal_spacing": 0.12, "vertical_spacing": 0.22}),
    (3, 3, {"horizontal_spacing": 0.12, "vertical_spacing": 0.22}),
    (1, 2, {"horizontal_spacing": 0.12, "column_widths": [0.62, 0.38]}),
])
def test_grid_is_make_subplots_grid(rows, cols, kw):
    titles = [f"title {i}" for i in range(rows * cols - 1)] + [""]  # one cell without a title
    expected = make_subplots(rows=rows, cols=cols, subplot_titles=titles, **kw)
    got = charts._grid(rows, cols, titles, **kw)
    assert got["data"] == []
    assert got["layout"] == _layout_of(expected)
    # exact floats, not approximately equal ones: the page gets the same numbers
    assert json.dumps(got["layout"], sort_keys=True) == json.dumps(_layout_of(expected),
                                                                   sort_keys=True)


def test_figure_html_has_the_nonce_and_the_height():
    fig = charts.lines_by_status(_aggregates(scenario.result()).counts)
    html = _figure_html(fig, "chart-status", "NONCE")
    assert html.startswith('<div style="height:320px; width:100%;">')
    assert '<div id="chart-status" class="plotly-graph-div"' in html
    assert html.count('<script nonce="NONCE">') == 1 and "<script>" not in html
    flat = html.replace(" ", "")
    assert '"template":{' in flat and '"plot_bgcolor":"white"' in flat  # plotly_white, inline
