"""Destination patterns: the provider's regular-expression form (`^44|^91|^1`).

A pattern is *searched* in the dialled number (a leading `+` of the number is ignored;
`^` anchors at the start of the number). Matching must take time linear in the input
whatever the pattern, so patterns are compiled and run with RE2 only:

- `check_pattern` validates a pattern with the `re2` module (google-re2) and with the
  RE2 inside pyarrow, and returns a reason an operator understands when it is refused;
- `destination_matches` matches millions of numbers at once with
  `pyarrow.compute.match_substring_regex` (RE2, C++), with a fast path for the common
  pure-prefix form (`^44|^91|^1`) that needs no regular expression at all.

RE2 has no back-references and no look-around, which is what makes it linear; a pattern
using them is refused with that reason rather than silently run with other semantics.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import re2

MAX_PATTERN_LENGTH = 200

# `^44|^91|^1`: only anchored digit prefixes (spaces around alternatives tolerated? no:
# the provider's form has none, and a space would be a literal to match).
_PREFIX_FORM = re.compile(r"^\^[0-9]+(?:\|\^[0-9]+)*$")  # ASCII digits only

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 otherwise writes every refused pattern to stderr

_BACKREF_ARG = re.compile(r"^\\(?:[1-9]|[kg])")


def _explain_re2_error(pattern: str, exc: Exception) -> str:
    raw = exc.args[0] if exc.args else str(exc)
    msg = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    code, _, arg = msg.partition(": ")
    if code == "invalid escape sequence" and _BACKREF_ARG.match(arg):
        return f"back-references are not supported (found {arg[:2]})"
    if code == "invalid perl operator" or code == "invalid named capture group":
        if "(?P=" in pattern or "(?P>" in pattern:
            return "back-references are not supported (found (?P=...))"
        for op, name in (("(?=", "look-ahead"), ("(?!", "negative look-ahead"),
                         ("(?<=", "look-behind"), ("(?<!", "negative look-behind")):
            if op in pattern:
                return f"{name} {op}...) is not supported"
    if arg:
        return f"does not compile: {code} (at {arg!r})"
    return f"does not compile: {code}"


def check_pattern(pattern: str | None) -> str | None:
    """None when `pattern` is usable (empty/None: matches every number), else why not."""
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        return f"pattern must be text (got {type(pattern).__name__})"
    if pattern == "":
        return None
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"pattern is longer than {MAX_PATTERN_LENGTH} characters (got {len(pattern)})"
    try:
        pattern.encode("utf-8")
    except UnicodeEncodeError:
        return "pattern contains characters that are not valid text"
    if _PREFIX_FORM.match(pattern):
        return None
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except Exception as exc:  # re2.error; its messages are RE2's parse errors
        return _explain_re2_error(pattern, exc)
    # The matching itself runs in pyarrow's RE2: make sure it accepts the pattern too.
    try:
        pc.match_substring_regex(pa.array(["0"], type=pa.string()), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        msg = str(exc).removeprefix("Invalid regular expression: ")
        return f"does not compile: {msg}"
    if compiled.search("") is not None:
        return ("pattern matches every number (it matches an empty number: is there an "
                "empty alternative such as a trailing '|'?); leave destination empty "
                "to match all calls")
    return None


def _to_arrow_strings(destinations) -> pa.Array | pa.ChunkedArray:
    if isinstance(destinations, (pa.Array, pa.ChunkedArray)):
        arr = destinations.fill_null("") if destinations.null_count else destinations
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = pc.cast(arr, pa.large_string())
        return arr
    s = destinations
    if not (pd.api.types.is_string_dtype(s.dtype) and s.dtype != object):
        s = s.astype("string")
    s = s.fillna("")
    arr = pa.array(s, from_pandas=True)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.large_string())
    return arr


def destination_matches(destinations: pd.Series | pa.Array | pa.ChunkedArray,
                        pattern: str | None) -> np.ndarray:
    """Boolean array: which dialled numbers the pattern matches (linear time, RE2).

    A leading `+` of the number is ignored; an empty or None pattern matches every number;
    a missing number is treated as empty (matched only by an empty pattern). The pattern
    must have passed `check_pattern` (a refused pattern raises ValueError).
    """
    n = len(destinations)
    if pattern is None or pattern == "":
        return np.ones(n, dtype=bool)
    if n == 0:
        return np.zeros(0, dtype=bool)
    reason = check_pattern(pattern)
    if reason is not None:
        raise ValueError(f"destination pattern {pattern!r} refused: {reason}")
    arr = _to_arrow_strings(destinations)
    if _PREFIX_FORM.match(pattern):
        # Fast path: anchored digit prefixes, with or without the leading '+'.
        result = None
        for prefix in pattern.replace("^", "").split("|"):
            hit = pc.or_(pc.starts_with(arr, prefix), pc.starts_with(arr, "+" + prefix))
            result = hit if result is None else pc.or_(result, hit)
    else:
        plus = pc.starts_with(arr, "+")
        stripped = pc.if_else(plus, pc.utf8_slice_codeunits(arr, 1), arr)
        result = pc.match_substring_regex(stripped, pattern)
    out = result.to_numpy(zero_copy_only=False)
    return np.asarray(out, dtype=bool)
