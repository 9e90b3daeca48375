"""The rendered RBAC grants each identity what its component calls, and no more.

What the controller calls is a table kept here, one entry per method of its Kubernetes gateway
(controller/kube.py) plus the few direct calls elsewhere in controller/; a test fails when the
gateway gains a method the table does not know. Then:

- the rendered roles grant nothing the table does not need (read from the manifests);
- the real kube-apiserver, with the rendered RBAC created for real in a throwaway release,
  allows every call of the table (SubjectAccessReview) and denies a sample of others;
- the controller's own gateway, authenticated as the chart's ServiceAccount, does its work
  (virtual node, leases, pods, EndpointSlices, Events);
- the real kube-scheduler, started from the rendered configuration as vast-scheduler's
  ServiceAccount, starts and takes its own Lease.
"""

from __future__ import annotations

import inspect
import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from controller.endpoints import desired_slice
from controller.kube import Forbidden, KubeGateway
from controller.leader import LeaderElector
from controller.main import LEASE_NAME, derive_cluster_id
from controller.node import NodeShape, VirtualNodeKeeper
from devcluster import create_namespace, wait_for
from devcluster.binaries import REPO_ROOT

from .conftest import EXISTING_SECRET
from .helm import Rendered

# Placeholders of the table, resolved for a release.
POD_NAMESPACE = "<the pod's namespace>"     # any namespace a pod on the virtual node lives in
ALL_NAMESPACES = "<all namespaces>"         # a list/watch across namespaces
RELEASE = "<release namespace>"
NODE_LEASES = "kube-node-lease"
NODE = "<each virtual node>"
LEADER_LEASE = LEASE_NAME


@dataclass(frozen=True)
class Access:
    """One kind of API request: ``verb`` on ``resource`` (``pods/status`` for a subresource) in
    ``group``; ``namespace`` None for a cluster-scoped resource; ``name`` None for any name."""

    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None
    name: str | None = None

    def resolve(self, *, release: str, pod_namespace: str, nodes: Iterable[str]) -> list[Access]:
        ns = {POD_NAMESPACE: pod_namespace, ALL_NAMESPACES: "", RELEASE: release}.get(self.namespace or "",
                                                                                    self.namespace)
        names = list(nodes) if self.name == NODE else [self.name]
        return [replace(self, namespace=ns, name=n) for n in names]

    def attributes(self) -> dict[str, str]:
        resource, _, sub = self.resource.partition("/")
        return {"verb": self.verb, "group": self.group, "resource": resource, "subresource": sub,
                "namespace": self.namespace or "", "name": self.name or ""}


def _pods(verb: str, resource: str = "pods", namespace: str = POD_NAMESPACE) -> Access:
    return Access(verb, resource, namespace=namespace)


def _lease(verb: str, namespace: str, name: str | None = None) -> Access:
    return Access(verb, "leases", "coordination.k8s.io", namespace, name)


def _slices(verb: str) -> Access:
    return Access(verb, "endpointslices", "discovery.k8s.io", POD_NAMESPACE)


