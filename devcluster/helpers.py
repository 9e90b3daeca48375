"""Helpers for tests against the real control plane: polling, Nodes, namespaces, webhooks.

Every helper takes a ``kubernetes.client.ApiClient`` (``control_plane.api_client()``).
"""

from __future__ import annotations

import base64
import datetime as _dt
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")

DEFAULT_NODE_CAPACITY: dict[str, str] = {
    "cpu": "8",
    "memory": "32Gi",
    "pods": "110",
    "nvidia.com/gpu": "1",
}


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    *,
    interval: float = 0.1,
    description: str | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Exceptions raised by ``predicate`` count as "not yet" (the last one is reported). On timeout
    raises ``TimeoutError`` naming ``description`` (or the predicate), the last value and error.
    """
    deadline = time.monotonic() + timeout
    last_value: T | None = None
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            last_value = value
            if value:
                return value
            last_error = None
        except Exception as e:  # noqa: BLE001
            last_error = e
        if time.monotonic() >= deadline:
            what = description or getattr(predicate, "__name__", repr(predicate))
            msg = f"timed out after {timeout:.1f}s waiting for {what}; last value {last_value!r}"
            if last_error is not None:
                msg += f"; last error {last_error!r}"
            raise TimeoutError(msg)
        time.sleep(interval)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_node_status(capacity: Mapping[str, str]) -> dict[str, Any]:
    now = _now()
    cond = [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node is ready"},
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
        {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID"},
        {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"},
    ]
    for c in cond:
        c["lastHeartbeatTime"] = now
        c["lastTransitionTime"] = now
    return {
        "capacity": dict(capacity),
        "allocatable": dict(capacity),
        "conditions": cond,
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "nodeInfo": {
            "architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "v0.0.0-test",
            "kubeProxyVersion": "", "osImage": "test", "kernelVersion": "test",
            "containerRuntimeVersion": "test://0", "machineID": "", "systemUUID": "", "bootID": "",
        },
    }


def create_ready_node(
    api: Any,
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, Any]] | None = None,
    capacity: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Any:
    """Create a Node that the scheduler sees as Ready and schedulable; returns the V1Node.

    ``capacity`` entries are merged over :data:`DEFAULT_NODE_CAPACITY` (cpu 8, memory 32Gi,
    pods 110, nvidia.com/gpu 1; use ``{"nvidia.com/gpu": "0"}`` for none); allocatable = capacity.
    ``labels`` are merged over ``kubernetes.io/hostname``/``os``/``arch``. ``taints`` (dicts with
    ``key``, ``value``, ``effect``) become exactly the node's taints — the ``not-ready`` taint the
    TaintNodesByCondition admission plugin puts on every new Node is removed (there is no kubelet
    and no node-lifecycle controller to do it). Status is written through the status subresource.
    """
    from kubernetes import client

    core = client.CoreV1Api(api)
    cap = {**DEFAULT_NODE_CAPACITY, **(capacity or {})}
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **(labels or {}),
    }
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels, "annotations": dict(annotations or {})},
        "spec": {"taints": [dict(t) for t in taints or []]},
    }
    core.create_node(body)  # type: ignore[arg-type]  # a dict body, sent as is
    # Taints exactly as asked (admission added node.kubernetes.io/not-ready:NoSchedule).
    core.patch_node(name, {"spec": {"taints": [dict(t) for t in taints or []] or None}})
    return core.patch_node_status(name, {"status": ready_node_status(cap)})


def create_namespace(api: Any, name: str, *, labels: Mapping[str, str] | None = None) -> Any:
    """Create a namespace and its ``default`` ServiceAccount.

    Without kube-controller-manager nothing creates ``default`` ServiceAccounts, and the
    ServiceAccount admission plugin rejects pods in a namespace that lacks one.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    ns = core.create_namespace({"metadata": {"name": name, "labels": dict(labels or {})}})  # type: ignore[arg-type]  # a dict body, sent as is
    try:
        core.create_namespaced_service_account(name, {"metadata": {"name": "default"}})  # type: ignore[arg-type]  # a dict body, sent as is
    except ApiException as e:
        if e.status != 409:  # the controller-manager's serviceaccount controller was faster
            raise
    return ns


