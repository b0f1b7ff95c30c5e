"""`adjust`: a manual debit (> 0) or credit (< 0) of a customer, exactly once
(SPEC section 9, docs/ledger.md "adjust: one key per adjustment").

The idempotency key (also the row's run id) is, in the `adjust` namespace:

* by default `adjust:<day>:<digest>`, the digest of (customer, amount, reason) and the day the
  billing time zone's calendar shows: the preview prints it, the post uses it, and a retried
  command (or three at once) posts once. A deliberate second, identical adjustment of the
  same day needs its own `--key`;
* with `--key K`, `adjust:user:K`: a user's key can never be a system key (`reverse:...`,
  `rebill:...`, `import:...`), so it cannot block another command's row. Given back as
  printed (`adjust:user:K`, or the default key of these very arguments, e.g. to post a
  preview of yesterday), it is used as is;
* keys stored before this rule (`--key K` stored raw with run id `adjust:K`, the default
  `adjust:<uuid>`) still count: a retry with the same `--key` finds them and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timezone

import sqlalchemy as sa

from billing_jobs.core.errors import UsageError
from billing_jobs.core.money import (MICRO_DIGITS, format_amount, format_micros, format_minor,
                                     minor_digits)
from billing_jobs.core.text import check_stored_text
from billing_jobs.core.vocab import KeySpace, LedgerEntry, LineKind, LineStatus, correction_key
from billing_jobs.corrections.rows import Written, write
from billing_jobs.store import ledger
from billing_jobs.store.db import db_errors, read_connection

#: the namespace of keys a user gives with --key, inside KeySpace.ADJUST
USER = "user"

#: what `adjust` stores follows the import's text rules (#28 point 8, core/text.py): the reason
#: is one line of free text (no control character, tab or line break included, no bidirectional
#: control or invisible format character, at most 4000 characters); the key is an id (no
#: control or format character at all, NFC, at most 200 characters). Refused: exit 2 naming
#: the option and the character as U+XXXX, nothing stored.
_DEFAULT = re.compile(r"adjust:(\d{4}-\d{2}-\d{2}):[0-9a-f]{16}")


def default_key(customer_id: str, amount_micros: int, reason: str, day: date) -> str:
    """`adjust:<day>:<digest of customer, amount and reason>`: the same command on the same
    day has the same key."""
    text = json.dumps([str(customer_id), int(amount_micros), reason.strip()])
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return correction_key(KeySpace.ADJUST, day.isoformat(), digest)


def user_key(key: str) -> str:
    """A user's `--key` in the user namespace (`adjust:user:K`); one given back in that form
    is kept."""
    prefix = correction_key(KeySpace.ADJUST, USER, "")
    return key if key.startswith(prefix) else prefix + key


def _key_for(customer_id: str, amount_micros: int, reason: str, day: date,
             given: str | None) -> str:
    if given is None:
        return default_key(customer_id, amount_micros, reason, day)
    if not given.strip():
        raise UsageError("adjust: --key must not be empty")
    m = _DEFAULT.fullmatch(given)
    if m is not None:
        try:
            then = date.fromisoformat(m.group(1))
        except ValueError:
            then = None
        if then is not None and given == default_key(customer_id, amount_micros, reason, then):
            return given  # the default key of these very arguments, printed on another day
    return user_key(given)


def _legacy(conn: sa.Connection, given: str | None):
    """The row a `--key` wrote before user keys had their namespace (stored raw, run id
    `adjust:<key>`), or None."""
    if given is None:
        return None
    return conn.execute(sa.text(
        "SELECT customer_id, amount_micros, currency FROM ledger WHERE idempotency_key = :k "
        "AND run_id = :r AND kind = :kind"),
        {"k": given, "r": correction_key(KeySpace.ADJUST, given), "kind": LineKind.ADJUSTMENT}
    ).first()


def check_minor_unit(amount_micros: int, currency: str, what: str = "--amount") -> None:
    """Refuse an amount finer than the currency's minor unit (1.234 EUR), naming the unit."""
    digits = minor_digits(currency)
    if amount_micros % 10 ** (MICRO_DIGITS - digits):
        unit = (f"whole {currency}" if digits == 0 else
                f"{digits} decimal place{'s' if digits > 1 else ''}, "
                f"{format_minor(10 ** (MICRO_DIGITS - digits), currency)} {currency}")
        raise UsageError(f"adjust: {what} {format_micros(amount_micros)} is finer than the "
                         f"minor unit of {currency} ({unit}); nothing written")


def adjust(engine: sa.Engine, customer_id: str, amount_micros: int, reason: str,
           idempotency_key: str | None = None, post: bool = False,
           on: date | None = None, minor_unit_only: bool = True) -> Written:
    """A manual debit (amount > 0) or credit (< 0) on day `on` (default: today, UTC; the CLI
    gives today in the billing time zone). Simulate (default) returns the row only, with the
    key a post would use. `minor_unit_only` refuses an amount finer than the customer's
    currency's minor unit (off only for tests of sub-unit ledger rows)."""
    if not reason or not reason.strip():
        raise UsageError("adjust: --reason must say why")
    check_stored_text("--reason", reason, one_line=True)
    check_stored_text("--key", idempotency_key, is_id=True)
    if amount_micros == 0:
        raise UsageError("adjust: --amount must not be 0")
    day = on or datetime.now(timezone.utc).date()
    key = _key_for(customer_id, amount_micros, reason, day, idempotency_key)
    with db_errors(engine, "adjusting"), engine.begin() as conn:
        cust = conn.execute(sa.text("SELECT currency FROM customers WHERE customer_id = :c"),
                            {"c": customer_id}).first()
        if cust is None:
            raise UsageError(f"adjust: customer {customer_id!r} does not exist")
        if minor_unit_only:
            check_minor_unit(amount_micros, cust[0])
        row = dict(run_id=key, run_date=day,
                   customer_id=customer_id, assignment_id=None, package_id=None,
                   kind=LineKind.ADJUSTMENT, period_start=day, period_end=None, quantity=0,
                   unit_price_micros=0, amount_micros=amount_micros, cost_micros=0,
                   currency=cust[0], auto_decrement=True, status=LineStatus.POSTED,
                   revision=0, entry=LedgerEntry.ADJUSTMENT, reason=reason.strip(),
                   reverses_run_id=None, idempotency_key=key)
        old = _legacy(conn, idempotency_key)
        if old is not None:  # written under this --key before user keys had a namespace
            row.update(run_id=correction_key(KeySpace.ADJUST, idempotency_key),
                       idempotency_key=idempotency_key)
        if not post or old is not None:
            conn.rollback()
            if old is not None and post:
                _same(old, customer_id, amount_micros, idempotency_key)
            return Written([row], [False])
        ledger.lock_customers(conn, [customer_id])
        written = write(conn, [row], 1)
    if not written[0]:
        with read_connection(engine) as conn:
            old = conn.execute(sa.text("SELECT customer_id, amount_micros, currency FROM ledger "
                                       "WHERE idempotency_key = :k"), {"k": key}).first()
        if old is not None:
            _same(old, customer_id, amount_micros, key)
    return Written([row], written)


def _same(old, customer_id: str, amount_micros: int, key: str) -> None:
    """A key already used for another customer or amount is refused, naming them."""
    if old[0] != customer_id or int(old[1]) != amount_micros:
        raise UsageError(f"adjust: key {key!r} was already used for customer {old[0]} amount "
                         f"{format_amount(int(old[1]), old[2])} {old[2]}; nothing written")
