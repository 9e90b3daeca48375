"""Real workloads as their projects write them (tests/cluster/manifests/real-workloads.yaml), applied
with the real ``kubectl apply`` to an opted-in namespace of the real control plane: kube-apiserver,
kube-controller-manager (Jobs, Deployments), the webhook registered from its shipped manifest,
vast-scheduler with the extender, the controller, and the simulator as Vast.

Each end state is checked, and the simulator's ledger: one rental per run of a Job, one per pod
otherwise, none for the pod without a GPU, never two for one pod, nothing live afterwards."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from controller.endpoints import MANAGED_BY
from devcluster import create_namespace, find_binaries
from devcluster.controller_stack import host_ip, live_instances, wait_until
from devcluster.full_stack import vast_stack
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

MANIFEST = Path(__file__).parent / "manifests" / "real-workloads.yaml"
NODE = "vast-gpu-node-real"
CLUSTER = "realwl01"


class World:
    def __init__(self, api: Any, sim: SimulatorServer, ns: str, kubeconfig: Path) -> None:
        self.api, self.sim, self.ns, self.kubeconfig = api, sim, ns, kubeconfig
        self.core, self.batch = client.CoreV1Api(api), client.BatchV1Api(api)

    def pod(self, name: str) -> Any:
        return self.core.read_namespaced_pod(name, self.ns)

    def pods_of_job(self, job: str) -> list[Any]:
        return self.core.list_namespaced_pod(self.ns, label_selector=f"job-name={job}").items

    def instances(self) -> list[dict[str, Any]]:
        """Every instance ever rented for this cluster, destroyed ones included."""
        return [i for i in self.sim.state()["instances"] if (i["label"] or "").startswith(f"kv:{CLUSTER}:")]

    def rentals_for(self, pod: Any) -> list[dict[str, Any]]:
        return [i for i in self.instances() if i["label"] == f"kv:{CLUSTER}:{pod.metadata.uid}"]

    def job_condition(self, name: str) -> str | None:
        conditions = self.batch.read_namespaced_job_status(name, self.ns).status.conditions or []
        for c in conditions:
            if c.type in ("Complete", "Failed") and c.status == "True":
                return str(c.type)
        return None


def kubectl(kubeconfig: Path, *args: str) -> str:
    done = subprocess.run([str(find_binaries().kubectl), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


@pytest.fixture(scope="module")
def world(control_plane, controller_manager, kube_scheduler, tmp_path_factory):
    work = tmp_path_factory.mktemp("real-workloads")
    api = control_plane.api_client()
    run = uuid.uuid4().hex[:6]
    ns, release = f"ml-{run}", f"kube-vast-{run}"
    create_namespace(api, ns, labels={"vast.ai/enabled": "true"})
    create_namespace(api, release)
    core = client.CoreV1Api(api)
    # The manifests' pods tolerate the virtual node but need no node selector: a node another
    # test module left behind (a fake GPU node, whose capacity nothing runs) would win them.
    for stale in core.list_node().items:
        core.delete_node(stale.metadata.name)
    ip = host_ip()
    try:
        with SimulatorServer(seed=31, offers=800, boot_seconds=(0.2, 0.5), host=ip, public_ip=ip) as sim, \
                vast_stack(control_plane, kube_scheduler, work, sim=sim, node=NODE, cluster_id=CLUSTER,
                           release_namespace=release, probe_namespace=ns):
            kubectl(control_plane.kubeconfig_path, "apply", "-n", ns, "-f", str(MANIFEST))
            yield World(api, sim, ns, control_plane.kubeconfig_path)
            # Deleting the namespace's workloads: the controller stops and destroys every instance.
            client.BatchV1Api(api).delete_collection_namespaced_job(ns, propagation_policy="Background")
            client.AppsV1Api(api).delete_collection_namespaced_deployment(ns, propagation_policy="Background")
            core.delete_collection_namespaced_pod(ns)
            wait_until(lambda: not core.list_namespaced_pod(ns).items, timeout=120)
            wait_until(lambda: not live_instances(sim, f"kv:{CLUSTER}:"), timeout=60)
    finally:
        for name in (ns, release):
            try:
                core.delete_namespace(name)
            except ApiException:
                pass
        for runtime in ("nvidia", "gvisor"):  # cluster-wide, applied with the manifests
            try:
                client.NodeV1Api(api).delete_runtime_class(runtime)
            except ApiException:
                pass


def test_a_job_that_exits_0_completes_with_one_rental(world):
    wait_until(lambda: world.job_condition("trl-sft"), timeout=120)
    assert world.job_condition("trl-sft") == "Complete"
    (pod,) = world.pods_of_job("trl-sft")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert len(world.rentals_for(pod)) == 1


def test_a_job_that_exits_3_fails_after_backoff_limit_plus_one_runs_each_its_own_rental(world):
    wait_until(lambda: world.job_condition("cuda-vectoradd"), timeout=180)
    assert world.job_condition("cuda-vectoradd") == "Failed"
    pods = world.pods_of_job("cuda-vectoradd")
    assert len(pods) == 2  # backoffLimit 1: the first run and one retry
    for pod in pods:
        assert pod.status.phase == "Failed"
        assert pod.status.container_statuses[0].state.terminated.exit_code == 3
        assert len(world.rentals_for(pod)) == 1


def test_a_service_targeting_an_undeclared_port_is_served_on_the_instance(world):
    def serving_pod() -> Any:
        pods = [p for p in world.core.list_namespaced_pod(world.ns, label_selector="app=tgi").items if ready(p)]
        return pods[0] if pods else None

    pod = wait_until(serving_pod, timeout=120)
    (instance,) = world.rentals_for(pod)
    host_port = int(instance["ports"]["8080/tcp"][0]["HostPort"])

    def ready_endpoint() -> tuple[str, int] | None:
        slices = client.DiscoveryV1Api(world.api).list_namespaced_endpoint_slice(
            world.ns, label_selector=f"kubernetes.io/service-name=tgi,endpointslice.kubernetes.io/managed-by={MANAGED_BY}")
        for s in slices.items:
            for e in s.endpoints or []:
                if e.conditions.ready:
                    return e.addresses[0], s.ports[0].port
        return None

    address, port = wait_until(ready_endpoint, timeout=60)
    assert port == host_port and address == pod.status.host_ip
    with urllib.request.urlopen(f"http://{address}:{port}/generate", timeout=5) as reply:
        assert reply.status == 200


def test_a_command_replaces_the_images_entrypoint(world):
    pod = wait_until(lambda: (p := world.pod("vllm")) and ready(p) and p, timeout=120)
    (instance,) = world.rentals_for(pod)
    assert instance["onstart"] == "/bin/sh"
    assert instance["args"] == ["-c", "vllm serve facebook/opt-125m --port 8000 --gpu-memory-utilization 0.9"]


def test_a_pod_written_for_a_gke_l4_node_runs_on_an_l4(world):
    pod = wait_until(lambda: (p := world.pod("l4-inference")) and p.status.phase == "Running" and p, timeout=120)
    assert pod.spec.node_name == NODE
    (instance,) = world.rentals_for(pod)
    assert instance["gpu_name"] == "L4"
    assert pod.metadata.annotations["vast.ai/offer-gpu"].replace(" ", "") == "L4"


def test_configmap_files_reach_the_instance_before_the_entrypoint(world, tmp_path):
    pod = wait_until(lambda: (p := world.pod("triton")) and ready(p) and p, timeout=120)
    (instance,) = world.rentals_for(pod)
    # What Vast was asked to run: onstart /bin/sh, args -c SCRIPT kube-vast tritonserver ...
    assert instance["onstart"] == "/bin/sh" and instance["args"][0] == "-c"
    assert instance["args"][-2:] == ["tritonserver", "--model-repository=/models"]
    # Run it as the container would, with the env Vast holds for the instance (the account
    # owner's view, extra_env), under a root prefix, and a stand-in tritonserver on the PATH that
    # prints the model config it finds and the arguments it got.
    with urllib.request.urlopen(f"{world.sim.url}/api/v0/instances/{instance['id']}/", timeout=5) as reply:
        extra_env = json.load(reply)["instances"]["extra_env"]
    env = {k: v for k, v in extra_env if not k.startswith("-")}
    root, bin_dir = tmp_path / "root", tmp_path / "bin"
    bin_dir.mkdir()
    server = bin_dir / "tritonserver"
    server.write_text('#!/bin/sh\ncat "$TEST_ROOT/models/densenet_onnx/config.pbtxt"; printf "arg:%s\\n" "$@"\n')
    server.chmod(0o755)
    done = subprocess.run([instance["onstart"], *instance["args"]], capture_output=True, text=True, timeout=30,
                          env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin", "KUBE_VAST_FILES_ROOT": str(root),
                               "TEST_ROOT": str(root)})
    assert done.returncode == 0, done.stderr
    config = world.core.read_namespaced_config_map("triton-models", world.ns).data["config.pbtxt"]
    assert done.stdout == config + "arg:--model-repository=/models\n"


def test_a_pod_naming_nvidias_runtime_class_runs_on_vast(world):
    pod = wait_until(lambda: (p := world.pod("nbody-gpu-benchmark")) and p.status.phase == "Running" and p,
                     timeout=120)
    assert pod.spec.node_name == NODE and pod.spec.runtime_class_name == "nvidia"
    (instance,) = world.rentals_for(pod)
    assert instance["args"] == ["nbody", "-gpu", "-benchmark"]


SANDBOXED = """\
# A GPU pod in GKE Sandbox (gVisor) as GKE's docs shape it: an isolation a Vast host does not give.
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: gvisor
handler: runsc
---
apiVersion: v1
kind: Pod
metadata:
  name: sandboxed-inference
