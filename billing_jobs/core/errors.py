"""Errors an operator reads: one line, naming what failed. The CLI prints them without a traceback."""


class BillingError(Exception):
    """Base: the message is the whole story, shown as one line."""

    exit_code = 1


class UsageError(BillingError):
    """Bad arguments (exit 2)."""

    exit_code = 2


class ImportFailed(BillingError):
    """A CSV file could not be imported; nothing from it was written."""


class GateError(BillingError):
    """Computed lines failed the posting gate; nothing was posted."""


class StrictRejection(BillingError):
    """--strict and some input rows were rejected; nothing was posted."""


class DatabaseError(BillingError):
    """The database could not be reached or refused the work."""

