"""The controller's housekeeping against the real control plane and the simulator: leader
election between two replicas, the virtual node's heartbeat and readiness, the budget, and the
orphan reaper."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from controller.fleet import instance_label
from devcluster.controller_stack import ControllerProcess, host_ip, live_instances, wait_until
from devcluster import create_namespace
from vastmarket.client import VastClient, broad_query
from vastmarket.instances import RentRequest
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "ghcr.io/example/speech:1.0",
                                     "ports": [{"containerPort": 8000}],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


def is_ready(p) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))


def reasons(api, ns, name) -> list[str]:
    return [e.reason for e in client.EventsV1Api(api).list_namespaced_event(ns).items
            if e.regarding and e.regarding.name == name]


@pytest.fixture
def world(control_plane, tmp_path):
    api = control_plane.api_client()
    run = uuid.uuid4().hex[:6]
    ns, system = f"ops-{run}", f"ops-{run}-system"
    create_namespace(api, ns)
    create_namespace(api, system)
    ip = host_ip()
    started: list[ControllerProcess] = []
    with SimulatorServer(seed=31, offers=500, boot_seconds=(0.2, 0.4), host=ip, public_ip=ip) as sim:
        def controller(identity="ctl-a", *, node, cluster, env=None, extra=()):
            ctl = ControllerProcess(tmp_path, kubeconfig=control_plane.kubeconfig_for("admin", ["system:masters"]),
                                    sim_url=sim.url, snapshot=tmp_path / f"offers-{identity}.json", node=node,
                                    namespace=system, cluster_id=cluster, identity=identity, env=env,
                                    extra=extra).start()
            started.append(ctl)
            return ctl
        try:
            yield api, ns, system, sim, controller
        finally:
            for ctl in started:
                ctl.stop()
            core = client.CoreV1Api(api)
            for p in core.list_namespaced_pod(ns).items:  # no controller any more: drop finalizers
                core.patch_namespaced_pod(p.metadata.name, ns, {"metadata": {"finalizers": None}})
            core.delete_namespace(ns)


def holder(api, system) -> str | None:
    leases = client.CoordinationV1Api(api).list_namespaced_lease(system).items
    lease = next((item for item in leases if item.metadata.name == "kube-vast-controller"), None)
    return lease.spec.holder_identity if lease else None


def test_one_of_two_replicas_leads_and_the_other_takes_over_when_it_dies(world):
    api, ns, system, sim, controller = world
    node = f"vast-ops-{uuid.uuid4().hex[:4]}"
    a = controller("ctl-a", node=node, cluster="opslead1")
    wait_until(lambda: holder(api, system) == "ctl-a", timeout=30)
    b = controller("ctl-b", node=node, cluster="opslead1")
    wait_until(lambda: "kube_vast_controller_leader 0.0" in b.metrics(), timeout=30)
    assert holder(api, system) == "ctl-a"
    a.kill()
    # ctl-b takes the 4 s lease once ctl-a stops renewing it (how fast depends on the machine's load).
    wait_until(lambda: holder(api, system) == "ctl-b", timeout=60)
    client.CoreV1Api(api).create_namespaced_pod(ns, pod("after-takeover", node))
    wait_until(lambda: is_ready(client.CoreV1Api(api).read_namespaced_pod("after-takeover", ns)), timeout=60)


def test_the_virtual_node_heartbeats_and_turns_not_ready_when_vast_is_unreachable(world):
    api, ns, system, sim, controller = world
    node = f"vast-ops-{uuid.uuid4().hex[:4]}"
    controller(node=node, cluster="opsnode1", extra=("--unreachable-after", "2"))
    core, leases = client.CoreV1Api(api), client.CoordinationV1Api(api)

    def ready_status():
        found = core.list_node(field_selector=f"metadata.name={node}").items
        conditions = found[0].status.conditions or [] if found else []
        return next((c.status for c in conditions if c.type == "Ready"), None)

    wait_until(lambda: ready_status() == "True", timeout=30)
    n = core.read_node(node)
    assert n.status.capacity["nvidia.com/gpu"] == "8" and n.metadata.labels["type"] == "virtual-kubelet"
    assert [(t.key, t.value, t.effect) for t in n.spec.taints] == [("virtual-kubelet.io/provider", "vast", "NoSchedule")]
    def renewed_at():
        found = [x for x in leases.list_namespaced_lease("kube-node-lease").items if x.metadata.name == node]
        return found[0].spec.renew_time if found else None

    first = wait_until(renewed_at, timeout=30)
    wait_until(lambda: renewed_at() > first, timeout=30)
    sim.faults.fail_next("list_instances", status=503, count=10_000)
    wait_until(lambda: ready_status() == "False", timeout=30)
    reason = next(c.reason for c in core.read_node(node).status.conditions if c.type == "Ready")
    assert reason == "VastUnreachable"
    sim.faults.clear()
    wait_until(lambda: ready_status() == "True", timeout=30)


def test_a_pod_over_the_budget_waits_with_an_event_and_launches_when_room_frees_up(world):
    api, ns, system, sim, controller = world
    node = f"vast-ops-{uuid.uuid4().hex[:4]}"
    controller(node=node, cluster="opsbudg1", env={"VAST_MAX_INSTANCES": "1"})
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, pod("first", node))
    wait_until(lambda: is_ready(core.read_namespaced_pod("first", ns)), timeout=60)
    core.create_namespaced_pod(ns, pod("second", node))
    wait_until(lambda: "BudgetExceeded" in reasons(api, ns, "second"), timeout=30)

    def held_for_the_budget():  # the status is written right after the Event: wait for it too
        found = core.read_namespaced_pod("second", ns)
        return found if "budget" in (found.status.message or "") else None

    second = wait_until(held_for_the_budget, timeout=30)
    assert second.status.phase == "Pending"
    assert len(live_instances(sim, "kv:opsbudg1:")) == 1
    core.delete_namespaced_pod("first", ns)
    wait_until(lambda: is_ready(core.read_namespaced_pod("second", ns)), timeout=90)
    assert len(live_instances(sim, "kv:opsbudg1:")) == 1


def test_an_instance_whose_pod_is_gone_is_reaped_after_the_grace_period(world):
    api, ns, system, sim, controller = world
    node = f"vast-ops-{uuid.uuid4().hex[:4]}"
    controller(node=node, cluster="opsreap1")
    vast = VastClient(sim.url)
    offer = vast.search_offers(broad_query(), limit=1).offers[0]
    orphan = vast.rent(offer.id, RentRequest(image="x", label=instance_label("opsreap1", str(uuid.uuid4()))))
    stranger = vast.rent(vast.search_offers(broad_query(), limit=1).offers[0].id, RentRequest(image="x", label="someone-else"))
    wait_until(lambda: next(i for i in sim.state()["instances"] if i["id"] == orphan)["destroyed"], timeout=30)
    assert not next(i for i in sim.state()["instances"] if i["id"] == stranger)["destroyed"], \
        "instances of other users or clusters are never touched"
    vast.destroy(stranger)
