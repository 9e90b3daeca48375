"""The statuses and EndpointSlices built by the pure controller modules, sent to a real
kube-apiserver: accepted as written, stored without a pod IP, and compared equal to what
``plan_slices`` wants once read back (so a steady state makes no writes)."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from kubernetes import client

from controller.endpoints import MANAGED_BY, POD_UID_LABEL, plan_slices
from controller.status import pod_status
from devcluster import create_namespace

from .objects import NODE, june_pod, june_service

pytestmark = pytest.mark.cluster

IP = "203.0.113.7"
HOST_PORTS = {8000: 42351, 8001: 42352}
NOW = "2025-03-01T10:10:00Z"


def _json(response: Any) -> Any:
    return json.loads(response.data)


@pytest.fixture(scope="module")
def api(control_plane: Any) -> Any:
    return control_plane.api_client()


@pytest.fixture()
def namespace(api: Any) -> str:
    name = f"speech-{uuid.uuid4().hex[:8]}"
    create_namespace(api, name)
    return name


def _create_pod(api: Any, namespace: str) -> dict[str, Any]:
    pod = june_pod()
    meta = pod["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "ownerReferences", "generateName"):
        meta.pop(key)
    meta["namespace"] = namespace
    pod["spec"]["containers"][0].pop("volumeMounts")
    pod["spec"].pop("volumes")
    pod.pop("status")
    core = client.CoreV1Api(api)
    return _json(core.create_namespaced_pod(namespace, pod, _preload_content=False))  # type: ignore[no-any-return]


def _service(name: str, port: int, target: int | str, namespace: str) -> dict[str, Any]:
    service = june_service(name, port, target)
    for key in ("uid", "resourceVersion"):
        service["metadata"].pop(key)
    service["metadata"]["namespace"] = namespace
    for key in ("clusterIP", "clusterIPs"):
        service["spec"].pop(key)
    return service


def test_the_api_server_stores_our_pod_status_without_a_pod_ip(api, namespace):
    core = client.CoreV1Api(api)
    pod = _create_pod(api, namespace)
    name = pod["metadata"]["name"]

    running = pod_status(pod, phase="Running", ready=True, public_ip=IP, started_at=NOW, now=NOW,
                         container_id="vast://12345")
    body = copy.deepcopy(pod)
    body["status"] = running
    stored = _json(core.replace_namespaced_pod_status(name, namespace, body, _preload_content=False))["status"]
    assert stored["phase"] == "Running" and stored["hostIP"] == IP and stored["hostIPs"] == [{"ip": IP}]
    assert "podIP" not in stored and "podIPs" not in stored
    assert {c["type"]: c["status"] for c in stored["conditions"]}["Ready"] == "True"
    assert list(stored["containerStatuses"][0]["state"]) == ["running"]

    current = _json(core.read_namespaced_pod(name, namespace, _preload_content=False))
    waiting = pod_status(current, phase="Pending", ready=False, public_ip=None, started_at=None,
                         container_state="waiting", reason="ContainerCreating",
                         message="Vast instance 12345 is loading", now=NOW)
    stored = _json(core.patch_namespaced_pod_status(name, namespace, {"status": waiting},
                                                    _content_type="application/merge-patch+json",
                                                    _preload_content=False))["status"]
    assert stored["phase"] == "Pending"
    assert list(stored["containerStatuses"][0]["state"]) == ["waiting"]
    assert "hostIP" not in stored and "hostIPs" not in stored
    assert stored["message"] == "Vast instance 12345 is loading"

    current = _json(core.read_namespaced_pod(name, namespace, _preload_content=False))
    again = pod_status(current, phase="Running", ready=False, public_ip=IP, started_at=NOW, now=NOW)
    stored = _json(core.patch_namespaced_pod_status(name, namespace, {"status": again},
                                                    _content_type="application/strategic-merge-patch+json",
                                                    _preload_content=False))["status"]
    assert list(stored["containerStatuses"][0]["state"]) == ["running"]
    assert "reason" not in stored and "message" not in stored
    assert {c["type"]: c.get("reason") for c in stored["conditions"]}["Ready"] == "ContainersNotReady"


def test_the_api_server_accepts_our_slices_and_reading_them_back_plans_nothing(api, namespace):
    core = client.CoreV1Api(api)
    discovery = client.DiscoveryV1Api(api)
    pod = _create_pod(api, namespace)
    services = [
        _json(core.create_namespaced_service(namespace, _service("june-tts", 8000, "tts", namespace),
                                             _preload_content=False)),
        _json(core.create_namespaced_service(namespace, _service("june-stt", 8001, 8001, namespace),
                                             _preload_content=False)),
    ]
    to_apply, to_delete = plan_slices(services, pod, [], public_ip=IP, host_ports=HOST_PORTS, ready=True,
                                      node_name=NODE)
    assert len(to_apply) == 2 and to_delete == []
    for body in to_apply:
        discovery.create_namespaced_endpoint_slice(namespace, body, _preload_content=False)

    selector = f"{POD_UID_LABEL}={pod['metadata']['uid']}"
    stored = _json(discovery.list_namespaced_endpoint_slice(namespace, label_selector=selector,
                                                            _preload_content=False))["items"]
    assert len(stored) == 2
    assert {s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] for s in stored} == {MANAGED_BY}
    assert plan_slices(services, pod, stored, public_ip=IP, host_ports=HOST_PORTS, ready=True,
                       node_name=NODE) == ([], [])
