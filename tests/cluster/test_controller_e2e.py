"""The controller end to end: real apiserver, controller-manager (Deployments, ReplicaSets,
garbage collection), the admission webhook registered from its shipped manifest, kube-scheduler
with the extender, and the simulator as Vast. A Deployment
of a GPU speech service and its two Services → pods on the virtual node, instances running in
the simulator, EndpointSlices pointing at the instance address:<host port> (this machine's
own address: the API server refuses loopback endpoints), requests answered there; pods
deleted → instances destroyed; scaled to zero → nothing left."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from controller.endpoints import MANAGED_BY
from devcluster import create_namespace
from devcluster.controller_stack import host_ip, http_get, live_instances, wait_until
from devcluster.full_stack import vast_stack
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

NODE = "vast-gpu-node-e2e"
CLUSTER = "e2etest1"


@pytest.fixture(scope="module")
def stack(control_plane, controller_manager, kube_scheduler, tmp_path_factory):
    work = tmp_path_factory.mktemp("controller-e2e")
    api = control_plane.api_client()
    ns = f"ctl-{uuid.uuid4().hex[:6]}"
    create_namespace(api, ns)
    create_namespace(api, "kube-vast-e2e")
    ip = host_ip()
    with SimulatorServer(seed=9, offers=800, boot_seconds=(0.3, 0.8), host=ip, public_ip=ip) as sim, \
            vast_stack(control_plane, kube_scheduler, work, sim=sim, node=NODE, cluster_id=CLUSTER,
                       release_namespace="kube-vast-e2e", probe_namespace=ns) as running:
        yield api, ns, sim, running.ctl


def speech_deployment(name: str, replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                # Opted in by label; the webhook adds the offer, the toleration and the scheduler name.
                "metadata": {"labels": {"app": name, "vast.ai/enabled": "true"},
                             "annotations": {"vast.ai/gpu-type": "RTX3060", "vast.ai/gpu-fallbacks": "RTX4090,A4000",
                                             "vast.ai/price-max": "0.60"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": NODE},
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "speech", "image": "ghcr.io/example/speech:1.0",
                        "ports": [{"name": "tts", "containerPort": 8000}, {"name": "stt", "containerPort": 8001}],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "tts"}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }


def service(name: str, app: str, port: int, target) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": port, "targetPort": target}]}}


def pods_of(core, ns, app):
    return [p for p in core.list_namespaced_pod(ns, label_selector=f"app={app}").items
            if p.metadata.deletion_timestamp is None]


def our_slices(api, ns, service_name):
    return [s for s in client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        ns, label_selector=f"kubernetes.io/service-name={service_name},endpointslice.kubernetes.io/managed-by={MANAGED_BY}").items]


def ready_endpoints(api, ns, service_name):
    out = []
    for s in our_slices(api, ns, service_name):
        for e in s.endpoints or []:
            if e.conditions and e.conditions.ready:
                out.extend((addr, p.port) for addr in e.addresses for p in (s.ports or []))
    return sorted(out)


def test_a_gpu_deployment_is_served_by_simulator_instances_through_its_services(stack):
    api, ns, sim, ctl = stack
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespaced_service(ns, service("june-tts", "speech", 8000, "tts"))
    core.create_namespaced_service(ns, service("june-stt", "speech", 8001, 8001))
    apps.create_namespaced_deployment(ns, speech_deployment("speech", 2))

    pods = wait_until(lambda: (ps := pods_of(core, ns, "speech")) and len(ps) == 2
                      and all(p.spec.node_name == NODE for p in ps) and ps, timeout=60)
    wait_until(lambda: len(live_instances(sim, f"kv:{CLUSTER}:")) == 2, timeout=60)
    ready = wait_until(lambda: all(any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
                                   for p in pods_of(core, ns, "speech")) and pods_of(core, ns, "speech"), timeout=60)
    for pod in ready:
        assert pod.spec.scheduler_name == "vast-scheduler" and pod.metadata.annotations["vast.ai/offer-id"]
        assert pod.status.phase == "Running" and pod.status.host_ip == host_ip() and not pod.status.pod_ip
        assert pod.metadata.annotations["vast.ai/instance-id"].isdigit()
        assert "vast.ai/instance-cleanup" in pod.metadata.finalizers
    tts = wait_until(lambda: len(e := ready_endpoints(api, ns, "june-tts")) == 2 and e, timeout=60)
    stt = wait_until(lambda: len(e := ready_endpoints(api, ns, "june-stt")) == 2 and e, timeout=60)
    instances = {i["id"]: i for i in live_instances(sim, f"kv:{CLUSTER}:")}
    mapped_tts = sorted(int(i["ports"]["8000/tcp"][0]["HostPort"]) for i in instances.values())
    mapped_stt = sorted(int(i["ports"]["8001/tcp"][0]["HostPort"]) for i in instances.values())
    assert tts == [(host_ip(), p) for p in mapped_tts]
    assert stt == [(host_ip(), p) for p in mapped_stt]
    for address, port in tts + stt:
        assert http_get(address, port, "/healthz") == 200
    assert "[VAST] Selected instance" in ctl.log() and "june-tts" in ctl.log()


def test_deleting_a_pod_frees_its_instance_and_endpoints_and_the_replacement_gets_its_own(stack):
    api, ns, sim, _ = stack
    core = client.CoreV1Api(api)
    victim = pods_of(core, ns, "speech")[0]
    victim_instance = int(victim.metadata.annotations["vast.ai/instance-id"])
    core.delete_namespaced_pod(victim.metadata.name, ns)
    wait_until(lambda: next(i for i in sim.state()["instances"] if i["id"] == victim_instance)["destroyed"], timeout=30)

    def gone():
        try:
            core.read_namespaced_pod(victim.metadata.name, ns)
            return False
        except client.ApiException as exc:
            return exc.status == 404

    wait_until(gone, timeout=30)
    assert all(s.metadata.labels.get("vast.ai/pod-uid") != victim.metadata.uid for s in our_slices(api, ns, "june-tts"))
    wait_until(lambda: len(ready_endpoints(api, ns, "june-tts")) == 2, timeout=60)
    live = live_instances(sim, f"kv:{CLUSTER}:")
    assert len(live) == 2 and victim_instance not in {i["id"] for i in live}


def test_scaling_to_zero_destroys_every_instance(stack):
    api, ns, sim, _ = stack
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    apps.patch_namespaced_deployment_scale("speech", ns, {"spec": {"replicas": 0}})
    wait_until(lambda: not live_instances(sim, f"kv:{CLUSTER}:"), timeout=60)
    wait_until(lambda: not core.list_namespaced_pod(ns, label_selector="app=speech").items, timeout=60)
    wait_until(lambda: not our_slices(api, ns, "june-tts") and not our_slices(api, ns, "june-stt"), timeout=30)
    assert sim.state()["counters"]["live_instances"] == 0
