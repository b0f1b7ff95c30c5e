"""Stage hand-offs on disk: BillingInputs / BillingResult / rejected rows as Parquet folders.

The Airflow DAG runs each stage in its own task (possibly its own process or machine), so
the dataframes between stages travel as files and only their folder paths go through XCom.
Nothing here knows about Airflow.

A folder holds one ``<frame>.parquet`` per dataframe plus ``dtypes.json``: Parquet has no
``datetime64[s]`` and reads text back as the ``str`` dtype, so the exact pandas dtypes are
recorded on write and restored on read (int64 micros stay int64, ``datetime64[s]`` stays
seconds, nullable ``Int64`` stays nullable, ``object`` columns come back as ``object`` with
``None`` for missing values).

Sharding is by customer (every billing rule is local to one customer: their assignments,
their calls), with a stable hash so a customer always lands in the same shard whatever the
process, machine or Python hash seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from pandas.api.types import pandas_dtype

from billing_jobs.core.frames import BillingInputs, BillingResult

DTYPES_FILE = "dtypes.json"
#: input frames that may be None (absent from a snapshot): the spend rollup rows (#29)
OPTIONAL_INPUT_FRAMES = ("daily_spend",)
#: the input frames every snapshot holds
INPUT_FRAMES = tuple(f.name for f in dataclasses.fields(BillingInputs)
                     if f.name not in OPTIONAL_INPUT_FRAMES)
RESULT_FRAMES = tuple(f.name for f in dataclasses.fields(BillingResult))
REJECTED = "rejected"
REJECTED_COLUMNS = ["entity", "id", "reason"]

# Shards hold disjoint customers and the engine orders every frame by customer first (then by
# its own keys, e.g. kinds in billing order, not alphabetical), so a stable sort on customer_id
# alone rebuilds the exact order of an unsharded run.
SHARD_ORDER_KEY = "customer_id"


# -- frames <-> files ------------------------------------------------------------------------


def _is_local(folder) -> bool:
    return isinstance(folder, (str, os.PathLike)) and "://" not in str(folder)


def _write_frames(frames: dict[str, pd.DataFrame], folder) -> Path:
    """``folder`` is a local path or an object storage path (``ObjectStoragePath``, or any
    pathlib-like object with ``open``/``read_text``)."""
    folder = Path(folder) if _is_local(folder) else folder
    if _is_local(folder):
        folder.mkdir(parents=True, exist_ok=True)
    dtypes: dict[str, dict[str, str]] = {}
    for name, frame in frames.items():
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{name}: expected a DataFrame, got {type(frame).__name__}")
        dtypes[name] = {str(c): str(t) for c, t in frame.dtypes.items()}
        _write(folder / f"{name}.parquet",
               lambda f, fr=frame: fr.reset_index(drop=True).to_parquet(f, index=False))
    # dtypes.json last: a folder with it is complete (a retried task simply rewrites all).
    text = json.dumps(dtypes, indent=1, sort_keys=True).encode()
    _write(folder / DTYPES_FILE, lambda f: f.write(text))
    return folder


def _write(target, write) -> None:
    """Write a file whole: a local file through a temporary file and a rename; an object in
    object storage with one upload (an object is never seen half written)."""
    if not isinstance(target, Path):
        with target.open("wb") as f:
            write(f)
        return
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_frames(folder, names: Iterable[str]) -> dict[str, pd.DataFrame]:
    folder = Path(folder) if _is_local(folder) else folder
    manifest = folder / DTYPES_FILE
    if not manifest.is_file():
        raise FileNotFoundError(f"{folder} is not a complete snapshot (no {DTYPES_FILE})")
    dtypes = json.loads(manifest.read_text())
    out = {}
    for name in names:
        if name in dtypes:
            with (folder / f"{name}.parquet").open("rb") as f:
                out[name] = _restore(pd.read_parquet(f), dtypes.get(name, {}))
    return out


def _restore(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    for column, name in dtypes.items():
        if column not in frame.columns:
            continue
        want = pandas_dtype(name)
        if frame[column].dtype == want:
            continue
        if want == object:
            col = frame[column].astype(object)
            frame[column] = col.where(col.notna(), None)
        else:
            frame[column] = frame[column].astype(want)
    return frame


# -- inputs ----------------------------------------------------------------------------------


def save_inputs(inputs: BillingInputs, rejected: pd.DataFrame | None,
                folder: str | os.PathLike) -> Path:
    """Write the validated inputs and the rejected rows to ``folder``; return it."""
    frames = {name: getattr(inputs, name) for name in INPUT_FRAMES}
    frames.update({name: getattr(inputs, name) for name in OPTIONAL_INPUT_FRAMES
                   if getattr(inputs, name) is not None})  # None: left out
    frames[REJECTED] = (rejected if rejected is not None
                        else pd.DataFrame({c: pd.Series(dtype=object) for c in REJECTED_COLUMNS}))
    return _write_frames(frames, folder)


def load_inputs(folder: str | os.PathLike) -> tuple[BillingInputs, pd.DataFrame]:
    """Read back ``(inputs, rejected)`` written by :func:`save_inputs`."""
    frames = _read_frames(folder, (*INPUT_FRAMES, *OPTIONAL_INPUT_FRAMES, REJECTED))
    missing = [n for n in (*INPUT_FRAMES, REJECTED) if n not in frames]
    if missing:
        raise FileNotFoundError(f"{folder}: snapshot lacks {', '.join(missing)}")
    rejected = frames.pop(REJECTED)
    return BillingInputs(**frames), rejected


# -- results ---------------------------------------------------------------------------------


def save_result(result: BillingResult, folder: str | os.PathLike) -> Path:
    """Write every dataframe field of ``result`` (with a ``status`` column if it has one)."""
    frames = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return _write_frames(frames, folder)


def load_result(folder: str | os.PathLike) -> BillingResult:
    """Read back a :class:`BillingResult` written by :func:`save_result`."""
    frames = _read_frames(folder, RESULT_FRAMES)
    required = [f.name for f in dataclasses.fields(BillingResult)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in frames]
    if missing:
        raise FileNotFoundError(f"{folder}: result lacks {', '.join(missing)}")
    return BillingResult(**frames)


def concat_results(results: Sequence[BillingResult]) -> BillingResult:
    """One result from per-shard results (disjoint customers), in the unsharded engine's order.

    Empty shard frames are left out of the concatenation so that an empty ``object``-typed
    frame never widens the dtypes of the others.
    """
    results = list(results)
    if not results:
        raise ValueError("concat_results needs at least one result")
    merged = {}
    for name in RESULT_FRAMES:
        parts = [getattr(r, name) for r in results]
        non_empty = [p for p in parts if len(p)]
        if not non_empty:
            merged[name] = parts[0].iloc[0:0].copy()
            continue
        frame = non_empty[0].copy() if len(non_empty) == 1 else pd.concat(non_empty,
                                                                         ignore_index=True)
        if SHARD_ORDER_KEY in frame.columns:
            frame = frame.sort_values(SHARD_ORDER_KEY, kind="mergesort")
        merged[name] = frame.reset_index(drop=True)
    return BillingResult(**merged)


# -- sharding --------------------------------------------------------------------------------


def shard_of(customer_id: str, n_shards: int) -> int:
    """The shard of one customer: a stable hash (never Python's per-process ``hash``)."""
    digest = hashlib.blake2b(str(customer_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards


def shard_customers(customer_ids: Iterable[str], n_shards: int,
                    linked: Iterable[tuple[str, str]] = ()) -> list[list[str]]:
    """Split customers into exactly ``n_shards`` lists (some may be empty), each sorted.

    The same customer always goes to the same shard for a given ``n_shards``; duplicates are
    dropped. Customers ``linked`` (pairs: an assignment moved between them by a change from a
    date, SPEC 10) share a shard, the shard of the smallest id of their group: the assignment's
    lines land on both, and its minimum spend sums the new holder's calls.
    """
    if int(n_shards) < 1:
        raise ValueError(f"n_shards must be at least 1, got {n_shards}")
    n_shards = int(n_shards)
    group = _groups(linked)
    shards: list[list[str]] = [[] for _ in range(n_shards)]
    for cid in sorted({str(c) for c in customer_ids}):
        shards[shard_of(group.get(cid, cid), n_shards)].append(cid)
    return shards


def _groups(linked: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each linked customer's group representative (the group's smallest id): union-find over
    the pairs (one per transfer, a handful a night; not per assignment)."""
    parent: dict[str, str] = {}

    def root(c: str) -> str:
        while parent.setdefault(c, c) != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for a, b in linked:
        ra, rb = root(str(a)), root(str(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {c: root(c) for c in list(parent)}


def transfer_links(inputs: BillingInputs) -> list[tuple[str, str]]:
    """(base customer, new customer) of every change that moves an assignment."""
    moved = inputs.changes[inputs.changes["customer_id"].notna()]
    if not len(moved):
        return []
    base = inputs.assignments.set_index("assignment_id")["customer_id"]
    pairs = pd.DataFrame({"a": moved["assignment_id"].map(base), "b": moved["customer_id"]})
    pairs = pairs.dropna().astype(str).drop_duplicates()
    return list(zip(pairs["a"], pairs["b"]))


def filter_inputs(inputs: BillingInputs, customer_ids: Iterable[str]) -> BillingInputs:
    """The inputs of these customers only: their row, assignments (with their changes) and
    calls; all packages and price versions. A shard holds whole transfer groups
    (`shard_customers(..., linked=transfer_links(inputs))`)."""
    wanted = {str(c) for c in customer_ids}

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["customer_id"].isin(wanted)].reset_index(drop=True)

    return BillingInputs(
        customers=keep(inputs.customers),
        packages=inputs.packages.reset_index(drop=True),
        assignments=keep(inputs.assignments),
        versions=inputs.versions.reset_index(drop=True),
        changes=inputs.changes[inputs.changes["assignment_id"].isin(
            inputs.assignments.loc[inputs.assignments["customer_id"].isin(wanted),
                                   "assignment_id"])].reset_index(drop=True),
        usage=keep(inputs.usage),
        counters=keep(inputs.counters),
        consumed=keep(inputs.consumed),
        granted=keep(inputs.granted),
        daily_spend=None if inputs.daily_spend is None else keep(inputs.daily_spend),
    )
