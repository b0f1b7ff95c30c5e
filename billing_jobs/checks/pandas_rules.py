"""The pandas evaluator of `checks.rules`: each rule kind as a vectorised 'fails' mask with
Great Expectations' semantics (nulls are ignored by every rule except `not_null`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from billing_jobs.checks.check_frame import prepare
from billing_jobs.checks.rules import Rule


def pandas_mask(frame: dict, rule: Rule) -> np.ndarray:
    """Boolean 'fails' mask of one rule, with GX's semantics, in vectorised pandas.

    `frame` is what `prepare` returns (column name -> Series).
    """
    if rule.kind == "compound_unique":
        sub = pd.DataFrame({c: frame[c] for c in rule.columns})
        return (sub.duplicated(keep=False) & sub.notna().all(axis=1)).to_numpy(dtype=bool)
    if rule.kind == "pair_equal":
        a, b = rule.columns
        return (frame[a] != frame[b]).to_numpy(dtype=bool)
    col = frame[rule.column]
    present = col.notna().to_numpy(dtype=bool)
    if rule.kind == "not_null":
        return ~present
    if rule.kind == "unique":
        if rule.column in frame.get("__no_duplicates__", ()):
            return np.zeros(len(col), dtype=bool)
        return col.duplicated(keep=False).to_numpy(dtype=bool) & present
    if rule.kind == "in_set":
        return ~col.isin(list(rule.value_set)).to_numpy(dtype=bool) & present
    if rule.kind == "true":
        return ~(col == True).fillna(False).to_numpy(dtype=bool) & present  # noqa: E712
    if rule.kind == "between":
        if pd.api.types.is_integer_dtype(col.dtype):
            values = col.to_numpy(dtype="int64", na_value=0)
        else:
            values = col.to_numpy(dtype="float64", na_value=np.nan)
        bad = np.zeros(len(col), dtype=bool)
        if rule.min_value is not None:
            bad |= values < rule.min_value
        if rule.max_value is not None:
            bad |= values > rule.max_value
        return bad & present
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def evaluate_pandas(frame: pd.DataFrame, rules: Sequence[Rule]) -> list[np.ndarray]:
    """The same rules, same semantics, in vectorised pandas (for very large tables)."""
    if len(frame) == 0 or not rules:
        return [np.zeros(0, dtype="int64") for _ in rules]
    data = prepare(frame, rules)
    return [np.flatnonzero(pandas_mask(data, r)).astype("int64") for r in rules]
