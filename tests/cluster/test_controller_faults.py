"""Vast misbehaving, as the simulator can make it: 429 storms, rentals and destroys whose answer is
lost after they were made (commit then fail: a 5xx, a dropped connection, a late or slow answer)
while the instance list lags, offers vanishing at rent time, instances stuck loading, exiting,
going offline while serving, failing health checks. Each pod ends up served by a working instance
or visibly failed, with exactly one rental where no fault justifies another, and the simulator's
ledger never shows an instance without a live pod."""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client

from devcluster.controller_stack import controller_on_simulator, delete_pods, live_instances, wait_until
from devcluster import create_namespace
from devcluster.ledger import LedgerSampler

pytestmark = pytest.mark.cluster

NODE = "vast-gpu-node-faults"
CLUSTER = "faults01"
READ_TIMEOUT = 3.0  # the controller's; a late answer comes after it
UNCERTAIN_WAIT = 10.0  # the controller's wait for an uncertain rent's instance (> READ_TIMEOUT + LAG)
LAG = 4.0  # Vast's list leaves a new instance out this long


@pytest.fixture(scope="module")
def env(control_plane, tmp_path_factory):
    with controller_on_simulator(control_plane, tmp_path_factory.mktemp("faults"), release_namespace="kube-vast-faults",
                                 node=NODE, cluster_id=CLUSTER, seed=21, offers=800, extra=("--boot-timeout", "3"),
                                 env={"KUBE_VAST_VAST_READ_TIMEOUT": f"{READ_TIMEOUT:g}",
                                      "KUBE_VAST_UNCERTAIN_RENT_WAIT": f"{UNCERTAIN_WAIT:g}"}) as running:
        yield running


@pytest.fixture
def ns(env):
    api, sim, _ = env
    name = f"f-{uuid.uuid4().hex[:6]}"
    create_namespace(api, name)
    sim.faults.clear()
    yield name
    delete_pods(api, name)
    sim.faults.clear()
    assert ledger_clean(api, sim)


def ledger_clean(api, sim) -> bool:
    """Every live instance of this cluster belongs to a live pod, and no pod has two."""
    live_uids = {p.metadata.uid for p in client.CoreV1Api(api).list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={NODE}").items}
    labels = [i["label"] for i in live_instances(sim, f"kv:{CLUSTER}:")]
    return len(labels) == len(set(labels)) and {lab.split(":", 2)[2] for lab in labels} <= live_uids


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "ghcr.io/example/speech:1.0",
                                     "ports": [{"name": "http", "containerPort": 8000}],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                     "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                                        "periodSeconds": 1, "failureThreshold": 2}}]}}


def read(api, ns, name):
    return client.CoreV1Api(api).read_namespaced_pod(name, ns)


def is_ready(p) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))


def events(api, ns, name) -> list[str]:
    """The reasons of the pod's Events, each as many times as it happened (a repeat is counted
    on the first Event, as the kubelet's recorder does)."""
    items = client.EventsV1Api(api).list_namespaced_event(ns).items
    return [e.reason for e in items if e.regarding and e.regarding.name == name
            for _ in range(max(1, e.deprecated_count or 1))]


def launch(api, ns, name="gpu"):
    client.CoreV1Api(api).create_namespaced_pod(ns, pod(name))


def served(api, ns, sim, name="gpu"):
    p = wait_until(lambda: (x := read(api, ns, name)) and is_ready(x) and x, timeout=60)
    instance = int(p.metadata.annotations["vast.ai/instance-id"])
    live = {i["id"]: i for i in live_instances(sim, f"kv:{CLUSTER}:")}
    assert instance in live and live[instance]["label"] == f"kv:{CLUSTER}:{p.metadata.uid}"
    return p, instance


def test_a_429_storm_delays_but_does_not_stop_the_launch(env, ns):
    api, sim, _ = env
    sim.faults.fail_next("create", status=429, count=3, body="text")
    sim.faults.fail_next("list_instances", status=429, count=6, body="detail")
    sim.faults.fail_next("get_instance", status=429, count=4, body="error")
    launch(api, ns)
    served(api, ns, sim)


def rentals(sim, p) -> list[int]:
    """Every instance ever rented for the pod, destroyed ones included."""
    return [i["id"] for i in sim.state()["instances"] if i["label"] == f"kv:{CLUSTER}:{p.metadata.uid}"]


LOST_RENT_ANSWERS = {
    "503": lambda sim: sim.faults.commit_then_fail("create", status=503),
    "500": lambda sim: sim.faults.commit_then_fail("create", status=500),
    "dropped": lambda sim: sim.faults.commit_then_fail("create", answer="drop"),
    "late": lambda sim: sim.faults.commit_then_fail("create", answer="late", seconds=2 * READ_TIMEOUT),
    "slow": lambda sim: sim.faults.set_slow_answer("create", 2 * READ_TIMEOUT),
}


@pytest.mark.parametrize("lose", list(LOST_RENT_ANSWERS.values()), ids=list(LOST_RENT_ANSWERS))
def test_a_rental_made_whose_answer_is_lost_is_found_and_never_made_twice(env, ns, lose):
    api, sim, _ = env
    sim.faults.set_listing_lag(LAG)  # and the list does not show it yet
    lose(sim)
    with LedgerSampler(lambda: sim.state()["instances"], label_prefix=f"kv:{CLUSTER}:") as sampler:
        launch(api, ns)
        p, instance = served(api, ns, sim)
        sim.faults.clear()
    assert rentals(sim, p) == [instance]
    assert sampler.violating_samples == 0 and sampler.worst == 1
    assert "RentUncertain" in events(api, ns, "gpu")
    assert "vast.ai/instance-id" in p.metadata.annotations and "renting" not in p.metadata.annotations["vast.ai/launch"]