def register_mutating_webhook(
    api: Any,
    *,
    name: str,
    url: str,
    ca_pem: bytes | str,
    configuration_name: str | None = None,
    rules: Sequence[Mapping[str, Any]] | None = None,
    failure_policy: str = "Fail",
    side_effects: str = "None",
    timeout_seconds: int = 5,
    namespace_selector: Mapping[str, Any] | None = None,
    object_selector: Mapping[str, Any] | None = None,
    match_conditions: Sequence[Mapping[str, Any]] | None = None,
    reinvocation_policy: str = "Never",
    admission_review_versions: Sequence[str] = ("v1",),
) -> Any:
    """Create (or replace) a MutatingWebhookConfiguration with one webhook calling ``url``.

    ``url`` is ``https://127.0.0.1:PORT/path``; ``ca_pem`` the CA of its serving certificate
    (see ``pki.webhook_serving_cert``). ``rules`` default to CREATE of ``pods`` (core/v1).
    ``name`` must be a qualified name with at least three segments (``mutate.kube-vast.io``).

    The apiserver picks new webhook configurations up asynchronously (normally well under a
    second): a test that needs the webhook active should ``wait_for`` an observable effect.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    adm = client.AdmissionregistrationV1Api(api)
    pem = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
    webhook: dict[str, Any] = {
        "name": name,
        "clientConfig": {"url": url, "caBundle": base64.b64encode(pem).decode()},
        "rules": [dict(r) for r in rules] if rules else [{
            "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["pods"], "scope": "*",
        }],
        "failurePolicy": failure_policy,
        "sideEffects": side_effects,
        "timeoutSeconds": timeout_seconds,
        "admissionReviewVersions": list(admission_review_versions),
        "reinvocationPolicy": reinvocation_policy,
    }
    if namespace_selector is not None:
        webhook["namespaceSelector"] = dict(namespace_selector)
    if object_selector is not None:
        webhook["objectSelector"] = dict(object_selector)
    if match_conditions:
        webhook["matchConditions"] = [dict(m) for m in match_conditions]
    cfg_name = configuration_name or name
    body: dict[str, Any] = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": cfg_name},
        "webhooks": [webhook],
    }
    try:
        return adm.create_mutating_webhook_configuration(body)  # type: ignore[arg-type]  # a dict body, sent as is
    except ApiException as e:
        if e.status != 409:
            raise
    existing = adm.read_mutating_webhook_configuration(cfg_name)
    assert existing.metadata is not None  # the API server always returns it
    body["metadata"]["resourceVersion"] = existing.metadata.resource_version
    return adm.replace_mutating_webhook_configuration(cfg_name, body)  # type: ignore[arg-type]  # a dict body, sent as is


def install_crd(api: Any, manifest: Path, *, timeout: float = 30.0) -> None:
    """Create the CustomResourceDefinition of ``manifest`` (already there: fine) and wait until
    the API server serves its resource (``list`` answers) for the first version."""
    import yaml
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    body = yaml.safe_load(manifest.read_text())
    try:
        client.ApiextensionsV1Api(api).create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    custom = client.CustomObjectsApi(api)
    spec = body["spec"]
    where = (spec["group"], spec["versions"][0]["name"], spec["names"]["plural"])

    def served() -> bool:
        try:
            custom.list_cluster_custom_object(*where)
            return True
        except ApiException:
            return False

    wait_for(served, timeout=timeout, description=f"the API server to serve {'/'.join(where)}")


def pod_ready(pod: Any) -> bool:
    """Whether the pod (a ``V1Pod``) has the condition ``Ready`` ``True``."""
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [] if pod.status else []))


def pod_scheduled_condition(pod: Any) -> Any:
    """The pod's ``PodScheduled`` condition (or None)."""
    for c in (pod.status.conditions or []) if pod.status else []:
        if c.type == "PodScheduled":
            return c
    return None
