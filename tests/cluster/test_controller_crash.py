"""Money is never leaked: the controller is SIGKILLed at random moments while 20 pods launch and
again while they are torn down, and restarted each time. Afterwards every live pod has exactly
one instance and no instance is left without a pod."""

from __future__ import annotations

import random
import time
import uuid

import pytest
from kubernetes import client

from devcluster.controller_stack import ControllerProcess, host_ip, live_instances, wait_until
from devcluster import create_namespace
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

NODE = "vast-gpu-node-crash"
PODS = 20


def bound_pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "crash"}},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "ghcr.io/example/speech:1.0",
                                     "ports": [{"containerPort": 8000}],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                     "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}]}}


def kill_randomly(ctl: ControllerProcess, rng: random.Random, *, kills: int, low: float, high: float) -> None:
    for _ in range(kills):
        time.sleep(rng.uniform(low, high))
        ctl.kill()
        ctl.start()


def ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killing_the_controller_at_random_never_leaks_or_doubles_instances(control_plane, tmp_path, seed):
    rng = random.Random(seed)
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    ns = f"crash-{uuid.uuid4().hex[:6]}"
    create_namespace(api, ns)
    create_namespace(api, f"{ns}-system")
    cluster = f"crash{seed}{uuid.uuid4().hex[:4]}"
    ip = host_ip()
    with SimulatorServer(seed=seed, offers=600, boot_seconds=(0.2, 0.6), host=ip, public_ip=ip) as sim:
        ctl = ControllerProcess(tmp_path, kubeconfig=control_plane.kubeconfig_for("admin", ["system:masters"]),
                                sim_url=sim.url, snapshot=tmp_path / "offers.json", node=NODE,
                                namespace=f"{ns}-system", cluster_id=cluster,
                                env={"VAST_MAX_INSTANCES": "40", "VAST_MAX_TOTAL_PRICE_PER_HOUR": "100"}).start()
        try:
            for i in range(PODS):
                core.create_namespaced_pod(ns, bound_pod(f"gpu-{i:02d}"))
            kill_randomly(ctl, rng, kills=6, low=0.2, high=1.5)
            wait_until(lambda: len([p for p in core.list_namespaced_pod(ns).items if ready(p)]) == PODS, timeout=120)
            wait_until(lambda: len(live_instances(sim, f"kv:{cluster}:")) == PODS, timeout=60)

            pods = core.list_namespaced_pod(ns).items
            by_label = {}
            for inst in live_instances(sim, f"kv:{cluster}:"):
                by_label.setdefault(inst["label"], []).append(inst["id"])
            assert sorted(by_label) == sorted(f"kv:{cluster}:{p.metadata.uid}" for p in pods)
            assert all(len(ids) == 1 for ids in by_label.values()), by_label
            for p in pods:
                assert int(p.metadata.annotations["vast.ai/instance-id"]) == by_label[f"kv:{cluster}:{p.metadata.uid}"][0]

            core.delete_collection_namespaced_pod(ns, label_selector="app=crash")
            kill_randomly(ctl, rng, kills=3, low=0.1, high=0.8)
            wait_until(lambda: not core.list_namespaced_pod(ns).items, timeout=120)
            wait_until(lambda: not live_instances(sim, f"kv:{cluster}:"), timeout=30)
            state = sim.state()
            assert state["counters"]["live_instances"] == 0
            assert all(i["destroyed"] for i in state["instances"])
        finally:
            ctl.stop()