# What each method of controller/kube.py's KubeGateway sends to the API server.
GATEWAY_CALLS: dict[str, tuple[Access, ...]] = {
    "list_pods": (_pods("list", namespace=ALL_NAMESPACES),),
    "watch_pods": (_pods("watch", namespace=ALL_NAMESPACES),),
    "get_pod": (_pods("get"),),
    "patch_pod": (_pods("patch"),),
    "patch_pod_status": (_pods("patch", "pods/status"),),
    "delete_pod": (_pods("delete"),),
    "get_configmap": (Access("get", "configmaps", namespace=POD_NAMESPACE),),
    "get_secret": (Access("get", "secrets", namespace=POD_NAMESPACE),),
    "list_services": (Access("list", "services", namespace=POD_NAMESPACE),),
    "list_endpoint_slices": (_slices("list"),),
    "apply_endpoint_slice": (_slices("create"), _slices("get"), _slices("update")),  # create, else replace
    "delete_endpoint_slice": (_slices("delete"),),
    "event": (Access("create", "events", namespace=POD_NAMESPACE), Access("patch", "events", namespace=POD_NAMESPACE)),
    "get_node": (Access("get", "nodes", name=NODE),),
    "create_node": (Access("create", "nodes"),),
    "patch_node": (Access("patch", "nodes", name=NODE),),
    "patch_node_status": (Access("patch", "nodes/status", name=NODE),),
    # the leader-election Lease (leader.py) and the virtual nodes' heartbeat Leases (node.py)
    "get_lease": (_lease("get", RELEASE, LEADER_LEASE), _lease("get", NODE_LEASES, NODE)),
    "create_lease": (_lease("create", RELEASE), _lease("create", NODE_LEASES)),
    "replace_lease": (_lease("update", RELEASE, LEADER_LEASE), _lease("update", NODE_LEASES, NODE)),
    # the kubelet API's authorizer (kubelet_auth.py), kubeletApi.authorization=webhook (the default)
    "review_access": (Access("create", "subjectaccessreviews", "authorization.k8s.io"),),
    # team budgets (budgets.py): every namespace's VastBudgets, and their status
    "list_vast_budgets": (Access("list", "vastbudgets", "vast.ai", ALL_NAMESPACES),),
    "patch_vast_budget_status": (Access("patch", "vastbudgets/status", "vast.ai", POD_NAMESPACE),),
}
# Gateway methods only the command line calls, with the user's own credentials, never the
# controller: they need no RBAC in the chart (the controller is denied "list nodes" below).
CLI_ONLY_CALLS = {"list_nodes"}  # kube_vast/status.py: the virtual nodes' market condition
# Calls made through the gateway's _call from elsewhere in controller/, by their description.
DIRECT_CALLS: dict[str, tuple[Access, ...]] = {
    "get namespace kube-system": (Access("get", "namespaces", name="kube-system"),),  # main.derive_cluster_id
}

# More than the controller needs: each must be denied.
CONTROLLER_DENIED = (
    Access("delete", "nodes", name=NODE), Access("delete", "nodes"), Access("update", "nodes", name=NODE),
    Access("list", "nodes"), Access("watch", "nodes"), Access("get", "nodes", name="a-real-node"),
    Access("patch", "nodes", name="a-real-node"), Access("patch", "nodes/status", name="a-real-node"),
    Access("list", "secrets", namespace=ALL_NAMESPACES), Access("list", "secrets", namespace=POD_NAMESPACE),
    Access("watch", "secrets", namespace=POD_NAMESPACE), Access("create", "secrets", namespace=POD_NAMESPACE),
    Access("list", "configmaps", namespace=POD_NAMESPACE), Access("update", "configmaps", namespace=POD_NAMESPACE),
    _pods("create"), _pods("update"), _pods("create", "pods/exec"), _pods("create", "pods/binding"),
    _pods("create", "pods/eviction"), _pods("update", "pods/status"),
    Access("delete", "events", namespace=POD_NAMESPACE), Access("list", "events", namespace=ALL_NAMESPACES),
    Access("create", "events", "events.k8s.io", POD_NAMESPACE),  # it writes core/v1 Events only
    Access("delete", "services", namespace=POD_NAMESPACE), Access("update", "services", namespace=POD_NAMESPACE),
    _lease("get", "kube-system", "kube-scheduler"), _lease("update", "kube-system", "kube-controller-manager"),
    _lease("update", NODE_LEASES, "a-real-node"), _lease("update", RELEASE, "another-lease"),
    _lease("delete", RELEASE, LEADER_LEASE), _lease("delete", NODE_LEASES, NODE),
    Access("get", "namespaces", name="default"), Access("list", "namespaces"),
    Access("create", "clusterrolebindings", "rbac.authorization.k8s.io"),
    Access("escalate", "clusterroles", "rbac.authorization.k8s.io"),
    Access("create", "mutatingwebhookconfigurations", "admissionregistration.k8s.io"),
    Access("impersonate", "serviceaccounts", namespace=POD_NAMESPACE),
    Access("create", "vastbudgets", "vast.ai", POD_NAMESPACE), Access("update", "vastbudgets", "vast.ai", POD_NAMESPACE),
    Access("delete", "vastbudgets", "vast.ai", POD_NAMESPACE),  # a controller that could raise a team's budget
)

