"""The cells of an imported CSV, parsed strictly by kind (billing_jobs/core/entities.py).

Values are parsed vectorised: decimals with `money.parse_micros_series` (max 6 places; only
`customers.balance` may be negative), dates `YYYY-MM-DD` (real calendar dates), timestamps
ISO 8601 (UTC when no offset is given), booleans true/false/1/0/yes/no (any case;
billing_jobs/core/booleans.py), integers. Text follows billing_jobs/core/text.py (#17 items 6
and 10). Every broken rule is collected; the chunk fails naming the first by row (and the row's
id, when the id cell itself is readable), then column, and how many cells broke a rule in all.
Ids repeated inside one chunk are refused the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from billing_jobs.core import booleans
from billing_jobs.core import text as text_rules
from billing_jobs.core.entities import FILE_KINDS, REQUIRED_KINDS
from billing_jobs.core.errors import ImportFailed
from billing_jobs.core.frames import ENTITY_KEYS
from billing_jobs.core.money import (
    BALANCE_BOUND_MICROS,
    MAX_MICROS,
    MICRO_DIGITS,
    MICROS,
    parse_micros,
    parse_micros_series,
)
from billing_jobs.ingest.source import (
    IMPORT_CHUNK_ROWS,
    ROW_KEY_PARTS,
    Source,
    check_header,
    column_text,
    raw_chunks,
    read_header,
)

#: the column naming a row of each import file (changes.csv: the assignment it changes)
FILE_KEYS = {**ENTITY_KEYS, "changes": "assignment_id"}

#: Codes stored upper-case whatever case the file has: an ISO 4217 currency is one code, and
#: `eur` stored beside `EUR` would be two currencies to every comparison (#28 item 12).
UPPER_CASE_COLUMNS = frozenset({"currency"})

#: Text bounds and forbidden characters: billing_jobs/core/text.py (#17 items 6 and 10)
_CONTROL = text_rules.pattern(text_rules.CONTROL)
_CONTROL_TEXT = text_rules.pattern(text_rules.CONTROL_IN_TEXT)
_INVISIBLE = text_rules.pattern(text_rules.INVISIBLE)
_FORMAT_TEXT = text_rules.pattern(text_rules.FORMAT_IN_TEXT)
_RANGES = {_CONTROL: text_rules.CONTROL, _CONTROL_TEXT: text_rules.CONTROL_IN_TEXT,
           _INVISIBLE: text_rules.INVISIBLE, _FORMAT_TEXT: text_rules.FORMAT_IN_TEXT}


@dataclass
class _Problem:
    row: int
    column: str
    message: str


def parsed_chunks(entity: str, source: Source,
                  chunk_rows: int = IMPORT_CHUNK_ROWS) -> Iterator[tuple[pd.DataFrame, pa.Table]]:
    """Read and strictly parse the file `chunk_rows` rows at a time; raise ImportFailed naming
    the first problem. Yields at least one chunk (an empty one for a header-only file).

    Each chunk's typed rows come twice: a pandas frame indexed by CSV row number (for the
    rule checks) and the arrow table that is written."""
    name = source.name
    header = read_header(name, source.head())
    spec = FILE_KINDS[entity]
    check_header(name, entity, header)
    for first_row, table in raw_chunks(name, source, header, chunk_rows):
        yield parse_chunk(name, entity, table, spec, first_row)


def _np(arr) -> np.ndarray:
    """Arrow boolean/number array -> numpy (nulls as False for booleans)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_boolean(arr.type):
        arr = pc.fill_null(arr, False)
    return arr.to_numpy(zero_copy_only=False)


def _fast_micros(text: pa.Array) -> np.ndarray:
    r"""Micros of strings already known to match ^\d{1,13}(\.\d{0,6})?$ (others must be '0').

    Same arithmetic as money.parse_micros_series (whole * 10^6 + fraction padded to 6
    digits), done with pyarrow kernels: ten times faster on millions of rows."""
    whole = pc.cast(pc.replace_substring_regex(text, r"\..*$", ""), pa.int64())
    frac = pc.replace_substring_regex(text, r"^\d*\.?", "")
    digits = _np(pc.utf8_length(frac)).astype("int64")
    frac_val = _np(pc.cast(pc.if_else(pc.equal(frac, ""), "0", frac), pa.int64())).astype("int64")
    return _np(whole).astype("int64") * MICROS + frac_val * (10 ** (MICRO_DIGITS - digits))


