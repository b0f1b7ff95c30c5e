"""Where an imported CSV's rows come from: a file or a pipe, read in chunks of text rows.

A regular file is streamed and re-read for each pass; a pipe is read into memory once. A UTF-8
BOM is dropped, CR-only line ends are read as LF, the header is read and checked against the
entity's columns (any order; optional columns may be left out), and a row of the wrong width or
bytes that are not UTF-8 fail the file naming the row or line. Every cell comes out as text.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import select
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from billing_jobs.core.entities import FILE_KINDS, FILE_OPTIONAL_HEADER
from billing_jobs.core.errors import ImportFailed
from billing_jobs.core.text import shown

#: rows read, checked and written at a time (a file's memory is bounded by this, not its size)
IMPORT_CHUNK_ROWS = 2_000_000

#: how long a named pipe (FIFO) may stay silent before the import gives up
FIFO_WAIT_SECONDS = 10
#: bytes read for the header line: a longer first line is refused (a header of ours is under
#: 1 KB), never cut
_HEAD_BYTES = 1 << 20
#: bytes the CSV reader reads at a time: a row longer than this cannot be read, and is refused
#: naming its row (and column), found by `_long_row` without decoding it
_BLOCK_BYTES = 16 << 20
#: bytes `_long_row` scans at a time
_SCAN_BYTES = 1 << 22


class Source:
    """Where the CSV's bytes come from. A regular file is streamed and re-opened for each
    pass; anything else (a named pipe, `<(cat f)`) is read into memory once, since nothing
    can seek it. A UTF-8 BOM is dropped; a pipe's CR-only line ends become LF and its last
    line gets a line end (the CSV reader handles both in a file)."""

    def __init__(self, path: Path) -> None:
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
                raw = fh.read(_HEAD_BYTES)
            head = _lf_without_bom(raw)
            if len(raw) >= _HEAD_BYTES and b"\n" not in head:
                # never cut a header: its last cell would be another column (or the same twice)
                raise ImportFailed(
                    f"{self.name} row 1 (the header): longer than {_size(_HEAD_BYTES)} without a "
                    "line end; a header of ours is one short line of column names - is this a "
                    "CSV file of ours?")
            self._head = head
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


def read_header(name: str, data: bytes) -> list[str]:
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


def check_header(name: str, entity: str, header: list[str]) -> None:
    expected = list(FILE_KINDS[entity])
    if not any(c in FILE_KINDS[entity] for c in header):
        # never echo the line: the file may not be a CSV of ours at all (or a secret)
        raise ImportFailed(
            f"{name}: row 1 is not a {entity} header: none of its {len(header)} cell(s) is a "
            f"known column (expected: {', '.join(expected)})")
    seen: set[str] = set()
    for col in header:
        if col in seen:
            raise ImportFailed(f"{name}: column {shown(col)} appears twice in the header")
        seen.add(col)
    unknown = [c for c in header if c not in FILE_KINDS[entity]]
    if unknown:
        raise ImportFailed(
            f"{name}: unknown column(s) {', '.join(shown(c) for c in unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''} in the header "
            f"(expected: {', '.join(expected)})"
        )
    missing = [c for c in expected if c not in seen and c not in FILE_OPTIONAL_HEADER[entity]]
    if missing:
        raise ImportFailed(
            f"{name}: missing column(s) {', '.join(map(repr, missing))} in the header "
            f"(expected: {', '.join(expected)})"
        )


def raw_chunks(name: str, source: Source, header: list[str],
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
                                              block_size=_BLOCK_BYTES),
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
            if "straddl" in str(exc):  # a row longer than the reader's block
                _raise_long_row(name, source, header, _BLOCK_BYTES)
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


def _raise_utf8_problem(name: str, source: Source) -> None:
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


def _size(n: int) -> str:
    """'16 MB', '64 KB', '100 bytes'."""
    for unit, size in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def _raise_long_row(name: str, source: Source, header: list[str], limit: int) -> None:
    """ImportFailed naming the first row longer than `limit` bytes, and the column (or field)
    it is in at `limit` bytes, if there is one (`_long_row`)."""
    found = _long_row(source, limit)
    if found is None:  # pragma: no cover - the reader failed on a row this scan finds short
        return
    row, field, quoted = found
    where = (f"column {header[field]}" if field < len(header)
             else f"field {field + 1} (the header has {len(header)} columns)")
    raise ImportFailed(
        f"{name} row {row} (row 1 is the header), {where}: the row is longer than "
        f"{_size(limit)}, the most a row is read in (a row of ours is a few KB)"
        + ("; it is inside a quoted value there: a quote that is never closed?" if quoted
           else "; a missing line end?"))


def _long_row(source: Source, limit: int) -> tuple[int, int, bool] | None:
    """(row, 0-based field, inside quotes) at byte `limit` of the first row longer than `limit`
    bytes, numbered like the reader (header row 1, blank lines skipped); None if no row is.

    The bytes are scanned `_SCAN_BYTES` at a time with numpy, never decoded: a quote toggles
    quoting (RFC 4180: a doubled quote toggles twice), an unquoted LF or CR ends a row (CR LF:
    a row and an empty one, which is not counted). The scan stops at the long row's `limit`-th
    byte: a 200 MB row costs reading `limit` bytes, not 200 MB."""
    rows = 0  # non-empty rows ended so far (the header is row 1)
    start = 0  # offset of the current row's first byte (BOM excluded)
    quotes = 0  # quotes before the block
    pos = 0
    with source.open() as fh:
        first = fh.read(3)
        if first != b"\xef\xbb\xbf":
            fh.seek(0)
        while True:
            block = fh.read(_SCAN_BYTES)
            if not block:
                return None
            data = np.frombuffer(block, np.uint8)
            counted = np.cumsum(data == 34, dtype=np.int64) + quotes
            ends = np.flatnonzero(((data == 10) | (data == 13)) & (counted % 2 == 0)) + pos
            starts = np.concatenate(([start], ends[:-1] + 1)) if len(ends) else np.empty(0)
            lengths = ends - starts
            numbers = rows + np.cumsum(lengths > 0)
            long = np.flatnonzero(lengths > limit)
            if len(long):
                return _field_at(source, int(starts[long[0]]), limit, int(numbers[long[0]]))
            if len(ends):
                rows, start = int(numbers[-1]), int(ends[-1]) + 1
            pos += len(block)
            quotes = int(counted[-1])
            if pos - start > limit:
                return _field_at(source, start, limit, rows + 1)


def _field_at(source: Source, start: int, limit: int, row: int) -> tuple[int, int, bool]:
    """(row, 0-based field, inside quotes) at byte `limit` of the row starting at `start`."""
    fields, quotes, done = 0, 0, 0
    with source.open() as fh:
        first = fh.read(3)
        fh.seek(start + (3 if first == b"\xef\xbb\xbf" else 0))
        while done < limit:
            block = fh.read(min(_SCAN_BYTES, limit - done))
            if not block:
                break
            data = np.frombuffer(block, np.uint8)
            counted = np.cumsum(data == 34, dtype=np.int64) + quotes
            fields += int(np.count_nonzero((data == 44) & (counted % 2 == 0)))
            quotes = int(counted[-1])
            done += len(block)
    return row, fields, quotes % 2 == 1


def _first_bad_record(source: Source, width: int) -> tuple[int, int] | None:
    with source.open() as raw:
        fh = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        # numbered like the data rows: header row 1, blank lines skipped (as the reader does)
        records = (r for r in csv.reader(fh) if r)
        for number, record in enumerate(records, start=1):
            if number > 1 and len(record) != width:
                return number, len(record)
    return None


#: The columns that, with a file's id, identify one of its rows: a package and the date of a
#: version of its terms (SPEC 10) - the package itself when empty.
ROW_KEY_PARTS = {"packages": "effective_from"}


def key_text(table: pa.Table, entity: str, key: str) -> pa.Array:
    """What identifies each row of `entity`'s file: its id, and for a package the date of the
    version it is (`ROW_KEY_PARTS`), joined by U+001F (never in an id: a control character)."""
    ids = _as_text(table, key)
    part = ROW_KEY_PARTS.get(entity)
    if part is None or part not in table.column_names:
        return ids
    return pc.binary_join_element_wise(ids, _as_text(table, part), "\x1f")


def _as_text(table: pa.Table, col: str) -> pa.Array:
    """A column as text (a parsed date as YYYY-MM-DD), '' for NULL, stripped."""
    column = table.column(col).combine_chunks()
    if not pa.types.is_string(column.type):
        column = pc.fill_null(pc.cast(column, pa.string()), "")
    return pc.utf8_trim_whitespace(column)


def column_text(table: pa.Table, col: str) -> pa.Array:
    """The column's cells stripped of surrounding whitespace; all '' if the header lacks it."""
    if col in table.column_names:
        return pc.utf8_trim_whitespace(table.column(col).combine_chunks())
    return pa.array([""] * table.num_rows, type=pa.string())
