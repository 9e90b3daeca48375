"""The Pod is validated where the extender reads it: a request that names a virtual node gets a 400
naming the bad field's path, and one that names only real nodes (most of kube-scheduler's, which
send only the nodes that passed their own filters) is answered from the names alone."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.extender.conftest import captured


def with_bad_ports(names: list[str]) -> dict[str, Any]:
    body = copy.deepcopy(captured("filter-nodenames.json"))
    body["Pod"]["spec"]["containers"][0]["ports"] = 8000
    body["NodeNames"] = names
    return body


@pytest.mark.parametrize("verb", ["filter", "prioritize"])
def test_a_bad_pod_is_a_400_when_a_virtual_node_is_judged(ext, verb):
    reply = ext.post(verb, with_bad_ports(["node-a", "vast-gpu-node-1"]))
    assert reply.status_code == 400
    assert "Pod.spec.containers[0].ports" in reply.get_json()["error"]


def test_a_request_naming_only_real_nodes_passes_them_without_reading_the_pod(ext):
    reply = ext.post("filter", with_bad_ports(["node-a", "node-b"]))
    assert reply.status_code == 200
    assert reply.get_json()["NodeNames"] == ["node-a", "node-b"]
    scores = ext.post("prioritize", with_bad_ports(["node-a", "node-b"]))
    assert scores.status_code == 200 and [s["Host"] for s in scores.get_json()] == ["node-a", "node-b"]
