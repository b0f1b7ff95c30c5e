"""Input and gate rules: what a rule is, and which evaluator checks a frame against it.

A `Rule` names one expectation over one column (or column list) of a *check frame* (a
dataframe with a RangeIndex holding the coerced values and any derived boolean columns),
plus how to word the reason for each failing row. `evaluate` runs a list of rules over a
frame and returns, per rule, the positions of the failing rows:

* `checks.gx_suite` runs them as one Great Expectations suite (one batch, one validation,
  `result_format="COMPLETE"`): the batch's evaluator;
* `checks.pandas_rules` evaluates the same rules with the same semantics in vectorised pandas
  (nulls are ignored by every rule except `not_null`, exactly as GX does). It is used for the
  usage table (millions of call records), where GX's per-validation overhead would dominate.

Small frames take a fast path (`evaluate` hands a frame of at most `fast_path_rows()` rows,
default 2,000, to the pandas evaluator), and inside `interactive()` (a run restricted to chosen
customers, such as Run Package) every frame does: such a run never imports GX, whose import and
context start-up cost ~3-5 s, more than the whole run. The rules and their semantics are the same
objects either way; tests/checks/test_fast_path.py runs the hostile corpus and the gate through
both evaluators and asserts identical results. Set `BILLING_GX_FAST_ROWS=0` to send every frame
of a batch run through GX.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from billing_jobs.core import settings
from billing_jobs.checks.pandas_rules import evaluate_pandas

# not_null | unique | compound_unique | in_set | between | true | pair_equal
Kind = str


@dataclass(frozen=True)
class Rule:
    """One expectation plus the wording of its reason for the failing rows."""

    name: str  # the operator-facing rule name, e.g. "quantity must be at least 1"
    kind: Kind
    column: str | None = None
    columns: tuple[str, ...] = ()  # compound_unique / pair_equal
    value_set: tuple[Any, ...] = ()
    min_value: Any = None
    max_value: Any = None
    # failing rows of the check frame -> one reason string per row (same index)
    reason: Callable[[pd.DataFrame], pd.Series] | None = field(default=None, compare=False)

    @property
    def gx_type(self) -> str:
        return {
            "not_null": "expect_column_values_to_not_be_null",
            "unique": "expect_column_values_to_be_unique",
            "compound_unique": "expect_compound_columns_to_be_unique",
            "in_set": "expect_column_values_to_be_in_set",
            "between": "expect_column_values_to_be_between",
            "true": "expect_column_values_to_be_in_set",
            "pair_equal": "expect_column_pair_values_to_be_equal",
        }[self.kind]

    def used_columns(self) -> list[str]:
        return [self.column] if self.column is not None else list(self.columns)


class RuleEvaluationError(RuntimeError):
    """GX could not evaluate a rule (never silently treated as a pass)."""


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
    from billing_jobs.checks.gx_suite import run_suite

    return run_suite(frame, rules, suite_name)
