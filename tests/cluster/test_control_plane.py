"""Smoke tests of the test control plane itself: the apiserver stores objects, the controller
manager runs controllers, the real kube-scheduler binds pods, RBAC is enforced, versions are pinned."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.harness import (
    SCHEDULER_NAME,
    create_namespace,
    create_ready_node,
    find_binaries,
    pod_scheduled_condition,
    wait_for,
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
