"""Destination patterns: RE2 only (linear time), refused patterns give an operator's reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from billing_jobs.calc.patterns import MAX_PATTERN_LENGTH, check_pattern, destination_matches


def m(numbers, pattern):
    return destination_matches(pd.Series(numbers, dtype="str"), pattern).tolist()


# ------------------------------------------------------------------ check_pattern

@pytest.mark.parametrize("pattern", [None, "", "^44", "^44|^91|^1", "^(44|91)7", "1{3}5$",
                                     "(1+)+$", "^44[0-9]{2}", "\\d{3}", "(?i)^44"])
def test_usable_patterns(pattern):
    assert check_pattern(pattern) is None


def test_unbalanced_group_is_refused_with_re2_reason():
    why = check_pattern("^44|(")
    assert why is not None and why.startswith("does not compile: missing )")


@pytest.mark.parametrize("pattern", ["(a)\\1", "(4)(4)\\2", "(?P<x>4)(?P=x)", "\\k<x>"])
def test_back_references_are_refused(pattern):
    assert "back-references are not supported" in check_pattern(pattern)


@pytest.mark.parametrize("pattern, word", [("(?=44)4", "look-ahead"), ("(?!44)4", "look-ahead"),
                                           ("(?<=4)4", "look-behind"), ("(?<!4)4", "look-behind")])
def test_look_around_is_refused(pattern, word):
    assert word in check_pattern(pattern)


def test_too_long_pattern_is_refused():
    assert check_pattern("1" * MAX_PATTERN_LENGTH) is None
    why = check_pattern("1" * (MAX_PATTERN_LENGTH + 1))
    assert why == f"pattern is longer than 200 characters (got {MAX_PATTERN_LENGTH + 1})"


@pytest.mark.parametrize("pattern, fragment", [("[", "missing ]"), ("x**", "bad repetition"),
                                               ("a{1001}", "invalid repetition size")])
def test_other_syntax_errors(pattern, fragment):
    why = check_pattern(pattern)
    assert why.startswith("does not compile") and fragment in why


@pytest.mark.parametrize("pattern", ["^44|", "|^44", ".*", "4*"])
def test_pattern_matching_every_number_is_refused(pattern):
    assert "matches every number" in check_pattern(pattern)


def test_non_text_pattern_is_refused():
    assert check_pattern(44) == "pattern must be text (got int)"


# ------------------------------------------------------------------ destination_matches

def test_prefix_patterns_ignore_a_leading_plus():
    nums = ["+441234", "441234", "914455", "+15551234", "3344", "", "+", "4"]
    assert m(nums, "^44") == [True, True, False, False, False, False, False, False]
    assert m(nums, "^44|^91|^1") == [True, True, True, True, False, False, False, False]


def test_general_regex_searches_and_anchors_after_the_plus():
    nums = ["+441234", "3344", "+33441", "44"]
    assert m(nums, "^(44)") == [True, False, False, True]
    assert m(nums, "44") == [True, True, True, True]
    assert m(nums, "44$") == [False, True, False, True]
    assert m(nums, "^\\+44") == [False, False, False, False]  # the '+' is not part of the number


def test_fast_path_and_regex_path_agree():
    rng = np.random.default_rng(7)
    nums = pd.Series(["+" * int(p) + str(n) for p, n in
                      zip(rng.integers(0, 2, 5000), rng.integers(1, 10**12, 5000))], dtype="str")
    fast = destination_matches(nums, "^44|^91|^1")
    slow = destination_matches(nums, "^(?:44|91|1)")
    assert fast.dtype == bool and np.array_equal(fast, slow) and fast.any() and not fast.all()


def test_empty_pattern_matches_everything_including_missing():
    nums = pd.Series(["44", None, ""], dtype=object)
    assert destination_matches(nums, "").tolist() == [True, True, True]
    assert destination_matches(nums, None).tolist() == [True, True, True]


def test_missing_numbers_do_not_match_a_pattern():
    assert destination_matches(pd.Series(["441", None], dtype=object), "^44").tolist() == [True, False]


def test_numbers_given_as_integers_are_matched_as_text():
    assert destination_matches(pd.Series([441, 91]), "^44").tolist() == [True, False]


def test_empty_input():
    out = destination_matches(pd.Series([], dtype="str"), "^44")
    assert out.dtype == bool and out.shape == (0,)


def test_refused_pattern_raises():
    with pytest.raises(ValueError, match="refused"):
        destination_matches(pd.Series(["44"]), "(a)\\1")


@pytest.mark.timeout(10)
def test_catastrophic_pattern_runs_in_linear_time():
    # With a backtracking engine this is 2**60 steps per number; RE2 is linear.
    nums = pd.Series(["1" * 60 + "2", "1" * 60, "+" + "1" * 59 + "x"] * 1000, dtype="str")
    got = destination_matches(nums, "(1+)+$")
    assert got.tolist() == [False, True, False] * 1000


@pytest.mark.timeout(10)
def test_catastrophic_nested_quantifiers_on_long_numbers():
    nums = pd.Series(["9" * 5000 + "!", "9" * 5000], dtype="str")
    assert destination_matches(nums, "^(9+)+$").tolist() == [False, True]
    assert destination_matches(nums, "^(9|99)+$").tolist() == [False, True]


@pytest.mark.timeout(60)
def test_one_million_numbers():
    n = 1_000_000
    rng = np.random.default_rng(1)
    digits = rng.integers(10**9, 10**12, n).astype(str)
    nums = pd.Series(np.where(np.arange(n) % 2 == 0, np.char.add("+", digits), digits), dtype="str")
    expected = np.char.startswith(digits, "44") | np.char.startswith(digits, "91")
    assert np.array_equal(destination_matches(nums, "^44|^91"), expected)
    assert np.array_equal(destination_matches(nums, "^(44|91)"), expected)
