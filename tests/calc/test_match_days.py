"""`calendar.parse_match_days`: each distinct pattern parsed once, mapped back to every row,
gives the bitmask a plain per-row parse gives (bit n-1 for day n), on any index."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from billing_jobs.calc.calendar import parse_match_days


def _plain(text) -> int:
    if text is None:
        return 0
    mask = 0
    for part in str(text).replace(" ", "").replace(",", "|").split("|"):
        if part:
            mask |= 1 << (int(part) - 1)
    return mask


def test_distinct_patterns_mapped_back_equal_a_per_row_parse():
    rng = random.Random(7)
    pool = ["", None, "1", "31", "1|15", "1|3,5", " 2 , 4 ", "7,6", "28|29|30|31",
            "|".join(str(d) for d in range(1, 32))]
    values = [rng.choice(pool) for _ in range(5000)]
    index = np.arange(5000) * 3 + 11  # not a RangeIndex: the result keeps the caller's index
    for dtype in (object, "str"):
        got = parse_match_days(pd.Series(values, index=index, dtype=dtype))
        assert got.index.equals(pd.Index(index))
        assert got.dtype == "int64"
        assert got.tolist() == [_plain(v) for v in values]
        assert got.iloc[[values.index("1|3,5")]].tolist() == [0b10101]


def test_no_rows_and_no_patterns():
    assert parse_match_days(pd.Series([], dtype=object)).tolist() == []
    assert parse_match_days(pd.Series([None, "", None], dtype=object)).tolist() == [0, 0, 0]
