"""`kubectl logs` and `kubectl exec` of a Vast pod with the real kubectl, through the real API server,
to the controller's kubelet API on the virtual node's InternalIP (this machine's address) and the
port it advertises, backed by the simulator's instance log. The API server presents its
--kubelet-client-certificate (signed by the cluster CA, bound to system:kubelet-api-admin); the
controller checks it and asks a SubjectAccessReview."""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
import uuid
from typing import Any

import pytest
from kubernetes import client

from controller.reconciler import A_INSTANCE
from devcluster import create_namespace, find_binaries, running_in_ci
from devcluster.controller_stack import ControllerProcess, host_ip, wait_until
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

CONTAINER = "speech"


def kubectl_path() -> str:
    missing = find_binaries().missing(["kubectl"])
    if missing:
        message = f"kubectl missing: {missing[0]}; build it with tools/build-control-plane.sh"
        if running_in_ci():
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    return str(find_binaries().kubectl)


def speech_pod(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                     "containers": [{"name": CONTAINER, "image": "ghcr.io/example/speech:1.0",
                                     "command": ["python", "-m", "speech.serve"], "args": ["--port=8000"],
                                     "ports": [{"containerPort": 8000}],
                                     "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8000},
                                                        "periodSeconds": 1},
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


@pytest.fixture(scope="module")
def world(control_plane, tmp_path_factory):
    kubectl = kubectl_path()
    work = tmp_path_factory.mktemp("kubectl-logs")
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    run = uuid.uuid4().hex[:6]
    ns, system, node = f"logs-{run}", f"logs-{run}-system", f"vast-logs-{run}"
    create_namespace(api, ns)
    create_namespace(api, system)
    # A node left by an older version: a Hostname address that the API server would look up in DNS.
    core.create_node({"metadata": {"name": node}})
    core.patch_node_status(node, {"status": {"addresses": [{"type": "Hostname", "address": "vast"}]}})
    ip = host_ip()
    with SimulatorServer(seed=41, offers=300, boot_seconds=(0.2, 0.4), host=ip, public_ip=ip) as sim:
        ctl = ControllerProcess(work, kubeconfig=control_plane.kubeconfig_for("admin", ["system:masters"]),
                                sim_url=sim.url, snapshot=work / "offers.json", node=node, namespace=system,
                                cluster_id=f"logs{run}", kubelet_client_ca=control_plane.ca_file).start()
        try:
            core.create_namespaced_pod(ns, speech_pod("june", node))

            def ready_instance() -> int | None:
                pod = core.read_namespaced_pod("june", ns)
                ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
                instance = (pod.metadata.annotations or {}).get(A_INSTANCE)
                return int(instance) if ready and instance else None

            instance_id = wait_until(ready_instance, timeout=90)
            env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig_path)}
            yield {"kubectl": kubectl, "env": env, "api": api, "core": core, "ns": ns, "node": node, "sim": sim,
                   "ctl": ctl, "instance": instance_id, "ip": ip, "cp": control_plane}
        finally:
            ctl.stop()
            for p in core.list_namespaced_pod(ns).items:  # no controller any more: drop finalizers
                core.patch_namespaced_pod(p.metadata.name, ns, {"metadata": {"finalizers": None}})
            core.delete_namespace(ns)
            core.delete_node(node)


