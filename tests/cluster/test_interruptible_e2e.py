"""Interruptible (bid) pods end to end: real apiserver, controller-manager, the webhook from its
manifest, vast-scheduler with the extender, the controller, and the simulator as Vast with its
outbid fault. An interruptible Deployment of 3 pods runs on bids; an outbid takes one pod's
endpoints out of service; under raise-then-move a raised bid brings the same instance back, and
when bid-max leaves no room a replacement serves and the paused instance is destroyed. The ledger
is sampled all along: no pod ever has two live instances (paused ones count), and after scaling to
zero nothing is live."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kubernetes import client

from controller.endpoints import MANAGED_BY
from controller.interruptions import CONDITION
from devcluster import create_namespace
from devcluster.controller_stack import host_ip, live_instances, wait_until
from devcluster.full_stack import vast_stack
from devcluster.ledger import LedgerSampler
from kube_vast.status import fleet_status, render_text
from vastmarket.client import VastClient
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

NODE = "vast-gpu-node-spot"
CLUSTER = "spote2e1"
BID_MAX = 0.40
FLEET_POLL, PROBE_PERIOD = 0.5, 1.0  # the controller's --fleet-interval (devcluster) and the probe's period


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "spot"},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": "spot"}},
            "template": {
                "metadata": {"labels": {"app": "spot", "vast.ai/enabled": "true"},
                             "annotations": {"vast.ai/interruptible": "true", "vast.ai/bid-max": f"{BID_MAX}"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": NODE},
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "web", "image": "ghcr.io/example/web:1.0",
                        "ports": [{"name": "http", "containerPort": 8000}],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                           "periodSeconds": int(PROBE_PERIOD), "failureThreshold": 1},
                    }],
                },
            },
        },
    }


@pytest.fixture(scope="module")
def spot(control_plane, controller_manager, kube_scheduler, tmp_path_factory):
    work = tmp_path_factory.mktemp("interruptible-e2e")
    api = control_plane.api_client()
    ns, release = f"spot-{uuid.uuid4().hex[:6]}", f"kube-vast-{uuid.uuid4().hex[:6]}"
    create_namespace(api, ns)
    create_namespace(api, release)
    ip = host_ip()
    with SimulatorServer(seed=13, offers=800, boot_seconds=(0.2, 0.5), host=ip, public_ip=ip) as sim, \
            vast_stack(control_plane, kube_scheduler, work, sim=sim, node=NODE, cluster_id=CLUSTER,
                       release_namespace=release, probe_namespace=ns):
        yield api, ns, sim


def pods(core: Any, ns: str) -> list[Any]:
    return [p for p in core.list_namespaced_pod(ns, label_selector="app=spot").items if p.metadata.deletion_timestamp is None]


def ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def interrupted(pod: Any) -> str | None:
    return next((c.status for c in pod.status.conditions or [] if c.type == CONDITION), None)


def endpoints(api: Any, ns: str) -> dict[tuple[str, int], bool]:
    """(address, port) → ready, over the Service's kube-vast slices."""
    out = {}
    for s in client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            ns, label_selector=f"kubernetes.io/service-name=spot,endpointslice.kubernetes.io/managed-by={MANAGED_BY}").items:
        for e in s.endpoints or []:
            for port in s.ports or []:
                out[(e.addresses[0], port.port)] = bool(e.conditions and e.conditions.ready)
    return out


def host_port(instance: dict[str, Any]) -> int:
    return int(instance["ports"]["8000/tcp"][0]["HostPort"])


def instance_of(sim: SimulatorServer, pod: Any) -> dict[str, Any]:
    return next(i for i in sim.state()["instances"] if i["id"] == int(pod.metadata.annotations["vast.ai/instance-id"]))


