"""The Great Expectations evaluator of `checks.rules`: a list of rules as one GX suite, run
from code in an ephemeral context (one pandas whole-dataframe batch, one validation).

Importing great_expectations takes seconds and logs "Skipping registering function" lines at
INFO; both are kept out of the way: great_expectations is imported on the first suite this
module runs (a run that never needs GX never pays for it), and the `great_expectations`
loggers are raised to WARNING before the import happens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from billing_jobs.checks.check_frame import prepare
from billing_jobs.checks.rules import Rule, RuleEvaluationError

_LOCK = threading.Lock()
_RESULT_FORMAT = {"result_format": "COMPLETE", "partial_unexpected_count": 0,
                  "include_unexpected_rows": False, "return_unexpected_index_query": False}
_STATE: dict[str, Any] = {}


def quiet_gx_logging() -> None:
    for name in ("great_expectations", "great_expectations._docs_decorators"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _batch_definition():
    """The ephemeral context's pandas whole-dataframe batch definition (created once)."""
    with _LOCK:
        if "bd" not in _STATE:
            quiet_gx_logging()
            # imported on the first suite: seconds of start-up a run without GX never pays
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx = gx.get_context(mode="ephemeral")
            try:
                ctx.enable_analytics(False)
            except Exception:  # pragma: no cover - older/newer API
                pass
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False,
                                                             metric_calculations=False)
            source = ctx.data_sources.add_pandas("billing_checks")
            asset = source.add_dataframe_asset("frame")
            _STATE["gx"] = gx
            _STATE["ctx"] = ctx
            _STATE["bd"] = asset.add_batch_definition_whole_dataframe("whole")
        return _STATE["gx"], _STATE["bd"]


def _expectation(gx, rule: Rule, i: int):
    meta = {"rule_index": i, "rule": rule.name}
    E = gx.expectations
    if rule.kind == "not_null":
        return E.ExpectColumnValuesToNotBeNull(column=rule.column, meta=meta)
    if rule.kind == "unique":
        return E.ExpectColumnValuesToBeUnique(column=rule.column, meta=meta)
    if rule.kind == "compound_unique":
        return E.ExpectCompoundColumnsToBeUnique(column_list=list(rule.columns), meta=meta)
    if rule.kind == "in_set":
        return E.ExpectColumnValuesToBeInSet(column=rule.column, value_set=list(rule.value_set),
                                             meta=meta)
    if rule.kind == "true":
        return E.ExpectColumnValuesToBeInSet(column=rule.column, value_set=[True], meta=meta)
    if rule.kind == "between":
        return E.ExpectColumnValuesToBeBetween(column=rule.column, min_value=rule.min_value,
                                               max_value=rule.max_value, meta=meta)
    if rule.kind == "pair_equal":
        a, b = rule.columns
        return E.ExpectColumnPairValuesToBeEqual(column_A=a, column_B=b, meta=meta)
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def run_suite(frame: pd.DataFrame, rules: Sequence[Rule], suite_name: str) -> list[np.ndarray]:
    """Run `rules` as one GX suite over `frame`; the failing row positions per rule."""
    gx, bd = _batch_definition()
    prepared = prepare(frame, rules)
    prepared.pop("__no_duplicates__")
    data = pd.DataFrame(prepared)
    suite = gx.ExpectationSuite(name=suite_name)
    for i, rule in enumerate(rules):
        suite.add_expectation(_expectation(gx, rule, i))
    with _LOCK:  # the shared context is not documented as thread-safe
        batch = bd.get_batch(batch_parameters={"dataframe": data})
        result = batch.validate(suite, result_format=_RESULT_FORMAT)
    return _failing_rows(result, rules)


def _failing_rows(result, rules: Sequence[Rule]) -> list[np.ndarray]:
    """Per rule, the failing row positions of a validation result; a rule GX could not
    evaluate, or that has no result, raises (never silently treated as a pass)."""
    out: list[np.ndarray | None] = [None] * len(rules)
    for res in result.results:
        i = int(res.expectation_config.meta["rule_index"])
        if _raised(res.exception_info):
            raise RuleEvaluationError(
                f"check {rules[i].name!r} ({rules[i].gx_type}) could not be evaluated: "
                f"{_exception_message(res.exception_info)}")
        idx = res.result.get("unexpected_index_list") or []
        if idx and isinstance(idx[0], dict):  # some expectations return dicts
            idx = [d.get("index") for d in idx]
        out[i] = np.unique(np.asarray(idx, dtype="int64"))
    for i, got in enumerate(out):
        if got is None:
            raise RuleEvaluationError(f"check {rules[i].name!r} returned no result")
    return out  # type: ignore[return-value]


def _raised(info) -> bool:
    if not isinstance(info, dict):
        return False
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def _exception_message(info) -> str:
    if not isinstance(info, dict):
        return ""
    if "exception_message" in info:
        return str(info["exception_message"])
    for v in info.values():
        if isinstance(v, dict) and v.get("exception_message"):
            return str(v["exception_message"])
    return ""
