"""The input entities, declared once (#15): each column of customers, packages, assignments and
usage with its kind. The importer parses by kind, the loader and the validator type their
frames by kind, `calc/frames.py` takes the column lists from here and the entity table of
docs/contracts.md is rendered from it (`make docs`). Adding a column: declare it here, add it to
`store/tables.py` and a migration, and write the rule that uses it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Column kinds:
#   id     required text, unique in the file       text   optional text, '' when empty
#   rtext  required text                           ntext  optional text, NULL when empty
#   money  decimal >= 0, required                  money0 decimal >= 0, 0 when empty
#   smoney signed decimal, required                int    integer, required
#   int0   integer, 0 when empty                   nint   integer, NULL when empty
#   date   YYYY-MM-DD, required                    ndate  YYYY-MM-DD, NULL when empty
#   ts     ISO 8601 timestamp, required            bool   boolean, required
#   bool0  boolean, false when empty
ENTITY_KINDS: dict[str, dict[str, str]] = {
    "customers": {"customer_id": "id", "name": "text", "currency": "rtext", "balance": "smoney"},
    "packages": {
        "package_id": "id", "name": "text", "type": "rtext", "cost": "money", "retail": "money",
        "setup_cost": "money0", "setup_retail": "money0", "currency": "rtext",
        "frequency": "rtext", "frequency_match": "ntext", "free_minutes": "int0",
        "destination": "ntext", "minimum_spend": "bool0", "minimum_days": "int0",
        "prorate": "bool0", "description": "text", "free_minutes_mode": "ntext",
    },
    "assignments": {
        "assignment_id": "id", "customer_id": "rtext", "package_id": "rtext", "quantity": "int",
        "start_date": "date", "end_date": "ndate", "auto_decrement": "bool", "free_minutes": "nint",
    },
    "usage": {
        "call_id": "id", "customer_id": "rtext", "start_time": "ts", "destination": "text",
        "duration_s": "int", "charge": "money",
    },
}
#: Columns that may be missing from the header (they take their empty-cell default).
OPTIONAL_HEADER = {
    "customers": set(),
    "packages": {"frequency_match", "destination", "prorate", "description",
                 "free_minutes_mode"},
    "assignments": {"end_date", "free_minutes"},
    "usage": set(),
}

#: Terms over time (SPEC 10). Columns an import FILE carries beyond its entity's own: they are
#: not columns of the entity's table nor of the engine's frame. packages.csv `effective_from`:
#: a row with it is a version of the package's money terms in force from that date
#: (package_versions); a row without it is the package itself, as before.
FILE_EXTRA_KINDS: dict[str, dict[str, str]] = {"packages": {"effective_from": "ndate"}}
#: changes.csv: changes of assignments from a date (assignment_changes); an empty cell is
#: unchanged. Not an engine input entity: the engine reads the changes as
#: `BillingInputs.changes` (core/frames.py CHANGE_COLUMNS).
CHANGE_FILE_KINDS: dict[str, str] = {
    "assignment_id": "rtext", "effective_from": "date", "quantity": "nint",
    "package_id": "ntext", "free_minutes": "nint", "customer_id": "ntext",
    "cancel": "bool0", "void": "bool0",
}
#: Every import file's columns: an entity's own plus its extras, and changes.csv.
FILE_KINDS: dict[str, dict[str, str]] = {
    **{entity: {**kinds, **FILE_EXTRA_KINDS.get(entity, {})}
       for entity, kinds in ENTITY_KINDS.items()},
    "changes": CHANGE_FILE_KINDS,
}
#: An import file's columns that may be missing from its header.
FILE_OPTIONAL_HEADER: dict[str, set[str]] = {
    **{entity: OPTIONAL_HEADER[entity] | set(FILE_EXTRA_KINDS.get(entity, {}))
       for entity in ENTITY_KINDS},
    "changes": set(CHANGE_FILE_KINDS) - {"assignment_id", "effective_from"},
}
#: A package's money terms: what a version sets; the rest of a version row must match the
#: package (VERSION_FIXED).
VERSION_TERMS = ("cost", "retail", "setup_cost", "setup_retail", "free_minutes")
VERSION_FIXED = ("name", "type", "currency", "frequency", "frequency_match", "destination",
                 "minimum_spend", "minimum_days", "prorate")
#: An assignment's terms a change may set from a date (besides cancel and void).
ASSIGNMENT_TERMS = ("quantity", "package_id", "free_minutes", "customer_id")

#: The kinds by the type a frame holds them in (calc/frames.py dtypes).
INT_KINDS = frozenset({"money", "money0", "smoney", "int", "int0"})
NULLABLE_INT_KINDS = frozenset({"nint"})
DATE_KINDS = frozenset({"date", "ndate"})
BOOL_KINDS = frozenset({"bool", "bool0"})
TIME_KINDS = frozenset({"ts"})
#: The kinds whose cells may not be empty (the table of kinds above)
REQUIRED_KINDS = frozenset({"id", "rtext", "money", "smoney", "int", "date", "ts", "bool"})


def columns(entity: str) -> list[str]:
    return list(ENTITY_KINDS[entity])


#: How docs/contracts.md shows a column of each kind in the engine's frames; COLUMN_DOC names
#: the columns shown their own way (their values, or a per-column default). The entity table of
#: docs/contracts.md is rendered from these (`python -m billing_jobs.core.entities`, `make docs`).
KIND_DOC = {
    "id": "str", "rtext": "str", "text": "str", "ntext": "str or None",
    "money": "int64 micros", "money0": "int64 micros", "smoney": "int64 micros",
    "int": "int64", "int0": "int64", "nint": "Int64, `<NA>` when empty",
    "date": "datetime64[s], midnight", "ndate": "datetime64[s], NaT when open",
    "ts": "datetime64[us, UTC]", "bool": "bool", "bool0": "bool",
}
COLUMN_DOC = {
    ("packages", "type"): "`standard`/`free_minutes`",
    ("packages", "frequency"): "`once`/`daily`/`weekly`/`monthly`/`yearly`",
    ("packages", "destination"): 'str, `""` when none',
    ("packages", "free_minutes_mode"): "`credit`/`report`",
    ("assignments", "free_minutes"): "Int64, `<NA>` when not overridden",
}


def contract_row(entity: str) -> str:
    """The row of docs/contracts.md's engine-input table for `entity`."""
    cells = ", ".join(f"{c} ({COLUMN_DOC.get((entity, c), KIND_DOC[k])})"
                      for c, k in ENTITY_KINDS[entity].items())
    return f"| `{entity}` | {cells} |"


