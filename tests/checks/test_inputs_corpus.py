"""Hostile and broken inputs, one per rule of SPEC section 6.

Each case mutates the valid raw set and states exactly which (entity, id) rows are
rejected and a substring of each reason; every other row must pass through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest

from billing_jobs.checks import validate_inputs
from billing_jobs.core.frames import BillingInputs
from tests.checks._data import ALL_IDS, KEY, M, add_row, raw_inputs, set_value


@dataclass
class Case:
    name: str
    mutate: Callable[[BillingInputs], None]
    expected: list[tuple[str, str, str]]  # (entity, id, reason substring)
    extra_ids: dict[str, set[str]] = field(default_factory=dict)  # accepted new rows


def _c(r, f):
    r.customers = f(r.customers)


def _p(r, f):
    r.packages = f(r.packages)


def _a(r, f):
    r.assignments = f(r.assignments)


def _u(r, f):
    r.usage = f(r.usage)


CASES = [
    Case("unknown customer",
         lambda r: _a(r, lambda d: add_row(d, assignment_id="A9", customer_id="C9")),
         [("assignments", "A9", "unknown customer 'C9'")]),
    Case("unknown package",
         lambda r: _a(r, lambda d: add_row(d, assignment_id="A9", package_id="P9")),
         [("assignments", "A9", "unknown package 'P9'")]),
    Case("quantity 0",
         lambda r: _a(r, lambda d: set_value(d, "A1", "quantity", 0)),
         [("assignments", "A1", "quantity must be at least 1 (got 0)")]),
    Case("negative quantity",
         lambda r: _a(r, lambda d: set_value(d, "A3", "quantity", -3)),
         [("assignments", "A3", "quantity must be at least 1 (got -3)")]),
    Case("fractional quantity",
         lambda r: _a(r, lambda d: set_value(d, "A3", "quantity", 1.5)),
         [("assignments", "A3", "quantity is not a whole number (got 1.5)")]),
    Case("end before start",
         lambda r: _a(r, lambda d: set_value(d, "A1", "end_date", "2026-12-31")),
         [("assignments", "A1", "end_date 2026-12-31 is before start_date 2027-01-01")]),
    Case("weekly match 8",
         lambda r: _p(r, lambda d: set_value(d, "P2", "frequency_match", "1|8")),
         [("packages", "P2", "weekly frequency_match days must be 1 to 7 (1 = Monday) (got 8 in '1|8')"),
          ("assignments", "A2", "package 'P2' was rejected")]),
    Case("weekly match 0",
         lambda r: _p(r, lambda d: set_value(d, "P2", "frequency_match", "0")),
         [("packages", "P2", "days must be 1 to 7"),
          ("assignments", "A2", "package 'P2' was rejected")]),
    Case("monthly match 32",
         lambda r: _p(r, lambda d: set_value(d, "P1", "frequency_match", "1,32")),
         [("packages", "P1", "monthly frequency_match days must be 1 to 31 (got 32 in '1,32')"),
          ("assignments", "A1", "package 'P1' was rejected")]),
    Case("match on a daily package",
         lambda r: _p(r, lambda d: set_value(d, "P3", "frequency_match", "1")),
         [("packages", "P3", "frequency_match is not allowed for a daily package (got '1')"),
          ("assignments", "A3", "package 'P3' was rejected")]),
    Case("match that is not a list of days",
         lambda r: _p(r, lambda d: set_value(d, "P2", "frequency_match", "mon|wed")),
         [("packages", "P2", "frequency_match must be days separated by '|' or ',' (got 'mon|wed')"),
          ("assignments", "A2", "package 'P2' was rejected")]),
    Case("empty day in the match",
         lambda r: _p(r, lambda d: set_value(d, "P2", "frequency_match", "1||3")),
         [("packages", "P2", "frequency_match must be days separated by"),
          ("assignments", "A2", "package 'P2' was rejected")]),
    Case("negative retail",
         lambda r: _p(r, lambda d: set_value(d, "P1", "retail", -1 * M)),
         [("packages", "P1", "retail must not be negative (got -1)"),
          ("assignments", "A1", "package 'P1' was rejected")]),
    Case("negative setup cost",
         lambda r: _p(r, lambda d: set_value(d, "P4", "setup_cost", -250_000)),
         [("packages", "P4", "setup_cost must not be negative (got -0.25)"),
          ("assignments", "A4", "package 'P4' was rejected")]),
    Case("negative balance is allowed (credit may go negative)",
         lambda r: _c(r, lambda d: set_value(d, "C1", "balance", -9 * 10**9 * M)),
         []),
    # ids that reached the database another way break the importer's text rules (#17 item 10)
    Case("stored customer id with a NUL byte",
         lambda r: _c(r, lambda d: add_row(d, customer_id="C\x009")),
         [("customers", "C\x009", "customer_id: control character U+0000 not allowed")]),
    Case("stored package id with a zero-width space (lookalike of P1)",
         lambda r: _p(r, lambda d: add_row(d, package_id="\u200bP1")),
         [("packages", "\u200bP1", "package_id: invisible character U+200B not allowed")]),
    Case("stored assignment id in decomposed form (NFD)",
         lambda r: _a(r, lambda d: add_row(d, assignment_id="Cafe\u0301")),
         [("assignments", "Cafe\u0301", "assignment_id: not in Unicode NFC form")]),
    Case("stored call id of 201 characters, and one with a C1 control",
         lambda r: _u(r, lambda d: add_row(add_row(d, call_id="U" * 201), call_id="U\x859")),
         [("usage", "U" * 201, "call_id: longer than 200 characters (201)"),
          ("usage", "U\x859", "call_id: control character U+0085 not allowed")]),
    Case("balance beyond the posting bound (9e9 units) is refused",
         lambda r: _c(r, lambda d: set_value(d, "C2", "balance", -9 * 10**9 * M - 1)),
         [("customers", "C2", "balance is out of range (got -9000000000.000001; "
                              "at most 9000000000 either way)"),
          ("assignments", "A3", "customer 'C2' was rejected"),
          ("usage", "U2", "customer 'C2' was rejected")]),
    Case("negative call charge",
         lambda r: _u(r, lambda d: set_value(d, "U1", "charge", -5)),
         [("usage", "U1", "charge must not be negative (got -0.000005)")]),
    Case("unknown currency XXX",
         lambda r: _c(r, lambda d: set_value(d, "C2", "currency", "XXX")),
         [("customers", "C2", "unknown currency 'XXX'"),
          ("assignments", "A3", "customer 'C2' was rejected"),
          ("usage", "U2", "customer 'C2' was rejected")]),
    Case("missing currency",
         lambda r: _p(r, lambda d: set_value(d, "P3", "currency", None)),
         [("packages", "P3", "currency is missing"),
          ("assignments", "A3", "package 'P3' was rejected")]),
    Case("currency mismatch",
         lambda r: _p(r, lambda d: set_value(d, "P1", "currency", "USD")),
         [("assignments", "A1",
           "package 'P1' currency 'USD' does not match customer 'C1' currency 'EUR'")]),
    Case("duplicate customer ids",
         lambda r: _c(r, lambda d: add_row(d, name="Impostor")),
         [("customers", "C1", "duplicate customer_id 'C1' (2 rows)"),
          ("assignments", "A1", "customer 'C1' was rejected"),
          ("assignments", "A2", "customer 'C1' was rejected"),
          ("usage", "U1", "customer 'C1' was rejected")]),
    Case("duplicate package ids (three rows)",
         lambda r: _p(r, lambda d: add_row(add_row(d, package_id="P3"), package_id="P3")),
         [("packages", "P3", "duplicate package_id 'P3' (3 rows)"),
          ("assignments", "A3", "package 'P3' was rejected")]),
    Case("duplicate assignment ids",
         lambda r: _a(r, lambda d: add_row(d, quantity=5)),
         [("assignments", "A1", "duplicate assignment_id 'A1' (2 rows)")]),
    Case("duplicate call ids",
         lambda r: _u(r, lambda d: add_row(d, charge=1)),
         [("usage", "U1", "duplicate call_id 'U1' (2 rows)")]),
    Case("unparsable date 2027-02-30",
         lambda r: _a(r, lambda d: set_value(d, "A2", "start_date", "2027-02-30")),
         [("assignments", "A2", "start_date is not a valid date YYYY-MM-DD (got '2027-02-30')")]),
    Case("unparsable end date",
         lambda r: _a(r, lambda d: set_value(d, "A3", "end_date", "soon")),
         [("assignments", "A3", "end_date is not a valid date YYYY-MM-DD (got 'soon')")]),
    Case("date in another format",
         lambda r: _a(r, lambda d: set_value(d, "A3", "start_date", "10/01/2027")),
         [("assignments", "A3", "start_date is not a valid date YYYY-MM-DD (got '10/01/2027')")]),
    Case("missing start date",
         lambda r: _a(r, lambda d: set_value(d, "A4", "start_date", None)),
         [("assignments", "A4", "start_date is missing")]),
    Case("date before 1900",
         lambda r: _a(r, lambda d: set_value(d, "A4", "start_date", "0099-01-01")),
         [("assignments", "A4", "start_date 0099-01-01 is out of range (1900-01-01 to 9999-12-31)")]),
    Case("negative duration",
         lambda r: _u(r, lambda d: set_value(d, "U3", "duration_s", -1)),
         [("usage", "U3", "duration_s must not be negative (got -1)")]),
    Case("unparsable call time",
         lambda r: _u(r, lambda d: set_value(d, "U2", "start_time", "yesterday")),
         [("usage", "U2", "start_time is not a valid timestamp (got 'yesterday')")]),
    Case("bad pattern ^44|(",
         lambda r: _p(r, lambda d: set_value(d, "P2", "destination", "^44|(")),
         [("packages", "P2", "destination pattern '^44|(' refused: does not compile: missing )"),
          ("assignments", "A2", "package 'P2' was rejected")]),
    Case("catastrophic (1+)+$ is accepted (RE2 is linear)",
         lambda r: _p(r, lambda d: set_value(d, "P2", "destination", "(1+)+$")),
         []),
    Case("back-reference",
         lambda r: _p(r, lambda d: set_value(d, "P2", "destination", "(4)\\1")),
         [("packages", "P2", "back-references are not supported"),
          ("assignments", "A2", "package 'P2' was rejected")]),
    Case("look-ahead",
         lambda r: _p(r, lambda d: set_value(d, "P2", "destination", "^(?=44)")),
         [("packages", "P2", "look-ahead (?=...) is not supported"),
          ("assignments", "A2", "package 'P2' was rejected")]),
    Case("pattern with a trailing | matches every number",
         lambda r: _p(r, lambda d: set_value(d, "P2", "destination", "^44|")),
         [("packages", "P2", "pattern matches every number"),
          ("assignments", "A2", "package 'P2' was rejected")]),
    Case("pattern longer than 200 characters",
         lambda r: _p(r, lambda d: set_value(d, "P2", "destination", "^" + "4" * 250)),
         [("packages", "P2", "pattern is longer than 200 characters (got 251)"),
          ("assignments", "A2", "package 'P2' was rejected")]),
    Case("huge retail",
         lambda r: _p(r, lambda d: set_value(d, "P1", "retail", 10**18 + 1)),
         [("packages", "P1", "retail is out of range (got 1000000000000.000001; at most 1000000000000)"),
          ("assignments", "A1", "package 'P1' was rejected")]),
    Case("huge balance",
         lambda r: _c(r, lambda d: set_value(d, "C3", "balance", 2**63 - 1)),
         [("customers", "C3", "balance is out of range"),
          ("assignments", "A4", "customer 'C3' was rejected"),
          ("usage", "U3", "customer 'C3' was rejected")]),
    Case("money beyond int64",
         lambda r: _u(r, lambda d: set_value(d, "U1", "charge", 2**70)),
         [("usage", "U1", "charge is not an amount in micros (got 1180591620717411303424)")]),
    Case("retail × quantity over 1e12 units",
         lambda r: (_p(r, lambda d: set_value(d, "P3", "retail", 6 * 10**17)),
                    _a(r, lambda d: set_value(d, "A3", "quantity", 2))),
         [("assignments", "A3",
           "amount out of range: retail 600000000000 × quantity 2 exceeds 1000000000000")]),
    Case("huge quantity",
         lambda r: _a(r, lambda d: set_value(d, "A1", "quantity", 10**10)),
         [("assignments", "A1", "quantity must be at most 1000000000 (got 10000000000)")]),
    Case("huge duration",
         lambda r: _u(r, lambda d: set_value(d, "U2", "duration_s", 10**15)),
         [("usage", "U2", "duration_s must be at most 1000000000")]),
    Case("a customer's calls add up past 1e12 units",
         lambda r: _u(r, lambda d: add_row(set_value(d, "U1", "charge", 6 * 10**17),
                                           call_id="U4", charge=6 * 10**17)),
         [("usage", "U1", "charges of customer 'C1' add up to more than 1000000000000"),
          ("usage", "U4", "charges of customer 'C1' add up to more than 1000000000000")]),
    Case("SQL in text fields passes through as text",
         lambda r: (_c(r, lambda d: set_value(d, "C1", "name", "'; DROP TABLE customers; --")),
                    _p(r, lambda d: set_value(d, "P1", "description", "\"); DELETE FROM ledger; --"))),
         []),
    Case("SQL as an id is just an id",
         lambda r: (_c(r, lambda d: add_row(d, customer_id="C'; DROP TABLE x;--")),
                    _a(r, lambda d: add_row(d, assignment_id="A'--", customer_id="C'; DROP TABLE x;--"))),
         [], {"customers": {"C'; DROP TABLE x;--"}, "assignments": {"A'--"}}),
    Case("unicode names and ids",
         lambda r: (_c(r, lambda d: add_row(d, customer_id="Клиент-1", name="Zoë Ünïcødé 顧客 🚀")),
                    _u(r, lambda d: add_row(d, call_id="呼叫-1", customer_id="Клиент-1"))),
         [], {"customers": {"Клиент-1"}, "usage": {"呼叫-1"}}),
    Case("free_minutes on a standard package",
         lambda r: _p(r, lambda d: set_value(d, "P1", "free_minutes", 100)),
         [("packages", "P1", "free_minutes is only allowed on free_minutes packages (got 100 on type 'standard')"),
          ("assignments", "A1", "package 'P1' was rejected")]),
    Case("destination on a standard package",
         lambda r: _p(r, lambda d: set_value(d, "P3", "destination", "^44")),
         [("packages", "P3", "destination is only allowed on free_minutes packages (got '^44' on type 'standard')"),
          ("assignments", "A3", "package 'P3' was rejected")]),
    Case("negative free minutes",
         lambda r: _p(r, lambda d: set_value(d, "P2", "free_minutes", -10)),
         [("packages", "P2", "free_minutes must be between 0 and 1000000000 (got -10)"),
          ("assignments", "A2", "package 'P2' was rejected")]),
    Case("free_minutes override on a standard package",
         lambda r: _a(r, lambda d: set_value(d, "A1", "free_minutes", 30)),
         [("assignments", "A1", "free_minutes is only allowed for free_minutes packages (got 30; package 'P1' is standard)")]),
    Case("unknown type",
         lambda r: _p(r, lambda d: set_value(d, "P1", "type", "premium")),
         [("packages", "P1", "unknown type 'premium' (expected one of free_minutes, standard)"),
          ("assignments", "A1", "package 'P1' was rejected")]),
    Case("unknown frequency",
         lambda r: _p(r, lambda d: set_value(d, "P3", "frequency", "hourly")),
         [("packages", "P3", "unknown frequency 'hourly'"),
          ("assignments", "A3", "package 'P3' was rejected")]),
    Case("negative minimum days",
         lambda r: _p(r, lambda d: set_value(d, "P3", "minimum_days", -1)),
         [("packages", "P3", "minimum_days must be between 0 and 36600 (got -1)"),
          ("assignments", "A3", "package 'P3' was rejected")]),
    Case("truth value that is not one",
         lambda r: _a(r, lambda d: set_value(d, "A2", "auto_decrement", "maybe")),
         [("assignments", "A2", "auto_decrement must be true or false (got 'maybe')")]),
    Case("missing money",
         lambda r: _p(r, lambda d: set_value(d, "P4", "retail", None)),
         [("packages", "P4", "retail is missing"),
          ("assignments", "A4", "package 'P4' was rejected")]),
    Case("missing customer id",
         lambda r: _c(r, lambda d: add_row(d, customer_id=None)),
         [("customers", "", "customer_id is missing (row 4 of the loaded table)")]),
    Case("blank call id",
         lambda r: _u(r, lambda d: add_row(d, call_id="   ")),
         [("usage", "", "call_id is missing (row 4 of the loaded table)")]),
    Case("call of an unknown customer",
         lambda r: _u(r, lambda d: add_row(d, call_id="U9", customer_id="C9")),
         [("usage", "U9", "unknown customer 'C9'")]),
    Case("assignment without a package id",
         lambda r: _a(r, lambda d: set_value(d, "A4", "package_id", None)),
         [("assignments", "A4", "package_id is missing")]),
    Case("several problems on one row give one row per reason",
         lambda r: _a(r, lambda d: add_row(d, assignment_id="A9", customer_id="C9",
                                            quantity=0, end_date="2026-01-01")),
         [("assignments", "A9", "unknown customer 'C9'"),
          ("assignments", "A9", "quantity must be at least 1 (got 0)"),
          ("assignments", "A9", "end_date 2026-01-01 is before start_date 2027-01-01")]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus(case: Case):
    raw = raw_inputs()
    case.mutate(raw)
    clean, rejected = validate_inputs(raw)

    assert list(rejected.columns) == ["entity", "id", "reason"]
    got = list(rejected.itertuples(index=False, name=None))
    # one row per (entity, id, reason)
    assert len(got) == len(set(got))
    # exactly the expected (entity, id) rows, each reason as stated
    assert len(got) == len(case.expected), got
    for entity, rid, fragment in case.expected:
        matches = [g for g in got if g[0] == entity and g[1] == rid and fragment in g[2]]
        assert matches, f"no {entity} {rid!r} rejection containing {fragment!r} in {got}"

    # every other row passes through
    rejected_ids = {(e, i) for e, i, _ in case.expected}
    for entity, ids in ALL_IDS.items():
        expect = {i for i in ids if (entity, i) not in rejected_ids}
        expect |= case.extra_ids.get(entity, set())
        kept = set(getattr(clean, entity)[KEY[entity]])
        assert kept == expect, (entity, kept, expect)


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