SCHEDULER_LEASE = "<the scheduler's lease>"
# A sample of what vast-scheduler does (system:kube-scheduler, system:volume-scheduler, its Lease).
SCHEDULER_NEEDS = (
    _lease("get", RELEASE, SCHEDULER_LEASE), _lease("update", RELEASE, SCHEDULER_LEASE), _lease("create", RELEASE),
    Access("get", "configmaps", namespace="kube-system", name="extension-apiserver-authentication"),
    _pods("list", namespace=ALL_NAMESPACES), _pods("watch", namespace=ALL_NAMESPACES),
    _pods("create", "pods/binding"), _pods("patch", "pods/status"),
    Access("list", "nodes"), Access("watch", "nodes"),
    Access("create", "events", "events.k8s.io", POD_NAMESPACE),
    Access("list", "persistentvolumes"), Access("list", "storageclasses", "storage.k8s.io"),
    Access("patch", "persistentvolumeclaims", namespace=POD_NAMESPACE),
    Access("create", "tokenreviews", "authentication.k8s.io"),
    Access("create", "subjectaccessreviews", "authorization.k8s.io"),
)
SCHEDULER_DENIED = (
    _lease("update", "kube-system", "kube-controller-manager"), _lease("update", RELEASE, "another-lease"),
    _lease("delete", RELEASE, SCHEDULER_LEASE), _lease("update", RELEASE, LEADER_LEASE),
    Access("get", "secrets", namespace=POD_NAMESPACE), Access("list", "secrets", namespace=ALL_NAMESPACES),
    Access("get", "configmaps", namespace="kube-system", name="kube-proxy"),
    _pods("create"), Access("delete", "nodes"), Access("patch", "nodes", name="a-real-node"),
    Access("create", "mutatingwebhookconfigurations", "admissionregistration.k8s.io"),
)


def all_calls() -> tuple[Access, ...]:
    return tuple(a for calls in (*GATEWAY_CALLS.values(), *DIRECT_CALLS.values()) for a in calls)


# --- the table mirrors the gateway (no cluster needed) --------------------------------------------


def test_the_table_has_an_entry_for_every_method_of_the_kubernetes_gateway():
    methods = {name for name, _ in inspect.getmembers(KubeGateway, inspect.isfunction) if not name.startswith("_")}
    assert not CLI_ONLY_CALLS & set(GATEWAY_CALLS)
    assert methods == set(GATEWAY_CALLS) | CLI_ONLY_CALLS, (
        "controller/kube.py changed: update GATEWAY_CALLS here and the chart's RBAC "
        f"(new: {sorted(methods - set(GATEWAY_CALLS))}, gone: {sorted(set(GATEWAY_CALLS) - methods)})")


def test_the_controller_never_calls_the_command_lines_own_gateway_methods():
    sources = "\n".join(p.read_text() for p in (REPO_ROOT / "controller").glob("*.py"))
    assert not [m for m in CLI_ONLY_CALLS if f".{m}(" in sources]


def test_the_table_knows_every_direct_call_through_the_gateway_elsewhere_in_the_controller():
    direct: list[str] = []
    raw_client_uses = 0
    for path in (REPO_ROOT / "controller").glob("*.py"):
        if path.name == "kube.py":
            continue
        text = path.read_text()
        direct += re.findall(r"\._call\(\s*f?\"([^\"]+)\"", text)
        raw_client_uses += len(re.findall(r"\.(?:core|discovery|coordination)\.\w+", text))
    assert sorted(direct) == sorted(DIRECT_CALLS)
    # Each use of the client's API objects outside the gateway is one of those calls.
    assert raw_client_uses == len(direct)