def kubectl(world: dict[str, Any], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([world["kubectl"], "-n", world["ns"], *args], env=world["env"], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_the_virtual_node_advertises_only_an_internal_ip_and_the_kubelet_port(world):
    status = world["core"].read_node_status(world["node"]).status
    port = int(world["ctl"].env["KUBE_VAST_KUBELET_PORT"])
    assert [(a.type, a.address) for a in status.addresses] == [("InternalIP", world["ip"])]
    assert status.daemon_endpoints.kubelet_endpoint.port == port


def test_kubectl_logs_prints_the_instance_log(world):
    done = kubectl(world, "logs", "june")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"[vastsim] instance {world['instance']} started ghcr.io/example/speech:1.0"
    assert lines[1] == "[vastsim] command: python -m speech.serve --port=8000"
    assert any(line.endswith('"GET /healthz HTTP/1.1" 200 -') for line in lines), "the readiness checks"


def test_kubectl_logs_tail_prints_the_last_lines(world):
    world["sim"].market.append_log(world["instance"], ["epoch 1 loss 0.50", "epoch 2 loss 0.25", "done"])
    done = kubectl(world, "logs", "june", "--tail=2")
    assert (done.returncode, done.stdout) == (0, "epoch 2 loss 0.25\ndone\n"), done.stderr


def test_kubectl_logs_follow_streams_new_lines_until_kubectl_is_stopped(world):
    follow = subprocess.Popen([world["kubectl"], "-n", world["ns"], "logs", "-f", "june", "--tail=1"],
                              env=world["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = follow.stdout.readline()
        assert first and first.endswith("\n")
        world["sim"].market.append_log(world["instance"], ["follow one", "follow two"])
        seen: list[str] = []
        while "follow two\n" not in seen and len(seen) < 1000:  # health check lines come too
            seen.append(follow.stdout.readline())
        assert seen[-2:] == ["follow one\n", "follow two\n"]
        wait_until(lambda: "kube_vast_kubelet_log_streams 1.0" in world["ctl"].metrics(), timeout=10)
    finally:
        follow.terminate()
        assert follow.wait(timeout=10) is not None
    # The controller stops reading the Vast log for it: the stream ends once kubectl is gone.
    wait_until(lambda: "kube_vast_kubelet_log_streams 0.0" in world["ctl"].metrics(), timeout=20)


def test_kubectl_exec_prints_that_exec_is_not_supported_on_vast(world):
    done = kubectl(world, "exec", "june", "--", "ls")
    assert done.returncode != 0
    assert f"exec is not supported on Vast instances (pod {world['ns']}/june)" in done.stderr
    assert "read its output with kubectl logs" in done.stderr
    assert "no such host" not in done.stderr


def test_kubectl_logs_previous_says_vast_keeps_one_log(world):
    done = kubectl(world, "logs", "june", "--previous")
    assert done.returncode != 0
    assert 'previous terminated container "speech" in pod "june" not found' in done.stderr


def test_the_node_proxy_reaches_the_same_log(world):
    done = subprocess.run([world["kubectl"], "get", "--raw",
                           f"/api/v1/nodes/{world['node']}/proxy/containerLogs/{world['ns']}/june/{CONTAINER}"
                           "?tailLines=1"], env=world["env"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.count("\n") == 1, done.stderr


def test_a_caller_the_cluster_does_not_allow_gets_403_and_one_without_a_certificate_401(world):
    port = int(world["ctl"].env["KUBE_VAST_KUBELET_PORT"])
    mallory = world["cp"].client_cert_for("mallory", ["developers"])

    def status_for(cert: Any) -> tuple[int, str]:
        context = ssl._create_unverified_context()
        if cert is not None:
            context.load_cert_chain(str(cert.cert_file), str(cert.key_file))
        conn = http.client.HTTPSConnection(world["ip"], port, context=context, timeout=10)
        try:
            conn.request("GET", f"/containerLogs/{world['ns']}/june/{CONTAINER}")
            reply = conn.getresponse()
            return reply.status, reply.read().decode()
        finally:
            conn.close()

    status, body = status_for(mallory)
    assert status == 403 and "Forbidden (user=mallory, verb=get, resource=nodes, subresource=proxy" in body
    assert status_for(None)[0] == 401


def test_kubectl_port_forward_prints_that_it_is_not_supported_on_vast(world):
    done = kubectl(world, "port-forward", "pod/june", ":8000", timeout=60)
    assert done.returncode != 0
    assert f"port-forward is not supported on Vast instances (pod {world['ns']}/june)" in done.stderr
    assert "through the pod's Services" in done.stderr
