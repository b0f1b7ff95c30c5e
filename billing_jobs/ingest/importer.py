"""CSV import: strict parse, then insert-or-update by id, each file all or nothing.

* The header is required; its columns are the SPEC's (section 2) in any order. A UTF-8 BOM
  is ignored; cells are stripped of surrounding whitespace.
* Values are parsed strictly and vectorised: decimals with `money.parse_micros_series`
  (max 6 places; only `customers.balance` may be negative), dates `YYYY-MM-DD` (real calendar
  dates), timestamps ISO 8601 (UTC when no offset is given), booleans
  true/false/1/0/yes/no (any case), integers.
* Any malformed row fails the whole file with `ImportFailed` naming the file, the row
  (row 1 is the header, the first data row is row 2), the column and the rule; nothing is
  written. Ids repeated inside one file are refused the same way.
* The rows are written in ONE transaction: INSERT ... ON CONFLICT (id) DO UPDATE. SQLite uses
  large `executemany` batches; PostgreSQL streams the rows with COPY into a temporary table
  and upserts from it with one INSERT ... SELECT.
* A regular file is streamed: read, parsed, checked and written `IMPORT_CHUNK_ROWS` rows at a
  time inside that one transaction, so memory is bounded by the chunk, not the file (13 months
  of a carrier's calls are ~130M rows). The rules that span rows hold over the whole file: an id
  repeated in a later chunk (64-bit hashes of every id, the rows re-read to name both) and a
  customer's charges total. The first problem found rolls the whole file back. A pipe is read
  into memory once (nothing seeks) and goes through the same chunks.
* Optional cells may be empty: name/description/destination (''), frequency_match, end_date,
  assignments.free_minutes (NULL), setup_cost/setup_retail/free_minutes/minimum_days (0),
  minimum_spend/prorate (false). Columns the SPEC marks optional (packages.frequency_match,
  destination, prorate, description; assignments.end_date, free_minutes) may also be left
  out of the header: they then take those defaults, also for rows that update an existing id.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import sqlalchemy as sa

from billing_jobs.core import text as text_rules
from billing_jobs.core.frames import ENTITY_COLUMNS, ENTITY_KEYS
from billing_jobs.core.entities import ENTITY_KINDS, OPTIONAL_HEADER, REQUIRED_KINDS
from billing_jobs.store import bulk
from billing_jobs.store.tables import stored_name
from billing_jobs.core.money import (
    BALANCE_BOUND_MICROS,
    MAX_MICROS,
    MICRO_DIGITS,
    MICROS,
    parse_micros,
    parse_micros_series,
)
from billing_jobs.core.errors import ImportFailed
from billing_jobs.store.db import db_errors
from billing_jobs.ingest.balances import existing_balance_rule

SPECS = ENTITY_KINDS  # the entity declaration (billing_jobs/core/entities.py)


#: Text bounds and forbidden characters: billing_jobs/core/text.py (#17 items 6 and 10)
_CONTROL = text_rules.pattern(text_rules.CONTROL)
_CONTROL_TEXT = text_rules.pattern(text_rules.CONTROL_IN_TEXT)
_INVISIBLE = text_rules.pattern(text_rules.INVISIBLE)
_RANGES = {_CONTROL: text_rules.CONTROL, _CONTROL_TEXT: text_rules.CONTROL_IN_TEXT,
           _INVISIBLE: text_rules.INVISIBLE}

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_SQLITE_BATCH = 50_000
#: rows read, checked and written at a time (a file's memory is bounded by this, not its size)
IMPORT_CHUNK_ROWS = 2_000_000
_COPY_BATCH = 200_000


@dataclass
class _Problem:
    row: int
    column: str
    message: str


def import_csv(engine: sa.Engine, entity: str, path: str | os.PathLike, *,
               set_balances: bool = False, chunk_rows: int = IMPORT_CHUNK_ROWS,
               progress: Callable[[int], None] | None = None) -> int:
    """Import one CSV file of `entity` (customers/packages/assignments/usage).

    Returns the number of data rows written (inserted or updated). Raises ImportFailed, with
    nothing written, when the file is malformed. `chunk_rows` rows are parsed, checked and
    written at a time, all in one transaction; `progress(rows)` is told the rows written so
    far (not yet committed) after each chunk.
    """
    if entity not in SPECS:
        raise ImportFailed(
            f"unknown entity {entity!r} (expected one of: {', '.join(SPECS)})"
        )
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    path = Path(path)
    name = path.name
    source = _Source(path)
    chunks = parsed_chunks(entity, source, chunk_rows)
    first = next(chunks)  # a one-chunk file is parsed before any transaction opens
    references = _references(engine, entity)
    ids = _FileIds(ENTITY_KEYS[entity])
    charges = _CustomerCharges() if entity == "usage" else None
    written = 0
    with db_errors(engine, f"importing {name}"):
        with engine.begin() as conn:
            for frame, table in itertools.chain([first], chunks):
                errors = _business_rule_errors(entity, frame, references)
                if errors:
                    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                    raise ImportFailed(f"{name}: {errors[0]}{more}")
                ids.add(table)
                if charges is not None:
                    charges.add(name, frame)
                if entity == "customers":
                    existing_balance_rule(conn, frame, path, set_balances)
                if bulk.is_postgres(conn):
                    _write_pg(conn, entity, table)
                else:
                    _write_sqlite(conn, entity, table)
                written += len(frame)
                if progress is not None:
                    progress(written)
            ids.check(name, source, chunk_rows)  # before the commit: a repeat rolls back
    return written


def _references(engine: sa.Engine, entity: str) -> dict[str, pd.DataFrame]:
    """What the file's rows refer to in the database, read once before the transaction:
    customers for assignments and usage, packages for assignments."""
    from billing_jobs.store.load import reference_tables

    if entity not in ("assignments", "usage"):
        return {}
    return reference_tables(engine, packages=(entity == "assignments"))


def _business_rule_errors(entity: str, df: pd.DataFrame,
                          references: dict[str, pd.DataFrame]) -> list[str]:
    """Business-rule checks on the parsed rows before they are written.

    `df` has the entity's columns, typed (money int64 micros, dates datetime64, timestamps
    UTC, booleans bool, optional integers Int64) and is indexed by the CSV row number (the
    header is row 1). Return one message per broken rule, e.g.
    "row 7, column quantity: must be at least 1"; any message fails the import.
    """
    from billing_jobs.checks import validate_inputs
    from billing_jobs.core.frames import BillingInputs, empty_frame

    # The file's rows, checked by the same rules as a run, against what they refer to in
    # the database (customers for assignments and usage, packages for assignments).
    frames = {name: empty_frame(cols) for name, cols in ENTITY_COLUMNS.items()}
    frames.update(references)
    frames[entity] = df[ENTITY_COLUMNS[entity]].reset_index(drop=True)
    _, rejected = validate_inputs(BillingInputs(**frames))
    mine = rejected[rejected["entity"] == entity]
    if mine.empty:
        return []
    key = ENTITY_KEYS[entity]
    row_of = pd.Series(df.index.to_numpy(), index=df[key].astype(str).to_numpy())
    row_of = row_of[~row_of.index.duplicated()]
    rows = row_of.reindex(mine["id"].astype(str)).to_numpy()
    order = np.argsort(rows, kind="stable")
    return [f"row {rows[i]} ({key} {mine['id'].iloc[i]!r}): {mine['reason'].iloc[i]}"
            for i in order]


# ----------------------------------------------------------------------------- rules across chunks

def _id_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hashes of ids (the same value always gives the same hash)."""
    return pd.util.hash_pandas_object(pd.Series(pd.arrays.ArrowExtensionArray(ids)),
                                      index=False).to_numpy()


