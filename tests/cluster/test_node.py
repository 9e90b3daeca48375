"""The test bed's real node (devcluster.node): containerd, runc and a kubelet built from the pinned
module, in a network namespace this run makes, registered with a control plane of its own. A pod
from the kube-vast image (``make image``, imported with no registry) runs on it as the chart runs
the extender (non-root, read-only root filesystem, an emptyDir on /tmp, a readiness probe on
/healthz), becomes Ready, and answers this machine on its pod address. Stopping the node leaves no
process, mount, interface, route or cgroup behind.

Needs root, containerd, runc, the CNI plugins, the node binaries (tools/build-node.sh) and the image
archive; skipped locally without them, failed under ``CI=true``."""

from __future__ import annotations

import ipaddress
import json
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client

from devcluster.binaries import running_in_ci
from devcluster.cluster import ControlPlane
from devcluster.image import archive_path, version
from devcluster.node import Node, unavailable
from tests.cluster_plugin import require_control_plane_binaries

pytestmark = pytest.mark.cluster

IMAGE = f"kube-vast:{version()}"


def _require() -> None:
    require_control_plane_binaries()
    reason = unavailable() or (None if archive_path().is_file() else f"no image archive at {archive_path()}: make image")
    if reason is not None:
        if running_in_ci():
            pytest.fail(f"CI=true and no real node can run: {reason}", pytrace=False)
        pytest.skip(f"!!! NO REAL NODE: {reason}")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    _require()
    cp = ControlPlane(workdir=tmp_path_factory.mktemp("node-cp")).start()
    n = Node(cp, tmp_path_factory.mktemp("node"), images=(archive_path(),))
    try:
        n.start()
        yield n
    finally:
        n.stop()
        cp.stop()


def extender_pod(name: str, node_name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node_name, "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 2,
                     "securityContext": {"runAsNonRoot": True},
                     "containers": [{"name": "extender", "image": IMAGE, "imagePullPolicy": "Never",
                                     "args": ["extender", "--port=8888", "--workers=1"],
                                     "ports": [{"name": "http", "containerPort": 8888}],
                                     "securityContext": {"readOnlyRootFilesystem": True,
                                                         "allowPrivilegeEscalation": False},
                                     "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                                        "periodSeconds": 1},
                                     "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
                     "volumes": [{"name": "tmp", "emptyDir": {}}]}}


def wait_for(predicate, timeout: float, what: str, node: Node):
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout:.0f}s; kubelet log:\n{node.kubelet.log_tail(30) if node.kubelet else ''}")
        time.sleep(0.3)


def test_the_node_registers_ready_with_containerd_and_the_pinned_kubelet(node: Node):
    info = client.CoreV1Api(node.cp.api_client()).read_node(node.name)
    assert info.status.node_info.kubelet_version == "v1.37.2"
    assert info.status.node_info.container_runtime_version.startswith("containerd://")
    assert [a.address for a in info.status.addresses if a.type == "InternalIP"] == [node.network.node_ip]
    assert any(c.type == "Ready" and c.status == "True" for c in info.status.conditions)


def test_a_pod_from_the_kube_vast_image_runs_ready_and_answers_on_its_pod_address(node: Node):
    core = client.CoreV1Api(node.cp.api_client())
    core.create_namespaced_service_account("default", {"metadata": {"name": "default"}})
    core.create_namespaced_pod("default", extender_pod("extender", node.name))

    def ready():
        p = core.read_namespaced_pod("extender", "default")
        ok = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        return p if ok else None

    pod = wait_for(ready, 180, "the extender pod Ready", node)
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(node.network.pod_cidr)
    with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8888/healthz", timeout=10) as r:
        assert (r.status, json.loads(r.read())) == (200, {"status": "ok"})
    status = pod.status.container_statuses[0]
    assert status.ready and status.restart_count == 0
    assert IMAGE in status.image


def test_stopping_the_node_leaves_no_process_mount_interface_route_or_cgroup(node: Node):
    assert node.containerd is not None and node.containerd.running()
    assert node._own_pids(), "the node's processes were not found before the teardown"
    node.stop()
    assert node.leftovers() == []
