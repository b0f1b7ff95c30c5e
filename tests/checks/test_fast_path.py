"""The small-frame fast path of `checks.evaluator.evaluate` (pandas) gives exactly what Great
Expectations gives: every hostile-corpus case and gate case through both evaluators."""

from __future__ import annotations

import pandas as pd
import pytest

from billing_jobs.checks import gate, validate_inputs
from billing_jobs.checks import evaluator as _gx
from billing_jobs.checks.rules import Rule
from billing_jobs.core.errors import BillingError
from tests.checks import test_gate as g
from tests.checks._data import raw_inputs
from tests.checks.test_inputs_corpus import CASES


def _both(monkeypatch, fn):
    monkeypatch.setenv("BILLING_GX_FAST_ROWS", "0")  # every frame through GX
    slow = fn()
    monkeypatch.setenv("BILLING_GX_FAST_ROWS", "1000000")  # every frame through pandas
    fast = fn()
    return slow, fast


def _validated(case):
    def run():
        raw = raw_inputs()
        case.mutate(raw)
        return validate_inputs(raw)
    return run


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_same_through_gx_and_pandas(monkeypatch, case):
    (c1, r1), (c2, r2) = _both(monkeypatch, _validated(case))
    pd.testing.assert_frame_equal(r1, r2)
    for entity in ("customers", "packages", "assignments", "usage"):
        pd.testing.assert_frame_equal(getattr(c1, entity), getattr(c2, entity), obj=entity)


GATE_CASES = [
    ("good", lambda: g.result()),
    ("empty", lambda: g.result([], [])),
    ("negative amount", lambda: g.result(g.with_change(0, amount=-10 * g.M))),
    ("negative cost", lambda: g.result(g.with_change(1, cost=-1 * g.M))),
    ("over the maximum", lambda: g.result(g.with_change(0, amount=10**18 + 10_000))),
    ("wrong currency", lambda: g.result(g.with_change(0, currency="USD"))),
    ("before the start", lambda: g.result(g.with_change(1, period_start=g.D("2027-01-03")))),
    ("after the end", lambda: g.result(g.with_change(2, period_start=g.D("2027-02-01")))),
    ("minor unit", lambda: g.result(g.with_change(0, amount=10_005_000))),
    ("unknown kind", lambda: g.result(g.with_change(0, kind="bonus"))),
    ("unknown assignment", lambda: g.result(g.with_change(0, assignment_id="A99"))),
    ("other customer", lambda: g.result(g.with_change(0, customer_id="C4"))),
    ("missing period start", lambda: g.result(g.with_change(0, period_start=pd.NaT))),
]


@pytest.mark.parametrize("make", [m for _, m in GATE_CASES], ids=[n for n, _ in GATE_CASES])
def test_gate_same_through_gx_and_pandas(monkeypatch, make):
    def run():
        try:
            gate(make(), g.inputs())
            return "passed"
        except BillingError as exc:
            return str(exc)
    slow, fast = _both(monkeypatch, run)
    assert slow == fast


def test_small_frames_take_the_fast_path_and_large_ones_gx(monkeypatch):
    rules = [Rule("x must be unique", "unique", "x"),
             Rule("x between", "between", "x", min_value=0, max_value=5)]
    frame = pd.DataFrame({"x": [1, 1, 7, None]})
    monkeypatch.delenv("BILLING_GX_FAST_ROWS", raising=False)
    assert _gx.fast_path_rows() == _gx.FAST_PATH_ROWS
    fast = _gx.evaluate(frame, rules, "t")
    monkeypatch.setenv("BILLING_GX_FAST_ROWS", "0")
    slow = _gx.evaluate(frame, rules, "t")
    assert [a.tolist() for a in fast] == [a.tolist() for a in slow] == [[0, 1], [2]]
    monkeypatch.setenv("BILLING_GX_FAST_ROWS", "junk")
    assert _gx.fast_path_rows() == _gx.FAST_PATH_ROWS


def test_an_interactive_validation_never_imports_great_expectations():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\nfrom tests.checks._data import raw_inputs\n"
            "from billing_jobs.checks import validate_inputs\n"
            "validate_inputs(raw_inputs())\n"
            "print('great_expectations' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=str(Path(__file__).parents[2]),
                         env={k: v for k, v in __import__("os").environ.items()
                              if k != "BILLING_GX_FAST_ROWS"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_interactive_sends_every_frame_through_pandas(monkeypatch):
    monkeypatch.delenv("BILLING_GX_FAST_ROWS", raising=False)
    rules = [Rule("x must be unique", "unique", "x")]
    frame = pd.DataFrame({"x": list(range(5_000)) + [7]})
    assert len(frame) > _gx.fast_path_rows()
    slow = _gx.evaluate(frame, rules, "t")
    with _gx.interactive():
        assert _gx.fast_path_rows() >= 1 << 62
        fast = _gx.evaluate(frame, rules, "t")
    assert _gx.fast_path_rows() == _gx.FAST_PATH_ROWS
    assert fast[0].tolist() == slow[0].tolist() == [7, 5_000]