class _FileIds:
    """The ids of the chunks written so far, to refuse an id repeated in a later chunk.

    A chunk checks its own repeats (`_check_duplicate_ids`). Across chunks the file keeps one
    64-bit hash per row (8 bytes, ~1 GB for 130M calls) and sorts them once at the end; equal
    hashes send the file through a second read that names the rows (and tells a real repeat
    from a hash collision, which passes). A one-chunk file keeps nothing."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.first: pa.Array | None = None  # hashed only once a second chunk comes
        self.hashes: list[np.ndarray] = []

    def add(self, table: pa.Table) -> None:
        ids = table.column(self.key)
        if self.first is None and not self.hashes:
            self.first = ids
            return
        if self.first is not None:
            self.hashes.append(_id_hashes(self.first))
            self.first = None
        self.hashes.append(_id_hashes(ids))

    def check(self, name: str, source: "_Source", chunk_rows: int) -> None:
        if len(self.hashes) < 2:
            return
        every = np.sort(np.concatenate(self.hashes))
        self.hashes = []
        repeated = np.unique(every[1:][every[1:] == every[:-1]])
        del every
        if len(repeated):
            _raise_repeated_id(name, source, self.key, repeated, chunk_rows)


def _raise_repeated_id(name: str, source: "_Source", key: str, repeated: np.ndarray,
                       chunk_rows: int) -> None:
    """Second read: the rows whose id hash is in `repeated`; ImportFailed at the first row
    repeating an earlier row's id (a hash collision between different ids passes)."""
    header = _read_header(name, source.head())
    rows: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for first_row, table in _raw_chunks(name, source, header, chunk_rows):
        ids = _column_text(table, key)
        hit = np.isin(_id_hashes(ids), repeated)
        rows.append(np.flatnonzero(hit) + first_row)
        values.append(ids.filter(pa.array(hit)).to_numpy(zero_copy_only=False))
    found = pd.DataFrame({"row": np.concatenate(rows), "id": np.concatenate(values)})
    again = found[found["id"].duplicated(keep="first")]
    if again.empty:
        return
    first_row_of = found.groupby("id")["row"].min()
    row, value = int(again["row"].iloc[0]), again["id"].iloc[0]
    raise ImportFailed(
        f"{name} row {row} (row 1 is the header), column {key}: duplicate id {value!r} "
        f"(first on row {int(first_row_of[value])})"
        + (f"; {len(again) - 1} more problem(s) in the file" if len(again) > 1 else ""))


