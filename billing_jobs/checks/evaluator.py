"""Which evaluator checks a frame against its rules (`checks.rules`).

* `checks.gx_suite` runs them as one Great Expectations suite (one batch, one validation,
  `result_format="COMPLETE"`): the batch's evaluator;
* `checks.pandas_rules` evaluates the same rules with the same semantics in vectorised pandas
  (nulls are ignored by every rule except `not_null`, exactly as GX does). It is used for the
  usage table (millions of call records), where GX's per-validation overhead would dominate.

Small frames take a fast path (`evaluate` hands a frame of at most `fast_path_rows()` rows,
default 2,000, to the pandas evaluator), and inside `interactive()` (a run restricted to chosen
customers, such as Run Package) every frame does: such a run never imports GX, whose import and
context start-up cost ~3-5 s, more than the whole run (`checks.gx_suite` imports it on its
first suite). The rules and their semantics are the same objects either way;
tests/checks/test_fast_path.py runs the hostile corpus and the gate through both evaluators and
asserts identical results. Set `BILLING_GX_FAST_ROWS=0` to send every frame of a batch run
through GX.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Sequence

import numpy as np
import pandas as pd

from billing_jobs.checks.gx_suite import run_suite
from billing_jobs.checks.pandas_rules import evaluate_pandas
from billing_jobs.checks.rules import Rule
from billing_jobs.core import settings

FAST_PATH_ROWS = settings.DEFAULT_GX_FAST_ROWS
_INTERACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("billing_interactive",
                                                                  default=False)


@contextlib.contextmanager
def interactive():
    """Inside: every frame takes the pandas path, whatever its size (an interactive run such
    as Run Package: one customer, whose calls may still be tens of thousands of rows). The
    batch (no customer filter) keeps GX for every frame above `fast_path_rows()`."""
    token = _INTERACTIVE.set(True)
    try:
        yield
    finally:
        _INTERACTIVE.reset(token)


def fast_path_rows() -> int:
    """Frames with at most this many rows are evaluated by `evaluate_pandas` (env
    `BILLING_GX_FAST_ROWS`, default 2,000; 0 = always GX; inside `interactive()`: all)."""
    if _INTERACTIVE.get():
        return 1 << 62
    return settings.gx_fast_rows()


def evaluate(frame: pd.DataFrame, rules: Sequence[Rule], suite_name: str) -> list[np.ndarray]:
    """Run `rules` as one GX suite over `frame`; failing row positions per rule. A frame of
    at most `fast_path_rows()` rows takes the pandas path (same rules, same semantics)."""
    if len(frame) == 0 or not rules:
        return [np.zeros(0, dtype="int64") for _ in rules]
    if len(frame) <= fast_path_rows():
        return evaluate_pandas(frame, rules)
    return run_suite(frame, rules, suite_name)
