"""One list of truth words (billing_jobs/core/booleans.py) for an imported cell, a setting and a
value read from a database (#26)."""

from __future__ import annotations

import pandas as pd
import pytest

from billing_jobs.checks import _coerce as co
from billing_jobs.core import settings
from billing_jobs.core.booleans import SHOWN, parse_bool
from billing_jobs.core.errors import UsageError


def test_the_words_a_person_writes_in_any_case():
    assert SHOWN == "true/false/1/0/yes/no"
    assert [parse_bool(w) for w in ("TRUE", " yes ", "1", "False", "no", "0")] == \
        [True, True, True, False, False, False]
    assert [parse_bool(w) for w in ("t", "f", "y", "n", "on", "off", "", "maybe")] == [None] * 8


def test_a_database_may_also_hand_back_single_letters():
    assert [parse_bool(w, stored=True) for w in ("t", "F", "y", "N", "yes", "0")] == \
        [True, False, True, False, True, False]
    assert parse_bool("off", stored=True) is None
    values, bad = co.booleans(pd.Series(["t", "no", "", None, "off"], dtype=object), True)
    assert values.tolist() == [True, False, True, True, True]
    assert bad.tolist() == [False, False, False, False, True]


@pytest.mark.parametrize("text, expected", [(None, True), ("", True), ("TRUE", True),
                                            ("yes", True), ("false", False), ("0", False),
                                            (" No ", False)])
def test_simulate_default_takes_the_same_words(monkeypatch, text, expected):
    if text is None:
        monkeypatch.delenv("BILLING_SIMULATE_DEFAULT", raising=False)
    else:
        monkeypatch.setenv("BILLING_SIMULATE_DEFAULT", text)
    assert settings.simulate_default() is expected


def test_simulate_default_refuses_another_word_naming_the_variable(monkeypatch):
    monkeypatch.setenv("BILLING_SIMULATE_DEFAULT", "off")
    with pytest.raises(UsageError, match=r"^BILLING_SIMULATE_DEFAULT='off' is not true or false "
                                         r"\(true/false/1/0/yes/no\)$"):
        settings.simulate_default()
