"""The config reference, generated from the pydantic models: JSON Schema and a Markdown table per section.

`qauvern-hpc check-config --schema json|markdown` prints them; docs/config-schema.json and
docs/config-reference.md are these outputs, checked to be current by tests/unit/test_config_docs.py.
"""

from __future__ import annotations

import json
from typing import Any


def schema() -> dict[str, Any]:
    from qauvern_hpc.config import Config

    doc = Config.model_json_schema(mode="validation")
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "qauvern-hpc site config (/etc/qauvern-hpc/config.yaml)"
    return doc


def schema_json() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in prop:
        parts = [_type(p, defs) for p in prop["anyOf"]]
        return " | ".join(dict.fromkeys(parts))
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    t = prop.get("type", "any")
    if t == "array":
        return f"list[{_type(prop.get('items', {}), defs)}]"
    if t == "object" and "additionalProperties" in prop and isinstance(prop["additionalProperties"], dict):
        return f"map[str, {_type(prop['additionalProperties'], defs)}]"
    return str(t)


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in prop:
        return ""
    return "`" + json.dumps(prop["default"]) + "`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference_markdown() -> str:
    doc = schema()
    defs: dict[str, Any] = doc.get("$defs", {})
    out = [
        "# Config reference",
        "",
        "Generated from the pydantic models (`qauvern-hpc check-config --schema markdown`);",
        "the JSON Schema is `docs/config-schema.json`. Durations accept seconds or `10m`, `2.5h`, `3d`,",
        "`1qau`; unknown and removed keys are refused with a message. A commented example:",
        "`qauvern-hpc check-config --example`.",
        "",
    ]

    def section(title: str, model: dict[str, Any]) -> None:
        props: dict[str, Any] = model.get("properties", {})
        required = set(model.get("required", []))
        out.extend([f"## {title}", ""])
        if model.get("description"):
            out.extend([_cell(model["description"]), ""])
        out.extend(["| key | type | default | description |", "|---|---|---|---|"])
        for key, prop in props.items():
            out.append(
                f"| `{key}` | {_cell(_type(prop, defs))} | {_cell(_default(prop, key in required))} "
                f"| {_cell(prop.get('description', ''))} |"
            )
        out.append("")

    section("Config (top level)", doc)
    for name in sorted(defs):
        section(name, defs[name])
    return "\n".join(out).rstrip() + "\n"
