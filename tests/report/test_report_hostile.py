"""Hostile names and ids (#14, #17.9): nothing is evaluated in the CSVs, nothing runs in the page."""

from __future__ import annotations

import csv
import re

import pandas as pd

from billing_jobs.report import write_report
from billing_jobs.report.writer import neutralise_formulas
from tests.report import scenario

PAYLOADS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR",
            '<a href="http://evil">x</a>', "<b>bold</b>", '<img src=x onerror="alert(1)">']


def test_formula_cells_are_quoted_but_negative_amounts_stay_numbers():
    frame = pd.DataFrame({"customer_id": PAYLOADS[:6] + ["C1"], "amount": ["-0.72"] * 7})
    out = neutralise_formulas(frame)
    assert list(out["customer_id"][:6]) == ["'" + p for p in PAYLOADS[:6]]
    assert out["customer_id"].iloc[6] == "C1"
    assert set(out["amount"]) == {"-0.72"}


def test_hostile_ids_in_every_text_field(tmp_path):
    result = scenario.result()
    lines = result.due_lines
    n = len(lines)
    lines["customer_id"] = [PAYLOADS[i % len(PAYLOADS)] for i in range(n)]
    lines["package_id"] = [PAYLOADS[(i + 3) % len(PAYLOADS)] for i in range(n)]
    lines["assignment_id"] = [f"{PAYLOADS[(i + 5) % len(PAYLOADS)]}#{i}" for i in range(n)]
    result.grants["customer_id"] = PAYLOADS[0]
    result.utilisation["customer_id"] = PAYLOADS[6]
    rejected = pd.DataFrame({"entity": ["customers"], "id": [PAYLOADS[0]], "reason": [PAYLOADS[8]]})
    context = {"customers": pd.DataFrame({"customer_id": PAYLOADS, "name": PAYLOADS[::-1]}),
               "packages": pd.DataFrame({"package_id": PAYLOADS, "name": PAYLOADS,
                                         "description": PAYLOADS, "frequency": "monthly"})}
    out = write_report(tmp_path / "run", scenario.run_info(), result, rejected, {},
                       context=context)
    for name in ("charges.csv", "grants.csv", "utilisation.csv", "rejected.csv", "balances.csv"):
        with open(out / name, newline="") as fh:
            rows = list(csv.reader(fh))
        for row in rows[1:]:
            for cell in row:
                # a cell a spreadsheet would evaluate starts with one of these: none may,
                # except a number (amount columns hold decimals such as -0.72)
                if cell[:1] in ("=", "+", "@", "\t", "\r") or (
                        cell[:1] == "-" and not re.fullmatch(r"-\d+(\.\d+)?", cell)):
                    raise AssertionError(f"{name}: {cell!r} would be evaluated")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<b>bold</b>" not in html and '<a href="http://evil">' not in html
    assert 'onerror="alert(1)"' not in html
    csp = re.search(r'Content-Security-Policy" content="([^"]*)"', html).group(1)
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    # every executable inline script carries the nonce; data blocks are JSON only
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert f'nonce="{nonce}"' in tag or 'type="application/json"' in tag, tag
