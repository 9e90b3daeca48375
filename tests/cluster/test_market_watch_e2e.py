"""Demand-driven market watching and Vast's search quota, end to end: the real apiserver and
kube-scheduler with the extender, the webhook registered from its manifest, the controller as a
real process, the simulator as Vast with a search row quota.

- A pod asking for a GPU model the config does not name makes the controller search for it at
  once; the offers appear in the snapshot and the pod is placed.
- When the quota is used up (429 `search_quota_exceeded` with `Retry-After`), no search is sent
  before `Retry-After`; the cluster keeps serving the last snapshot (a pod created meanwhile is
  admitted, scheduled and rented, the snapshot being older than the readers' age limit), and the
  staleness shows in all four places: the controller's and extender's metrics, the virtual node's
  `OfferSearchPaused` condition and an Event on it, the extender's `/readyz` reason, and
  `kube-vast status`. After `Retry-After` the searches resume and every place says so.
- A pod whose `vast.ai/disk` is under Vast's 8 GB minimum is refused at admission, naming it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster import create_namespace, webhook_serving_cert
from devcluster.components import Webhook, register_manifest
from devcluster.controller_stack import ControllerProcess, Extender, host_ip, live_instances, wait_until
from vastmarket.snapshot import SnapshotFile
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

NODE = "vast-gpu-node-market"
CLUSTER = "market01"
MAX_AGE = "6"  # the extender's and webhook's snapshot age limit: the pause outlasts it
PAUSE = 30.0   # the quota period the simulator starts when the test uses the quota up


@pytest.fixture(scope="module")
def stack(control_plane, kube_scheduler, tmp_path_factory):
    work = tmp_path_factory.mktemp("market-e2e")
    api = control_plane.api_client()
    ns = f"mkt-{uuid.uuid4().hex[:6]}"
    create_namespace(api, ns)
    create_namespace(api, "kube-vast-market")
    ip = host_ip()
    kubeconfig = control_plane.kubeconfig_for("admin", ["system:masters"])
    with SimulatorServer(seed=13, offers=1500, boot_seconds=(0.2, 0.5), host=ip, public_ip=ip) as sim:
        snapshot = work / "offers.json"
        ctl = ControllerProcess(work, kubeconfig=kubeconfig, sim_url=sim.url, snapshot=snapshot, node=NODE,
                                namespace="kube-vast-market", cluster_id=CLUSTER,
                                extra=("--poll-interval", "1", "--refresh-interval", "3"),
                                env={"VAST_GPU_TYPE": "RTX3060,RTX4090", "VAST_MAX_PRICE_PER_HOUR": "0.60"}).start()
        ext = hook = None
        registered: list[str] = []
        try:
            ctl.process.wait_until(lambda: snapshot.exists(), timeout=30, what="publish the offer snapshot")
            ext = Extender(work, snapshot, extra=("--virtual-node", NODE, "--max-snapshot-age", MAX_AGE)).start()
            kube_scheduler(ext.url)
            cert = webhook_serving_cert(work)
            hook = Webhook(work, snapshot, cert, extra=("--release-namespace", "kube-vast-market",
                                                        "--max-snapshot-age", MAX_AGE)).start()
            registered = register_manifest(api, url=f"{hook.url}/mutate", ca_pem=cert.ca_pem,
                                           release_namespace="kube-vast-market")
            core = client.CoreV1Api(api)

            def webhook_active():
                probe = gpu_pod("probe")
                return core.create_namespaced_pod(ns, probe, dry_run="All").spec.scheduler_name == "vast-scheduler"

            wait_until(webhook_active, timeout=30)
            wait_until(lambda: condition(core, "Ready") is not None and condition(core, "Ready").status == "True",
                       timeout=30)
            yield api, ns, sim, ctl, ext, kubeconfig, snapshot
        finally:
            for name in registered:
                client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(name)
            for component in (hook, ext):
                if component is not None:
                    component.stop()
            ctl.stop()


def gpu_pod(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"vast.ai/enabled": "true"}, "annotations": annotations or {}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": NODE}, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "ghcr.io/example/infer:1",
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


def condition(core: Any, kind: str) -> Any:
    nodes = core.list_node(field_selector=f"metadata.name={NODE}").items
    return next((c for c in (nodes[0].status.conditions or []) if c.type == kind), None) if nodes else None


def metric(url: str, name: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=3) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def readyz(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=3) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def status_text(kubeconfig: str, sim: SimulatorServer) -> str:
    done = subprocess.run([sys.executable, "-m", "kube_vast.cli", "status", "--kubeconfig", str(kubeconfig),
                           "--api-url", sim.url, "--cluster-id", CLUSTER], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def scheduled(core: Any, ns: str, name: str) -> Any:
    pod = core.read_namespaced_pod(name, ns)
    return pod if pod.spec.node_name == NODE else None


def test_a_pod_for_another_gpu_model_is_searched_for_at_once_and_placed(stack):
    api, ns, sim, ctl, ext, kubeconfig, snapshot = stack
    core = client.CoreV1Api(api)
    assert {o.gpu_name for o in SnapshotFile(snapshot).load().offers} <= {"RTX 3060", "RTX 4090"}
    core.create_namespaced_pod(ns, gpu_pod("wants-l4", {"vast.ai/gpu-type": "L4", "vast.ai/price-max": "1.50"}))
    wait_until(lambda: "L4" in {o.gpu_name for o in SnapshotFile(snapshot).load().offers}, timeout=60)
    pod = wait_until(lambda: scheduled(core, ns, "wants-l4"), timeout=60)
    assert pod.metadata.annotations.get("vast.ai/selection-error"), "admitted before its model was searched for"
    wait_until(lambda: any(i["gpu_name"] == "L4" for i in live_instances(sim, f"kv:{CLUSTER}:")), timeout=60)
    assert metric(f"http://127.0.0.1:{ctl.metrics_port}", "kube_vast_market_demand_pods") >= 1
    assert metric(f"http://127.0.0.1:{ctl.metrics_port}", "kube_vast_market_rows_total") > 0
    core.delete_namespaced_pod("wants-l4", ns)


def test_the_search_quota_pauses_searches_until_retry_after_while_the_cluster_serves_the_last_offers(stack):
    api, ns, sim, ctl, ext, kubeconfig, snapshot = stack
    core = client.CoreV1Api(api)
    metrics = f"http://127.0.0.1:{ctl.metrics_port}"
    served = SnapshotFile(snapshot).load()
    assert served.pause is None

    sim.search_limits.configure(quota_rows=10_000, quota_period=PAUSE)
    sim.search_limits.exhaust()
    period_ends = sim.state()["search"]["period_ends_at"]
    wait_until(lambda: sim.state()["search"]["refused"] == 1, timeout=30)
    calls = sim.state()["counters"]["calls"]["search"]

    # Staleness, in all four places.
    wait_until(lambda: metric(metrics, "kube_vast_market_search_paused") == 1.0, timeout=30)
    resume = metric(metrics, "kube_vast_market_search_resume_timestamp_seconds")
    assert resume is not None and resume >= period_ends - 1
    wait_until(lambda: metric(ext.url, "kube_vast_offer_search_paused") == 1.0, timeout=30)
    paused = wait_until(lambda: (c := condition(core, "OfferSearchPaused")) is not None and c.status == "True" and c,
                        timeout=30)
    assert paused.reason == "SearchQuotaExceeded" and "search quota" in paused.message
    events = wait_until(lambda: core.list_namespaced_event(
        "default", field_selector=f"involvedObject.name={NODE},reason=SearchQuotaExceeded").items, timeout=30)
    assert events[0].type == "Warning" and "no search before" in events[0].message
    wait_until(lambda: SnapshotFile(snapshot).load().pause is not None, timeout=30)
    code, ready = readyz(ext.url)
    assert code == 200 and ready["snapshot"] == "stale" and "search quota" in ready["reason"]
    text = status_text(kubeconfig, sim)
    assert f"Offer market ({NODE}): PAUSED (SearchQuotaExceeded)" in text

    # Serving from the last snapshot, older than the readers' age limit: a new pod is placed and rented.
    wait_until(lambda: time.time() - served.taken_at > float(MAX_AGE) + 1, timeout=30)
    core.create_namespaced_pod(ns, gpu_pod("during-pause"))
    pod = wait_until(lambda: scheduled(core, ns, "during-pause"), timeout=60)
    assert int(pod.metadata.annotations["vast.ai/offer-id"]) in {o.id for o in served.offers}
    wait_until(lambda: any((i["label"] or "").endswith(pod.metadata.uid) for i in live_instances(sim)), timeout=60)

    # No search before Retry-After: the refused one was the last until the period ends.
    while time.time() < period_ends - 0.5:
        state = sim.state()
        assert state["counters"]["calls"]["search"] == calls and state["search"]["refused"] == 1
        time.sleep(0.25)

    # Then the searches resume, and every place says so.
    wait_until(lambda: sim.state()["counters"]["answers"]["search"].get("200", 0) > 0
               and metric(metrics, "kube_vast_market_search_paused") == 0.0, timeout=60)
    assert sim.state()["search"]["refused"] == 1
    wait_until(lambda: condition(core, "OfferSearchPaused").status == "False", timeout=30)
    wait_until(lambda: SnapshotFile(snapshot).load().pause is None, timeout=30)
    wait_until(lambda: "reason" not in readyz(ext.url)[1] and readyz(ext.url)[0] == 200, timeout=30)
    assert "PAUSED" not in status_text(kubeconfig, sim)
    assert core.list_namespaced_event("default", field_selector=f"involvedObject.name={NODE},"
                                                                "reason=OfferSearchResumed").items
    core.delete_namespaced_pod("during-pause", ns)


def test_a_disk_under_vasts_minimum_is_refused_at_admission_naming_the_annotation(stack):
    api, ns, sim, ctl, ext, kubeconfig, snapshot = stack
    core = client.CoreV1Api(api)
    rentals = sim.state()["counters"]["rentals"]
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(ns, gpu_pod("tiny-disk", {"vast.ai/disk": "5"}))
    assert info.value.status == 400
    assert "vast.ai/disk: invalid value '5': expected a disk size of at least 8 GB" in info.value.body
    assert sim.state()["counters"]["rentals"] == rentals
