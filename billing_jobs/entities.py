"""The input entities, declared once (#15): each column of customers, packages, assignments and
usage with its kind. The importer parses by kind, the loader and the validator type their
frames by kind, `calc/frames.py` takes the column lists from here and the docs test compares
docs/contracts.md with it. Adding a column: declare it here, add it to `store/tables.py` and
a migration, and write the rule that uses it.
"""

from __future__ import annotations

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

#: The kinds by the type a frame holds them in (calc/frames.py dtypes).
TEXT_KINDS = frozenset({"id", "rtext", "text", "ntext"})
INT_KINDS = frozenset({"money", "money0", "smoney", "int", "int0"})
NULLABLE_INT_KINDS = frozenset({"nint"})
DATE_KINDS = frozenset({"date", "ndate"})
BOOL_KINDS = frozenset({"bool", "bool0"})
TIME_KINDS = frozenset({"ts"})


def columns(entity: str) -> list[str]:
    return list(ENTITY_KINDS[entity])
