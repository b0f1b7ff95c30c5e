"""A file imported in chunks (a year of calls does not fit in memory at once): the same rows as
one chunk, the rules that span rows still hold over the whole file, and any problem in any
chunk leaves the database as it was."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from billing_jobs.core.errors import ImportFailed
from billing_jobs.ingest.importer import import_csv
from billing_jobs.ingest import file_rules, parse, source

from tests.store.helpers import dump, fresh_engine

CUSTOMERS = "customer_id,name,currency,balance\n" + "".join(
    f"C{i},Customer {i},EUR,{i}.25\n" for i in range(1, 8))


def usage_text(rows: list[tuple[str, str, str]]) -> str:
    """call_id, customer_id, charge per row; the other columns fixed."""
    return "call_id,customer_id,start_time,destination,duration_s,charge\n" + "".join(
        f"{cid},{cust},2027-01-0{1 + i % 9}T10:00:00Z,+4412{i},{30 + i},{charge}\n"
        for i, (cid, cust, charge) in enumerate(rows))


CALLS = [(f"X{i:02d}", f"C{1 + i % 7}", f"0.{i:02d}") for i in range(23)]


def write(tmp_path: Path, name: str, text: str, *, newline: str = "\n",
          bom: bool = False) -> Path:
    path = tmp_path / name
    data = text.replace("\n", newline).encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def refusal(engine, path: Path, **options) -> str:
    """The message of the ImportFailed that importing `path` raises."""
    with pytest.raises(ImportFailed) as failure:
        import_csv(engine, "usage", path, **options)
    return str(failure.value)


def seeded(db_url: str, tmp_path: Path):
    engine = fresh_engine(db_url)
    import_csv(engine, "customers", write(tmp_path, "customers.csv", CUSTOMERS))
    return engine


def test_a_file_in_chunks_writes_what_one_chunk_writes(db_url, tmp_path):
    text = usage_text(CALLS)
    engine = seeded(db_url, tmp_path)
    assert import_csv(engine, "usage", write(tmp_path, "usage.csv", text)) == 23
    expected = dump(engine, stable=True)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM usage"))

    # 23 rows, 4 at a time: 6 chunks, the last one short; a BOM and CRLF line ends
    path = write(tmp_path, "usage-crlf.csv", text, newline="\r\n", bom=True)
    told: list[int] = []
    assert import_csv(engine, "usage", path, chunk_rows=4, progress=told.append) == 23
    assert told == [4, 8, 12, 16, 20, 23]
    assert dump(engine, stable=True) == expected
    assert len(expected["usage"]) == 23


def test_chunks_are_exactly_chunk_rows_rows_with_their_csv_row_numbers(tmp_path):
    path = write(tmp_path, "usage.csv", usage_text(CALLS))
    chunks = list(parse.parsed_chunks("usage", source.Source(path), 5))
    assert [len(frame) for frame, _ in chunks] == [5, 5, 5, 5, 3]
    assert [int(frame.index[0]) for frame, _ in chunks] == [2, 7, 12, 17, 22]
    rows = np.concatenate([frame.index.to_numpy() for frame, _ in chunks])
    assert rows.tolist() == list(range(2, 25))
    ids = [cid for _, table in chunks for cid in table.column("call_id").to_pylist()]
    assert ids == [c for c, _, _ in CALLS]


def test_an_id_repeated_in_a_later_chunk_fails_naming_both_rows_and_writes_nothing(
        db_url, tmp_path):
    engine = seeded(db_url, tmp_path)
    import_csv(engine, "usage", write(tmp_path, "first.csv", usage_text(CALLS[:3])))
    before = dump(engine, stable=True)

    rows = CALLS[:12] + [("X01", "C3", "9.99")] + CALLS[12:]  # X01 again on CSV row 14
    path = write(tmp_path, "usage.csv", usage_text(rows))
    assert refusal(engine, path, chunk_rows=4) == (
        "usage.csv row 14 (row 1 is the header), column call_id: duplicate id 'X01' "
        "(first on row 3)")
    assert dump(engine, stable=True) == before  # X00..X02 not updated, nothing added


def test_a_hash_collision_between_different_ids_is_not_a_repeat(db_url, tmp_path, monkeypatch):
    engine = seeded(db_url, tmp_path)
    # every id hashes alike: the second read must tell the ids apart and let the file in
    monkeypatch.setattr(file_rules, "_id_hashes", lambda ids: np.zeros(len(ids), dtype="uint64"))
    path = write(tmp_path, "usage.csv", usage_text(CALLS))
    assert import_csv(engine, "usage", path, chunk_rows=3) == 23
    assert len(dump(engine)["usage"]) == 23


def test_a_bad_cell_in_the_last_chunk_rolls_back_the_chunks_written_before(db_url, tmp_path):
    engine = seeded(db_url, tmp_path)
    before = dump(engine, stable=True)
    text = usage_text(CALLS).replace("X21,C1,2027-01-04T10:00:00Z,+441221,51,",
                                     "X21,C1,2027-01-04T10:00:00Z,+441221,-5,")
    assert "-5," in text
    with pytest.raises(ImportFailed, match=r"^usage.csv: row 23 \(call_id 'X21'\): "
                                           r"duration_s must not be negative"):
        import_csv(engine, "usage", write(tmp_path, "usage.csv", text), chunk_rows=4)
    assert dump(engine, stable=True) == before


def test_a_row_of_the_wrong_width_in_a_later_chunk_is_named(db_url, tmp_path):
    engine = seeded(db_url, tmp_path)
    lines = usage_text(CALLS).splitlines(keepends=True)
    lines[17] = "X16,C3,2027-01-08T10:00:00Z,46\n"  # CSV row 18: 4 fields
    path = write(tmp_path, "usage.csv", "".join(lines))
    assert refusal(engine, path, chunk_rows=4) == (
        "usage.csv row 18 (row 1 is the header): expected 6 fields, found 4")
    assert dump(engine)["usage"] == []


def test_a_customers_charges_total_holds_over_the_whole_file(db_url, tmp_path):
    engine = seeded(db_url, tmp_path)
    # each call is within the bound; C2's two add up to more than 10^12 units
    rows = [("Y1", "C2", "600000000000"), ("Y2", "C1", "1"), ("Y3", "C2", "600000000000")]
    path = write(tmp_path, "usage.csv", usage_text(rows))
    assert refusal(engine, path, chunk_rows=1) == (
        "usage.csv: row 4 (call_id 'Y3'): charges of customer 'C2' add up to more than "
        "1000000000000 over the whole file")
    with pytest.raises(ImportFailed, match="charges of customer 'C2' add up to more than"):
        import_csv(engine, "usage", path)  # one chunk: the run's own rule says the same
    assert dump(engine)["usage"] == []


def test_a_pipe_is_read_once_and_chunked_from_memory(db_url, tmp_path):
    engine = seeded(db_url, tmp_path)
    rows = CALLS[:6] + [("X02", "C1", "1")]  # the repeat is found by re-reading the memory copy
    data = usage_text(rows).encode()
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, data), os.close(w)))
    writer.start()
    try:
        with pytest.raises(ImportFailed, match=r"row 8 .*duplicate id 'X02' \(first on row 4\)"):
            import_csv(engine, "usage", f"/dev/fd/{r}", chunk_rows=2)
    finally:
        writer.join()
        os.close(r)
    assert dump(engine)["usage"] == []