def _text_rules(col: str, kind: str, raw: pa.Array, ok: np.ndarray, complain) -> None:
    """Control characters anywhere; in free text the bidirectional overrides and invisible
    format characters (text_rules.FORMAT_IN_TEXT); in ids and references every format
    character, text not in Unicode NFC form (a decomposed 'é' is another id) and more than
    MAX_ID_CHARS."""
    control = _CONTROL if kind in ("id", "rtext") else _CONTROL_TEXT
    complain(col, ok & _np(pc.match_substring_regex(raw, control)), raw,
             lambda v: f"control character {_first(v, control)} not allowed: {_shown(v)}")
    limit = text_rules.MAX_ID_CHARS if kind in ("id", "rtext") else text_rules.MAX_TEXT_CHARS
    complain(col, ok & (_np(pc.utf8_length(raw)) > limit), raw,
             lambda v: f"longer than {limit} characters ({len(v)}): {_shown(v)}")
    if kind not in ("id", "rtext"):
        complain(col, ok & _np(pc.match_substring_regex(raw, _FORMAT_TEXT)), raw,
                 text_rules.format_problem)
        return
    complain(col, ok & _np(pc.match_substring_regex(raw, _INVISIBLE)), raw,
             lambda v: f"invisible character {_first(v, _INVISIBLE)} not allowed in an id: "
             f"{_shown(v)}")
    complain(col, ok & ~_np(pc.equal(pc.utf8_normalize(raw, "NFC"), raw)), raw,
             lambda v: "not in Unicode NFC form (a composed character written decomposed, "
             f"e.g. 'e' + U+0301): {ascii(v[:40])}; write it composed")


def _first(value: str, pattern: str) -> str:
    """The first character of `value` that `pattern` (_CONTROL or _INVISIBLE) matches."""
    return text_rules.first_of(value, _RANGES[pattern])


_shown = text_rules.shown


class _Problems:
    """The rules the cells broke: per rule and column the first row breaking it (its value
    in the message), and how many cells broke a rule in all."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows  # CSV row number of each cell
        self.found: list[_Problem] = []
        self.total = 0

    def complain(self, column: str, mask: np.ndarray, raw: pa.Array, message) -> None:
        """Record the cells of `column` under `mask`; `message` is text or value -> text."""
        if mask.any():
            idx = np.flatnonzero(mask)
            first = int(idx[0])
            value = raw[first].as_py()
            text = message(value) if callable(message) else message
            self.found.append(_Problem(int(self.rows[first]), column, text))
            self.total += len(idx)

    def raise_first(self, name: str, order: list[str],
                    id_of: Callable[[int, str], str | None] = lambda row, column: None) -> None:
        """ImportFailed naming the first problem (by row, then column `order`), if any, and
        its row's id when `id_of(row, column)` gives one."""
        if not self.found:
            return
        self.found.sort(key=lambda p: (p.row, order.index(p.column)))
        first = self.found[0]
        more = self.total - 1
        row_id = id_of(first.row, first.column)
        raise ImportFailed(
            f"{name} row {first.row} (row 1 is the header), "
            + (f"{row_id}, " if row_id else "")
            + f"column {first.column}: {first.message}"
            + (f"; {more} more problem(s) in the file" if more else "")
        )


def parse_chunk(name: str, entity: str, table: pa.Table, spec: dict[str, str],
           first_row: int = 2) -> tuple[pd.DataFrame, pa.Table]:
    """Validate every cell; return (typed pandas frame indexed by CSV row, arrow table)."""
    n = table.num_rows
    rows = np.arange(first_row, first_row + n)  # CSV row numbers: header is row 1
    problems = _Problems(rows)
    arrays: dict[str, pa.Array] = {}
    frame: dict[str, pd.Series] = {}
    for col, kind in spec.items():
        raw = column_text(table, col)
        empty = _np(pc.equal(raw, ""))
        if kind in REQUIRED_KINDS:
            problems.complain(col, empty, raw, "missing value")
        parser = _PARSERS.get(kind)
        if parser is None:  # pragma: no cover
            raise AssertionError(kind)
        arrays[col], frame[col] = parser(col, kind, raw, empty, problems)
        if kind == "id":
            part = ROW_KEY_PARTS.get(entity)
            _check_duplicate_ids(col, raw, ~empty, rows, problems,
                                 column_text(table, part) if part in spec else None)
    problems.raise_first(name, list(spec), _row_id(entity, table, first_row))
    typed = pd.DataFrame({c: frame[c].reset_index(drop=True) for c in spec}, columns=list(spec))
    typed.index = pd.Index(rows, name="row")
    return typed, pa.table({c: arrays[c] for c in spec})


