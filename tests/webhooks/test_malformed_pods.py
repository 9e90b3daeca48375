"""A pod (or a workload's pod template) whose field kube-vast reads has the wrong shape is denied
with the path of that field; a body that is not JSON kube-vast can read is a 400. Never a 5xx.

The rows are the captured AdmissionReviews with one field replaced: the crash classes of issue 18
(a resource quantity that is a list or an object; ``containers`` or ``ports`` that is a number or a
boolean) and those the structural fuzzer found after (quantities too large, NaN, nesting too deep).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.webhooks.conftest import captured

POD = ("request", "object")
TEMPLATE = ("request", "object", "spec", "template")
GPU = ("spec", "containers", 0, "resources", "requests", "nvidia.com/gpu")
LIMIT = ("spec", "containers", 0, "resources", "limits", "nvidia.com/gpu")


def replaced(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def denial(hook, body: dict[str, Any] | bytes) -> str:
    reply = hook.post(None, raw=body if isinstance(body, bytes) else json.dumps(body).encode())
    assert reply.status_code == 200, reply.get_data(as_text=True)
    response = reply.get_json()["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400, response
    assert response["status"]["reason"] == "BadRequest"
    return str(response["status"]["message"])


POD_ROWS = [
    # issue 18: a quantity that is a list or an object (parse_quantity called .strip() on it)
    (GPU, [], "spec.containers[0].resources.requests[nvidia.com/gpu]", "a list"),
    (GPU, {}, "spec.containers[0].resources.requests[nvidia.com/gpu]", "an object"),
    (("spec", "containers", 0, "resources", "requests", "cpu"), {"a": 1},
     "spec.containers[0].resources.requests[cpu]", "an object"),
    # issue 18: containers / ports that are an int, a bool or a float (iterated)
    (("spec", "containers"), 5, "spec.containers", "a number"),
    (("spec", "containers"), True, "spec.containers", "true"),
    (("spec", "containers"), 1.5, "spec.containers", "a number"),
    (("spec", "containers", 0, "ports"), 7, "spec.containers[0].ports", "a number"),
    (("spec", "containers", 0, "ports"), False, "spec.containers[0].ports", "false"),
    (("spec", "containers", 0, "ports"), 2.5, "spec.containers[0].ports", "a number"),
    # found by the structural fuzzer
    (GPU, "9e999999", "spec.containers[0].resources.requests[nvidia.com/gpu]", "quantity"),
    (GPU, "1e99999999999", "spec.containers[0].resources.requests[nvidia.com/gpu]", "quantity"),
    (("spec", "containers", 0, "resources", "requests", "memory"), "1e99999999999",
     "spec.containers[0].resources.requests[memory]", "quantity"),
    (("spec", "containers", 0), "speech", "spec.containers[0]", "a string"),
    (("spec", "containers", 0, "ports", 1, "containerPort"), "8001", "spec.containers[0].ports[1].containerPort",
     "a string"),
    (("metadata", "labels"), ["app"], "metadata.labels", "a list"),
    (("metadata", "annotations", "vast.ai/gpu-type"), 4090, "metadata.annotations[vast.ai/gpu-type]", "a number"),
    (("spec", "tolerations"), {}, "spec.tolerations", "an object"),
    (("spec", "tolerations", 0, "tolerationSeconds"), "300", "spec.tolerations[0].tolerationSeconds", "a string"),
    (("spec", "volumes", 0, "projected", "sources"), "token", "spec.volumes[0].projected.sources", "a string"),
    (("spec", "nodeSelector"), {"nvidia.com/gpu.product": ["NVIDIA-L4"]}, "spec.nodeSelector[nvidia.com/gpu.product]",
     "a list"),
    (("spec", "affinity"), {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                                     "values": "NVIDIA-L4"}]}]}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
     ".matchExpressions[0].values", "a string"),
    (("spec", "containers", 0, "lifecycle"), {"preStop": []}, "spec.containers[0].lifecycle.preStop", "a list"),
    (("spec", "containers", 0, "readinessProbe"), {"httpGet": {"port": [8000]}},
     "spec.containers[0].readinessProbe.httpGet.port", "a list"),
    (("spec", "containers", 0, "env"), [{"name": "A", "value": 1}], "spec.containers[0].env[0].value", "a number"),
    (("spec", "restartPolicy"), None, None, None),  # null is absent: admitted
]


@pytest.mark.parametrize("path, value, where, got", POD_ROWS)
def test_a_pod_field_of_the_wrong_shape_is_denied_with_its_path(hook, path, value, where, got):
    review = replaced(captured("deployment-pod-create"), POD + path, value)
    if where is None:
        assert hook.review(review)["response"]["allowed"] is True
        return
    message = denial(hook, review)
    assert message.startswith("invalid pod: "), message
    assert f"{where}: " in message and got in message, message


@pytest.mark.parametrize("path, value, where, got", [row for row in POD_ROWS if row[2] and row[2].startswith("spec")])
def test_a_template_field_of_the_wrong_shape_denies_the_workload_with_its_path(hook, path, value, where, got):
    body = captured("deployment-create")
    body["request"]["object"]["spec"]["template"]["spec"].setdefault("tolerations", [{"operator": "Exists"}])
    body["request"]["object"]["spec"]["template"]["spec"].setdefault("volumes", [{"name": "t", "projected": {
        "sources": [{"serviceAccountToken": {"path": "token"}}]}}])
    body = replaced(body, TEMPLATE + ("spec", "containers", 0, "resources", "requests", "nvidia.com/gpu"), "1")
    message = denial(hook, replaced(body, TEMPLATE + path, value))
    assert f"spec.template.{where}: " in message and got in message, message


@pytest.mark.parametrize("kind, path, value, where, got", [
    ("deployments", ("spec", "template"), "pod", "spec.template", "a string"),
    ("deployments", ("spec", "template", "metadata", "labels"), {"vast.ai/enabled": True},
     "spec.template.metadata.labels[vast.ai/enabled]", "true"),
    ("deployments", ("spec", "template", "spec"), [], "spec.template.spec", "a list"),
    ("cronjobs", ("spec", "jobTemplate"), ["spec"], "spec.jobTemplate", "a list"),
    ("cronjobs", ("spec", "jobTemplate", "spec", "template", "spec", "containers", 0, "resources", "limits"),
     {"nvidia.com/gpu": "one"}, "spec.jobTemplate.spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]",
     "'one'"),
])
def test_a_workload_whose_template_has_the_wrong_shape_is_denied_with_its_path(hook, kind, path, value, where, got):
    body = captured("deployment-create")
    if kind == "cronjobs":
        body["request"]["resource"] = {"group": "batch", "version": "v1", "resource": "cronjobs"}
        body["request"]["object"]["spec"] = {"jobTemplate": {"spec": {"template": body["request"]["object"]["spec"][
            "template"]}}}
    message = denial(hook, replaced(body, ("request", "object") + path, value))
    assert message.startswith("invalid pod template: ") and f"{where}: " in message and got in message, message


@pytest.mark.parametrize("levels", [5000, 120])
def test_a_body_nested_deeper_than_any_kubernetes_object_is_a_400(hook, levels):
    review = replaced(captured("deployment-pod-create"), POD + ("spec", "affinity"), {"podAffinity": "DEEP"})
    raw = json.dumps(review).replace('"DEEP"', "[" * levels + '"x"' + "]" * levels)
    reply = hook.post(None, raw=raw.encode())
    assert reply.status_code == 400 and "nested" in reply.get_json()["error"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_body_with_a_number_json_does_not_have_is_a_400(hook, constant):
    raw = json.dumps(replaced(captured("deployment-pod-create"), POD + GPU, "X")).replace('"X"', constant)
    reply = hook.post(None, raw=raw.encode())
    assert reply.status_code == 400 and constant in reply.get_json()["error"]
