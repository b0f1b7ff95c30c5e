"""CSV import: strict parse, then insert-or-update by id, each file all or nothing.

This module holds the transaction and the order of the steps; each step is its own module:
`source` (bytes, header, rows as text, in chunks), `parse` (cells by kind), `file_rules`
(rules spanning rows, the run's input rules) and `write` (the upserts).

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
* What posted lines fixed is not changed silently (ingest/posted.py, #28 items 4 and 11): a
  usage row changing a call free minutes already credited (customer, start time, charge,
  duration, destination) and a customer or package row changing the currency of an id with
  posted ledger lines are refused naming the row, the id and the change. Currency codes are
  stored upper-case. A file whose name breaks the text rules (core/text.py) is refused: the
  name is recorded.
* A header longer than the read window (1 MB) and a row longer than the reader's block (16 MB)
  are refused naming row 1 / the row and its column (ingest/source.py), never read whole.
* Optional cells may be empty: name/description/destination (''), frequency_match, end_date,
  assignments.free_minutes (NULL), setup_cost/setup_retail/free_minutes/minimum_days (0),
  minimum_spend/prorate (false). Columns the SPEC marks optional (packages.frequency_match,
  destination, prorate, description; assignments.end_date, free_minutes) may also be left
  out of the header: they then take those defaults, also for rows that update an existing id.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from billing_jobs.core.entities import ENTITY_KINDS, FILE_KINDS
from billing_jobs.core.errors import ImportFailed
from billing_jobs.core.frames import ENTITY_KEYS
from billing_jobs.core.text import text_problem
from billing_jobs.ingest.balances import BalanceChange, existing_balance_rule
from billing_jobs.ingest.changes import check_changes, record_changes, recorded_by
from billing_jobs.ingest.file_rules import (
    CustomerCharges,
    FileIds,
    business_rule_errors,
    referenced_tables,
)
from billing_jobs.ingest.parse import parsed_chunks
from billing_jobs.ingest.posted import ConsumedCalls, refuse_currency_changes
from billing_jobs.ingest.source import IMPORT_CHUNK_ROWS, Source, read_header
from billing_jobs.ingest.terms import (assignment_terms, import_versions, record_cancels,
                                       refuse_repriced_packages)
from billing_jobs.ingest.write import write_rows
from billing_jobs.store.db import db_errors

SPECS = ENTITY_KINDS  # the entity declaration (billing_jobs/core/entities.py)


@dataclass(frozen=True)
class Imported:
    """What an import wrote: its data rows (inserted or updated) and, for customers, the
    existing customers whose balance it adjusted (`--set-balances`), in file order; for
    packages the price versions added or changed; the assignment changes recorded (a changes
    file, or the cancels of ends moved earlier), and one sentence per such cancel (`notes`,
    for the CLI to print)."""

    rows: int
    balance_changes: tuple[BalanceChange, ...] = ()
    versions: int = 0
    changes: int = 0
    notes: tuple[str, ...] = ()


def import_csv(engine: sa.Engine, entity: str, path: str | os.PathLike, *,
               set_balances: bool = False, chunk_rows: int = IMPORT_CHUNK_ROWS,
               progress: Callable[[int], None] | None = None, correct: bool = False) -> int:
    """`import_file(...).rows`: the number of data rows written."""
    return import_file(engine, entity, path, set_balances=set_balances, chunk_rows=chunk_rows,
                       progress=progress, correct=correct).rows


def import_file(engine: sa.Engine, entity: str, path: str | os.PathLike, *,
                set_balances: bool = False, chunk_rows: int = IMPORT_CHUNK_ROWS,
                progress: Callable[[int], None] | None = None,
                correct: bool = False) -> Imported:
    """Import one CSV file of `entity` (customers/packages/assignments/usage, or changes:
    changes of assignments from a date, SPEC 10).

    Returns the data rows written (inserted or updated) and the balance changes written by
    `set_balances` (ingest/balances.py). Raises ImportFailed, with nothing written, when the
    file is malformed, or holds a changed balance of an existing customer without
    `set_balances`, or changes terms posted lines were priced with without `correct`
    (ingest/terms.py). `chunk_rows` rows are parsed, checked and written at a time, all in one
    transaction; `progress(rows)` is told the rows written so far (not yet committed) after
    each chunk.
    """
    if entity not in FILE_KINDS:
        raise ImportFailed(
            f"unknown entity {entity!r} (expected one of: {', '.join(FILE_KINDS)})"
        )
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    path = Path(path)
    name = path.name
    problem = text_problem(name, one_line=True)
    if problem is not None:  # the name is recorded (versions, changes, adjustments) and shown
        raise ImportFailed(
            f"file name: {problem}; an import records the name of the file it came from (price "
            "versions, changes, balance adjustments) - rename the file; nothing imported")
    source = Source(path)
    chunks = parsed_chunks(entity, source, chunk_rows)
    first = next(chunks)  # a one-chunk file is parsed before any transaction opens
    if entity == "changes":
        return _import_changes(engine, name, itertools.chain([first], chunks), progress)
    header = set(read_header(name, source.head()))
    references = referenced_tables(engine, entity)
    ids = FileIds(ENTITY_KEYS[entity], entity)
    charges = CustomerCharges() if entity == "usage" else None
    consumed = ConsumedCalls() if entity == "usage" else None
    written = 0
    changes: list[BalanceChange] = []
    versions: list[pd.DataFrame] = []
    cancels: list[dict] = []
    notes: list[str] = []
    by = recorded_by()
    with db_errors(engine, f"importing {name}"):
        with engine.begin() as conn:
            for frame, table in itertools.chain([first], chunks):
                ids.add(table)
                if entity == "packages" and "effective_from" in header:
                    # a row with effective_from is a version: written after the packages
                    is_version = frame["effective_from"].notna().to_numpy()
                    versions.append(frame[is_version])
                    frame, table = frame[~is_version], table.filter(pa.array(~is_version))
                errors = business_rule_errors(entity, frame, references)
                if errors:
                    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                    raise ImportFailed(f"{name}: {errors[0]}{more}")
                if charges is not None:
                    charges.add(name, frame)
                if consumed is not None:
                    consumed.check(conn, frame, table.column("call_id"), name)
                refuse_currency_changes(conn, entity, frame, name)
                if entity == "customers":
                    changes += existing_balance_rule(conn, frame, path, set_balances)
                if entity == "packages" and not correct:
                    refuse_repriced_packages(conn, frame, name)
                if entity == "assignments":
                    keep, cancelling, said = assignment_terms(conn, frame, name, correct)
                    table = _keep_ends(table, keep)
                    cancels += cancelling
                    notes += said
                write_rows(conn, entity, table)
                written += len(frame)
                if progress is not None:
                    progress(written)
            ids.check(name, source, chunk_rows)  # before the commit: a repeat rolls back
            added = 0
            if versions:
                version_rows = pd.concat(versions)
                added = import_versions(
                    conn, version_rows, header, name, by,
                    lambda group: business_rule_errors(entity, group, references), correct)
                written += len(version_rows)
            notes = record_cancels(conn, cancels, notes, name, by)
    return Imported(written, tuple(changes), versions=added, changes=len(notes),
                    notes=tuple(notes))


def _keep_ends(table: pa.Table, keep: dict) -> pa.Table:
    """The rows' end_date, except the assignments in `keep`, which keep the stored end."""
    if not keep:
        return table
    ids = table.column("assignment_id").to_pylist()
    ends = [keep[a] if a in keep else e
            for a, e in zip(ids, table.column("end_date").to_pylist())]
    at = table.column_names.index("end_date")
    return table.set_column(at, "end_date", pa.array(ends, type=pa.date32()))


def _import_changes(engine: sa.Engine, name: str, chunks,
                    progress: Callable[[int], None] | None) -> Imported:
    """A changes file (SPEC 10): every row checked like a command checks it
    (ingest/changes.py), all or nothing; each change recorded once."""
    frame = pd.concat([f for f, _t in chunks])
    with db_errors(engine, f"importing {name}"):
        with engine.begin() as conn:
            problems = check_changes(conn, frame)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise ImportFailed(f"{name}: {problems[0]}{more}; nothing recorded")
            recorded = record_changes(conn, frame, name, recorded_by())
    if progress is not None:
        progress(len(frame))
    return Imported(len(frame), changes=recorded)
