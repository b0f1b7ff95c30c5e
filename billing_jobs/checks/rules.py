"""What an input or gate rule is: one expectation over a check frame and the wording of its reason.

A `Rule` names one expectation over one column (or column list) of a *check frame* (a
dataframe with a RangeIndex holding the coerced values and any derived boolean columns),
plus how to word the reason for each failing row. Two evaluators check a frame against a list
of rules, with the same semantics (nulls are ignored by every rule except `not_null`, exactly
as GX does): `checks.gx_suite` (one Great Expectations suite) and `checks.pandas_rules`
(vectorised pandas); `checks.evaluator` chooses between them. Both import this module, never
the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


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
