"""Run-to-completion and graceful termination against the real control plane (kube-apiserver and
kube-controller-manager's Job controller), the controller as a real process and the simulator as
Vast, whose image exits with the code and after the time the pod's env asks.

- A Job whose container exits 0 completes with exactly one rental; one that exits 3 under
  ``backoffLimit: 1`` fails after exactly two runs, each its own rental, its pods showing exit
  code 3; an ``OnFailure`` Job restarts its container on the same instance.
- A deleted pod leaves its Service (endpoint not ready, terminating) while its instance is stopped
  (SIGTERM), is destroyed once stopped, and the grace period bounds a container that ignores the
  SIGTERM. Nothing is left live."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kubernetes import client

from controller.endpoints import MANAGED_BY
from devcluster import create_namespace
from devcluster.controller_stack import controller_on_simulator, delete_pods, live_instances, wait_until

pytestmark = pytest.mark.cluster

NODE = "vast-gpu-node-jobs"
CLUSTER = "jobs0001"


@pytest.fixture(scope="module")
def env(control_plane, controller_manager, tmp_path_factory):
    with controller_on_simulator(control_plane, tmp_path_factory.mktemp("completion"),
                                 release_namespace="kube-vast-jobs", node=NODE, cluster_id=CLUSTER, seed=17, offers=600,
                                 env={"KUBE_VAST_RESTART_BACKOFF": "0.5"}, wait_snapshot=True) as running:
        yield running


@pytest.fixture
def ns(env):
    api, sim, _ = env
    name = f"jobs-{uuid.uuid4().hex[:6]}"
    create_namespace(api, name)
    yield name
    client.BatchV1Api(api).delete_collection_namespaced_job(name, propagation_policy="Background")
    delete_pods(api, name)
    wait_until(lambda: not live_instances(sim, f"kv:{CLUSTER}:"), timeout=30)
    counters = sim.state()["counters"]
    assert (counters["live_instances"], counters["open_ports"], counters["open_sockets"]) == (0, 0, 0)


def container_spec(env: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"name": "main", "image": "ghcr.io/example/train:1.0",
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "resources": {"limits": {"nvidia.com/gpu": "1"}}, **extra}


def job(name: str, *, restart_policy: str, backoff_limit: int, env: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": backoff_limit,
                     "template": {"metadata": {"labels": {"job": name}},
                                  "spec": {"nodeName": NODE, "restartPolicy": restart_policy,
                                           "terminationGracePeriodSeconds": 5,
                                           "containers": [container_spec(env)]}}}}


def job_condition(api, ns: str, name: str) -> str | None:
    found = client.BatchV1Api(api).read_namespaced_job(name, ns)
    done = [c.type for c in found.status.conditions or [] if c.status == "True" and c.type in ("Complete", "Failed")]
    return done[0] if done else None


def job_pods(api, ns: str, name: str):
    return client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=f"job={name}").items


def rentals_for(sim, uids) -> list[dict[str, Any]]:
    return [i for i in sim.state()["instances"] if (i["label"] or "").split(":")[-1] in uids]


def test_a_job_that_exits_0_completes_with_exactly_one_rental(env, ns):
    api, sim, _ = env
    client.BatchV1Api(api).create_namespaced_job(
        ns, job("ok", restart_policy="Never", backoff_limit=3, env={"KUBE_VAST_SIM_EXIT_CODE": "0",
                                                                     "KUBE_VAST_SIM_EXIT_AFTER": "1"}))
    wait_until(lambda: job_condition(api, ns, "ok"), timeout=90)
    assert job_condition(api, ns, "ok") == "Complete"
    [pod] = job_pods(api, ns, "ok")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    wait_until(lambda: all(i["destroyed"] for i in rentals_for(sim, {pod.metadata.uid})), timeout=30)
    [rental] = rentals_for(sim, {pod.metadata.uid})
    assert rental["runs"] == 1 and [e["exit_code"] for e in rental["exits"]] == [0]
    assert len(live_instances(sim, f"kv:{CLUSTER}:")) == 0


def test_a_job_that_exits_3_under_backoff_limit_1_fails_after_two_runs_and_two_rentals(env, ns):
    api, sim, _ = env
    client.BatchV1Api(api).create_namespaced_job(
        ns, job("bad", restart_policy="Never", backoff_limit=1, env={"KUBE_VAST_SIM_EXIT_CODE": "3"}))
    wait_until(lambda: job_condition(api, ns, "bad"), timeout=120)
    assert job_condition(api, ns, "bad") == "Failed"
    pods = job_pods(api, ns, "bad")
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Failed" and pod.status.reason != "InstanceLost"
        terminated = pod.status.container_statuses[0].state.terminated
        assert (terminated.exit_code, terminated.reason) == (3, "Error")
    uids = {p.metadata.uid for p in pods}
    wait_until(lambda: all(i["destroyed"] for i in rentals_for(sim, uids)), timeout=30)
    rentals = rentals_for(sim, uids)
    assert len(rentals) == 2, "backoffLimit + 1 runs, one rental each"
    assert sorted((i["label"], i["runs"]) for i in rentals) == sorted((f"kv:{CLUSTER}:{u}", 1) for u in uids)


def test_an_on_failure_job_restarts_its_container_on_the_same_instance(env, ns):
    api, sim, _ = env
    client.BatchV1Api(api).create_namespaced_job(
        ns, job("retry", restart_policy="OnFailure", backoff_limit=3,
                env={"KUBE_VAST_SIM_EXIT_CODE": "3,0", "KUBE_VAST_SIM_EXIT_AFTER": "1"}))
    wait_until(lambda: job_condition(api, ns, "retry"), timeout=90)
    assert job_condition(api, ns, "retry") == "Complete"
    [pod] = job_pods(api, ns, "retry")
    status = pod.status.container_statuses[0]
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 3 and status.state.terminated.exit_code == 0
    wait_until(lambda: all(i["destroyed"] for i in rentals_for(sim, {pod.metadata.uid})), timeout=30)
    [rental] = rentals_for(sim, {pod.metadata.uid})
    assert rental["runs"] == 2 and [e["exit_code"] for e in rental["exits"]] == [3, 0]


# --- graceful termination --------------------------------------------------------------------


def web_pod(name: str, *, grace: int, stop_seconds: float) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": grace,
                     "containers": [container_spec({"KUBE_VAST_SIM_STOP_SECONDS": str(stop_seconds)},
                                                   ports=[{"name": "http", "containerPort": 8000}])]}}


def web_service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8000}]}}


def endpoint_conditions(api, ns: str, service: str) -> list[Any]:
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        ns, label_selector=f"kubernetes.io/service-name={service},endpointslice.kubernetes.io/managed-by={MANAGED_BY}")
    return [e.conditions for s in slices.items for e in s.endpoints or []]


def serving(api, sim, ns: str, name: str, *, grace: int, stop_seconds: float) -> dict[str, Any]:
    core = client.CoreV1Api(api)
    core.create_namespaced_service(ns, web_service(name))
    core.create_namespaced_pod(ns, web_pod(name, grace=grace, stop_seconds=stop_seconds))
    wait_until(lambda: any(c.ready for c in endpoint_conditions(api, ns, name)), timeout=60)
    uid = core.read_namespaced_pod(name, ns).metadata.uid
    [instance] = rentals_for(sim, {uid})
    return instance


def ledger_entry(sim, instance_id: int) -> dict[str, Any]:
    return next(i for i in sim.state()["instances"] if i["id"] == instance_id)


def test_a_deleted_pod_leaves_its_service_then_its_instance_is_stopped_and_destroyed_once_stopped(env, ns):
    api, sim, _ = env
    instance = serving(api, sim, ns, "web", grace=60, stop_seconds=3)
    deleted_at = time.time()
    client.CoreV1Api(api).delete_namespaced_pod("web", ns)
    seen: dict[str, float] = {}

    def draining() -> bool:
        conditions = endpoint_conditions(api, ns, "web")
        entry = ledger_entry(sim, instance["id"])
        if conditions and all(c.ready is False and c.terminating for c in conditions) and not entry["destroyed"]:
            seen.setdefault("out_of_service_while_alive", time.time())
        return entry["stop_requested_at"] is not None and "out_of_service_while_alive" in seen

    wait_until(draining, timeout=30)
    entry = wait_until(lambda: (e := ledger_entry(sim, instance["id"]))["destroyed"] and e, timeout=30)
    assert entry["stopped_at"] is not None, "stopped (SIGTERM honoured) before it was destroyed"
    assert deleted_at < entry["stop_requested_at"] < entry["stopped_at"] <= entry["destroyed_at"]
    assert entry["stopped_at"] - entry["stop_requested_at"] == pytest.approx(3, abs=0.2)
    assert entry["destroyed_at"] - deleted_at < 30, "destroyed once stopped, not after the 60 s grace"
    wait_until(lambda: not client.CoreV1Api(api).list_namespaced_pod(ns).items, timeout=30)
    assert endpoint_conditions(api, ns, "web") == []


def test_the_grace_period_bounds_a_container_that_ignores_sigterm(env, ns):
    api, sim, _ = env
    instance = serving(api, sim, ns, "stubborn", grace=3, stop_seconds=600)
    deleted_at = time.time()
    client.CoreV1Api(api).delete_namespaced_pod("stubborn", ns)
    entry = wait_until(lambda: (e := ledger_entry(sim, instance["id"]))["destroyed"] and e, timeout=30)
    assert entry["stop_requested_at"] is not None and entry["stopped_at"] is None
    waited = entry["destroyed_at"] - deleted_at
    assert 2 <= waited < 6, f"destroyed {waited:.1f}s after deletion with a 3 s grace"
