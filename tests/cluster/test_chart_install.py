"""The chart installed for real: ``helm install charts/kube-vast`` in simulator mode onto a control
plane with a real node (devcluster.node: containerd, runc, the pinned kubelet and kube-proxy, the
cluster DNS), the kube-vast image of ``make image`` and vast-scheduler's image imported with no
registry. Every pod of the release becomes Ready from the built images; the API server calls the
webhook through its Service with the chart's own TLS; vast-scheduler reaches the extender through
its Service by name; a GPU Deployment (demo/june.yaml, as in ``make demo``) goes through the whole
flow to an instance of the simulator and EndpointSlices that answer. ``helm upgrade`` keeps it
serving (the same instance, answering throughout); the operator guide's uninstall path leaves no
instance live and nothing of the release. Stopping the node leaves no process, mount, interface,
route or cgroup.

Needs root, containerd, runc, the CNI plugins, the node binaries and images
(tools/build-node.sh), the kube-vast image archive (make image) and helm; skipped locally without
them, failed under ``CI=true``."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client

from devcluster.binaries import REPO_ROOT, find_binaries
from devcluster.chart_stack import CHART, NAMESPACE as NS, RELEASE, VIRTUAL_NODE, ChartStack, chart_stack, image, \
    scheduler_image
from tests.chart.helm import require_a_real_node

pytestmark = pytest.mark.cluster


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, diagnose: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (client.ApiException, OSError, ValueError, KeyError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s (last error {last!r})\n{diagnose()}")
        time.sleep(0.5)


def all_ready(pods: list[Any]) -> bool:
    return bool(pods) and all(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                              for p in pods)


def get(url: str) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, json.loads(r.read())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartStack]:
    require_a_real_node("installing the chart")
    with chart_stack(tmp_path_factory.mktemp("chart")) as stack:
        yield stack


def test_the_node_is_registered_ready_with_containerd_and_the_pinned_kubelet(cluster: ChartStack):
    node = cluster.core.read_node(cluster.node.name)
    assert node.status.node_info.kubelet_version == find_binaries().kubernetes_version
    assert node.status.node_info.kube_proxy_version in ("", find_binaries().kubernetes_version)
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    assert [a.address for a in node.status.addresses if a.type == "InternalIP"] == [cluster.node.network.node_ip]
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert not [t for t in node.spec.taints or [] if t.key == "node.kubernetes.io/not-ready"]


def test_every_pod_of_the_release_is_ready_from_the_built_images(cluster: ChartStack):
    pods = cluster.pods(NS)
    assert {p.metadata.labels["app.kubernetes.io/component"] for p in pods} == {"kube-vast", "scheduler", "simulator"}
    assert all_ready(pods), cluster.describe()
    images = {c.name: c.image.removeprefix("docker.io/library/") for p in pods for c in p.status.container_statuses}
    assert images == {"controller": image(), "extender": image(), "webhook": image(), "simulator": image(),
                      "kube-scheduler": scheduler_image()}, images
    assert all(p.spec.node_name == cluster.node.name for p in pods)
    # On the node's pod subnet, and reached there from this machine (the simulator's admin API).
    assert all(ipaddress.ip_address(p.status.pod_ip) in ipaddress.ip_network(cluster.node.network.pod_cidr)
               for p in pods)
    assert cluster.ledger() == []
    for p in pods:
        assert p.spec.security_context.run_as_non_root
        for c in p.status.container_statuses:
            assert c.ready and c.restart_count == 0, (p.metadata.name, c.name, c.restart_count)


def test_a_gpu_deployment_goes_through_webhook_scheduler_and_controller_to_an_answering_instance(cluster: ChartStack):
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "demo" / "june.yaml"))

    def ready_pod() -> Any:
        pods = cluster.pods("default", "app=june")
        return pods[0] if len(pods) == 1 and all_ready(pods) else None

    pod = wait_for(ready_pod, 180, "june's pod Ready on the virtual node", cluster.describe)
    # The webhook (through its Service, the chart's TLS) chose an offer and vast-scheduler;
    # vast-scheduler (the extender through its Service, by name) bound the pod to the virtual node.
    assert pod.metadata.annotations["vast.ai/offer-id"]
    assert pod.spec.scheduler_name == "vast-scheduler"
    assert pod.spec.node_name == VIRTUAL_NODE
    instance = pod.metadata.annotations["vast.ai/instance-id"]
    live = [i for i in cluster.ledger() if not i.get("destroyed")]
    assert [str(i["id"]) for i in live] == [instance]
    # The Services' EndpointSlices point at the instance, and it answers there.
    for service, container_port in (("june-tts", 8000), ("june-stt", 8001)):
        slices = [s for s in cluster.discovery.list_namespaced_endpoint_slice(
            "default", label_selector=f"kubernetes.io/service-name={service}").items if s.endpoints]
        [address] = [a for s in slices for e in s.endpoints for a in e.addresses]
        [port] = [p.port for s in slices for p in s.ports]
        status, body = get(f"http://{address}:{port}/healthz")
        assert status == 200 and body["instance_id"] == int(instance) and body["container_port"] == container_port


def test_helm_upgrade_keeps_serving_from_the_same_instance(cluster: ChartStack):
    [pod] = cluster.pods("default", "app=june")
    instance = pod.metadata.annotations["vast.ai/instance-id"]
    slices = cluster.discovery.list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=june-tts").items
    [(address, port)] = [(a, p.port) for s in slices if s.endpoints for e in s.endpoints for a in e.addresses
                         for p in s.ports]
    old = {p.metadata.name for p in cluster.pods(NS, "app.kubernetes.io/component=kube-vast")}
    failures: list[str] = []
    samples = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal samples
        while not stop.is_set():
            try:
                status, _ = get(f"http://{address}:{port}/healthz")
                if status != 200:
                    failures.append(f"HTTP {status}")
            except (urllib.error.URLError, OSError) as e:
                failures.append(repr(e))
            samples += 1
            stop.wait(0.3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cluster.helm("upgrade", RELEASE, str(CHART), "-n", NS, "--reuse-values",
                         "--set-string", "deployment.podAnnotations.kube-vast-test/upgraded=1", "--wait", "--timeout", "4m")
        new = wait_for(lambda: (lambda ps: ps if all_ready(ps) and not {p.metadata.name for p in ps} & old else None)(
            cluster.pods(NS, "app.kubernetes.io/component=kube-vast")), 180, "the upgraded replica Ready", cluster.describe)
        assert new[0].metadata.annotations["kube-vast-test/upgraded"] == "1"
        # The new controller leads and keeps the pod's instance: nothing new rented, still served
        # (sampled until the new replica has taken over and a few more times after).
        taken_over_at = samples
        wait_for(lambda: samples > taken_over_at + 10, 60, "samples after the upgrade")
    finally:
        stop.set()
        sampler.join(10)
    assert failures == [], failures[:5]
    assert [str(i["id"]) for i in cluster.ledger()] == [instance]
    assert [p.metadata.annotations["vast.ai/instance-id"] for p in cluster.pods("default", "app=june")] == [instance]


def test_the_documented_uninstall_destroys_the_instance_and_leaves_nothing_of_the_release(cluster: ChartStack):
    cluster.kubectl("delete", "deployment", "june", "--wait=false")
    wait_for(lambda: all(i.get("destroyed") for i in cluster.ledger()), 120,
             "the instance destroyed after its workload was deleted", cluster.describe)
    wait_for(lambda: not cluster.pods("default", "app=june"), 120, "june's pod gone", cluster.describe)
    cluster.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "3m")
    cluster.kubectl("delete", "node", VIRTUAL_NODE)
    wait_for(lambda: not cluster.pods(NS), 120, "the release's pods gone", cluster.describe)
    assert [n.metadata.name for n in cluster.core.list_node().items] == [cluster.node.name]


def test_stopping_the_node_after_the_release_leaves_nothing_behind(cluster: ChartStack):
    cluster.node.stop()
    assert cluster.node.leftovers() == []