# --- the rendered roles grant nothing more (read from the manifests) ------------------------------


def bound_rules(rendered: Rendered, service_account: str, namespace: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(namespace of the grant or None for cluster-wide, rule) of every role bound to the account."""
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    out = []
    for binding in rendered.of_kind("ClusterRoleBinding") + rendered.of_kind("RoleBinding"):
        if subject not in binding["subjects"]:
            continue
        ref = binding["roleRef"]
        where = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        roles = [r for r in rendered.of_kind(ref["kind"]) if r["metadata"]["name"] == ref["name"]
                 and r["metadata"].get("namespace") == (where if ref["kind"] == "Role" else None)]
        assert roles, f"{binding['metadata']['name']} refers to {ref['kind']} {ref['name']}, which the chart does not render"
        out += [(where, rule) for rule in roles[0]["rules"]]
    return out


@pytest.mark.parametrize("variant", ["existing-secret", "several-nodes", "tuned"])
def test_the_controllers_roles_grant_nothing_the_gateway_does_not_call(variant, render):
    from .conftest import VARIANTS

    rendered = render(variant, release="gpu", namespace="infra")
    fullname = "gpu-burst" if variant == "tuned" else "gpu-kube-vast"
    nodes = VARIANTS[variant].get("virtualNodes", ["vast-gpu-node-1"])
    needs = [a for access in all_calls() for a in access.resolve(release="infra", pod_namespace=POD_NAMESPACE,
                                                                   nodes=nodes)]
    rules = bound_rules(rendered, fullname, "infra")
    assert rules
    for where, rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    matching = [a for a in needs if (a.group, a.resource, a.verb) == (group, resource, verb)
                                and (a.namespace in (where, POD_NAMESPACE, "", None) if where
                                     else a.namespace in (POD_NAMESPACE, "", None))]
                    what = f"{verb} {group or 'core'}/{resource} in {where or 'every namespace'}"
                    assert matching, f"the chart grants {what}, which the controller never does"
                    names = rule.get("resourceNames")
                    if names:
                        assert set(names) <= {a.name for a in matching}, f"{what}: {names}"
                    else:
                        assert any(a.name is None for a in matching), \
                            f"{what} for every name, but the controller needs only {sorted({a.name for a in matching})}"
    # Only the Leases' grants are namespaced, each in its Lease's namespace.
    assert {where for where, _ in rules} == {None, "infra", NODE_LEASES}


# --- against the real API server -----------------------------------------------------------------


@dataclass
class Release:
    api: Any
    namespace: str
    pod_namespace: str
    nodes: list[str]
    rendered: Rendered
    controller_user: str
    scheduler_user: str
    scheduler_lease: str

    @staticmethod
    def groups(user: str) -> list[str]:
        namespace = user.split(":")[2]
        return ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]

    def resolve(self, accesses: Iterable[Access]) -> list[Access]:
        out = []
        for access in accesses:
            if access.name == SCHEDULER_LEASE:
                access = replace(access, name=self.scheduler_lease)
            out += access.resolve(release=self.namespace, pod_namespace=self.pod_namespace, nodes=self.nodes)
        return out

    def allowed(self, user: str, access: Access) -> bool:
        review = client.AuthorizationV1Api(self.api).create_subject_access_review({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": self.groups(user), "resourceAttributes": access.attributes()}})
        return bool(review.status.allowed)


RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


@pytest.fixture(scope="module")
def release(control_plane, render) -> Iterator[Release]:
    """The chart's RBAC created for real, in a throwaway namespace with its own virtual node names."""
    run = uuid.uuid4().hex[:6]
    # Short names: the scheduler's identity becomes a client certificate's CN (at most 64 bytes).
    release_name, namespace, pod_namespace = f"kube-vast-{run}", f"kv-{run}", f"kv-{run}-team"
    nodes = [f"kv-{run}-node-1", f"kv-{run}-node-2"]
    values = {**EXISTING_SECRET, "virtualNodes": nodes, "scheduler": {"name": f"kv-{run}-scheduler"}}
    rendered = render(values, release=release_name, namespace=namespace)
    api = control_plane.api_client()
    dynamic = DynamicClient(api)
    created: list[dict[str, Any]] = []
    create_namespace(api, namespace)
    create_namespace(api, pod_namespace)
    try:
        for kind in RBAC_KINDS:
            for doc in rendered.of_kind(kind):
                resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=kind)
                resource.create(body=doc, namespace=doc["metadata"].get("namespace"))
                created.append(doc)
        yield Release(api=api, namespace=namespace, pod_namespace=pod_namespace, nodes=nodes, rendered=rendered,
                      controller_user=f"system:serviceaccount:{namespace}:{release_name}",
                      scheduler_user=f"system:serviceaccount:{namespace}:{release_name}-scheduler",
                      scheduler_lease=f"{release_name}-scheduler")
    finally:
        core = client.CoreV1Api(api)
        coordination = client.CoordinationV1Api(api)
        for node in nodes:
            for delete in (lambda: core.delete_node(node),
                           lambda: coordination.delete_namespaced_lease(node, NODE_LEASES)):
                try:
                    delete()
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        for doc in reversed(created):
            if doc["metadata"].get("namespace") in (None, "kube-system", NODE_LEASES):
                resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
                resource.delete(name=doc["metadata"]["name"], namespace=doc["metadata"].get("namespace"))
        for ns in (namespace, pod_namespace):
            core.delete_namespace(ns)


