"""What an id or a text cell may hold (#17 items 6 and 10, #28 item 8; docs/decisions.md), in
one place.

The importer refuses a file holding such text; run-time validation rejects a stored row whose
id breaks the same rules (it reached the database another way): the row is named with its
reason, never billed under a lookalike or a truncated id. A command that stores text an
operator typed (a reason, a source name, ...) calls `check_stored_text` so the same rules hold
for every text the product stores.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from billing_jobs.core.errors import UsageError

#: An id or reference longer than this would overflow PostgreSQL's btree row limit in the
#: posting keys (and no carrier writes one); free text is bounded too.
MAX_ID_CHARS = 200
MAX_TEXT_CHARS = 4000

#: code point ranges: C0/C1 controls (NUL, CR, ESC, ...); in free text tab and line breaks are
#: text.
CONTROL = ((0x00, 0x1F), (0x7F, 0x9F))
CONTROL_IN_TEXT = ((0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F))
#: Every format character (Unicode general category Cf, as of Unicode 15): none belongs in an
#: id, where they make two ids look the same (soft hyphen, zero-width space, joiners,
#: bidirectional marks, embeddings, overrides and isolates, word joiner, BOM, tags, ...).
INVISIBLE = ((0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD),
             (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E),
             (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F),
             (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
             (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
             (0xE0020, 0xE007F))
#: The format characters free text (names, descriptions, destinations, reasons) refuses
#: (#28 item 8): the bidirectional embeddings, overrides and isolates (U+202A-U+202E,
#: U+2066-U+2069) that display text in another order than it is stored (a name ending in
#: U+202E shows its tail reversed), and the invisible ones that hide characters (soft hyphen,
#: zero-width space, word joiner and invisible operators, the deprecated format controls
#: U+206A-U+206F, BOM / zero-width no-break space, interlinear annotation, tags). Free text
#: keeps the format characters a script needs to be written: zero-width non-joiner and joiner
#: (U+200C, U+200D: Persian, Indic scripts, emoji sequences), the implicit direction marks
#: LRM, RLM and ALM (U+200E, U+200F, U+061C: they reorder nothing beyond their neighbours and
#: mixed right-to-left text needs them), the Arabic, Syriac, Kaithi, hieroglyph, shorthand and
#: musical format signs (visible) and the Mongolian vowel separator.
FORMAT_IN_TEXT = ((0x00AD, 0x00AD), (0x200B, 0x200B), (0x202A, 0x202E), (0x2060, 0x2064),
                  (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0xE0001, 0xE0001),
                  (0xE0020, 0xE007F))


def pattern(ranges) -> str:
    """The RE2 (pyarrow) character class of `ranges`."""
    return "[" + "".join(f"\\x{{{lo:02X}}}-\\x{{{hi:02X}}}" for lo, hi in ranges) + "]"


def first_of(value: str, ranges) -> str:
    """The first character of `value` in `ranges`, as U+XXXX."""
    for ch in value:
        if any(lo <= ord(ch) <= hi for lo, hi in ranges):
            return f"U+{ord(ch):04X}"
    return "?"


def described(value: str, ranges) -> str:
    """The first character of `value` in `ranges`, as 'U+202E (RIGHT-TO-LEFT OVERRIDE)'."""
    code = first_of(value, ranges)
    if code == "?":
        return code
    name = unicodedata.name(chr(int(code[2:], 16)), "")
    return f"{code} ({name})" if name else code


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


class TextRefused(UsageError):
    """Text a command was asked to store breaks the text rules (exit 2, nothing stored)."""


def text_problem(value: str, *, is_id: bool = False, one_line: bool = False) -> str | None:
    """Why `value` may not be stored (None: it may): the import's rules for an id (`is_id`) or
    for free text, one value at a time; `one_line` free text (a file name, a label) refuses tab
    and line breaks too."""
    if is_id:
        arr = pa.array([value], pa.string())
        return id_problem(value) if bad_ids(arr)[0] else None
    controls = CONTROL if one_line else CONTROL_IN_TEXT
    if first_of(value, controls) != "?":
        return f"control character {first_of(value, controls)} not allowed: {shown(value)}"
    if len(value) > MAX_TEXT_CHARS:
        return f"longer than {MAX_TEXT_CHARS} characters ({len(value)}): {shown(value)}"
    if first_of(value, FORMAT_IN_TEXT) != "?":
        return format_problem(value)
    return None


def format_problem(value: str) -> str:
    """The message for free text holding a character of FORMAT_IN_TEXT."""
    return (f"format character {described(value, FORMAT_IN_TEXT)} not allowed in text (it "
            f"reorders or hides what is shown): {shown(value)}")


def check_stored_text(label: str, value: str | None, *, is_id: bool = False,
                      one_line: bool = False) -> str | None:
    """`value` unchanged when a command may store it; else TextRefused naming `label` (what the
    text is: "--reason", "source file name", ...) and the rule. The same rules as the import:
    no control character (free text keeps tab and line breaks), no bidirectional override or
    invisible format character, at most MAX_TEXT_CHARS characters; an id (`is_id`) also no
    format character at all, Unicode NFC and at most MAX_ID_CHARS; `one_line` text no tab or
    line break either. None passes (nothing to store)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{label}: expected text, got {type(value).__name__}")
    problem = text_problem(value, is_id=is_id, one_line=one_line)
    if problem is not None:
        raise TextRefused(f"{label}: {problem}; nothing stored")
    return value