def test_an_interruptible_deployment_rides_out_outbids_and_leaves_nothing_behind(spot: Any) -> None:
    api, ns, sim = spot
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespaced_service(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "spot"},
                                        "spec": {"selector": {"app": "spot"}, "ports": [{"port": 80, "targetPort": 8000}]}})
    apps.create_namespaced_deployment(ns, deployment(3))
    with LedgerSampler(lambda: sim.state()["instances"], f"kv:{CLUSTER}:") as sampler:
        serving = wait_until(lambda: len(ps := pods(core, ns)) == 3 and all(ready(p) for p in ps) and ps, timeout=90)
        wait_until(lambda: sum(endpoints(api, ns).values()) == 3, timeout=30)
        instances = [instance_of(sim, p) for p in serving]
        assert all(i["is_bid"] and i["bid"] and i["min_bid"] <= i["bid"] <= BID_MAX for i in instances)
        assert all(p.metadata.annotations["vast.ai/offer-price-type"] == "bid" for p in serving)

        # kube-vast status shows the bids and what they save.
        pod_dicts = [api.sanitize_for_serialization(p) for p in pods(core, ns)]
        status = fleet_status(VastClient(sim.url).list_instances(), pod_dicts, CLUSTER)
        assert len(status.rows) == 3 and all(r.interruptible and r.bid and (r.saved or 0) > 0 for r in status.rows)
        assert any(line.startswith("Interruptible: 3 instance(s) on bids, saving $") for line in
                   render_text(status, source=sim.url))

        # 1. An outbid with room under bid-max: out of service, then the same instance back on a raised bid.
        order = sorted(range(3), key=lambda n: instances[n]["bid"])  # the cheapest bid has the most room
        serving, instances = [serving[n] for n in order], [instances[n] for n in order]
        first_pod, first = serving[0], instances[0]
        assert round(first["bid"] * 1.15, 4) * 1.1 + first["storage_dph"] < BID_MAX, "room for the raise"
        address = (first["host"] or host_ip(), host_port(first))
        sim.market.outbid(first["id"], price=round(first["bid"] * 1.15, 4))
        outbid_at = time.monotonic()
        wait_until(lambda: endpoints(api, ns).get(address) is False, timeout=30)
        out_of_service = time.monotonic() - outbid_at
        print(f"outbid → endpoint not ready in {out_of_service:.2f}s (fleet poll {FLEET_POLL}s + probe period "
              f"{PROBE_PERIOD}s)")
        assert out_of_service < 15, "taken out of service within a fleet poll and a probe period (generously)"
        back = wait_until(lambda: (p := core.read_namespaced_pod(first_pod.metadata.name, ns)) and ready(p)
                          and interrupted(p) == "False" and p, timeout=60)
        assert back.metadata.annotations["vast.ai/instance-id"] == str(first["id"]), "the same instance"
        again = instance_of(sim, back)
        assert again["bid"] > first["bid"] and not again["paused"] and not again["destroyed"]
        wait_until(lambda: endpoints(api, ns).get((address[0], host_port(again))) is True, timeout=30)

        # 2. An outbid over bid-max: no room, so a replacement serves and the paused instance is destroyed.
        second_pod, second = serving[1], instances[1]
        sim.market.outbid(second["id"], price=BID_MAX + 0.5)
        moved = wait_until(lambda: (p := core.read_namespaced_pod(second_pod.metadata.name, ns)) and ready(p)
                           and p.metadata.annotations.get("vast.ai/instance-id") not in (None, str(second["id"]))
                           and p, timeout=90)
        replacement = instance_of(sim, moved)
        old = next(i for i in sim.state()["instances"] if i["id"] == second["id"])
        assert old["destroyed"] and old["destroyed_at"] <= replacement["created_at"]
        assert replacement["is_bid"] and replacement["label"] == old["label"]
        wait_until(lambda: endpoints(api, ns).get((replacement["host"] or host_ip(), host_port(replacement))) is True,
                   timeout=30)

        # 3. A third one outbid, then the Deployment scaled to zero: nothing left, paused ones included.
        third = instances[2]
        sim.market.outbid(third["id"], price=BID_MAX + 0.5)
        apps.patch_namespaced_deployment_scale("spot", ns, {"spec": {"replicas": 0}})
        wait_until(lambda: not live_instances(sim, f"kv:{CLUSTER}:"), timeout=90)
        wait_until(lambda: not core.list_namespaced_pod(ns, label_selector="app=spot").items, timeout=60)
    assert sampler.samples > 50 and sampler.errors == 0
    assert sampler.worst == 1 and not sampler.violations, sampler.violations
    rentals = [i for i in sim.state()["instances"] if i["label"].startswith(f"kv:{CLUSTER}:")]
    assert len(rentals) <= 5, "3 pods, one move, and at most one more for the pod outbid while scaling down"
    assert sim.state()["counters"]["live_instances"] == 0