class _CustomerCharges:
    """Each customer's calls' charges summed over the chunks so far: the run's rule "a
    customer's charges must total at most the maximum" holds for the whole file, not only
    inside one chunk (float sums, as the rule computes them)."""

    def __init__(self) -> None:
        self.totals = pd.Series(dtype="float64")

    def add(self, name: str, frame: pd.DataFrame) -> None:
        from billing_jobs.checks.inputs import MAX_UNITS

        if frame.empty:
            return
        charge = frame["charge"].to_numpy(dtype="float64").clip(0, None)
        chunk = pd.Series(charge).groupby(frame["customer_id"].to_numpy()).sum()
        self.totals = self.totals.add(chunk, fill_value=0.0)
        over = self.totals[self.totals > MAX_MICROS]
        if over.empty:
            return
        customer = over.index[0]
        first = frame[frame["customer_id"].to_numpy() == customer]
        raise ImportFailed(
            f"{name}: row {int(first.index[0])} (call_id {first['call_id'].iloc[0]!r}): charges "
            f"of customer {customer!r} add up to more than {MAX_UNITS} over the whole file")


# ----------------------------------------------------------------------------- reading

def parsed_chunks(entity: str, source: "_Source",
                  chunk_rows: int = IMPORT_CHUNK_ROWS) -> Iterator[tuple[pd.DataFrame, pa.Table]]:
    """Read and strictly parse the file `chunk_rows` rows at a time; raise ImportFailed naming
    the first problem. Yields at least one chunk (an empty one for a header-only file).

    Each chunk's typed rows come twice: a pandas frame indexed by CSV row number (for the
    rule checks) and the arrow table that is written."""
    name = source.name
    header = _read_header(name, source.head())
    spec = SPECS[entity]
    _check_header(name, entity, header)
    for first_row, table in _raw_chunks(name, source, header, chunk_rows):
        yield _parse(name, entity, table, spec, first_row)


