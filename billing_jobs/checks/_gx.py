"""Rules as Great Expectations expectations, run from code in an ephemeral context.

A `Rule` names one expectation over one column (or column list) of a *check frame* (a
dataframe with a RangeIndex holding the coerced values and any derived boolean columns),
plus how to word the reason for each failing row. `evaluate` runs a list of rules as one
GX suite (one batch, one validation) with `result_format="COMPLETE"` and returns, per rule,
the positions of the failing rows.

`evaluate_pandas` evaluates the same rules with the same semantics in plain vectorised
pandas (nulls are ignored by every rule except `not_null`, exactly as GX does). It is used
for the usage table (millions of call records) where GX's per-validation overhead (it
hashes the whole batch and materialises every result list) would dominate the run; the
test-suite checks that both evaluators agree on every rule kind.

Small frames take a fast path (`evaluate` hands a frame of at most `fast_path_rows()` rows,
default 2,000, to `evaluate_pandas`): an interactive run (Run Package: one customer, a few
assignments and calls) then never imports GX, whose import and context start-up cost ~3-5 s,
more than the whole run. The rules and their semantics are the same objects either way, and
tests/checks/test_fast_path.py runs the hostile corpus and the gate through both evaluators
and asserts identical results. Set `BILLING_GX_FAST_ROWS=0` to send every frame through GX.

Importing great_expectations takes seconds and logs "Skipping registering function" lines
at INFO; both are kept out of the way: the import is lazy (first validation only) and the
`great_expectations` loggers are raised to WARNING before it happens.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from billing_jobs import settings

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


_KEY_KINDS = {"not_null", "unique", "compound_unique"}
_MASKS = np.array([0] + [(1 << (8 * k)) - 1 for k in range(1, 8)] + [2**64 - 1], dtype=np.uint64)
_PROOF_MIN_ROWS = 1_000_000
_PROOF_MAX_BYTES = 64


def _chunk_hashes(chunk) -> np.ndarray | None:
    """64-bit hash of every non-null string of one arrow chunk, 8 bytes per step."""
    import pyarrow as pa

    if chunk.null_count:
        chunk = chunk.drop_null()
    n = len(chunk)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    if pa.types.is_large_string(chunk.type):
        otype = np.int64
    elif pa.types.is_string(chunk.type):
        otype = np.int32
    else:
        return None
    bufs = chunk.buffers()
    off = np.frombuffer(bufs[1], dtype=otype)[chunk.offset:chunk.offset + n + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None \
        else np.zeros(0, np.uint8)
    lens = np.diff(off)
    if int(lens.max()) > _PROOF_MAX_BYTES:
        return None
    padded = np.zeros(len(data) + 8, dtype=np.uint8)
    padded[:len(data)] = data
    # every 8-byte window of the data, one per starting byte
    words = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    start = off[:-1]
    h = lens.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for j in range(0, int(lens.max()), 8):
        rem = np.clip(lens - j, 0, 8)
        w = words[np.minimum(start + j, len(words) - 1)] & _MASKS[rem]
        h ^= w
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
    return h


def proved_unique(s: pd.Series) -> bool:
    """True when the non-null texts of `s` are certainly all distinct (fast, exact).

    Distinct 64-bit hashes imply distinct texts, so all-distinct hashes prove uniqueness;
    anything else (a real duplicate, a hash collision, long or odd values) returns False
    and the caller falls back to the exact (slower) hash-table check.
    """
    import pyarrow as pa

    if len(s) < _PROOF_MIN_ROWS:
        return False
    try:
        arr = pa.array(s.array) if isinstance(s.dtype, pd.StringDtype) else \
            pa.array(s.to_numpy(dtype=object), from_pandas=True)
    except (pa.ArrowException, TypeError):
        return False
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    parts = []
    for c in chunks:
        h = _chunk_hashes(c)
        if h is None:
            return False
        parts.append(h)
    hashes = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)
    return not bool((hashes[1:] == hashes[:-1]).any())


def _is_text(s: pd.Series) -> bool:
    return s.dtype == object or isinstance(s.dtype, pd.StringDtype)


def prepare(frame: pd.DataFrame, rules: Sequence[Rule]) -> dict:
    """The columns the rules read, text key columns replaced by their factorized codes.

    A text column that only not-null / unique rules read is handed over as integer codes
    (Int64, <NA> where the text is missing): the same nulls and the same duplicates, but
    integers are far cheaper to hash and compare than millions of strings (GX hashes the
    whole batch on every validation).
    """
    cols = list(dict.fromkeys(c for r in rules for c in r.used_columns()))
    readers: dict[str, set[str]] = {c: set() for c in cols}
    for r in rules:
        for c in r.used_columns():
            readers[c].add(r.kind)
    data = {}
    no_dups: set[str] = set()
    for c in cols:
        s = frame[c]
        if _is_text(s) and readers[c] == {"not_null"}:
            # only its nulls matter: 0.0 where present, NaN where missing
            data[c] = np.where(s.isna().to_numpy(dtype=bool), np.nan, 0.0)
        elif _is_text(s) and readers[c] <= {"not_null", "unique"} and proved_unique(s):
            # distinct for certain: codes are not needed, only where it is missing
            data[c] = np.where(s.isna().to_numpy(dtype=bool), np.nan,
                               np.arange(len(s), dtype="float64"))
            no_dups.add(c)
        elif _is_text(s) and readers[c] <= _KEY_KINDS:
            codes, uniques = pd.factorize(s, use_na_sentinel=True)
            arr = pd.array(codes, dtype="Int64")
            missing = codes < 0
            arr[missing] = pd.NA
            data[c] = arr
            if len(uniques) == len(codes) - int(missing.sum()):
                no_dups.add(c)
        elif isinstance(s.dtype, pd.Int64Dtype) and readers[c] <= {"between", "not_null"}:
            # GX compares nullable integers one Python value at a time; float64 with NaN
            # for <NA> is vectorised and exact here: every bound is within ±2**53, where
            # comparing a rounded value gives the same answer as the exact integer.
            for r in rules:
                if r.column == c and r.kind == "between":
                    for bound in (r.min_value, r.max_value):
                        if bound is not None and abs(bound) > 2**53:
                            raise ValueError(f"bound {bound} of {r.name!r} is not exact in float64")
            data[c] = s.to_numpy(dtype="float64", na_value=np.nan)
        else:
            data[c] = s
    index = pd.RangeIndex(len(frame))
    out = {c: v if isinstance(v, pd.Series) else pd.Series(v, index=index, name=c, copy=False)
           for c, v in data.items()}
    out["__no_duplicates__"] = no_dups
    return out


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