@pytest.mark.cluster
def test_every_call_the_controller_makes_is_allowed(release):
    denied = [a for a in release.resolve(all_calls()) if not release.allowed(release.controller_user, a)]
    assert denied == []


@pytest.mark.cluster
def test_more_than_the_controller_needs_is_denied(release):
    allowed = [a for a in release.resolve(CONTROLLER_DENIED) if release.allowed(release.controller_user, a)]
    assert allowed == []


@pytest.mark.cluster
def test_vast_scheduler_may_schedule_and_hold_its_own_lease(release):
    denied = [a for a in release.resolve(SCHEDULER_NEEDS) if not release.allowed(release.scheduler_user, a)]
    assert denied == []


@pytest.mark.cluster
def test_vast_scheduler_may_not_do_more(release):
    allowed = [a for a in release.resolve(SCHEDULER_DENIED) if release.allowed(release.scheduler_user, a)]
    assert allowed == []


@pytest.mark.cluster
def test_the_controllers_gateway_does_its_work_as_the_charts_service_account(release, control_plane, caplog):
    caplog.set_level(logging.WARNING)
    admin = client.CoreV1Api(release.api)
    ns, node = release.pod_namespace, release.nodes[0]
    admin.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"k": "v"}})
    admin.create_namespaced_secret(ns, {"metadata": {"name": "sec"}, "stringData": {"k": "s"}})
    service = admin.create_namespaced_service(ns, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    admin.create_namespaced_pod(ns, {"metadata": {"name": "gpu", "labels": {"app": "web"}}, "spec": {
        "nodeName": node, "containers": [{"name": "c", "image": "example/web:1", "ports": [{"containerPort": 8080}]}]}})

    kube = KubeGateway(control_plane.api_client_for(release.controller_user, Release.groups(release.controller_user)),
                       host="rbac-test")
    assert len(derive_cluster_id(kube)) == 8
    # leader election and the virtual nodes, by the controller's own classes
    elector = LeaderElector(kube, namespace=release.namespace, name=LEASE_NAME, identity="rbac-test")
    assert elector.step() and elector.step()  # create, then renew (replace)
    keeper = VirtualNodeKeeper(kube, tuple(release.nodes), NodeShape(), vast_healthy=lambda: (True, "ok"))
    keeper.ensure_nodes()
    keeper.heartbeat()
    keeper.heartbeat()
    for name in release.nodes:
        ready = [c for c in admin.read_node_status(name).status.conditions if c.type == "Ready"]
        assert ready[0].status == "True"
        assert client.CoordinationV1Api(release.api).read_namespaced_lease(name, NODE_LEASES).spec.holder_identity == name
    # pods on the virtual node, their configuration, Services, EndpointSlices, Events
    pods, version = kube.list_pods(field_selector=f"spec.nodeName={node}")
    assert [p["metadata"]["name"] for p in pods] == ["gpu"]
    watched = list(kube.watch_pods(field_selector=f"spec.nodeName={node}", resource_version=version, timeout_seconds=1))
    assert watched == [] or all(kind in ("ADDED", "MODIFIED", "BOOKMARK") for kind, _ in watched)
    pod = kube.patch_pod(ns, "gpu", {"metadata": {"annotations": {"vast.ai/instance-id": "42"}}})
    kube.patch_pod_status(ns, "gpu", {"hostIP": "203.0.113.7"})
    assert kube.get_pod(ns, "gpu")["status"]["hostIP"] == "203.0.113.7"
    assert kube.get_configmap(ns, "cfg") == {"k": "v"} and kube.get_secret(ns, "sec") == {"k": "s"}
    [svc] = kube.list_services(ns)
    body = desired_slice(svc, pod, public_ip="203.0.113.7", host_ports={8080: 40001}, ready=True, node_name=node)
    assert body is not None and svc["metadata"]["uid"] == service.metadata.uid
    kube.apply_endpoint_slice(ns, body)
    kube.apply_endpoint_slice(ns, body)  # exists: get and replace
    [stored] = kube.list_endpoint_slices(ns, f"vast.ai/pod-uid={pod['metadata']['uid']}")
    kube.delete_endpoint_slice(ns, stored["metadata"]["name"])
    kube.event(pod, "Rented", "instance 42 rented")
    kube.event(pod, "Rented", "instance 42 rented")  # the same again: counted (patch)
    events = client.CoreV1Api(release.api).list_namespaced_event(ns).items
    assert [(e.reason, e.count) for e in events if e.involved_object.name == "gpu"] == [("Rented", 2)]
    kube.delete_pod(ns, "gpu", uid=pod["metadata"]["uid"])
    assert kube.get_pod(ns, "gpu") is None or kube.get_pod(ns, "gpu")["metadata"].get("deletionTimestamp")
    elector.release()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    # and what it does not need is refused
    with pytest.raises(Forbidden):
        kube.get_node("a-real-node")
    with pytest.raises(Forbidden):
        kube.get_lease("kube-system", "kube-scheduler")


@pytest.mark.cluster
def test_the_real_kube_scheduler_runs_from_the_rendered_config_as_vast_scheduler_and_takes_its_lease(
        release, control_plane):
    fullname = release.scheduler_lease.removesuffix("-scheduler")
    config = yaml.safe_load(release.rendered.one("ConfigMap", f"{fullname}-scheduler")["data"]["scheduler-config.yaml"])
    # In a pod the client connection is in-cluster with the ServiceAccount's token; here a client
    # certificate carries the same identity (user and groups), so RBAC decides exactly the same.
    config["clientConnection"] = {"kubeconfig": str(control_plane.kubeconfig_for(
        release.scheduler_user, Release.groups(release.scheduler_user)))}
    scheduler = control_plane.start_scheduler(config=config)
    try:
        coordination = client.CoordinationV1Api(release.api)

        def holder() -> str | None:
            lease = coordination.read_namespaced_lease(release.scheduler_lease, release.namespace)
            return lease.spec.holder_identity

        assert wait_for(holder, timeout=30, description="vast-scheduler to take its Lease")

        def renew_time() -> Any:
            return coordination.read_namespaced_lease(release.scheduler_lease, release.namespace).spec.renew_time

        first = renew_time()
        assert wait_for(lambda: renew_time() != first, timeout=60, description="a renewal of the Lease")
        log = scheduler.log_tail(400)
        assert "forbidden" not in log.lower(), log
        assert scheduler.running()
    finally:
        scheduler.stop()
