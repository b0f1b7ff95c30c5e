"""A report CSV written from a frame that pandas concatenated from an empty and a full string
column holds exactly its rows (pyarrow's CSV writer once wrote NUL bytes and stale memory for
the empty chunk: grants.csv of a run with a held grant, #17 item 2)."""

from __future__ import annotations

import pandas as pd

from billing_jobs.report.writer import _write_csv


def test_concatenated_string_columns_write_their_rows_only(tmp_path):
    empty = pd.DataFrame({"id": pd.Series([], dtype="str"), "n": pd.Series([], dtype="int64")})
    full = pd.DataFrame({"id": pd.Series(["A1", "A2"], dtype="str"), "n": [1, 2]})
    frame = pd.concat([empty, full], ignore_index=True)
    _write_csv(frame, tmp_path / "x.csv")
    assert (tmp_path / "x.csv").read_bytes() == b"id,n\nA1,1\nA2,2\n"