def _row_id(entity: str, table: pa.Table, first_row: int) -> Callable[[int, str], str | None]:
    """`(row, column) -> "package_id 'P1'"`: the row's id when the id cell itself is readable
    (not empty, no control or invisible character, NFC, not too long) and the problem is in
    another column (a problem in the id column shows the value itself)."""
    key = FILE_KEYS[entity]

    def id_of(row: int, column: str) -> str | None:
        if column == key:
            return None
        cell = column_text(table, key).slice(row - first_row, 1)
        if len(cell) != 1 or not cell[0].as_py() or text_rules.bad_ids(cell)[0]:
            return None
        return f"{key} {_shown(cell[0].as_py())}"

    return id_of


def _parse_text(col: str, kind: str, raw: pa.Array, empty: np.ndarray,
                problems: _Problems) -> tuple[pa.Array, pd.Series]:
    """id, rtext, text: the text as it is; ntext: empty cells are NULL / None."""
    _text_rules(col, kind, raw, ~empty, problems.complain)
    if col in UPPER_CASE_COLUMNS:  # 'eur' is stored as 'EUR' (#28 item 12)
        raw = pc.utf8_upper(raw)
    if kind != "ntext":
        return raw, pd.Series(raw.to_pandas(), dtype=str)
    array = pc.if_else(pa.array(empty), pa.scalar(None, pa.string()), raw)
    series = pd.Series(array.to_pandas(), dtype=object)
    return array, series.where(~empty, None)


def _parse_money(col: str, kind: str, raw: pa.Array, empty: np.ndarray,
                 problems: _Problems) -> tuple[pa.Array, pd.Series]:
    """money, money0 (>= 0) and smoney (a balance: signed, within the bound) as int64 micros;
    an empty cell is 0."""
    ok = ~empty
    negative = _np(pc.starts_with(raw, "-")) & ok
    if kind == "smoney":
        body = pc.if_else(pa.array(negative), pc.utf8_slice_codeunits(raw, 1), raw)
    else:
        problems.complain(col, negative, raw, lambda v: f"negative amount not allowed: {v!r}")
        body = raw
    fast = _np(pc.match_substring_regex(body, r"^\d{1,13}(\.\d{0,6})?$"))
    micros = _fast_micros(pc.if_else(pa.array(fast), body, "0"))
    fast &= micros <= MAX_MICROS
    slow = ok & ~fast & ~(negative & (kind != "smoney"))
    bad = np.zeros(len(raw), dtype=bool)
    if slow.any():  # everything unusual goes through the reference parser
        sub = pd.Series(body.filter(pa.array(slow)).to_pandas(), dtype=str)
        sub_micros, sub_bad = parse_micros_series(sub)
        micros[slow] = sub_micros.to_numpy()
        bad[slow] = sub_bad.to_numpy()
    problems.complain(col, bad, raw, _money_reason)
    micros = np.where(ok & ~bad, micros, 0)
    if kind == "smoney":  # a balance: the bound posting holds (calc.money)
        beyond = ok & ~bad & (micros > BALANCE_BOUND_MICROS)
        problems.complain(col, beyond, raw, lambda v: f"balance beyond the bound +/-"
                          f"{BALANCE_BOUND_MICROS // 1_000_000} units: {v!r}")
        micros = np.where(negative, -micros, micros)
    return pa.array(micros.astype("int64")), pd.Series(micros.astype("int64"))


def _parse_int(col: str, kind: str, raw: pa.Array, empty: np.ndarray,
               problems: _Problems) -> tuple[pa.Array, pd.Series]:
    """int, int0 as int64 (an empty cell is 0); nint: an empty cell is NULL / <NA>."""
    ok = ~empty
    good = _np(pc.match_substring_regex(raw, r"^[+-]?\d{1,18}$"))
    problems.complain(col, ok & ~good, raw, lambda v: f"not an integer: {v!r}")
    digits = pc.replace_substring_regex(raw, r"^\+", "")
    values = _np(pc.cast(pc.if_else(pa.array(ok & good), digits, "0"), pa.int64()))
    if kind == "nint":
        return (pa.array(values.astype("int64"), mask=empty),
                pd.Series(pd.array(values.astype("int64"), dtype="Int64")).mask(empty))
    return pa.array(values.astype("int64")), pd.Series(values.astype("int64"))