#: how long a named pipe (FIFO) may stay silent before the import gives up
FIFO_WAIT_SECONDS = 10
#: bytes read for the header line
_HEAD_BYTES = 1 << 20


class _Source:
    """Where the CSV's bytes come from. A regular file is streamed and re-opened for each
    pass; anything else (a named pipe, `<(cat f)`) is read into memory once, since nothing
    can seek it. A UTF-8 BOM is dropped; a pipe's CR-only line ends become LF and its last
    line gets a line end (the CSV reader handles both in a file)."""

    def __init__(self, path: Path) -> None:
        import stat

        self.path = path
        self.name = path.name
        self.data: bytes | None = None
        self._head: bytes | None = None
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise ImportFailed(f"{self.name}: file not found ({path})") from None
        except OSError as exc:
            raise ImportFailed(f"{self.name}: cannot read the file: {exc.strerror or exc}") from None
        if stat.S_ISDIR(mode):
            raise ImportFailed(f"{self.name}: is a directory, not a CSV file ({path})")
        if stat.S_ISREG(mode):
            with self.open():  # unreadable (permissions): say so now
                pass
        else:
            self.data = _normalised(_read_all(path, stat.S_ISFIFO(mode)))

    def open(self) -> BinaryIO:
        """A fresh binary stream of the file from its first byte (BOM included)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise ImportFailed(f"{self.name}: cannot read the file: {exc.strerror or exc}") from None

    def head(self) -> bytes:
        """The first bytes (read once), BOM dropped, CR-only line ends as LF: enough for the
        header."""
        if self._head is None:
            with self.open() as fh:
                self._head = _lf_without_bom(fh.read(_HEAD_BYTES))
        return self._head

    def header_only(self) -> bool:
        """No data rows: nothing but line ends after the first line."""
        head = self.head()
        if len(head) >= _HEAD_BYTES - 3:  # more than the head holds (3: a dropped BOM)
            return False
        end = head.find(b"\n")
        return end < 0 or not head[end + 1:].strip(b"\r\n")


def _read_all(path: Path, fifo: bool) -> bytes:
    """All the bytes of a pipe; a named pipe nobody writes to fails after FIFO_WAIT_SECONDS."""
    import select

    name = path.name
    try:
        if fifo and not str(path).startswith("/dev/fd/"):
            # a named pipe: never block forever on one nobody writes to
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                chunks = []
                while True:
                    ready, _, _ = select.select([fd], [], [], FIFO_WAIT_SECONDS)
                    if not ready:
                        raise ImportFailed(f"{name}: a named pipe with nothing written to it "
                                           f"within {FIFO_WAIT_SECONDS} s ({path})")
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        break
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                os.close(fd)
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ImportFailed(f"{name}: cannot read the file: {exc.strerror or exc}") from None


def _lf_without_bom(data: bytes) -> bytes:
    """`data` without a UTF-8 BOM, CR-only line ends (old Mac exports) as LF."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\r" in data and b"\n" not in data:
        data = data.replace(b"\r", b"\n")
    return data


def _normalised(data: bytes) -> bytes:
    """A pipe's bytes as the reader takes them: no BOM, LF line ends, a last line end."""
    data = _lf_without_bom(data)
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return data


def _read_header(name: str, data: bytes) -> list[str]:
    end = data.find(b"\n")
    first = data if end < 0 else data[:end + 1]
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            f"{name} row 1 (the header): not UTF-8 text (byte 0x{first[exc.start]:02x})"
        ) from None
    if not text.strip():
        raise ImportFailed(f"{name}: empty file (expected a header row)")
    cells = next(csv.reader([text.rstrip("\r\n")]))
    return [c.strip() for c in cells]


