"""The words for true and false, declared once: an imported CSV cell, a setting and a value read
from a database all use them (any case, surrounding whitespace ignored).

A person writes `true/false`, `1/0` or `yes/no` (docs/decisions.md). A value read back from a
database or a loader may also come as a single letter (PostgreSQL's text form `t`/`f`, `y`/`n`):
`parse_bool(..., stored=True)` takes those too; an imported file or a setting never does.
"""

from __future__ import annotations

#: (true word, false word) pairs a person writes, in the order they are shown
WORDS: tuple[tuple[str, str], ...] = (("true", "false"), ("1", "0"), ("yes", "no"))
#: the single-letter pairs a database hands back as text (values read, never written by hand)
STORED_WORDS: tuple[tuple[str, str], ...] = (("t", "f"), ("y", "n"))

TRUE_WORDS = frozenset(t for t, _ in WORDS)
FALSE_WORDS = frozenset(f for _, f in WORDS)
#: how a message names the accepted words: "true/false/1/0/yes/no"
SHOWN = "/".join(w for pair in WORDS for w in pair)

_STORED = {t: True for t, _ in WORDS + STORED_WORDS} | {f: False for _, f in WORDS + STORED_WORDS}
_WRITTEN = {t: True for t in TRUE_WORDS} | {f: False for f in FALSE_WORDS}


def parse_bool(text: str, *, stored: bool = False) -> bool | None:
    """True or False for a truth word (any case, whitespace around ignored), None for any other
    text (the caller decides what an empty or a wrong value means). `stored`: also the single
    letters a database hands back."""
    return (_STORED if stored else _WRITTEN).get(text.strip().lower())
