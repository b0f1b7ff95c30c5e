"""The free-minute report's call times: the fast numpy text equals strftime's, value for value."""

import numpy as np
import pandas as pd

from billing_jobs.report.formatting import utc_second_text

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _strftime(values: pd.Series) -> list:
    return list(pd.to_datetime(values, utc=True).dt.strftime(FORMAT).to_numpy(dtype=object))


def test_random_instants_match_strftime():
    rng = np.random.default_rng(29)
    us = rng.integers(-2_000_000_000_000_000, 4_000_000_000_000_000, size=5000)
    values = pd.Series(pd.to_datetime(us, unit="us", utc=True))
    out = utc_second_text(values)
    assert out.dtype == object
    assert list(out) == _strftime(values)


def test_sub_second_truncates_and_offsets_read_as_utc():
    values = pd.Series(pd.to_datetime(["2026-12-01 23:59:59.999999+00:00",
                                       "2026-12-02 00:30:00.5+01:00",
                                       "1999-12-31 23:59:59-05:00"], format="ISO8601", utc=True))
    assert list(utc_second_text(values)) == ["2026-12-01T23:59:59Z", "2026-12-01T23:30:00Z",
                                             "2000-01-01T04:59:59Z"]
    assert list(utc_second_text(values)) == _strftime(values)


def test_missing_instant_and_empty_fall_back_to_strftime():
    values = pd.Series(pd.to_datetime(["2026-12-01 10:00:00", None], utc=True))
    assert list(utc_second_text(values)) == _strftime(values)
    assert len(utc_second_text(pd.Series([], dtype="datetime64[us, UTC]"))) == 0
