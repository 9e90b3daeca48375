"""Properties: no AdmissionReview yields a 5xx; every answer is well-formed; the patch applies to
the object it was computed for (absent maps and lists, keys needing ``~0``/``~1`` escaping), only
touches what the webhook owns, and is idempotent (a second invocation on the result patches nothing)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.webhooks.conftest import NOW, Harness
from webhooks.settings import WebhookSettings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)

# Mostly valid overrides (so that most pods get a patch), with wrong values, unknown keys and keys
# needing "~0"/"~1" escaping mixed in.
valid_overrides = st.dictionaries(
    st.sampled_from(["vast.ai/gpu-type", "vast.ai/price-max", "vast.ai/min-reliability", "vast.ai/region"]),
    st.just(""), max_size=3,
).map(lambda d: {k: {"vast.ai/gpu-type": "RTX3060", "vast.ai/price-max": "0.5", "vast.ai/min-reliability": "95%",
                     "vast.ai/region": "US"}[k] for k in d})
annotation_keys = st.sampled_from([
    "vast.ai/gpu-type", "vast.ai/gpu-fallbacks", "vast.ai/price-max", "vast.ai/min-reliability", "vast.ai/region",
    "vast.ai/min-gpu-memory", "vast.ai/offer-id", "vast.ai/offer-score", "vast.ai/selected-at",
    "vast.ai/selection-error", "vast.ai/bogus", "example.com/a~b", "a/b/c", "~1", "other",
]) | st.text(max_size=10)
annotation_values = st.sampled_from(["RTX3060", "RTX4090", "H100", "0.5", "0.1", "1", "2", "999", "95%", "US",
                                     "EU", "12GB", "free", ""]) | st.text(max_size=6)
annotation_maps = st.one_of(
    valid_overrides,
    st.builds(lambda a, b: {**a, **b}, valid_overrides,
              st.dictionaries(st.sampled_from(["example.com/a~b", "a/b/c", "~1", "~0/", "other", "vast.ai/offer-id",
                                               "vast.ai/selection-error", "vast.ai/selected-at"]),
                              annotation_values, max_size=3)),
    st.dictionaries(annotation_keys, annotation_values, max_size=5),
)
label_maps = st.dictionaries(st.sampled_from(["vast.ai/enabled", "app", "a/b"]) | st.text(max_size=6),
                             st.sampled_from(["true", "true", "false", "x"]), max_size=3)
tolerations = st.lists(st.sampled_from([
    {"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "vast", "effect": "NoSchedule"},
    {"key": "virtual-kubelet.io/provider", "operator": "Exists"},
    {"operator": "Exists"},
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "azure", "effect": "NoSchedule"},
]) | json_values, max_size=3)
resources = st.fixed_dictionaries({}, optional={
    "limits": st.dictionaries(st.sampled_from(["nvidia.com/gpu", "cpu", "memory"]),
                              st.sampled_from(["1", "1", "2", "0", "1.5", "x", "500m", "8Gi"]), max_size=3),
    "requests": st.dictionaries(st.sampled_from(["nvidia.com/gpu", "cpu", "memory"]),
                                st.sampled_from(["1", "2", "-1", "100m", "16Gi"]), max_size=3),
})
GPU_KEYS = ["cloud.google.com/gke-accelerator", "nvidia.com/gpu.product", "nvidia.com/gpu.memory",
            "karpenter.k8s.aws/instance-gpu-name", "node.kubernetes.io/instance-type", "kubernetes.io/os"]
GPU_VALUES = ["nvidia-l4", "NVIDIA-L4", "Tesla-T4", "l4", "23034", "g6.xlarge", "m5.large", "linux", "x", ""]
gpu_node_selectors = st.dictionaries(st.sampled_from(GPU_KEYS), st.sampled_from(GPU_VALUES), max_size=2)
node_expressions = st.fixed_dictionaries({
    "key": st.sampled_from(GPU_KEYS + ["vast.ai/virtual-node", "topology.kubernetes.io/zone"]),
    "operator": st.sampled_from(["In", "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Bogus"]),
}, optional={"values": st.lists(st.sampled_from(GPU_VALUES), max_size=2) | json_values}) | json_values
good_container = st.fixed_dictionaries({"name": st.just("app"), "image": st.just("ghcr.io/example/app:1")}, optional={
    "resources": resources,
    "ports": st.lists(st.fixed_dictionaries({"containerPort": st.integers(0, 70000)}), max_size=2),
    "lifecycle": st.sampled_from([{"preStop": {"exec": {"command": ["sleep", "1"]}}}, {"postStart": {}}]) | json_values,
})
loose_container = st.fixed_dictionaries({"name": st.sampled_from(["app", "side"])}, optional={
    "image": st.sampled_from(["ghcr.io/example/app:1", "", "x"]), "resources": resources}) | json_values
containers = st.one_of(st.lists(good_container, min_size=1, max_size=1), st.lists(good_container, min_size=1, max_size=1),
                       st.lists(loose_container, max_size=2))
metadata = st.fixed_dictionaries({}, optional={
    "generateName": st.sampled_from(["speech-", "whisper-"]),
    "name": st.sampled_from(["p", "tts-0"]),
    "namespace": st.sampled_from(["ml", "ml", "ml", "kube-system", "kube-vast"]),
    "labels": label_maps,
    "annotations": annotation_maps,
})
spec = st.fixed_dictionaries({"containers": containers}, optional={
    "initContainers": st.lists(st.fixed_dictionaries({"name": st.just("init"), "image": st.just("busybox")}), max_size=1),
    "tolerations": tolerations,
    "schedulerName": st.sampled_from(["", "default-scheduler", "vast-scheduler", "volcano"]),
    "nodeSelector": st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2) | gpu_node_selectors,
    "affinity": st.fixed_dictionaries({"nodeAffinity": st.fixed_dictionaries({
        "requiredDuringSchedulingIgnoredDuringExecution": st.fixed_dictionaries({
            "nodeSelectorTerms": st.lists(st.fixed_dictionaries({"matchExpressions": st.lists(
                node_expressions, min_size=1, max_size=2)}), min_size=1, max_size=2)})})}) | json_values,
    "volumes": st.lists(st.sampled_from([
        {"name": "c", "configMap": {"name": "c"}}, {"name": "d", "persistentVolumeClaim": {"claimName": "d"}},
        {"name": "h", "hostPath": {"path": "/x"}}, {"name": "e", "emptyDir": {"medium": "Memory"}},
        {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
    ]) | json_values, max_size=2),
})
pods = st.fixed_dictionaries({"spec": spec}, optional={
    "apiVersion": st.just("v1"), "kind": st.just("Pod"), "metadata": metadata,
}) | st.fixed_dictionaries({}, optional={"metadata": metadata, "spec": spec})
POD_KIND = {"group": "", "version": "v1", "kind": "Pod"}
POD_RESOURCE = {"group": "", "version": "v1", "resource": "pods"}
requests = st.fixed_dictionaries({
    "uid": st.uuids().map(str),
    "kind": st.just(POD_KIND),
    "resource": st.just(POD_RESOURCE),
    "operation": st.sampled_from(["CREATE"] * 6 + ["UPDATE", "DELETE", "CONNECT"]),
    "object": pods,
}, optional={
    "namespace": st.sampled_from(["ml", "ml", "ml", "kube-system", "kube-vast", ""]),
    "dryRun": st.booleans(),
    "subResource": st.sampled_from(["", "", "", "status"]),
    "userInfo": json_values,
    "oldObject": st.none() | pods,
})
reviews = requests.map(lambda r: {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": r})


def mangled(review: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**review, "request": {**review["request"], key: value}}


mangled_reviews = st.builds(mangled, reviews, st.sampled_from(["uid", "kind", "resource", "operation", "object",
                                                                "dryRun", "namespace", "name"]), json_values)

HOOKS = [Harness(), Harness(no_snapshot=True), Harness(WebhookSettings(deny_without_offer=True, scheduler_name=None))]
STALE = Harness()
STALE.now = NOW + 10_000
HOOKS.append(STALE)
OWNED = ("/metadata/annotations", "/spec/tolerations", "/spec/schedulerName", "/spec/nodeSelector", "/spec/affinity")


def well_formed(reply: dict[str, Any], uid: Any) -> list[dict[str, Any]]:
    assert reply["apiVersion"] == "admission.k8s.io/v1" and reply["kind"] == "AdmissionReview"
    response = reply["response"]
    assert response["uid"] == uid and isinstance(response["allowed"], bool)
    assert ("patch" in response) == ("patchType" in response)
    if not response["allowed"]:
        assert "patch" not in response
        assert response["status"]["code"] >= 400 and response["status"]["message"]
    assert all(isinstance(w, str) and w for w in response.get("warnings", []))
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"], validate=True))
    assert isinstance(patch, list) and patch, "an empty patch is sent as no patch"
    return patch


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_values | reviews | mangled_reviews, which=st.integers(0, len(HOOKS) - 1))
def test_no_body_yields_a_server_error_and_every_answer_is_well_formed(body, which):
    reply = HOOKS[which].post(body)
    assert reply.status_code in (200, 400), reply.get_data(as_text=True)
    assert reply.is_json
    if reply.status_code == 200:
        well_formed(reply.get_json(), body["request"]["uid"])
    else:
        assert isinstance(reply.get_json()["error"], str)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(review=reviews, which=st.integers(0, len(HOOKS) - 1))
def test_the_patch_applies_touches_only_what_the_webhook_owns_and_is_idempotent(review, which):
    hook = HOOKS[which]
    reply = hook.post(review)
    assert reply.status_code == 200, "a Pod-shaped object is never a bad request"
    patch = well_formed(reply.get_json(), review["request"]["uid"])
    obj = review["request"]["object"]
    for op in patch:
        for path in (op["path"], op.get("from", "/metadata/annotations")):
            assert path in ("/metadata", "/spec") or path.startswith(OWNED), op
    mutated = jsonpatch.apply_patch(obj, patch)  # raises if the patch does not apply
    event("patched" if patch else ("allowed" if reply.get_json()["response"]["allowed"] else "denied"))
    if patch:
        # A reinvocation comes later: nothing may be renewed (selected-at). Not for the stale
        # snapshot, whose reason states its age in seconds.
        later = 0 if hook is STALE else 30
        hook.now += later
        try:
            again = hook.post({**review, "request": {**review["request"], "object": mutated}})
        finally:
            hook.now -= later
        assert again.status_code == 200
        assert well_formed(again.get_json(), review["request"]["uid"]) == [], "reinvocation patches nothing"


WORKLOADS = [("apps", "deployments", "Deployment"), ("apps", "statefulsets", "StatefulSet"),
             ("apps", "replicasets", "ReplicaSet"), ("batch", "jobs", "Job"), ("batch", "cronjobs", "CronJob")]
templates = st.fixed_dictionaries({}, optional={"metadata": metadata, "spec": spec}) | json_values


def workload(kind: tuple[str, str, str], template: Any, cron: bool, extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"jobTemplate": {"spec": {"template": template}}} if cron else {"template": template}
    return {"apiVersion": f"{kind[0]}/v1", "kind": kind[2], "metadata": {"name": "w"}, "spec": body} \
        if extra is None else extra


workload_reviews = st.builds(
    lambda uid, kind, template, extra, operation, old: {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": uid, "kind": {"group": kind[0], "version": "v1", "kind": kind[2]},
            "resource": {"group": kind[0], "version": "v1", "resource": kind[1]}, "operation": operation,
            "namespace": "ml", "object": workload(kind, template, kind[1] == "cronjobs", extra),
            "oldObject": workload(kind, old, kind[1] == "cronjobs", None)}},
    st.uuids().map(str), st.sampled_from(WORKLOADS), templates, st.none() | json_values,
    st.sampled_from(["CREATE", "UPDATE", "DELETE"]), templates)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=workload_reviews, which=st.integers(0, len(HOOKS) - 1))
def test_no_workload_yields_a_server_error_and_none_is_ever_patched(body, which):
    reply = HOOKS[which].post(body)
    assert reply.status_code in (200, 400), reply.get_data(as_text=True)
    if reply.status_code == 200:
        assert well_formed(reply.get_json(), body["request"]["uid"]) == [], "templates are never patched"
