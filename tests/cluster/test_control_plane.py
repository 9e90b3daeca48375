"""Smoke tests of the test control plane itself: the apiserver stores objects, the controller
manager runs controllers, the real kube-scheduler binds pods, RBAC is enforced, versions are pinned."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster import (
    SCHEDULER_NAME,
    create_namespace,
    create_ready_node,
    find_binaries,
    pod_scheduled_condition,
    register_mutating_webhook,
    wait_for,
    webhook_serving_cert,
)

pytestmark = pytest.mark.cluster


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _pod(name: str, *, scheduler_name: str | None = None, node_selector: dict[str, str] | None = None,
         gpus: int = 0) -> dict:
    container: dict = {"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    spec: dict = {"containers": [container]}
    if scheduler_name:
        spec["schedulerName"] = scheduler_name
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@contextlib.contextmanager
def _https_json_server(tmp_path, handle: Callable[[str, Any], Any]) -> Iterator[tuple[str, bytes]]:
    """An HTTPS server on 127.0.0.1 answering POSTed JSON with ``handle(path, body)``;
    yields (base URL, CA PEM)."""
    cert = webhook_serving_cert(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            out = json.dumps(handle(self.path, body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert_file, cert.key_file)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}", cert.ca_pem
    finally:
        server.shutdown()
        server.server_close()


def test_creating_a_namespace_a_pod_and_a_service_works(control_plane):
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    ns = _name("smoke")
    create_namespace(api, ns)

    core.create_namespaced_pod(ns, _pod("web"))
    svc = core.create_namespaced_service(ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })

    pod = core.read_namespaced_pod("web", ns)
    assert pod.status.phase == "Pending"
    assert pod.spec.service_account_name == "default"  # ServiceAccount admission ran
    assert svc.spec.cluster_ip.startswith("10.96.")    # allocated from --service-cluster-ip-range
    assert [n.metadata.name for n in core.list_namespace().items if n.metadata.name == ns] == [ns]


def test_a_deployment_yields_a_replicaset_and_pods_when_the_controller_manager_runs(
    control_plane, controller_manager
):
    api = control_plane.api_client()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    ns = _name("deploy")
    create_namespace(api, ns)
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": _pod("x")["spec"]},
        },
    })

    rs = wait_for(lambda: apps.list_namespaced_replica_set(ns).items, timeout=60,
                  description="the Deployment's ReplicaSet")
    assert rs[0].metadata.owner_references[0].kind == "Deployment"
    pods = wait_for(lambda: (p := core.list_namespaced_pod(ns, label_selector="app=web").items)
                    and len(p) == 2 and p, timeout=60, description="2 pods of the ReplicaSet")
    assert {p.metadata.owner_references[0].name for p in pods} == {rs[0].metadata.name}

    # garbage collector: deleting the Deployment removes its ReplicaSet and pods
    apps.delete_namespaced_deployment("web", ns, propagation_policy="Foreground")
    wait_for(lambda: not apps.list_namespaced_replica_set(ns).items, timeout=60,
             description="the ReplicaSet to be garbage-collected")


def test_the_real_scheduler_binds_a_vast_scheduler_pod_to_a_matching_ready_node_and_leaves_an_unmatched_one_pending(
    control_plane, kube_scheduler
):
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    kube_scheduler(extender_url=None)
    ns = _name("sched")
    create_namespace(api, ns)
    pool = _name("pool")
    node = _name("gpu-node")
    create_ready_node(api, node, labels={"kube-vast.test/pool": pool}, capacity={"nvidia.com/gpu": "2"})

    core.create_namespaced_pod(ns, _pod("fits", scheduler_name=SCHEDULER_NAME,
                                        node_selector={"kube-vast.test/pool": pool}, gpus=1))
    core.create_namespaced_pod(ns, _pod("nowhere", scheduler_name=SCHEDULER_NAME,
                                        node_selector={"kube-vast.test/pool": "no-such-pool"}))

    bound = wait_for(lambda: core.read_namespaced_pod("fits", ns).spec.node_name, timeout=60,
                     description="pod 'fits' to be bound")
    assert bound == node

    def unschedulable():
        cond = pod_scheduled_condition(core.read_namespaced_pod("nowhere", ns))
        return cond is not None and cond.status == "False" and cond.reason == "Unschedulable" and cond

    cond = wait_for(unschedulable, timeout=60, description="pod 'nowhere' to be reported Unschedulable")
    assert "node(s) didn't match Pod's node affinity/selector" in cond.message
    assert core.read_namespaced_pod("nowhere", ns).spec.node_name is None


def test_rbac_denies_an_identity_without_permission_and_allows_it_after_a_rolebinding(control_plane):
    admin = control_plane.api_client()
    ns = _name("rbac")
    create_namespace(admin, ns)
    user = _name("alice")
    alice = client.CoreV1Api(control_plane.api_client_for(user, ["kube-vast:testers"]))

    with pytest.raises(ApiException) as denied:
        alice.list_namespaced_config_map(ns)
    assert denied.value.status == 403

    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(ns, {
        "metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    })
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "alice-reads-cm"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    })

    # RBAC is evaluated from an informer cache: wait for the binding to take effect.
    wait_for(lambda: alice.list_namespaced_config_map(ns) is not None, timeout=30,
             description="the RoleBinding to allow listing configmaps")
    with pytest.raises(ApiException) as still_denied:
        alice.list_namespaced_secret(ns)
    assert still_denied.value.status == 403


def test_kube_apiserver_version_prints_the_pinned_version(control_plane):
    b = find_binaries()
    out = subprocess.run([str(b.kube_apiserver), "--version"], capture_output=True, text=True,
                         timeout=30, check=True).stdout.strip()
    assert out == f"Kubernetes {b.kubernetes_version}"
    version = client.VersionApi(control_plane.api_client()).get_code()
    assert version.git_version == b.kubernetes_version
    assert (version.major, version.minor) == ("1", b.kubernetes_version.split(".")[1])


def test_the_scheduler_calls_an_extender_at_the_url_the_test_gives(control_plane, kube_scheduler, tmp_path):
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    ns, pool = _name("ext"), _name("pool")
    create_namespace(api, ns)
    rejected, accepted = _name("rejected"), _name("accepted")
    for node in (rejected, accepted):
        create_ready_node(api, node, labels={"kube-vast.test/pool": pool})
    calls: list[dict] = []

    def extender(path: str, args: dict) -> dict:
        calls.append({"path": path, "pod": args["Pod"]["metadata"]["name"], "nodes": args["NodeNames"]})
        names = args["NodeNames"] or []
        return {"NodeNames": [n for n in names if n != rejected],
                "FailedNodes": {rejected: "rejected by the test extender"} if rejected in names else {},
                "FailedAndUnresolvableNodes": {}, "Error": ""}

    base = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "profiles": [{"schedulerName": SCHEDULER_NAME}],
        "extenders": [{"urlPrefix": "https://replaced.invalid/scheduler", "filterVerb": "filter",
                       "nodeCacheCapable": True, "enableHTTPS": True,
                       "tlsConfig": {"caFile": "/nonexistent/ca.pem"},
                       "managedResources": [{"name": "nvidia.com/gpu", "ignoredByScheduler": False}]}],
    }
    with _https_json_server(tmp_path, extender) as (url, ca_pem):
        sched = kube_scheduler(f"{url}/scheduler", extender_ca_pem=ca_pem, base=base)
        assert sched.config["extenders"][0]["urlPrefix"] == f"{url}/scheduler"
        core.create_namespaced_pod(ns, _pod("gpu", scheduler_name=SCHEDULER_NAME,
                                            node_selector={"kube-vast.test/pool": pool}, gpus=1))
        bound = wait_for(lambda: core.read_namespaced_pod("gpu", ns).spec.node_name, timeout=60,
                         description="the extender-filtered pod to be bound")
    assert bound == accepted
    assert calls and calls[0]["path"] == "/scheduler/filter" and calls[0]["pod"] == "gpu"
    assert sorted(calls[0]["nodes"]) == sorted([rejected, accepted])
    kube_scheduler(extender_url=None)  # back to the plain scheduler for later tests


def test_a_mutating_webhook_at_127_0_0_1_with_a_ca_bundle_mutates_pods(control_plane, tmp_path):
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    adm = client.AdmissionregistrationV1Api(api)
    ns = _name("hook")
    create_namespace(api, ns)
    seen: list[dict] = []

    def webhook(path: str, review: dict) -> dict:
        req = review["request"]
        seen.append({"path": path, "operation": req["operation"], "namespace": req["namespace"]})
        patch = [{"op": "add", "path": "/metadata/labels", "value": {"kube-vast.test/mutated": "yes"}}]
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": req["uid"], "allowed": True, "patchType": "JSONPatch",
            "patch": base64.b64encode(json.dumps(patch).encode()).decode()}}

    with _https_json_server(tmp_path, webhook) as (url, ca_pem):
        name = f"{ns}.mutate.kube-vast.test"
        register_mutating_webhook(
            api, name=name, url=f"{url}/mutate", ca_pem=ca_pem,
            namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": ns}})
        try:
            # The apiserver loads webhook configurations asynchronously: probe with dry-run creates.
            def mutated() -> bool:
                pod = core.create_namespaced_pod(ns, _pod("probe"), dry_run="All")
                return (pod.metadata.labels or {}).get("kube-vast.test/mutated") == "yes"

            wait_for(mutated, timeout=30, description="the webhook to be active")
            pod = core.create_namespaced_pod(ns, _pod("real"))
        finally:
            adm.delete_mutating_webhook_configuration(name)
    assert pod.metadata.labels == {"kube-vast.test/mutated": "yes"}
    assert seen[-1] == {"path": "/mutate?timeout=5s", "operation": "CREATE", "namespace": ns}
