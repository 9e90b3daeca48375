"""values.yaml and values.schema.json, read as files (no helm needed): a comment on every key, a
schema that closes every object of the chart's own, agrees with values.yaml, and mirrors the
selection config's own schema (vastmarket/config.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from marshmallow import Schema, fields

from devcluster.binaries import REPO_ROOT, read_versions
from vastmarket.config import _ConfigSchema

CHART = REPO_ROOT / "charts" / "kube-vast"
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return SCHEMA["$defs"][ref.rsplit("/", 1)[-1]] if ref else node


def schema_at(path: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema of the value at ``path``, or None where the schema does not describe keys."""
    node = SCHEMA
    for key in path:
        props = resolve(node).get("properties")
        if not props or key not in props:
            return None
        node = props[key]
    return resolve(node)


def is_chart_object(node: dict[str, Any] | None) -> bool:
    """An object whose keys the chart defines (closed), as opposed to a passed-through Kubernetes
    object, a map of labels, or resources."""
    return bool(node) and node.get("additionalProperties") is False and node is not SCHEMA["$defs"]["resources"]


def value_keys() -> list[tuple[tuple[str, ...], bool, int]]:
    """(path, commented, line number) of every key line of values.yaml outside lists: a key is
    commented when the lines right above it (no blank line between) are comments."""
    out = []
    stack: list[tuple[int, str]] = []
    comment_above = False
    for number, line in enumerate(VALUES_TEXT.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            comment_above = False
            continue
        if stripped.startswith("#"):
            comment_above = True
            continue
        indent = len(line) - len(line.lstrip())
        match = re.match(r"^([A-Za-z0-9_.\-/]+):", stripped)
        if stripped.startswith("-") or not match:
            comment_above = False
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = tuple(k for _, k in stack) + (match.group(1),)
        stack.append((indent, match.group(1)))
        out.append((path, comment_above, number))
        comment_above = False
    return out


def test_every_key_the_chart_defines_has_a_comment_in_values_yaml():
    missing = [f"line {n}: {'.'.join(path)}" for path, commented, n in value_keys()
               if not commented and (len(path) == 1 or is_chart_object(schema_at(path[:-1])))]
    assert not missing, "keys without a comment above them:\n" + "\n".join(missing)


def test_every_object_the_chart_defines_rejects_unknown_keys():
    def walk(node: dict[str, Any], where: str) -> list[str]:
        node = resolve(node)
        bad = []
        if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
            bad.append(where)
        for key, sub in (node.get("properties") or {}).items():
            bad += walk(sub, f"{where}.{key}")
        if isinstance(node.get("items"), dict):
            bad += walk(node["items"], f"{where}[]")
        return bad

    assert SCHEMA["additionalProperties"] is False
    assert walk(SCHEMA, "values") == []


def test_the_schema_describes_every_key_of_values_yaml_and_nothing_else():
    def compare(values: Any, path: tuple[str, ...]) -> list[str]:
        node = schema_at(path)
        if not isinstance(values, dict) or not is_chart_object(node):
            return []
        assert node is not None
        declared, given = set(node["properties"]), set(values)
        problems = [f"{'.'.join(path) or 'values'}: in values.yaml, not in the schema: {sorted(given - declared)}"] \
            if given - declared else []
        problems += [f"{'.'.join(path) or 'values'}: in the schema, not in values.yaml: {sorted(declared - given)}"] \
            if declared - given else []
        for key in given & declared:
            problems += compare(values[key], path + (key,))
        return problems

    assert compare(VALUES, ()) == []


def _marshmallow_tree(schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in schema.fields.items():
        inner = f.inner if isinstance(f, fields.List) else f
        out[name] = _marshmallow_tree(inner.schema) if isinstance(inner, fields.Nested) else None
    return out


def _json_schema_tree(node: dict[str, Any]) -> dict[str, Any] | None:
    node = resolve(node)
    if node.get("type") == "array":
        return _json_schema_tree(node["items"])
    if "properties" in node:
        return {k: _json_schema_tree(v) for k, v in node["properties"].items()}
    return None


def test_the_selection_schema_has_exactly_the_keys_of_the_config_file():
    assert _json_schema_tree(SCHEMA["properties"]["selection"]) == _marshmallow_tree(_ConfigSchema())


def test_the_default_scheduler_image_is_the_pinned_kubernetes_version():
    assert VALUES["scheduler"]["image"]["tag"] == read_versions()["KUBERNETES_VERSION"]


@pytest.mark.parametrize("key", ["extender", "webhook", "controller", "scheduler"])
def test_every_long_running_component_has_resources_and_probes(key):
    block = VALUES[key]
    assert block["resources"]["requests"] and block["resources"]["limits"]["memory"]
    assert block["livenessProbe"]["enabled"]
