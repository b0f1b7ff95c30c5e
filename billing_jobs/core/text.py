"""What an id or a text cell may hold (#17 items 6 and 10, docs/decisions.md), in one place.

The importer refuses a file holding such text; run-time validation rejects a stored row whose
id breaks the same rules (it reached the database another way): the row is named with its
reason, never billed under a lookalike or a truncated id.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: An id or reference longer than this would overflow PostgreSQL's btree row limit in the
#: posting keys (and no carrier writes one); free text is bounded too.
MAX_ID_CHARS = 200
MAX_TEXT_CHARS = 4000

#: code point ranges: C0/C1 controls (NUL, CR, ESC, ...); in free text tab and line breaks are
#: text; invisible format characters that make two ids look the same (zero-width space, joiners,
#: bidirectional marks, word joiner, BOM)
CONTROL = ((0x00, 0x1F), (0x7F, 0x9F))
CONTROL_IN_TEXT = ((0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F))
INVISIBLE = ((0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x2064), (0xFEFF, 0xFEFF))


def pattern(ranges) -> str:
    """The RE2 (pyarrow) character class of `ranges`."""
    return "[" + "".join(f"\\x{{{lo:02X}}}-\\x{{{hi:02X}}}" for lo, hi in ranges) + "]"


def first_of(value: str, ranges) -> str:
    """The first character of `value` in `ranges`, as U+XXXX."""
    for ch in value:
        if any(lo <= ord(ch) <= hi for lo, hi in ranges):
            return f"U+{ord(ch):04X}"
    return "?"


def shown(value: str, width: int = 40) -> str:
    """The value as a Python literal (escapes visible), cut to `width` characters."""
    text = repr(value if len(value) <= width else value[:width])
    return text + (f" ... ({len(value)} characters)" if len(value) > width else "")


def _np(arr) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def bad_ids(values: pa.Array) -> np.ndarray:
    """True where an id holds a control or invisible character, is longer than MAX_ID_CHARS or
    is not in Unicode NFC form (nulls are not bad here: "required" is another rule)."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    bad = (_np(pc.greater(pc.binary_length(values), MAX_ID_CHARS))  # bytes >= characters
           & _np(pc.greater(pc.utf8_length(values), MAX_ID_CHARS)))
    bad |= _np(pc.match_substring_regex(values, "[\\x00-\\x1F\\x7F]"))  # ASCII controls
    wide = np.flatnonzero(~_np(pc.fill_null(pc.string_is_ascii(values), True)))
    if len(wide):  # invisible characters, C1 controls and NFC only matter beyond ASCII
        sub = values.take(pa.array(wide))
        bad[wide] |= (_np(pc.match_substring_regex(sub, pattern(CONTROL)))
                      | _np(pc.match_substring_regex(sub, pattern(INVISIBLE)))
                      | ~_np(pc.fill_null(pc.equal(pc.utf8_normalize(sub, "NFC"), sub), True)))
    return bad


def id_problem(value: str) -> str:
    """Why `value` is not an acceptable id (for the few rows bad_ids flagged)."""
    if first_of(value, CONTROL) != "?":
        return f"control character {first_of(value, CONTROL)} not allowed: {shown(value)}"
    if len(value) > MAX_ID_CHARS:
        return f"longer than {MAX_ID_CHARS} characters ({len(value)}): {shown(value)}"
    if first_of(value, INVISIBLE) != "?":
        return (f"invisible character {first_of(value, INVISIBLE)} not allowed in an id: "
                f"{shown(value)}")
    return ("not in Unicode NFC form (a composed character written decomposed, e.g. 'e' + "
            f"U+0301): {ascii(value[:40])}; write it composed")
