"""#17: a destination prefix written with non-ASCII digits never takes the digit fast path."""

import numpy as np
import pandas as pd

from billing_jobs.calc import patterns


def test_prefix_fast_path_is_ascii_only():
    assert patterns._PREFIX_FORM.match("^44|^91")
    for p in ("^٤٤", "^４４", "^𝟗"):
        assert not patterns._PREFIX_FORM.match(p), p


def test_non_ascii_digit_pattern_does_not_match_ascii_numbers():
    got = patterns.destination_matches(pd.Series(["4420", "+4420", "٤٤20"]), "^٤٤")
    assert got.tolist() == [False, False, True]
    assert np.asarray(patterns.destination_matches(pd.Series(["4420"]), "^44")).tolist() == [True]