def test_a_rent_lost_before_it_was_made_is_sent_again_only_after_the_wait(env, ns):
    api, sim, _ = env
    sim.faults.fail_next("create", status=503)  # answered before anything was rented
    creates = sim.state()["counters"]["calls"].get("create", 0)
    launch(api, ns)
    p, instance = served(api, ns, sim)
    assert rentals(sim, p) == [instance]
    assert sim.state()["counters"]["calls"]["create"] == creates + 2
    assert {"RentUncertain", "RentNotFound", "Rented"} <= set(events(api, ns, "gpu"))
    assert json.loads(p.metadata.annotations["vast.ai/launch"])["lastFailure"]["reason"] == "RentNotFound"


@pytest.mark.parametrize("lost", [{"status": 503}, {"status": 500}, {"answer": "drop"},
                                  {"answer": "late", "seconds": 2 * READ_TIMEOUT}],
                         ids=["503", "500", "dropped", "late"])
def test_a_destroy_whose_answer_is_lost_still_releases_the_pod_and_leaves_nothing(env, ns, lost):
    api, sim, _ = env
    launch(api, ns)
    _, instance = served(api, ns, sim)
    sim.faults.commit_then_fail("destroy", **lost)
    client.CoreV1Api(api).delete_namespaced_pod("gpu", ns)
    wait_until(lambda: not client.CoreV1Api(api).list_namespaced_pod(ns).items, timeout=60)
    assert next(i for i in sim.state()["instances"] if i["id"] == instance)["destroyed"]
    assert sim.state()["faults"]["commit_then_fail"] == {}  # the destroy was made, its answer lost
    assert not live_instances(sim, f"kv:{CLUSTER}:")


def test_offers_vanishing_at_rent_time_fail_over_to_the_next_offer(env, ns):
    api, sim, _ = env
    sim.faults.vanish_next_rent(count=2, status=410)
    launch(api, ns)
    p, _ = served(api, ns, sim)
    record = json.loads(p.metadata.annotations["vast.ai/launch"])
    assert len(record["failedMachines"]) == 2
    assert "OfferGone" in events(api, ns, "gpu")


@pytest.mark.parametrize("fate", ["loading", "created"])  # an exited container restarts instead
def test_an_instance_that_never_runs_is_destroyed_and_replaced(env, ns, fate):
    api, sim, _ = env
    sim.faults.fate_next(fate)
    launch(api, ns)
    _, instance = served(api, ns, sim)
    first = min(i["id"] for i in sim.state()["instances"] if i["label"] and i["label"].startswith(f"kv:{CLUSTER}:")
                and i["fate"] == fate)
    assert first != instance
    assert next(i for i in sim.state()["instances"] if i["id"] == first)["destroyed"]
    assert "InstanceFailed" in events(api, ns, "gpu")


def test_an_instance_going_offline_while_serving_fails_the_pod_visibly(env, ns):
    api, sim, _ = env
    launch(api, ns)
    _, instance = served(api, ns, sim)
    sim.market.set_fate(instance, "offline")
    p = wait_until(lambda: (x := read(api, ns, "gpu")) and x.status.phase == "Failed" and x, timeout=30)
    assert p.status.reason == "InstanceLost"
    wait_until(lambda: next(i for i in sim.state()["instances"] if i["id"] == instance)["destroyed"], timeout=30)
    assert "InstanceLost" in events(api, ns, "gpu")


def test_failing_health_checks_take_the_pod_out_of_service_until_they_pass_again(env, ns):
    api, sim, _ = env
    launch(api, ns)
    _, instance = served(api, ns, sim)
    sim.market.set_health(instance, status=503)
    wait_until(lambda: not is_ready(read(api, ns, "gpu")), timeout=30)
    wait_until(lambda: "InstanceUnhealthy" in events(api, ns, "gpu"), timeout=10)
    sim.market.set_health(instance, status=200)
    wait_until(lambda: is_ready(read(api, ns, "gpu")), timeout=30)
    wait_until(lambda: events(api, ns, "gpu").count("InstanceHealthy") >= 2, timeout=10)  # at start, and again
    assert int(read(api, ns, "gpu").metadata.annotations["vast.ai/instance-id"]) == instance


def test_an_instance_billed_over_the_cap_is_destroyed_and_replaced(env, ns):
    api, sim, _ = env
    sim.faults.drift_next_price(dph_total=5.0)
    launch(api, ns)
    _, instance = served(api, ns, sim)
    overpriced = [i for i in sim.state()["instances"] if i["dph_total"] == 5.0]
    assert len(overpriced) == 1 and overpriced[0]["destroyed"] and overpriced[0]["id"] != instance
    assert "PriceMismatch" in events(api, ns, "gpu")


def test_a_missing_config_map_keeps_the_pod_pending_with_an_event_and_rents_nothing(env, ns):
    api, sim, _ = env
    rentals = sim.state()["counters"]["rentals"]
    body = pod("gpu")
    body["spec"]["containers"][0]["env"] = [{"name": "MODEL", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "model"}}}]
    client.CoreV1Api(api).create_namespaced_pod(ns, body)
    wait_until(lambda: "CreateContainerConfigError" in events(api, ns, "gpu"), timeout=30)
    # The Event is recorded just before the status is written: wait for the status too.
    p = wait_until(lambda: (x := read(api, ns, "gpu")) and 'configmap "absent" not found' in (x.status.message or "")
                   and x, timeout=30)
    assert p.status.phase == "Pending"
    assert sim.state()["counters"]["rentals"] == rentals
    client.CoreV1Api(api).create_namespaced_config_map(ns, {"metadata": {"name": "absent"}, "data": {"model": "small"}})
    served(api, ns, sim)