spec:
  runtimeClassName: gvisor
  nodeSelector:
    cloud.google.com/gke-accelerator: nvidia-tesla-t4
  containers:
    - name: inference
      image: nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0
      resources:
        limits:
          nvidia.com/gpu: 1
"""


def test_a_pod_asking_for_a_sandbox_runtime_is_refused_at_apply_with_the_reason(world, tmp_path):
    manifest = tmp_path / "sandboxed.yaml"
    manifest.write_text(SANDBOXED)
    done = subprocess.run([str(find_binaries().kubectl), "--kubeconfig", str(world.kubeconfig), "apply", "-n",
                           world.ns, "-f", str(manifest)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "this pod cannot run on Vast: runtimeClassName 'gvisor' asks for a container runtime a Vast " \
           "instance does not have" in done.stderr, done.stderr
    assert "sandboxed-inference" not in {p.metadata.name for p in world.core.list_namespaced_pod(world.ns).items}


def test_a_pod_without_a_gpu_is_left_alone_and_never_rented(world):
    # By now every GPU workload above has been rented for; the plain pod was applied with them.
    wait_until(lambda: len({i["label"] for i in world.instances()}) >= 7, timeout=120)
    pod = world.pod("plain")
    assert pod.spec.scheduler_name == "default-scheduler"
    assert not any((t.key or "").startswith("virtual-kubelet.io") for t in pod.spec.tolerations or [])
    assert not any(k.startswith("vast.ai/") for k in (pod.metadata.annotations or {}))
    assert pod.spec.node_name != NODE
    assert world.rentals_for(pod) == []


def test_one_rental_per_pod_run_and_never_two_for_one_pod(world):
    expected = {"trl-sft": 1, "cuda-vectoradd": 2}
    for job, runs in expected.items():
        wait_until(lambda: world.job_condition(job), timeout=180)
        assert len(world.pods_of_job(job)) == runs
    pods = {p.metadata.uid: p.metadata.name for p in world.core.list_namespaced_pod(world.ns).items}
    per_pod = Counter(i["label"].rsplit(":", 1)[1] for i in world.instances())
    assert set(per_pod) <= set(pods), "an instance for a pod that is not in the namespace"
    assert max(per_pod.values()) == 1, per_pod
    # trl-sft 1 + cuda-vectoradd 2 + tgi + vllm + l4-inference + triton + nbody; none for plain.
    assert sum(per_pod.values()) == 8, {pods[uid]: n for uid, n in per_pod.items()}
