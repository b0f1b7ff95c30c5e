"""The rules of an imported file that span rows: what a chunk's rows break against the run's
input rules, an id repeated in a later chunk, and a customer's charges over the whole file.

* A chunk's parsed rows are checked by the same rules as a run (`checks.validate_inputs`),
  against what they refer to in the database (customers for assignments and usage, packages
  for assignments), read once before the transaction.
* An id repeated in a later chunk: 64-bit hashes of every id, the rows re-read to name both.
* A customer's calls' charges total at most the maximum over the whole file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from billing_jobs.checks import validate_inputs
from billing_jobs.checks.inputs import MAX_UNITS
from billing_jobs.core.errors import ImportFailed
from billing_jobs.core.frames import ENTITY_COLUMNS, ENTITY_KEYS, BillingInputs, empty_frame
from billing_jobs.core.money import MAX_MICROS
from billing_jobs.ingest.source import Source, key_text, raw_chunks, read_header
from billing_jobs.store.load import reference_tables


def referenced_tables(engine: sa.Engine, entity: str) -> dict[str, pd.DataFrame]:
    """What the file's rows refer to in the database, read once before the transaction:
    customers for assignments and usage, packages for assignments."""
    if entity not in ("assignments", "usage"):
        return {}
    return reference_tables(engine, packages=(entity == "assignments"))


def business_rule_errors(entity: str, df: pd.DataFrame,
                         references: dict[str, pd.DataFrame]) -> list[str]:
    """Business-rule checks on the parsed rows before they are written.

    `df` has the entity's columns, typed (money int64 micros, dates datetime64, timestamps
    UTC, booleans bool, optional integers Int64) and is indexed by the CSV row number (the
    header is row 1). Return one message per broken rule, e.g.
    "row 7, column quantity: must be at least 1"; any message fails the import.
    """
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


def _id_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hashes of ids (the same value always gives the same hash)."""
    return pd.util.hash_pandas_object(pd.Series(pd.arrays.ArrowExtensionArray(ids)),
                                      index=False).to_numpy()


class FileIds:
    """The ids of the chunks written so far, to refuse an id repeated in a later chunk.

    A chunk checks its own repeats (ingest/parse.py). Across chunks the file keeps one
    64-bit hash per row (8 bytes, ~1 GB for 130M calls) and sorts them once at the end; equal
    hashes send the file through a second read that names the rows (and tells a real repeat
    from a hash collision, which passes). A one-chunk file keeps nothing."""

    def __init__(self, key: str, entity: str = "") -> None:
        self.key = key
        self.entity = entity  # a package's versions share its id (source.ROW_KEY_PARTS)
        self.first: pa.Array | None = None  # hashed only once a second chunk comes
        self.hashes: list[np.ndarray] = []

    def add(self, table: pa.Table) -> None:
        ids = key_text(table, self.entity, self.key)
        if self.first is None and not self.hashes:
            self.first = ids
            return
        if self.first is not None:
            self.hashes.append(_id_hashes(self.first))
            self.first = None
        self.hashes.append(_id_hashes(ids))

    def check(self, name: str, source: Source, chunk_rows: int) -> None:
        if len(self.hashes) < 2:
            return
        every = np.sort(np.concatenate(self.hashes))
        self.hashes = []
        repeated = np.unique(every[1:][every[1:] == every[:-1]])
        del every
        if len(repeated):
            _raise_repeated_id(name, source, self.entity, self.key, repeated, chunk_rows)


def _raise_repeated_id(name: str, source: Source, entity: str, key: str,
                       repeated: np.ndarray, chunk_rows: int) -> None:
    """Second read: the rows whose id hash is in `repeated`; ImportFailed at the first row
    repeating an earlier row's id (a hash collision between different ids passes)."""
    header = read_header(name, source.head())
    rows: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for first_row, table in raw_chunks(name, source, header, chunk_rows):
        ids = key_text(table, entity, key)
        hit = np.isin(_id_hashes(ids), repeated)
        rows.append(np.flatnonzero(hit) + first_row)
        values.append(ids.filter(pa.array(hit)).to_numpy(zero_copy_only=False))
    found = pd.DataFrame({"row": np.concatenate(rows), "id": np.concatenate(values)})
    again = found[found["id"].duplicated(keep="first")]
    if again.empty:
        return
    first_row_of = found.groupby("id")["row"].min()
    row, value = int(again["row"].iloc[0]), again["id"].iloc[0]
    shown, _, date = str(value).partition("\x1f")
    raise ImportFailed(
        f"{name} row {row} (row 1 is the header), column {key}: duplicate id {shown!r}"
        + (f" from {date!r}" if date else "") +
        f" (first on row {int(first_row_of[value])})"
        + (f"; {len(again) - 1} more problem(s) in the file" if len(again) > 1 else ""))


class CustomerCharges:
    """Each customer's calls' charges summed over the chunks so far: the run's rule "a
    customer's charges must total at most the maximum" holds for the whole file, not only
    inside one chunk (float sums, as the rule computes them)."""

    def __init__(self) -> None:
        self.totals = pd.Series(dtype="float64")

    def add(self, name: str, frame: pd.DataFrame) -> None:
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
