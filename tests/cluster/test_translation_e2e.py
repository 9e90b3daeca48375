"""How a pod is translated into a Vast instance, end to end: the real API server and
controller-manager, the controller, and the simulator as Vast.

- A Deployment whose Service targets a port the container never declares (LocalAI/TGI: the
  server listens on ``$PORT``, no containerPorts) gets that port mapped and served; a Service
  created after the rental gets a Warning and ``explain`` says why it is not served.
- ``command`` on an image with an ENTRYPOINT replaces it: the instance's ``onstart``.
- ConfigMap and Secret volumes travel in the instance's env and become files when its entrypoint
  (the start script) runs; no Secret value shows in a log, an Event or the ledger. A missing
  ConfigMap keeps the pod Pending with an Event and rents nothing.
- A pod whose webhook offer another pod's launch holds is rented elsewhere, and the pod, the log
  line and ``kube-vast status`` say which offer and why.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.endpoints import MANAGED_BY
from controller.kube import KubeGateway
from devcluster import create_namespace
from devcluster.controller_stack import ControllerProcess, host_ip, http_get, live_instances, wait_until
from kube_vast import explain, status
from vastmarket.client import ApiKey, VastClient
from vastmarket.config import SelectionConfig
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

NODE = "vast-gpu-node-translate"
CLUSTER = "translat"
SECRET = "hf_TRANSLATION_SECRET_91f3"
GPU = {"limits": {"nvidia.com/gpu": "1"}}


@pytest.fixture(scope="module")
def stack(control_plane, controller_manager, tmp_path_factory):
    work = tmp_path_factory.mktemp("translation")
    api = control_plane.api_client()
    create_namespace(api, "kube-vast-translate")
    ns = f"tr-{uuid.uuid4().hex[:6]}"
    create_namespace(api, ns)
    ip = host_ip()
    with SimulatorServer(seed=33, offers=800, boot_seconds=(0.2, 0.5), host=ip, public_ip=ip) as sim:
        ctl = ControllerProcess(work, kubeconfig=control_plane.kubeconfig_for("admin", ["system:masters"]),
                                sim_url=sim.url, snapshot=work / "offers.json", node=NODE,
                                namespace="kube-vast-translate", cluster_id=CLUSTER).start()
        try:
            ctl.process.wait_until(lambda: (work / "offers.json").exists(), timeout=30, what="publish the offer snapshot")
            yield api, ns, sim, ctl
        finally:
            core = client.CoreV1Api(api)
            client.AppsV1Api(api).delete_collection_namespaced_deployment(ns)
            core.delete_collection_namespaced_pod(ns)
            wait_until(lambda: not core.list_namespaced_pod(ns).items, timeout=60)
            ctl.stop()


def pod_spec(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "containers": [{"name": "main", "resources": GPU, **container}], **spec}


def bare_pod(name: str, container: dict[str, Any], *, annotations: dict[str, str] | None = None,
             **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations or {}},
            "spec": pod_spec(container, **spec)}


def read(api, ns, name):
    return client.CoreV1Api(api).read_namespaced_pod(name, ns)


def is_ready(p) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))


def served(api, ns, name):
    return wait_until(lambda: (p := read(api, ns, name)) and is_ready(p) and p, timeout=90)


def events(api, ns, name) -> list[Any]:
    return [e for e in client.CoreV1Api(api).list_namespaced_event(ns).items if e.involved_object.name == name]


def vast_instance(sim: SimulatorServer, instance_id: int) -> dict[str, Any]:
    """The instance as the Vast API shows its owner (env values included)."""
    with urllib.request.urlopen(f"{sim.url}/api/v0/instances/{instance_id}/", timeout=5) as reply:
        return json.loads(reply.read())["instances"]  # type: ignore[no-any-return]


def ready_endpoints(api, ns, service):
    out = []
    for s in client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            ns, label_selector=f"kubernetes.io/service-name={service},endpointslice.kubernetes.io/managed-by={MANAGED_BY}").items:
        for e in s.endpoints or []:
            if e.conditions and e.conditions.ready:
                out.extend((address, p.port) for address in e.addresses for p in (s.ports or []))
    return out


def test_a_service_port_the_container_never_declares_is_mapped_and_served(stack):
    api, ns, sim, _ = stack
    core = client.CoreV1Api(api)
    core.create_namespaced_service(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "localai"},
                                        "spec": {"selector": {"app": "localai"},
                                                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    client.AppsV1Api(api).create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "localai"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "localai"}},
                 "template": {"metadata": {"labels": {"app": "localai"}},
                              "spec": pod_spec({"image": "localai/localai:latest-gpu-nvidia-cuda-12",
                                                "env": [{"name": "PORT", "value": "8080"}]})}}})
    [address] = wait_until(lambda: ready_endpoints(api, ns, "localai"), timeout=90)
    [pod] = [p for p in core.list_namespaced_pod(ns, label_selector="app=localai").items]
    instance = vast_instance(sim, int(pod.metadata.annotations["vast.ai/instance-id"]))
    assert "-p 8080:8080" in dict(instance["extra_env"])
    assert address == (host_ip(), int(instance["ports"]["8080/tcp"][0]["HostPort"]))
    assert http_get(*address, "/v1/models") == 200

    # A Service created after the rental: its port cannot be added to the running instance.
    core.create_namespaced_service(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "metrics"},
                                        "spec": {"selector": {"app": "localai"},
                                                 "ports": [{"name": "m", "port": 9090, "targetPort": 9090}]}})
    warning = wait_until(lambda: [e for e in events(api, ns, pod.metadata.name)
                                  if e.reason == "ServicePortNotServed"], timeout=30)
    assert warning[0].type == "Warning" and "Service metrics port 9090" in warning[0].message
    kube = KubeGateway(api)
    found, pod_events = explain.gather(kube, ns, pod.metadata.name)
    report = explain.explain_pod(found, pod_events, config=SelectionConfig(), offers=None,
                                 services=explain.gather_services(kube, ns))
    rows = {(s["service"], s["port"]): s for s in report["services"]}
    assert rows[("localai", 80)]["host_port"] == address[1]
    assert "Vast cannot add a port to a running instance" in rows[("metrics", 9090)]["problem"]
    assert "NOT SERVED" in "\n".join(explain.render_text(report))


def test_a_command_replaces_the_image_entrypoint(stack):
    api, ns, sim, ctl = stack
    client.CoreV1Api(api).create_namespaced_pod(ns, bare_pod("vllm", {
        "image": "vllm/vllm-openai:v0.6.3",  # ENTRYPOINT python3 -m vllm.entrypoints.openai.api_server
        "command": ["/bin/sh", "-c"], "args": ["exec vllm serve $(MODEL) --port 8000"],
        "env": [{"name": "MODEL", "value": "Qwen/Qwen2.5-0.5B"}],
        "ports": [{"containerPort": 8000}]}))
    pod = served(api, ns, "vllm")
    [record] = [i for i in live_instances(sim, f"kv:{CLUSTER}:") if i["id"] == int(pod.metadata.annotations["vast.ai/instance-id"])]
    assert record["onstart"] == "/bin/sh"
    assert record["args"] == ["-c", "exec vllm serve Qwen/Qwen2.5-0.5B --port 8000"]


def test_config_map_and_secret_volumes_are_files_when_the_entrypoint_runs_and_secrets_stay_hidden(stack, tmp_path):
    api, ns, sim, ctl = stack
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "app"},
                                           "data": {"config.yaml": "model: whisper\nworkers: 2\n"}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "creds"}, "stringData": {"token": SECRET}})
    core.create_namespaced_pod(ns, bare_pod("files", {
        "image": "ghcr.io/example/speech:1.0", "command": ["python", "-m", "speech.serve"],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/speech"},
                         {"name": "creds", "mountPath": "/var/run/creds", "readOnly": True},
                         {"name": "shm", "mountPath": "/dev/shm"}]},
        volumes=[{"name": "config", "configMap": {"name": "app"}},
                 {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                 {"name": "shm", "emptyDir": {"medium": "Memory"}}]))
    pod = served(api, ns, "files")
    instance = vast_instance(sim, int(pod.metadata.annotations["vast.ai/instance-id"]))
    assert instance["onstart"] == "/bin/sh" and instance["image_args"][-3:] == ["python", "-m", "speech.serve"]

    # Run the instance's entrypoint as Vast would, with its env, against a temporary root.
    env = {k: v for k, v in instance["extra_env"] if not k.startswith("-")}
    script = instance["image_args"][:instance["image_args"].index("kube-vast") + 1]
    done = subprocess.run([instance["onstart"], *script, "true"], capture_output=True, text=True, timeout=30,
                          env={**env, "PATH": os.environ["PATH"], "KUBE_VAST_FILES_ROOT": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "etc/speech/config.yaml").read_text() == "model: whisper\nworkers: 2\n"
    assert (tmp_path / "var/run/creds/token").read_text() == SECRET
    assert oct((tmp_path / "var/run/creds/token").stat().st_mode & 0o777) == oct(0o400)

    assert SECRET not in ctl.log()
    assert SECRET not in json.dumps(sim.state())
    assert not [e for e in core.list_namespaced_event(ns).items if SECRET in (e.message or "")]
    assert SECRET not in json.dumps(api.sanitize_for_serialization(read(api, ns, "files")))


def test_a_missing_config_map_for_a_volume_keeps_the_pod_pending_and_rents_nothing(stack):
    api, ns, sim, _ = stack
    client.CoreV1Api(api).create_namespaced_pod(ns, bare_pod("nocm", {
        "image": "ghcr.io/example/speech:1.0", "command": ["serve"],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/speech"}]},
        volumes=[{"name": "config", "configMap": {"name": "absent"}}]))
    wait_until(lambda: [e for e in events(api, ns, "nocm") if e.reason == "CreateContainerConfigError"], timeout=30)
    pod = read(api, ns, "nocm")
    assert pod.status.phase == "Pending" and "vast.ai/instance-id" not in (pod.metadata.annotations or {})
    assert not [i for i in live_instances(sim, f"kv:{CLUSTER}:{pod.metadata.uid}")]


def test_a_pod_rented_elsewhere_than_its_webhook_offer_says_which_and_why(stack):
    api, ns, sim, ctl = stack
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, bare_pod("first", {"image": "ghcr.io/example/speech:1.0",
                                                      "ports": [{"containerPort": 8000}]}))
    first = served(api, ns, "first")
    taken = first.metadata.annotations["vast.ai/rented-offer-id"]
    # As the webhook would have written it: the same offer, which the first pod's launch holds.
    core.create_namespaced_pod(ns, bare_pod("second", {
        "image": "ghcr.io/example/speech:1.0", "ports": [{"containerPort": 8000}]},
        annotations={"vast.ai/offer-id": taken}))
    pod = served(api, ns, "second")
    a = pod.metadata.annotations
    rented = a["vast.ai/rented-offer-id"]
    assert rented != taken and a["vast.ai/offer-id"] == taken
    assert a["vast.ai/rented-offer-reason"] == f"offer {taken} is held by another pod's launch (for up to 300 s)"
    assert a["vast.ai/rented-offer-gpu"] and a["vast.ai/rented-offer-price"]
    assert f"pod={ns}/second [VAST] Selected instance {rented} - launching..." in ctl.log()
    renting = [e.message for e in events(api, ns, "second") if e.reason == "Renting"]
    assert renting and f"not the webhook's offer {taken}" in renting[-1]

    vast = VastClient(sim.url, ApiKey("unused"))
    try:
        instances = vast.list_instances()
        pods = [api.sanitize_for_serialization(p) for p in core.list_namespaced_pod(ns).items]
        fleet = status.fleet_status(instances, pods, CLUSTER)
    finally:
        vast.close()
    [row] = [r for r in fleet.rows if r.pod == f"{ns}/second"]
    assert (row.offer, row.webhook_offer) == (int(rented), int(taken))
    assert f"not the webhook's offer {taken}" in "\n".join(status.render_text(fleet, source="sim"))