def _parse_date(col: str, kind: str, raw: pa.Array, empty: np.ndarray,
                problems: _Problems) -> tuple[pa.Array, pd.Series]:
    """date, ndate: YYYY-MM-DD, a real calendar date; an empty cell is NULL / NaT."""
    ok = ~empty
    shaped = _np(pc.match_substring_regex(raw, r"^\d{4}-\d{2}-\d{2}$"))
    text = pd.Series(raw.to_pandas(), dtype=object).where(ok & shaped, None)
    parsed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    bad = ok & (~shaped | parsed.isna().to_numpy())
    problems.complain(col, bad, raw, lambda v: f"not a valid date (YYYY-MM-DD): {v!r}")
    values = parsed.to_numpy().astype("datetime64[s]")
    return pc.cast(pa.array(values, mask=np.isnat(values)), pa.date32()), pd.Series(values)


def _parse_timestamp(col: str, kind: str, raw: pa.Array, empty: np.ndarray,
                     problems: _Problems) -> tuple[pa.Array, pd.Series]:
    """ts: ISO 8601, UTC when no offset is given, in microseconds."""
    ok = ~empty
    shaped = _np(pc.match_substring_regex(raw, r"^\d{4}-\d{2}-\d{2}"))
    text = pd.Series(raw.to_pandas(), dtype=str).where(ok & shaped, None)
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = ok & (~shaped | parsed.isna().to_numpy())
    problems.complain(col, bad, raw, lambda v: f"not an ISO 8601 timestamp: {v!r}")
    parsed = parsed.dt.as_unit("us")
    return pa.array(parsed, type=pa.timestamp("us", tz="UTC")), parsed.reset_index(drop=True)


def _parse_bool(col: str, kind: str, raw: pa.Array, empty: np.ndarray,
                problems: _Problems) -> tuple[pa.Array, pd.Series]:
    """bool, bool0: the words of core/booleans.py (true/false/1/0/yes/no) in any case; an
    empty cell is false."""
    low = pc.utf8_lower(raw)
    is_true = _np(pc.is_in(low, value_set=pa.array(sorted(booleans.TRUE_WORDS))))
    is_false = _np(pc.is_in(low, value_set=pa.array(sorted(booleans.FALSE_WORDS))))
    problems.complain(col, ~empty & ~is_true & ~is_false, raw,
                      lambda v: f"not a boolean ({booleans.SHOWN}): {v!r}")
    return pa.array(is_true), pd.Series(is_true, dtype=bool)


#: Column kind (billing_jobs/core/entities.py) -> its parser
_PARSERS = {
    "id": _parse_text, "rtext": _parse_text, "text": _parse_text, "ntext": _parse_text,
    "money": _parse_money, "money0": _parse_money, "smoney": _parse_money,
    "int": _parse_int, "int0": _parse_int, "nint": _parse_int,
    "date": _parse_date, "ndate": _parse_date,
    "ts": _parse_timestamp,
    "bool": _parse_bool, "bool0": _parse_bool,
}


def _check_duplicate_ids(col: str, raw: pa.Array, ok: np.ndarray, rows: np.ndarray,
                         problems: _Problems, part: pa.Array | None = None) -> None:
    """Ids repeated inside the file: each repeat after the first names the first's row. With
    `part` (a package's version date, ROW_KEY_PARTS) a row is the id and its part: a package
    and its versions share the id."""
    n = len(raw)
    keys = raw if part is None else pc.binary_join_element_wise(raw, part, "\x1f")
    if not n or pc.count_distinct(keys).as_py() >= n:
        return
    ids = pd.Series(keys.to_pandas(), dtype=str)
    dup = ids.duplicated(keep="first").to_numpy() & ok
    first_row = pd.Series(rows, index=ids.to_numpy()).groupby(level=0).first()
    if part is None:
        problems.complain(col, dup, raw,
                          lambda v: f"duplicate id {v!r} (first on row {first_row[v]})")
        return

    def message(key: str) -> str:
        value, _, date = key.partition("\x1f")
        what = f"duplicate id {value!r}" + (f" from {date!r}" if date else "")
        return f"{what} (first on row {first_row[key]})"

    problems.complain(col, dup, keys, message)


def _money_reason(value: str) -> str:
    body = value.lstrip("-")
    try:
        parse_micros(body)
    except ValueError as exc:  # name the value as written, sign included
        return str(exc).replace(repr(body), repr(value)) if body != value else str(exc)
    return f"not a decimal number: {value!r}"  # pragma: no cover
