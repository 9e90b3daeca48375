"""ExtenderArgs whose Pod has a field kube-vast reads in the wrong shape get a 400 that names the
field's path (``Pod.spec.containers[0]…``); never a 5xx. The crash classes of issue 18 (a resource
quantity that is a list or an object; ``containers`` or ``ports`` that is a number or a boolean)
and those the structural fuzzer found after, on the captured bodies."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.extender.conftest import captured

GPU = ("spec", "containers", 0, "resources", "requests", "nvidia.com/gpu")

ROWS = [
    (GPU, [], "Pod.spec.containers[0].resources.requests[nvidia.com/gpu]", "a list"),
    (GPU, {"x": 1}, "Pod.spec.containers[0].resources.requests[nvidia.com/gpu]", "an object"),
    (("spec", "containers", 0, "resources", "limits", "nvidia.com/gpu"), [1],
     "Pod.spec.containers[0].resources.limits[nvidia.com/gpu]", "a list"),
    (("spec", "containers"), 3, "Pod.spec.containers", "a number"),
    (("spec", "containers"), False, "Pod.spec.containers", "false"),
    (("spec", "containers"), 0.5, "Pod.spec.containers", "a number"),
    (("spec", "containers", 0, "ports"), 1, "Pod.spec.containers[0].ports", "a number"),
    (("spec", "containers", 0, "ports"), True, "Pod.spec.containers[0].ports", "true"),
    (("spec", "containers", 0, "ports"), 8000.0, "Pod.spec.containers[0].ports", "a number"),
    (GPU, "9e999999", "Pod.spec.containers[0].resources.requests[nvidia.com/gpu]", "quantity"),
    (("spec", "containers", 0, "resources", "requests", "cpu"), "1e99999999999",
     "Pod.spec.containers[0].resources.requests[cpu]", "quantity"),
    (("metadata", "annotations"), "vast.ai/gpu-type=RTX3060", "Pod.metadata.annotations", "a string"),
    (("spec", "nodeSelector", "nvidia.com/gpu.product"), 3060, "Pod.spec.nodeSelector[nvidia.com/gpu.product]",
     "a number"),
]


def body_with(name: str, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(captured(name))
    node = body["Pod"]
    for step in path[:-1]:
        node = node.setdefault(step, {}) if isinstance(node, dict) else node[step]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize("verb", ["filter", "prioritize"])
@pytest.mark.parametrize("name", ["filter-nodenames.json", "filter-nodes.json"])
@pytest.mark.parametrize("path, value, where, got", ROWS)
def test_a_pod_field_of_the_wrong_shape_is_a_400_naming_its_path(ext, verb, name, path, value, where, got):
    reply = ext.post(verb, body_with(name, path, value))
    assert reply.status_code == 400, reply.get_data(as_text=True)
    error = reply.get_json()["error"]
    assert f"{where}: " in error and got in error, error


@pytest.mark.parametrize("verb", ["filter", "prioritize"])
def test_a_body_nested_too_deeply_is_a_400(ext, verb):
    raw = json.dumps(captured("filter-nodenames.json")).replace('"speech"', "[" * 3000 + "1" + "]" * 3000, 1)
    reply = ext.post(verb, None, raw=raw.encode())
    assert reply.status_code == 400 and "nested" in reply.get_json()["error"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-1e999"])
def test_a_number_json_does_not_have_is_a_400(ext, constant):
    raw = json.dumps(body_with("filter-nodenames.json", GPU, "X")).replace('"X"', constant)
    reply = ext.post("filter", None, raw=raw.encode())
    assert reply.status_code == 400 and constant in reply.get_json()["error"]


@pytest.mark.parametrize("verb", ["filter", "prioritize"])
@pytest.mark.parametrize("path", [("spec", "volumes"), ("spec", "containers", 0, "env"), ("spec", "tolerations"),
                                  ("spec", "containers", 0, "readinessProbe"), ("status", "phase")])
def test_a_field_the_extender_does_not_read_is_not_looked_at(ext, verb, path):
    """The extender checks what its decision reads; the rest of the pod was checked whole by the
    webhook when it came in. A field of the wrong shape there gets the clean pod's answer."""
    clean = ext.post(verb, captured("filter-nodenames.json"))
    mutated = body_with("filter-nodenames.json", path, 7)
    mutated["Pod"]["metadata"]["uid"] += "-other"  # another pod: judged, not the clean one's reused
    reply = ext.post(verb, mutated)
    assert clean.status_code == 200 and reply.status_code == 200, reply.get_data(as_text=True)
    assert reply.get_json() == clean.get_json()
