"""The validated shape of the pod subset kube-vast reads (vastmarket.pods)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzing.corpus import pods
from tests.fuzzing.mutations import Mutant, mutants
from vastmarket.errors import InvalidPod
from vastmarket.pods import _POD, _SCHEDULING, check_pod, pod_passes, pod_problems

POD: dict[str, Any] = pods()[-1]  # the captured pod with every field kube-vast reads filled in
C = ("spec", "containers", 0)


def with_value(path: tuple[Any, ...], value: Any, pod: dict[str, Any] | None = None) -> dict[str, Any]:
    out = copy.deepcopy(POD if pod is None else pod)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize("pod", pods(), ids=lambda p: p["metadata"]["name"])
def test_every_pod_of_the_corpus_passes_as_sent_and_as_stored(pod):
    assert pod_problems(pod) == [] and pod_problems(pod, stored=True) == []
    assert check_pod(pod) is pod


@pytest.mark.parametrize("path, value", [
    (("metadata", "managedFields"), "not a list"), (("spec", "securityContext"), 5), ((*C, "imagePullPolicy"), []),
    (("spec", "dnsPolicy"), {"a": 1}), (("status", "conditions"), "x"), (("spec", "affinity", "podAffinity"), 7),
    (("spec", "volumes", 0, "csi"), "whatever"), (("spec", "tolerations", 0, "x-unknown"), [[]]),
])
def test_fields_kube_vast_does_not_read_are_not_looked_at(path, value):
    assert pod_problems(with_value(path, value)) == []


@pytest.mark.parametrize("path", [
    ("metadata", "labels"), ("metadata", "annotations"), ("spec", "containers"), ("spec", "volumes"),
    ("spec", "affinity"), ("spec", "nodeSelector"), ("spec", "restartPolicy"), ((*C, "resources")),
    ((*C, "resources", "limits")), ((*C, "ports", 0, "containerPort")), ((*C, "readinessProbe", "httpGet", "port")),
    ((*C, "env", 0, "value")), ((*C, "lifecycle", "preStop")), ("spec", "terminationGracePeriodSeconds"),
])
def test_null_is_an_absent_field(path):
    assert pod_problems(with_value(path, None)) == []


ROWS = [
    # (path, value, reported path, message)
    ((*C, "resources", "limits", "nvidia.com/gpu"), [], "spec.containers[0].resources.limits[nvidia.com/gpu]",
     "expected a Kubernetes quantity such as 500m, 2, 16Gi or 1G, got a list"),
    ((*C, "resources", "requests", "memory"), "16GB", "spec.containers[0].resources.requests[memory]",
     "expected a Kubernetes quantity such as 500m, 2, 16Gi or 1G, got '16GB'"),
    ((*C, "resources", "limits", "cpu"), 1e300, "spec.containers[0].resources.limits[cpu]",
     "expected a Kubernetes quantity such as 500m, 2, 16Gi or 1G, got a number"),
    (("spec", "containers"), 1.5, "spec.containers", "expected a list, got a number"),
    (("spec", "containers", 0), None, "spec.containers[0]", "expected an object, got null"),
    ((*C, "ports"), True, "spec.containers[0].ports", "expected a list, got true"),
    ((*C, "ports", 0, "containerPort"), 8000.0, "spec.containers[0].ports[0].containerPort",
     "expected a whole number from -2147483648 to 2147483647, got a number"),
    ((*C, "ports", 0, "containerPort"), 2**31, "spec.containers[0].ports[0].containerPort",
     "expected a whole number from -2147483648 to 2147483647, got a number"),
    ((*C, "readinessProbe", "httpGet", "port"), {"name": "tts"}, "spec.containers[0].readinessProbe.httpGet.port",
     "expected a port number or name (a whole number from -2147483648 to 2147483647, or a string), got an object"),
    ((*C, "command", 1), 7, "spec.containers[0].command[1]", "expected a string, got a number"),
    ((*C, "env", 1, "valueFrom", "configMapKeyRef", "optional"), "yes",
     "spec.containers[0].env[1].valueFrom.configMapKeyRef.optional", "expected true or false, got a string"),
    ((*C, "lifecycle", "preStop", "sleep", "seconds"), "5", "spec.containers[0].lifecycle.preStop.sleep.seconds",
     "expected a whole number from -9223372036854775808 to 9223372036854775807, got a string"),
    (("spec", "volumes", 2, "emptyDir", "sizeLimit"), "lots", "spec.volumes[2].emptyDir.sizeLimit",
     "expected a Kubernetes quantity such as 500m, 2, 16Gi or 1G, got 'lots'"),
    (("spec", "volumes", 4, "projected", "sources", 0), "token", "spec.volumes[4].projected.sources[0]",
     "expected an object, got a string"),
    (("spec", "nodeSelector", "kubernetes.io/os"), None, "spec.nodeSelector[kubernetes.io/os]",
     "expected a string, got null"),
    (("spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms", 0,
      "matchExpressions", 1, "values"), "20000",
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
     ".matchExpressions[1].values", "expected a list, got a string"),
    (("spec", "tolerations", 0), "virtual-kubelet.io/provider", "spec.tolerations[0]", "expected an object, got a string"),
    (("spec", "imagePullSecrets", 0, "name"), ["registry"], "spec.imagePullSecrets[0].name",
     "expected a string, got a list"),
    (("metadata", "labels", "app"), False, "metadata.labels[app]", "expected a string, got false"),
    (("metadata", "finalizers"), "vast.ai/instance-cleanup", "metadata.finalizers", "expected a list, got a string"),
    (("status", "phase"), 1, "status.phase", "expected a string, got a number"),
]


@pytest.mark.parametrize("path, value, where, message", ROWS)
def test_a_field_of_the_wrong_shape_is_named_by_its_json_path(path, value, where, message):
    assert pod_problems(with_value(path, value)) == [(where, message)]
    with pytest.raises(InvalidPod) as info:
        check_pod(with_value(path, value), where="Pod")
    assert str(info.value) == f"Pod.{where}: {message}"


def test_the_message_names_the_first_three_problems_and_counts_the_others():
    pod = with_value(("metadata", "labels"), 1)
    for key in ("annotations", "name", "namespace", "uid"):
        pod["metadata"][key] = [key]
    with pytest.raises(InvalidPod) as info:
        check_pod(pod)
    assert len(info.value.problems) == 5
    assert str(info.value).count("expected") == 3 and str(info.value).endswith("(and 2 more)")


@pytest.mark.parametrize("value", [5, "pod", [], None])
def test_a_pod_that_is_not_an_object_is_named_by_where_it_is(value):
    assert pod_problems(value, where="Pod") == [("Pod", f"expected an object, got {_kind(value)}")]


def _kind(value: Any) -> str:
    return {int: "a number", str: "a string", list: "a list", type(None): "null"}[type(value)]


@pytest.mark.parametrize("key", ["name", "namespace", "uid"])
def test_a_stored_pod_must_name_itself(key):
    assert pod_problems(with_value(("metadata", key), ""), stored=True) == [
        (f"metadata.{key}", "expected a non-empty string, got a string")]
    pod = copy.deepcopy(POD)
    del pod["metadata"][key]
    assert pod_problems(pod) == []
    assert pod_problems(pod, stored=True) == [(f"metadata.{key}", "expected a non-empty string, got null")]


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=st.sampled_from(pods()).flatmap(mutants))
def test_the_compiled_check_gives_the_schemas_verdict_on_any_mutated_pod(body: Mutant) -> None:
    """The plain-Python check that spares the schema's report for a pod that passes says pass
    exactly when the marshmallow schema finds nothing, whatever was changed where."""
    pod = body.document
    assert pod_passes(pod) == (isinstance(pod, dict) and not _POD.validate(pod))


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=st.sampled_from(pods()).flatmap(mutants))
def test_the_compiled_scheduling_check_gives_its_schemas_verdict_on_any_mutated_pod(body: Mutant) -> None:
    """The same for the fields a scheduling decision reads (the extender's check)."""
    pod = body.document
    assert pod_passes(pod, scheduling=True) == (isinstance(pod, dict) and not _SCHEDULING.validate(pod))


SCHEDULING_FIELDS = [("metadata", "annotations"), ("metadata", "uid"), ("spec", "containers", 0, "resources"),
                     ("spec", "containers", 0, "ports"), ("spec", "nodeSelector"), ("spec", "affinity", "nodeAffinity")]
OTHER_FIELDS = [("spec", "volumes"), ("spec", "containers", 0, "env"), ("spec", "containers", 0, "image"),
                ("spec", "tolerations"), ("spec", "initContainers"), ("status", "phase"),
                ("spec", "containers", 0, "readinessProbe")]


@pytest.mark.parametrize("path", SCHEDULING_FIELDS + OTHER_FIELDS)
def test_the_scheduling_check_looks_only_at_what_a_scheduling_decision_reads(path):
    bad = with_value(path, 7)
    assert pod_passes(bad) is False, "every field here is one kube-vast reads"
    assert pod_passes(bad, scheduling=True) is (path in OTHER_FIELDS)
    problems = pod_problems(bad, where="Pod", scheduling=True)
    assert bool(problems) is (path in SCHEDULING_FIELDS) and all(p.startswith("Pod.") for p, _ in problems)


@pytest.mark.parametrize("path, value", [row[:2] for row in ROWS] + [
    (("spec", "containers", 0, "ports", 0, "containerPort"), True),
    (("spec", "containers", 0, "resources", "limits"), {"cpu": None}),
    (("spec", "containers", 0, "command"), [None]),
    (("spec", "containers", 0, "readinessProbe", "httpGet", "port"), -(2**31) - 1),
    (("metadata", "annotations"), ["vast.ai/gpu-type"]),
    (("metadata", "labels"), {"app": None}),
    (("spec", "volumes", 0, "configMap", "optional"), 1),
    (("spec", "volumes", 0, "configMap", "defaultMode"), True),
    (("spec", "volumes", 0, "configMap", "items", 0), None),
    (("spec", "containers", 0, "readinessProbe", "httpGet", "port"), 2**31),
    (("spec", "containers", 0, "readinessProbe", "httpGet", "port"), 80.0),
])
def test_the_compiled_check_fails_each_wrong_shape(path, value):
    assert pod_passes(with_value(path, value)) is False
    assert pod_passes(POD) is True
