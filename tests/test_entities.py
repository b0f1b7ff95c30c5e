"""One declaration per input entity (#15): the importer, the loader, the validator and the
engine's column lists come from billing_jobs/core/entities.py; docs/contracts.md and the schema
must name the same columns."""

from __future__ import annotations

import re
from pathlib import Path

from billing_jobs.core.frames import ENTITY_COLUMNS
from billing_jobs.core.entities import ENTITY_KINDS, contract_row, render_contracts
from billing_jobs.ingest import importer
from billing_jobs.store.tables import metadata, stored_name

DOCS = Path(__file__).resolve().parents[1] / "docs" / "contracts.md"


def test_every_layer_takes_the_columns_from_the_declaration():
    for entity, kinds in ENTITY_KINDS.items():
        assert ENTITY_COLUMNS[entity] == list(kinds)
        assert importer.SPECS[entity] is kinds


def test_contracts_doc_lists_each_declared_column_in_order():
    text = DOCS.read_text(encoding="utf-8")
    for entity, kinds in ENTITY_KINDS.items():
        row = re.search(rf"^\| `{entity}` \| (.+) \|$", text, re.M)
        assert row, f"docs/contracts.md has no row for {entity}"
        named = re.findall(r"(?:^|, )([a-z_]+)(?= \(|,|$)", row.group(1))
        assert [c for c in named if c in kinds] == list(kinds), (entity, named)


def test_each_declared_column_is_stored():
    for entity, kinds in ENTITY_KINDS.items():
        stored = set(metadata.tables[entity].columns.keys())
        assert {stored_name(c) for c in kinds} <= stored, entity


def test_contracts_doc_rows_are_rendered_from_the_declaration():
    """docs/contracts.md's entity table derives from entities.py: a new column shows up there by
    `make docs` (python -m billing_jobs.core.entities), never by hand."""
    text = DOCS.read_text(encoding="utf-8")
    assert render_contracts(text) == text, "docs/contracts.md is stale: run `make docs`"
    for entity in ENTITY_KINDS:
        assert contract_row(entity) in text.splitlines()
