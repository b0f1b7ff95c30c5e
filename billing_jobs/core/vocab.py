"""The domain's words, declared once: line kinds, ledger entries, line statuses, run modes and
statuses, and the namespaces of the keys that make every ledger write exactly once.

Each is a ``StrEnum``: a member *is* its string (``LineKind.SETUP == "setup"``), so it goes
into a dataframe, a CSV, JSON or SQL unchanged, and a typo is a NameError instead of a line
that silently matches nothing. ``grep '"free_minutes_credit"'`` finds this file only.
"""

from __future__ import annotations

from enum import StrEnum


class LineKind(StrEnum):
    """What a ledger line charges or credits (SPEC 4, 9)."""

    SETUP = "setup"
    RECURRING = "recurring"
    PRORATED = "prorated"
    MINIMUM_SPEND = "minimum_spend"
    FREE_MINUTES_CREDIT = "free_minutes_credit"
    ADJUSTMENT = "adjustment"
    #: a change of terms from a date D inside a prorated period [s, e) (SPEC 10): the old
    #: terms' unused part given back, and the new terms' remaining part charged, keyed by D
    CHANGE_CREDIT = "change_credit"
    CHANGE_CHARGE = "change_charge"


#: the kinds the engine computes for a billing date (everything but manual adjustments)
DUE_KINDS: tuple[LineKind, ...] = (LineKind.SETUP, LineKind.RECURRING, LineKind.PRORATED,
                                   LineKind.MINIMUM_SPEND, LineKind.FREE_MINUTES_CREDIT,
                                   LineKind.CHANGE_CREDIT, LineKind.CHANGE_CHARGE)
#: the kinds that charge an assignment's days of service: two live keys of these may never
#: cover the same day (migration 0007's trigger)
SERVICE_KINDS: tuple[LineKind, ...] = (LineKind.SETUP, LineKind.RECURRING, LineKind.PRORATED,
                                       LineKind.MINIMUM_SPEND)
#: the kinds whose posted (charge) lines are credits: amount <= 0
CREDIT_KINDS: tuple[LineKind, ...] = (LineKind.FREE_MINUTES_CREDIT, LineKind.CHANGE_CREDIT)
#: every kind a ledger row may hold (the table's check constraint)
LEDGER_KINDS: tuple[LineKind, ...] = (*DUE_KINDS, LineKind.ADJUSTMENT)


class LedgerEntry(StrEnum):
    """Why a ledger row exists (docs/ledger.md): a posted line, or a row that corrects one."""

    CHARGE = "charge"
    CORRECTION = "correction"
    REVERSAL = "reversal"
    ADJUSTMENT = "adjustment"


class LineStatus(StrEnum):
    """A computed line's (or grant's) status in a report (SPEC 7)."""

    SIMULATED = "simulated"
    POSTED = "posted"
    INVOICED = "invoiced"
    ALREADY_POSTED = "already_posted"
    DEFERRED = "deferred"
    OVERLAPS_POSTED = "overlaps_posted"
    UPCOMING = "upcoming"
    NOT_POSTED = "not_posted"  # a failed post did not write it
    NOT_SIMULATED = "not_simulated"  # a failed simulation did not reach it
    UNKNOWN = "unknown"  # a failed post, and the database could not say what it wrote


#: the statuses of a line this run wrote
NEW_STATUSES: tuple[LineStatus, ...] = (LineStatus.POSTED, LineStatus.INVOICED)


class RunMode(StrEnum):
    SIMULATE = "simulate"
    POST = "post"


class RunStatus(StrEnum):
    """A run record's status (the runs table)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: stopped by SIGINT (Ctrl-C) or SIGTERM; what it posted before the stop stands
    INTERRUPTED = "interrupted"


class KeySpace(StrEnum):
    """The namespaces of correction keys (``<space>:<parts>``): each writer owns one, so a key
    written by one command can never be mistaken for another's."""

    ADJUST = "adjust"
    REVERSE = "reverse"
    REBILL = "rebill"
    IMPORT = "import"
    #: a change of an assignment from a date (SPEC 10): the change row's key and the run id of
    #: the lines the change command posts (ingest/changes.py `change_key`)
    CHANGE = "change"
    #: a void of an assignment entered by mistake: its corrections to 0 (corrections/void.py)
    VOID = "void"


def correction_key(space: KeySpace, *parts: object) -> str:
    """The exactly-once key of a correction row: ``space:part:part...``."""
    return ":".join([str(space), *(str(p) for p in parts)])


#: a posted line's identity (SPEC 5): one live row per key, enforced by a unique index
POSTING_KEY: tuple[str, str, str] = ("assignment_id", "kind", "period_start")
#: a free-minute grant's identity, same rule
GRANT_KEY: tuple[str, str] = ("assignment_id", "period_start")