def _check_header(name: str, entity: str, header: list[str]) -> None:
    expected = list(SPECS[entity])
    if not any(c in SPECS[entity] for c in header):
        # never echo the line: the file may not be a CSV of ours at all (or a secret)
        raise ImportFailed(
            f"{name}: row 1 is not a {entity} header: none of its {len(header)} cell(s) is a "
            f"known column (expected: {', '.join(expected)})")
    seen: set[str] = set()
    for col in header:
        if col in seen:
            raise ImportFailed(f"{name}: column {_shown(col)} appears twice in the header")
        seen.add(col)
    unknown = [c for c in header if c not in SPECS[entity]]
    if unknown:
        raise ImportFailed(
            f"{name}: unknown column(s) {', '.join(_shown(c) for c in unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''} in the header "
            f"(expected: {', '.join(expected)})"
        )
    missing = [c for c in expected if c not in seen and c not in OPTIONAL_HEADER[entity]]
    if missing:
        raise ImportFailed(
            f"{name}: missing column(s) {', '.join(map(repr, missing))} in the header "
            f"(expected: {', '.join(expected)})"
        )


def _raw_chunks(name: str, source: _Source, header: list[str],
                chunk_rows: int) -> Iterator[tuple[int, pa.Table]]:
    """(CSV row number of the first row, the rows as text) per `chunk_rows` rows, streamed."""
    bad_rows: list = []

    def on_invalid(row) -> str:
        bad_rows.append(row)
        return "skip"

    first_row = 2  # row 1 is the header
    batches: list[pa.RecordBatch] = []
    held = 0
    if source.header_only():  # the reader cannot skip a header without a line end
        yield first_row, pa.table({c: pa.array([], pa.string()) for c in header})
        return
    with source.open() as fh:
        try:
            reader = pcsv.open_csv(
                fh,
                read_options=pcsv.ReadOptions(column_names=header, skip_rows=1,
                                              block_size=16 << 20),
                parse_options=pcsv.ParseOptions(newlines_in_values=True,
                                                invalid_row_handler=on_invalid),
                convert_options=pcsv.ConvertOptions(
                    column_types={c: pa.string() for c in header},
                    strings_can_be_null=False, quoted_strings_can_be_null=False,
                ),
            )
            schema = reader.schema
            for batch in reader:
                if bad_rows:
                    break
                batches.append(batch)
                held += batch.num_rows
                while held >= chunk_rows:  # exactly chunk_rows rows; the rest starts the next
                    rows = pa.Table.from_batches(batches, schema)
                    yield first_row, rows.slice(0, chunk_rows)
                    first_row += chunk_rows
                    held -= chunk_rows
                    batches = rows.slice(chunk_rows).to_batches()
        except pa.ArrowInvalid as exc:
            _raise_utf8_problem(name, source)
            raise ImportFailed(f"{name}: cannot parse the CSV: {str(exc).splitlines()[0]}") from None
    if bad_rows:
        more = f" (and {len(bad_rows) - 1} more such rows)" if len(bad_rows) > 1 else ""
        found = _first_bad_record(source, len(header))
        if found is None:  # pragma: no cover - pyarrow and the csv module disagree
            raise ImportFailed(f"{name}: malformed CSV (a row has the wrong number of fields){more}")
        row, width = found
        raise ImportFailed(
            f"{name} row {row} (row 1 is the header): expected {len(header)} fields, "
            f"found {width}{more}"
        )
    if held or first_row == 2:
        yield first_row, pa.Table.from_batches(batches, schema)


