"""The admission webhook with the real kube-apiserver: ``kube-vast webhook`` as a gunicorn HTTPS
process, registered from the repository's own webhooks/mutating-webhook-configuration.yaml (only
the clientConfig and the release namespace substituted), the simulator behind the offer snapshot."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster.components import MANIFEST, Webhook, publish_snapshot, register_manifest
from devcluster import create_namespace, wait_for, webhook_serving_cert
from vastmarket.errors import RequirementError
from vastmarket.requirements import parse_overrides
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

TOLERATION = {"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "vast", "effect": "NoSchedule"}
POD_LABEL_WEBHOOK = "pod-label.webhook.kube-vast.io"
OFFER_KEYS = {"vast.ai/offer-id", "vast.ai/offer-score", "vast.ai/offer-price", "vast.ai/offer-gpu",
              "vast.ai/offer-location", "vast.ai/offer-reliability", "vast.ai/selected-at", "vast.ai/selection"}


def gpu_pod(*, name: str | None = None, labels=None, annotations=None, containers=1) -> dict:
    meta = {"labels": dict(labels or {}), "annotations": dict(annotations or {})}
    meta.update({"name": name} if name else {"generateName": "speech-"})
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"containers": [
            {"name": f"app{i}", "image": "ghcr.io/example/speech:1.0", "ports": [{"containerPort": 8000 + i}],
             "resources": {"limits": {"nvidia.com/gpu": "1"}}} for i in range(containers)]},
    }


OPTED_IN = {"vast.ai/enabled": "true"}
BUDGET_3060 = {"vast.ai/gpu-type": "RTX3060", "vast.ai/price-max": "0.50"}


class Stack:
    def __init__(self, api, webhook: Webhook, plain: str, team: str, release: str, offers: dict) -> None:
        self.api, self.webhook, self.offers = api, webhook, offers
        self.plain, self.team, self.release = plain, team, release
        self.core = client.CoreV1Api(api)

    def requests(self, **labels: str) -> float:
        return self.webhook.metric("kube_vast_webhook_requests_total", **labels)

    def selections(self) -> float:
        return self.webhook.metric("kube_vast_webhook_selections_total")

    def wait_until_active(self, namespace: str, labels: dict) -> None:
        """The apiserver picks new webhook configurations up asynchronously: dry-run until mutated."""
        def mutated() -> bool:
            pod = self.core.create_namespaced_pod(namespace, gpu_pod(labels=labels), dry_run="All")
            return "vast.ai/offer-id" in (pod.metadata.annotations or {})
        wait_for(mutated, timeout=30, description=f"the webhook to be active in {namespace}")


@pytest.fixture(scope="module")
def stack(control_plane, tmp_path_factory):
    work = tmp_path_factory.mktemp("webhook-e2e")
    run = uuid.uuid4().hex[:6]
    plain, team, release = f"wh-{run}", f"wh-{run}-team", f"wh-{run}-release"
    api = control_plane.api_client()
    admission = client.AdmissionregistrationV1Api(api)
    registered: list[str] = []
    with SimulatorServer(seed=5, offers=1500, boot_seconds=(0.05, 0.05)) as sim:
        snapshot = work / "offers.json"
        poller = publish_snapshot(sim, snapshot)
        offers = {o.id: o for o in poller.latest.offers}
        cert = webhook_serving_cert(work)
        hook = Webhook(work, snapshot, cert, extra=("--release-namespace", release)).start()
        try:
            create_namespace(api, plain)
            create_namespace(api, team, labels=OPTED_IN)
            create_namespace(api, release)
            registered = register_manifest(api, url=f"{hook.url}/mutate", ca_pem=cert.ca_pem,
                                           release_namespace=release)
            s = Stack(api, hook, plain, team, release, offers)
            s.wait_until_active(plain, OPTED_IN)
            s.wait_until_active(team, {})
            yield s
        finally:
            for name in registered:  # never leave a webhook behind for other tests' pods
                admission.delete_mutating_webhook_configuration(name)
            core = client.CoreV1Api(api)
            for ns in (plain, team, release):
                core.delete_namespace(ns)
            core.delete_collection_namespaced_pod("kube-system", label_selector=f"kube-vast.test/run={run}")
            hook.stop()


def stored(stack: Stack, namespace: str, name: str):
    return stack.core.read_namespaced_pod(name, namespace)


# (a) -------------------------------------------------------------------------------------------

def test_an_opted_in_gpu_pod_is_stored_with_the_offer_annotations_toleration_and_scheduler_name(stack):
    before = stack.selections()
    created = stack.core.create_namespaced_pod(stack.plain, gpu_pod(labels=OPTED_IN, annotations=BUDGET_3060))
    assert created.metadata.name.startswith("speech-"), "the name was generated after admission"
    pod = stored(stack, stack.plain, created.metadata.name)
    notes = pod.metadata.annotations
    assert OFFER_KEYS <= set(notes)
    offer = stack.offers[int(notes["vast.ai/offer-id"])]
    assert offer.gpu_key == "RTX3060" and offer.dph_total <= 0.50
    assert notes["vast.ai/offer-gpu"] == offer.gpu_name and float(notes["vast.ai/offer-price"]) == pytest.approx(offer.dph_total, abs=1e-4)
    assert json.loads(notes["vast.ai/selection"])["seen"] == len(stack.offers)
    assert notes["vast.ai/gpu-type"] == "RTX3060"
    tolerations = [t.to_dict() for t in pod.spec.tolerations]
    assert sum(1 for t in tolerations if t["key"] == TOLERATION["key"]) == 1
    assert {k: v for k, v in tolerations[-1].items() if v is not None} == TOLERATION
    assert pod.spec.scheduler_name == "vast-scheduler"
    assert stack.selections() == before + 1


def test_a_pod_that_did_not_opt_in_is_not_sent(stack):
    before = stack.requests()
    created = stack.core.create_namespaced_pod(stack.plain, gpu_pod(annotations=BUDGET_3060))
    assert "vast.ai/offer-id" not in (stored(stack, stack.plain, created.metadata.name).metadata.annotations or {})
    assert stack.requests() == before


def test_without_a_matching_offer_the_pod_is_stored_with_the_selection_error(stack):
    created = stack.core.create_namespaced_pod(stack.plain, gpu_pod(
        labels=OPTED_IN, annotations={"vast.ai/gpu-type": "H100", "vast.ai/price-max": "0.05"}))
    pod = stored(stack, stack.plain, created.metadata.name)
    assert pod.metadata.annotations["vast.ai/selection-error"].startswith("no offer matches:")
    assert not OFFER_KEYS & set(pod.metadata.annotations)
    assert pod.spec.scheduler_name == "vast-scheduler"


# (b) -------------------------------------------------------------------------------------------

def test_a_bad_annotation_makes_pod_creation_fail_with_our_message(stack):
    with pytest.raises(RequirementError) as expected:
        parse_overrides({"vast.ai/price-max": "free"})
    with pytest.raises(ApiException) as denied:
        stack.core.create_namespaced_pod(stack.plain, gpu_pod(name="typo", labels=OPTED_IN,
                                                              annotations={"vast.ai/price-max": "free"}))
    assert denied.value.status == 400
    status = json.loads(denied.value.body)
    assert status["message"] == f'admission webhook "{POD_LABEL_WEBHOOK}" denied the request: {expected.value}'
    assert "vast.ai/price-max: invalid value 'free': expected a price" in status["message"]
    with pytest.raises(ApiException):
        stored(stack, stack.plain, "typo")


def test_a_pod_vast_cannot_run_is_denied_with_the_reason(stack):
    with pytest.raises(ApiException) as denied:
        stack.core.create_namespaced_pod(stack.plain, gpu_pod(labels=OPTED_IN, containers=2))
    assert "this pod cannot run on Vast: it has 2 containers ('app0', 'app1')" in json.loads(denied.value.body)["message"]


# (c) -------------------------------------------------------------------------------------------

def test_a_deployments_pods_in_an_opted_in_namespace_are_mutated_once_each(stack, controller_manager):
    before = stack.requests(outcome="mutated")
    apps = client.AppsV1Api(stack.api)
    apps.create_namespaced_deployment(stack.team, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "speech"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "speech"}}, "template": {
            "metadata": {"labels": {"app": "speech"}, "annotations": {"vast.ai/gpu-type": "RTX4090,A4000"}},
            "spec": gpu_pod()["spec"]}},
    })
    pods = wait_for(lambda: (items := stack.core.list_namespaced_pod(stack.team, label_selector="app=speech").items)
                    and len(items) == 2 and items, timeout=60, description="the Deployment's two pods")
    for pod in pods:
        assert pod.metadata.generate_name and pod.metadata.owner_references[0].kind == "ReplicaSet"
        offer = stack.offers[int(pod.metadata.annotations["vast.ai/offer-id"])]
        assert offer.gpu_key in ("RTX4090", "A4000")
        assert pod.spec.scheduler_name == "vast-scheduler"
        assert sum(1 for t in pod.spec.tolerations if t.key == TOLERATION["key"]) == 1
    assert stack.requests(outcome="mutated") == before + 2, "each pod judged by exactly one of the two webhooks"


def test_a_pod_that_opted_out_in_an_opted_in_namespace_is_not_sent(stack):
    before = stack.requests()
    created = stack.core.create_namespaced_pod(stack.team, gpu_pod(labels={"vast.ai/enabled": "false"}))
    assert "vast.ai/offer-id" not in (stored(stack, stack.team, created.metadata.name).metadata.annotations or {})
    assert stack.requests() == before


# (e) -------------------------------------------------------------------------------------------

def test_a_server_side_dry_run_has_no_side_effects(stack):
    selections, dry_runs = stack.selections(), stack.webhook.metric("kube_vast_webhook_dry_run_requests_total")
    answer = stack.core.create_namespaced_pod(stack.plain, gpu_pod(name="dry", labels=OPTED_IN,
                                                                   annotations=BUDGET_3060), dry_run="All")
    assert "vast.ai/offer-id" in answer.metadata.annotations, "the webhook answered the dry run"
    with pytest.raises(ApiException) as missing:
        stored(stack, stack.plain, "dry")
    assert missing.value.status == 404, "nothing stored"
    assert stack.webhook.metric("kube_vast_webhook_dry_run_requests_total") == dry_runs + 1
    assert stack.selections() == selections, "a dry run is not counted as a selection"
    assert "dry_run=true" in stack.webhook.log()


# (d) -------------------------------------------------------------------------------------------

def test_pods_in_kube_system_and_the_release_namespace_are_never_sent(stack):
    run_label = {"kube-vast.test/run": stack.plain.removeprefix("wh-")}
    try:
        stack.core.create_namespaced_service_account("kube-system", {"metadata": {"name": "default"}})
    except ApiException as exc:
        assert exc.status == 409
    before = stack.requests()
    for namespace in ("kube-system", stack.release):
        created = stack.core.create_namespaced_pod(namespace, gpu_pod(labels={**OPTED_IN, **run_label},
                                                                      annotations={"vast.ai/price-max": "free"}))
        pod = stored(stack, namespace, created.metadata.name)
        assert "vast.ai/offer-id" not in pod.metadata.annotations and pod.spec.scheduler_name == "default-scheduler"
    assert stack.requests() == before, "not even sent (and a bad annotation there is not our business)"
    stack.core.create_namespaced_pod(stack.plain, gpu_pod(labels=OPTED_IN))
    assert stack.requests() == before + 1, "the counter does move for a pod that is sent"


def test_with_the_webhook_stopped_pods_are_still_created(stack):
    stack.webhook.stop()
    try:
        created = stack.core.create_namespaced_pod(stack.plain, gpu_pod(labels=OPTED_IN, annotations=BUDGET_3060))
        pod = stored(stack, stack.plain, created.metadata.name)
        assert "vast.ai/offer-id" not in (pod.metadata.annotations or {}), "failurePolicy Ignore: admitted as is"
        assert pod.spec.scheduler_name == "default-scheduler"
    finally:
        stack.webhook.restart()
    stack.wait_until_active(stack.plain, OPTED_IN)


def test_the_manifest_as_shipped_is_valid_for_the_apiserver(stack):
    manifest = yaml.safe_load(MANIFEST.read_text())
    created = client.AdmissionregistrationV1Api(stack.api).create_mutating_webhook_configuration(
        manifest, dry_run="All")
    assert [w.failure_policy for w in created.webhooks] == ["Ignore"] * 4
    assert [w.reinvocation_policy for w in created.webhooks] == ["IfNeeded"] * 4
    assert [w.side_effects for w in created.webhooks] == ["None"] * 4
    assert [[c.name for c in w.match_conditions or []] for w in created.webhooks] == \
        [[], [], ["template-opted-in"], ["template-not-labelled"]], "the workload webhooks' CEL compiles"
    assert all(w.client_config.service.path == "/mutate" for w in created.webhooks)
