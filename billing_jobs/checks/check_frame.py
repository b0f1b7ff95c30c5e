"""The check frame handed to an evaluator: only the columns the rules read, text key columns
replaced by integer codes (the same nulls and duplicates, far cheaper to hash and compare), and
a fast exact proof that a large text column holds no duplicate at all."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from billing_jobs.checks.rules import Rule

_KEY_KINDS = {"not_null", "unique", "compound_unique"}
_MASKS = np.array([0] + [(1 << (8 * k)) - 1 for k in range(1, 8)] + [2**64 - 1], dtype=np.uint64)
_PROOF_MIN_ROWS = 1_000_000
_PROOF_MAX_BYTES = 64


def _chunk_hashes(chunk) -> np.ndarray | None:
    """64-bit hash of every non-null string of one arrow chunk, 8 bytes per step."""
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