def _raise_utf8_problem(name: str, source: _Source) -> None:
    """ImportFailed naming the line of the first byte that is not UTF-8, if there is one."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0  # line ends before the block being decoded
    with source.open() as fh:
        while True:
            block = fh.read(1 << 22)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                # exc.start counts from the bytes the decoder held back (at most 3) + block
                pending = len(exc.object) - len(block)
                at = max(exc.start - pending, 0)
                line = lines + block.count(b"\n", 0, at) + 1
                raise ImportFailed(
                    f"{name} line {line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); "
                    "save the file as UTF-8"
                ) from None
            if not block:
                return
            lines += block.count(b"\n")


def _first_bad_record(source: _Source, width: int) -> tuple[int, int] | None:
    with source.open() as raw:
        fh = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        # numbered like the data rows: header row 1, blank lines skipped (as the reader does)
        records = (r for r in csv.reader(fh) if r)
        for number, record in enumerate(records, start=1):
            if number > 1 and len(record) != width:
                return number, len(record)
    return None


# ----------------------------------------------------------------------------- parsing

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
    """Control characters anywhere; in ids and references also invisible characters, text
    not in Unicode NFC form (a decomposed 'é' is another id) and more than MAX_ID_CHARS."""
    control = _CONTROL if kind in ("id", "rtext") else _CONTROL_TEXT
    complain(col, ok & _np(pc.match_substring_regex(raw, control)), raw,
             lambda v: f"control character {_first(v, control)} not allowed: {_shown(v)}")
    limit = text_rules.MAX_ID_CHARS if kind in ("id", "rtext") else text_rules.MAX_TEXT_CHARS
    complain(col, ok & (_np(pc.utf8_length(raw)) > limit), raw,
             lambda v: f"longer than {limit} characters ({len(v)}): {_shown(v)}")
    if kind not in ("id", "rtext"):
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

    def raise_first(self, name: str, order: list[str]) -> None:
        """ImportFailed naming the first problem (by row, then column `order`), if any."""
        if not self.found:
            return
        self.found.sort(key=lambda p: (p.row, order.index(p.column)))
        first = self.found[0]
        more = self.total - 1
        raise ImportFailed(
            f"{name} row {first.row} (row 1 is the header), column {first.column}: "
            f"{first.message}" + (f"; {more} more problem(s) in the file" if more else "")
        )




def _parse(name: str, entity: str, table: pa.Table, spec: dict[str, str],
           first_row: int = 2) -> tuple[pd.DataFrame, pa.Table]:
    """Validate every cell; return (typed pandas frame indexed by CSV row, arrow table)."""
    n = table.num_rows
    rows = np.arange(first_row, first_row + n)  # CSV row numbers: header is row 1
    problems = _Problems(rows)
    arrays: dict[str, pa.Array] = {}
    frame: dict[str, pd.Series] = {}
    for col, kind in spec.items():
        raw = _column_text(table, col)
        empty = _np(pc.equal(raw, ""))
        if kind in REQUIRED_KINDS:
            problems.complain(col, empty, raw, "missing value")
        parser = _PARSERS.get(kind)
        if parser is None:  # pragma: no cover
            raise AssertionError(kind)
        arrays[col], frame[col] = parser(col, kind, raw, empty, problems)
        if kind == "id":
            _check_duplicate_ids(col, raw, ~empty, rows, problems)
    problems.raise_first(name, list(spec))
    typed = pd.DataFrame({c: frame[c].reset_index(drop=True) for c in spec}, columns=list(spec))
    typed.index = pd.Index(rows, name="row")
    return typed, pa.table({c: arrays[c] for c in spec})


def _column_text(table: pa.Table, col: str) -> pa.Array:
    """The column's cells stripped of surrounding whitespace; all '' if the header lacks it."""
    if col in table.column_names:
        return pc.utf8_trim_whitespace(table.column(col).combine_chunks())
    return pa.array([""] * table.num_rows, type=pa.string())


