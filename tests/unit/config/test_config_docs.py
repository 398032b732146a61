"""The generated config reference in docs/ is current, and the schema describes what the loader accepts."""

from __future__ import annotations

import yaml

from qauvern_hpc.config import example_config_text
from qauvern_hpc.config.docs import reference_markdown, schema, schema_json
from tests.support.paths import REPO

DOCS = REPO / "docs"
REGENERATE = (
    "regenerate: qauvern-hpc check-config --schema json > docs/config-schema.json; "
    "qauvern-hpc check-config --schema markdown > docs/config-reference.md"
)


def test_committed_schema_is_current() -> None:
    assert (DOCS / "config-schema.json").read_text() == schema_json(), REGENERATE


def test_committed_reference_is_current() -> None:
    assert (DOCS / "config-reference.md").read_text() == reference_markdown(), REGENERATE


def test_schema_has_every_top_level_key_of_the_example() -> None:
    example = yaml.safe_load(example_config_text())
    props = schema()["properties"]
    assert set(example) <= set(props)
    assert schema()["required"] == ["ibm"]


def test_reference_documents_every_section() -> None:
    text = reference_markdown()
    for section in ("InstanceConfig", "ResourceConfig", "RuleConfig", "RebalanceConfig", "LedgerConfig"):
        assert f"## {section}" in text
