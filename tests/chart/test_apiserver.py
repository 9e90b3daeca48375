"""Every variant's manifests created with server-side dry run on the harness's real kube-apiserver,
with strict field validation: the API server validates them for real (schemas, unknown or
duplicate fields, enums, selectors, RBAC references) and stores nothing. cert-manager's kinds are
rendered but not sent (its CRDs are not installed on the test control plane)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from devcluster import create_namespace

from .conftest import VARIANTS
from .helm import CHART, HelmError
from .helm import run as helm_run

pytestmark = pytest.mark.cluster

CERT_MANAGER_KINDS = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "ClusterIssuer"),
                      ("cert-manager.io/v1", "Certificate")}


@pytest.fixture(scope="module")
def dry_run_target(control_plane):
    """A real namespace for the release (a namespaced create needs its namespace to exist)."""
    api = control_plane.api_client()
    namespace = f"chart-dry-{uuid.uuid4().hex[:6]}"
    create_namespace(api, namespace)
    try:
        yield api, DynamicClient(api), namespace
    finally:
        client.CoreV1Api(api).delete_namespace(namespace)


def create_dry_run(dynamic: DynamicClient, doc: dict[str, Any]) -> Any:
    resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    namespace = doc["metadata"].get("namespace") if resource.namespaced else None
    if resource.namespaced:
        assert namespace, f"{doc['kind']} {doc['metadata']['name']} has no namespace"
    return resource.create(body=doc, namespace=namespace, dry_run="All",
                           query_params=[("fieldValidation", "Strict")])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_manifest_of_the_variant_passes_the_api_servers_validation(variant, render, dry_run_target):
    api, dynamic, namespace = dry_run_target
    rendered = render(variant, release=f"dry-{variant}", namespace=namespace)
    sent = []
    for doc in rendered.docs:
        if (doc["apiVersion"], doc["kind"]) in CERT_MANAGER_KINDS:
            continue
        try:
            created = create_dry_run(dynamic, doc)
        except ApiException as exc:
            message = json.loads(exc.body).get("message", exc.body) if exc.body else exc.reason
            pytest.fail(f"{variant}: {doc['kind']} {doc['metadata']['name']} refused: {message}", pytrace=False)
        assert created.metadata.name == doc["metadata"]["name"]
        sent.append(doc["kind"])
    assert {"Deployment", "Service", "MutatingWebhookConfiguration", "ClusterRole", "Role",
            "PodDisruptionBudget", "ConfigMap"} <= set(sent)
    # Nothing was stored.
    apps = client.AppsV1Api(api)
    assert apps.list_namespaced_deployment(namespace).items == []


def test_the_api_server_keeps_the_webhook_settings_as_rendered(render, dry_run_target):
    _, dynamic, namespace = dry_run_target
    hook = render("tuned", release="dry-hook", namespace=namespace).one("MutatingWebhookConfiguration")
    stored = create_dry_run(dynamic, hook).to_dict()
    assert [w["failurePolicy"] for w in stored["webhooks"]] == ["Fail"] * 4
    assert [w["sideEffects"] for w in stored["webhooks"]] == ["None"] * 4
    assert [w["clientConfig"]["service"]["name"] for w in stored["webhooks"]] == ["gpu-burst-webhook"] * 4
    # The workload webhooks' CEL compiles in the API server and is kept as rendered.
    assert [[c["name"] for c in w.get("matchConditions") or []] for w in stored["webhooks"]] == \
        [[], [], ["template-opted-in"], ["template-not-labelled"]]


def test_a_manifest_with_an_unknown_field_is_refused_so_the_check_has_teeth(render, dry_run_target):
    _, dynamic, namespace = dry_run_target
    service = render("existing-secret", release="dry-teeth", namespace=namespace).one("Service", "dry-teeth-kube-vast-extender")
    broken = json.loads(json.dumps(service))
    broken["spec"]["portz"] = broken["spec"].pop("ports")
    with pytest.raises(ApiException) as refused:
        create_dry_run(dynamic, broken)
    assert refused.value.status in (400, 422) and "portz" in refused.value.body


def test_install_prints_how_to_check_it_and_an_upgrade_keeps_the_generated_certificate(control_plane, values_dir):
    """A real ``helm install`` and ``helm upgrade`` against the test API server (nothing runs: there
    is no kubelet): the generated webhook certificate is reused through ``lookup``, the caBundle
    always matches it, and it is regenerated when an upgrade finds it within renewBeforeDays."""
    run_id = uuid.uuid4().hex[:6]
    release, namespace = f"kube-vast-{run_id}", f"kv-install-{run_id}"
    nodes = [f"kv-{run_id}-gpu-1"]
    values_file = values_dir / f"install-{run_id}.json"
    values = {"simulator": {"enabled": True}, "virtualNodes": nodes}
    values_file.write_text(json.dumps(values))
    kubeconfig = control_plane.kubeconfig_path
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    admission = client.AdmissionregistrationV1Api(api)

    def ca_now() -> tuple[str, set[str]]:
        secret = core.read_namespaced_secret(f"{release}-webhook-tls", namespace)
        hook = admission.read_mutating_webhook_configuration(f"{release}-webhook")
        return secret.data["ca.crt"], {w.client_config.ca_bundle for w in hook.webhooks}

    def upgrade(*extra: str) -> None:
        helm_run(["upgrade", release, str(CHART), "-n", namespace, "--values", str(values_file), *extra],
                 kubeconfig=kubeconfig)

    try:
        out = helm_run(["install", release, str(CHART), "-n", namespace, "--create-namespace",
                        "--values", str(values_file)], kubeconfig=kubeconfig)
        assert f"kubectl get node {nodes[0]}" in out
        assert 'vast.ai/enabled: "true"' in out and "get endpointslices -l kubernetes.io/service-name=" in out
        first, bundles = ca_now()
        assert bundles == {first}
        upgrade("--set", "selection.max_price_per_hour=0.7")
        assert ca_now() == (first, {first})
        upgrade("--set", "webhook.tls.generated.renewBeforeDays=4000")  # > the validity: due now
        renewed, bundles = ca_now()
        assert renewed != first and bundles == {renewed}
    finally:
        try:
            helm_run(["uninstall", release, "-n", namespace], kubeconfig=kubeconfig)
        except HelmError:
            pass
        try:
            core.delete_namespace(namespace)
        except ApiException:
            pass
    assert not [h for h in admission.list_mutating_webhook_configuration().items
                if h.metadata.name == f"{release}-webhook"]


@pytest.fixture(scope="module")
def restricted_namespace(control_plane):
    """A namespace enforcing the "restricted" Pod Security Standard."""
    api = control_plane.api_client()
    namespace = f"chart-psa-{uuid.uuid4().hex[:6]}"
    create_namespace(api, namespace, labels={"pod-security.kubernetes.io/enforce": "restricted",
                                             "pod-security.kubernetes.io/enforce-version": "latest"})
    try:
        yield api, namespace
    finally:
        client.CoreV1Api(api).delete_namespace(namespace)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_pod_meets_the_restricted_pod_security_standard(variant, render, restricted_namespace):
    """Pods made from each Deployment's template, created (dry run) where the API server enforces
    the restricted profile: it refuses any pod that could run as root, escalate, keep a capability
    or lack a seccomp profile."""
    api, namespace = restricted_namespace
    rendered = render(variant, release=f"psa-{variant}", namespace=namespace)
    core = client.CoreV1Api(api)
    for account in rendered.of_kind("ServiceAccount"):  # a pod's ServiceAccount must exist
        try:
            core.create_namespaced_service_account(namespace, account)
        except ApiException as exc:
            if exc.status != 409:
                raise
    for deployment in rendered.of_kind("Deployment"):
        template = deployment["spec"]["template"]
        spec = {k: v for k, v in template["spec"].items() if k != "priorityClassName"}  # a cluster's own object
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": spec,
               "metadata": {"name": deployment["metadata"]["name"], "labels": template["metadata"]["labels"]}}
        try:
            core.create_namespaced_pod(namespace, pod, dry_run="All", field_validation="Strict")
        except ApiException as exc:
            pytest.fail(f"{variant}: a pod of {deployment['metadata']['name']} is refused: "
                        f"{json.loads(exc.body).get('message', exc.body)}", pytrace=False)


def test_the_restricted_namespace_does_refuse_a_pod_that_may_escalate(render, restricted_namespace):
    api, namespace = restricted_namespace
    template = render("simulator").one("Deployment", "kube-vast-simulator")["spec"]["template"]
    spec = json.loads(json.dumps(template["spec"]))
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(api).create_namespaced_pod(namespace, {"metadata": {"name": "escalates"}, "spec": spec},
                                                     dry_run="All")
    assert refused.value.status == 403 and "allowPrivilegeEscalation" in refused.value.body