def _parse_text(col: str, kind: str, raw: pa.Array, empty: np.ndarray,
                problems: _Problems) -> tuple[pa.Array, pd.Series]:
    """id, rtext, text: the text as it is; ntext: empty cells are NULL / None."""
    _text_rules(col, kind, raw, ~empty, problems.complain)
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
    """bool, bool0: true/false/1/0/yes/no in any case; an empty cell is false."""
    low = pc.utf8_lower(raw)
    is_true = _np(pc.is_in(low, value_set=pa.array(sorted(_TRUE))))
    is_false = _np(pc.is_in(low, value_set=pa.array(sorted(_FALSE))))
    problems.complain(col, ~empty & ~is_true & ~is_false, raw,
                      lambda v: f"not a boolean (true/false/1/0/yes/no): {v!r}")
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
                         problems: _Problems) -> None:
    """Ids repeated inside the file: each repeat after the first names the first's row."""
    n = len(raw)
    if not n or pc.count_distinct(raw).as_py() >= n:
        return
    ids = pd.Series(raw.to_pandas(), dtype=str)
    dup = ids.duplicated(keep="first").to_numpy() & ok
    first_row = pd.Series(rows, index=ids.to_numpy()).groupby(level=0).first()
    problems.complain(col, dup, raw, lambda v: f"duplicate id {v!r} (first on row {first_row[v]})")


def _money_reason(value: str) -> str:
    body = value.lstrip("-")
    try:
        parse_micros(body)
    except ValueError as exc:  # name the value as written, sign included
        return str(exc).replace(repr(body), repr(value)) if body != value else str(exc)
    return f"not a decimal number: {value!r}"  # pragma: no cover


# ----------------------------------------------------------------------------- writing

def _sqlite_values(table: pa.Table) -> pa.Table:
    """Arrow columns as SQLite stores them: dates and timestamps as text, booleans 0/1."""
    out = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_date32(col.type):
            col = pc.strftime(col, "%Y-%m-%d")
        elif pa.types.is_timestamp(col.type):  # timestamp[us]: %S prints the microseconds
            col = pc.strftime(col, "%Y-%m-%d %H:%M:%S")
        elif pa.types.is_boolean(col.type):
            col = pc.cast(col, pa.int64())
        out[name] = col
    return pa.table(out)


def _stored_layout(entity: str, table: pa.Table) -> tuple[pa.Table, list[str], list[str]]:
    """The parsed columns under their stored names (money + "_micros"), the column list and the
    columns written on insert only. A new customer's opening balance is its first balance; an
    existing customer's balance changes only through the ledger (store/balances.py)."""
    columns = list(SPECS[entity])
    table = table.select(columns)
    insert_only: list[str] = []
    if entity == "customers":
        table = table.append_column("opening_balance", table.column("balance"))
        insert_only += [stored_name("opening_balance"), stored_name("balance")]
    table = table.rename_columns([stored_name(c) for c in table.column_names])
    return table, table.column_names, insert_only


def _upsert_sql(table: str, columns: list[str], key: str, source: str,
                insert_only: list[str] = ()) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in columns
                     if c != key and c not in insert_only)
    return (f'INSERT INTO "{table}" ({cols}) {source} '
            f'ON CONFLICT ("{key}") DO UPDATE SET {sets}')


def _write_sqlite(conn: sa.Connection, entity: str, table: pa.Table) -> None:
    table, columns, insert_only = _stored_layout(entity, table)
    key = ENTITY_KEYS[entity]
    values = _sqlite_values(table)
    sql = _upsert_sql(entity, columns, key,
                      f"VALUES ({', '.join('?' * len(columns))})", insert_only)
    raw = conn.connection.driver_connection  # inside the transaction SQLAlchemy began
    cur = raw.cursor()
    try:
        bulk.insert_many(cur, sql, values.select(columns), _SQLITE_BATCH)
    finally:
        cur.close()


def _write_pg(conn: sa.Connection, entity: str, table: pa.Table) -> None:
    table, columns, insert_only = _stored_layout(entity, table)
    key = ENTITY_KEYS[entity]
    tmp = f"_import_{entity}"
    cols = ", ".join(f'"{c}"' for c in columns)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(f'CREATE TEMP TABLE "{tmp}" (LIKE "{entity}" INCLUDING DEFAULTS) '
                    "ON COMMIT DROP")
        bulk.copy_in(cur, f'"{tmp}"', cols, table, _COPY_BATCH)
        cur.execute(_upsert_sql(entity, columns, key, f'SELECT {cols} FROM "{tmp}"', insert_only))
        cur.execute(f'DROP TABLE "{tmp}"')
