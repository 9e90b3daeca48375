"""The extender with the real kube-scheduler (configured from the repository's own
scheduler-config.yaml) and the simulator behind the offer snapshot."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from devcluster.components import Extender, publish_snapshot, wait_until
from devcluster import create_namespace, create_ready_node
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

POOL = "kube-vast.test/pool"
VAST_TAINT = {"key": "virtual-kubelet.io/provider", "value": "vast", "effect": "NoSchedule"}
TOLERATION = {"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "vast", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def stack(control_plane, kube_scheduler, tmp_path_factory):
    work = tmp_path_factory.mktemp("extender-e2e")
    with SimulatorServer(seed=5, offers=1500, boot_seconds=(0.05, 0.05)) as sim:
        snapshot = work / "offers.json"
        publish_snapshot(sim, snapshot)
        ext = Extender(work, snapshot).start()
        try:
            kube_scheduler(ext.url)
            api = control_plane.api_client()
            create_ready_node(api, "vast-gpu-node-1", taints=[VAST_TAINT], capacity={"nvidia.com/gpu": "8", "cpu": "64", "memory": "512Gi"},
                              labels={POOL: "vast-e2e", "type": "virtual-kubelet", "kubernetes.io/role": "agent",
                                      "vast.ai/virtual-node": "true"})
            create_ready_node(api, "e2e-cpu-node", capacity={"nvidia.com/gpu": "0"}, labels={POOL: "vast-e2e"})
            ns = f"ext-{uuid.uuid4().hex[:6]}"
            create_namespace(api, ns)
            core = client.CoreV1Api(api)
            for node in ("vast-gpu-node-1", "e2e-cpu-node"):
                sync_scheduler_with(core, ns, node)
            yield api, ns, ext
        finally:
            ext.stop()


def gpu_pod(name, *, annotations=None, gpus=1, tolerate=True, scheduler="vast-scheduler"):
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {"requests": {"cpu": "100m"}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "schedulerName": scheduler,
            "nodeSelector": {POOL: "vast-e2e"},
            "tolerations": [TOLERATION] if tolerate else [],
            "containers": [{"name": "app", "image": "ghcr.io/example/speech:1.0", "resources": resources,
                            "ports": [{"containerPort": 8000}]}],
        },
    }


def sync_scheduler_with(core, ns, node):
    """Wait until the scheduler's cache has ``node``: a probe pod pinned to it gets bound."""
    probe = f"probe-{node}"
    core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": probe},
        "spec": {"schedulerName": "vast-scheduler", "nodeSelector": {"kubernetes.io/hostname": node},
                 "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "p", "image": "registry.k8s.io/pause:3.10"}]},
    })
    wait_until(lambda: node_of(core, ns, probe) == node)
    core.delete_namespaced_pod(probe, ns, grace_period_seconds=0)


def node_of(core, ns, name):
    return core.read_namespaced_pod(name, ns).spec.node_name


def scheduled_condition(core, ns, name):
    conditions = core.read_namespaced_pod(name, ns).status.conditions or []
    return next((c for c in conditions if c.type == "PodScheduled"), None)


def test_a_gpu_pod_with_a_matching_offer_is_bound_to_the_virtual_node(stack):
    api, ns, _ = stack
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, gpu_pod("fits", annotations={"vast.ai/gpu-type": "RTX3060",
                                                              "vast.ai/price-max": "0.50"}))
    assert wait_until(lambda: node_of(core, ns, "fits")) == "vast-gpu-node-1"


def test_without_a_matching_offer_the_pod_stays_pending_with_the_extenders_reason(stack):
    api, ns, ext = stack
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, gpu_pod("too-cheap", annotations={"vast.ai/gpu-type": "H100",
                                                                   "vast.ai/price-max": "0.05"}))
    try:
        cond = wait_until(lambda: (c := scheduled_condition(core, ns, "too-cheap")) and c.status == "False" and c)
        assert cond.reason == "Unschedulable"
        assert "no offer matches" in cond.message and "over $0.05/h" in cond.message and "not H100" in cond.message
        assert node_of(core, ns, "too-cheap") is None
        events = core.list_namespaced_event(ns, field_selector="involvedObject.name=too-cheap").items
        assert any("no offer matches" in (e.message or "") for e in events)
    finally:  # a pending GPU pod would take the next real GPU node another test adds
        core.delete_namespaced_pod("too-cheap", ns, grace_period_seconds=0)


def test_a_free_real_gpu_node_wins_under_local_first(stack):
    api, ns, _ = stack
    core = client.CoreV1Api(api)
    create_ready_node(api, "e2e-real-gpu", capacity={"nvidia.com/gpu": "1"}, labels={POOL: "vast-e2e"})
    sync_scheduler_with(core, ns, "e2e-real-gpu")
    try:
        core.create_namespaced_pod(ns, gpu_pod("local", annotations={"vast.ai/gpu-type": "RTX3060"}))
        assert wait_until(lambda: node_of(core, ns, "local")) == "e2e-real-gpu"
    finally:
        core.delete_namespaced_pod("local", ns, grace_period_seconds=0)
        core.delete_node("e2e-real-gpu")


def test_a_pod_without_gpus_is_not_sent_to_the_extender(stack):
    api, ns, ext = stack
    core = client.CoreV1Api(api)
    before = ext.metric("kube_vast_extender_requests_total")
    core.create_namespaced_pod(ns, gpu_pod("cpu-only", gpus=0, tolerate=False))
    assert wait_until(lambda: node_of(core, ns, "cpu-only")) == "e2e-cpu-node"
    assert ext.metric("kube_vast_extender_requests_total") == before


def test_an_invalid_annotation_keeps_the_pod_off_the_virtual_node_with_the_validation_message(stack):
    api, ns, _ = stack
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, gpu_pod("typo", annotations={"vast.ai/price-max": "free"}))
    try:
        cond = wait_until(lambda: (c := scheduled_condition(core, ns, "typo")) and c.status == "False" and c)
        assert "vast.ai/price-max: invalid value 'free'" in cond.message
    finally:
        core.delete_namespaced_pod("typo", ns, grace_period_seconds=0)