def file_row(entity: str) -> str:
    """The row of docs/contracts.md's import-file table for `entity`: the file's columns beyond
    the entity's own (changes.csv: all of them), as the importer parses them."""
    kinds = FILE_EXTRA_KINDS.get(entity, CHANGE_FILE_KINDS if entity == "changes" else {})
    cells = ", ".join(f"{c} ({FILE_COLUMN_DOC.get((entity, c), KIND_DOC[k])})"
                      for c, k in kinds.items())
    return f"| `{entity}.csv` | {cells} |"


#: How docs/contracts.md shows an import file's own columns (file_row).
FILE_COLUMN_DOC = {
    ("packages", "effective_from"): "date, empty: the package itself; given: a version of "
                                    "its money terms from that date",
    ("changes", "effective_from"): "date YYYY-MM-DD, required",
    ("changes", "package_id"): "str, empty: unchanged",
    ("changes", "customer_id"): "str, empty: unchanged",
    ("changes", "quantity"): "int >= 1, empty: unchanged",
    ("changes", "free_minutes"): "int >= 0, empty: unchanged",
    ("changes", "cancel"): "bool, empty: false",
    ("changes", "void"): "bool, empty: false",
}


def render_contracts(text: str) -> str:
    """`text` (docs/contracts.md) with each entity's row and each import file's row rendered
    from the declaration."""
    for entity in ENTITY_KINDS:
        text = re.sub(rf"^\| `{entity}` \| .+ \|$", lambda _m: contract_row(entity), text,
                      count=1, flags=re.M)
    for entity in [*FILE_EXTRA_KINDS, "changes"]:
        text = re.sub(rf"^\| `{entity}\.csv` \| .+ \|$", lambda _m: file_row(entity), text,
                      count=1, flags=re.M)
    return text


if __name__ == "__main__":  # python -m billing_jobs.core.entities [docs/contracts.md]
    doc = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/contracts.md")
    old = doc.read_text(encoding="utf-8")
    new = render_contracts(old)
    if new != old:
        doc.write_text(new, encoding="utf-8")
    print(f"{doc}: {'rendered' if new != old else 'already up to date'}")
