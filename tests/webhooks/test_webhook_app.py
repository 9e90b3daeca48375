"""The webhook through its HTTP seam (Flask test client), driven by AdmissionReviews captured from
the real kube-apiserver."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import CollectorRegistry

from tests.webhooks.conftest import NOW, Harness, annotated, captured, market, patch_of, patched, with_object
from vastmarket.config import SelectionConfig
from vastmarket.snapshot import OfferSnapshot, SearchPause
from webhooks.app import create_app
from webhooks.mutation import OFFER_ANNOTATIONS
from webhooks.settings import WebhookSettings

TOLERATION = {"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "vast", "effect": "NoSchedule"}


def annotations_of(pod):
    return pod["metadata"].get("annotations", {})


def with_ours(review):
    """The pod's tolerations (the apiserver's DefaultTolerationSeconds added two) plus ours."""
    return review["request"]["object"]["spec"].get("tolerations", []) + [TOLERATION]


# --- the happy path ---------------------------------------------------------------------------

def test_the_reply_is_an_admission_review_v1_with_the_request_uid(hook):
    review = captured("pod-create-generatename")
    reply = hook.review(review)
    assert reply["apiVersion"] == "admission.k8s.io/v1" and reply["kind"] == "AdmissionReview"
    assert reply["response"]["uid"] == review["request"]["uid"]
    assert reply["response"]["allowed"] is True


def test_a_pod_created_with_generate_name_gets_the_offer_annotations_toleration_and_scheduler_name(hook):
    review = captured("pod-create-generatename")
    assert "name" not in review["request"]["object"]["metadata"], "the name is generated after admission"
    pod = patched(review, hook.review(review))
    notes = annotations_of(pod)
    assert notes["vast.ai/offer-id"] == "2", "the cheapest RTX 3060"
    assert notes["vast.ai/offer-gpu"] == "RTX 3060"
    assert notes["vast.ai/offer-price"] == "0.1900"
    assert notes["vast.ai/offer-location"] == "US-TX"
    assert notes["vast.ai/offer-reliability"] == "0.9910"
    assert 0 < float(notes["vast.ai/offer-score"]) <= 1
    assert notes["vast.ai/selected-at"] == "2027-01-15T08:00:00Z"
    selection = json.loads(notes["vast.ai/selection"])
    assert selection["seen"] == 6 and selection["matched"] == 3
    assert [r["id"] for r in selection["runnersUp"]] == [1, 6]
    assert selection["rejected"] == {"gpu_type": 2, "price": 2}
    assert notes["vast.ai/gpu-type"] == "RTX3060", "the user's annotations stay"
    assert pod["spec"]["tolerations"] == with_ours(review)
    assert pod["spec"]["schedulerName"] == "vast-scheduler"


def test_the_patch_adds_single_annotations_with_escaped_slashes_when_the_map_exists(hook):
    ops = patch_of(hook.review(captured("pod-create-generatename")))
    paths = {op["path"] for op in ops}
    assert "/metadata/annotations/vast.ai~1offer-id" in paths
    assert all(op["op"] in ("add", "replace") for op in ops)


def test_a_pod_without_annotations_gets_the_whole_annotation_map_added(hook):
    review = captured("pod-create-named-two-gpus")
    assert "annotations" not in review["request"]["object"]["metadata"]
    ops = patch_of(hook.review(review))
    added = [op for op in ops if op["path"] == "/metadata/annotations"]
    assert added and added[0]["op"] == "add" and added[0]["value"]["vast.ai/offer-id"] == "6", "the 2-GPU offer"


def test_a_deployments_pod_keeps_its_tolerations_and_is_handed_from_the_default_scheduler(hook):
    review = captured("deployment-pod-create")
    original = review["request"]["object"]
    assert original["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert original["spec"]["schedulerName"] == "default-scheduler"
    pod = patched(review, hook.review(review))
    assert pod["spec"]["tolerations"] == with_ours(review)
    assert pod["spec"]["schedulerName"] == "vast-scheduler"
    assert annotations_of(pod)["vast.ai/offer-id"] == "3", "RTX4090 is the first choice"


# --- idempotency ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pod-create-generatename", "pod-create-named-two-gpus", "deployment-pod-create"])
def test_reinvocation_on_its_own_output_returns_no_patch(hook, name):
    review = captured(name)
    once = patched(review, hook.review(review))
    hook.now += 30  # a later reinvocation must not renew selected-at
    again = hook.review(with_object(review, once))
    assert again["response"]["allowed"] is True
    assert patch_of(again) == []


def test_an_existing_toleration_that_covers_the_taint_is_not_duplicated(hook):
    review = captured("pod-create-generatename")
    review["request"]["object"]["spec"]["tolerations"] = [{"operator": "Exists"}]
    pod = patched(review, hook.review(review))
    assert pod["spec"]["tolerations"] == [{"operator": "Exists"}]


def test_an_annotated_offer_that_still_matches_is_kept_when_a_better_one_appears():
    review = captured("pod-create-generatename")
    hook = Harness(snapshot=OfferSnapshot([o for o in market().offers if o.id != 2], taken_at=NOW))
    pod = patched(review, hook.review(review))
    assert annotations_of(pod)["vast.ai/offer-id"] == "1"
    hook.snapshot = market()  # offer 2 is cheaper, and 1 still matches
    assert patch_of(hook.review(with_object(review, pod))) == []


def test_an_annotated_offer_that_vanished_is_replaced_with_a_warning(hook):
    review = captured("pod-create-generatename")
    pod = patched(review, hook.review(review))
    pod["metadata"]["annotations"]["vast.ai/offer-id"] = "999"
    reply = hook.review(with_object(review, pod))
    assert annotations_of(patched(with_object(review, pod), reply))["vast.ai/offer-id"] == "2"
    assert any("no longer available" in w for w in reply["response"]["warnings"])


# --- no offer ---------------------------------------------------------------------------------

def test_without_a_matching_offer_the_pod_is_admitted_with_the_selection_error(hook):
    review = annotated(captured("pod-create-generatename"), {"vast.ai/gpu-type": "RTX3060", "vast.ai/price-max": "0.10"})
    reply = hook.review(review)
    assert reply["response"]["allowed"] is True
    pod = patched(review, reply)
    notes = annotations_of(pod)
    assert notes["vast.ai/selection-error"] == "no offer matches: 6 seen; 6 over $0.10/h, 2 not RTX3060"
    assert not set(OFFER_ANNOTATIONS) & set(notes)
    assert pod["spec"]["tolerations"] == with_ours(review) and pod["spec"]["schedulerName"] == "vast-scheduler", \
        "so that the extender keeps it Pending with the same reason"
    assert hook.metric("kube_vast_webhook_selection_errors_total", reason="no_match") == 1


def test_offer_annotations_give_way_to_the_error_when_nothing_matches_any_more(hook):
    review = captured("pod-create-generatename")
    pod = patched(review, hook.review(review))
    pod["metadata"]["annotations"]["vast.ai/price-max"] = "0.10"
    after = patched(with_object(review, pod), hook.review(with_object(review, pod)))
    assert "vast.ai/selection-error" in annotations_of(after)
    assert not set(OFFER_ANNOTATIONS) & set(annotations_of(after))


def test_a_selection_error_gives_way_to_the_offer_once_one_matches(hook):
    review = annotated(captured("pod-create-generatename"), {"vast.ai/gpu-type": "RTX3060",
                                                            "vast.ai/selection-error": "no offer matches: old"})
    notes = annotations_of(patched(review, hook.review(review)))
    assert "vast.ai/selection-error" not in notes and notes["vast.ai/offer-id"] == "2"


def test_deny_without_offer_denies_with_the_reason():
    hook = Harness(WebhookSettings(deny_without_offer=True))
    review = annotated(captured("pod-create-generatename"), {"vast.ai/gpu-type": "H100", "vast.ai/price-max": "0.50"})
    response = hook.review(review)["response"]
    assert response["allowed"] is False and response["status"]["code"] == 403
    assert response["status"]["message"] == "no Vast offer for this pod: no offer matches: 6 seen; 5 not H100, 2 over $0.50/h"


@pytest.mark.parametrize("now, no_snapshot, reason, kind", [
    (NOW + 1000, False, "the Vast offer snapshot is stale (1010s old, limit 120s)", "stale_snapshot"),
    (NOW, True, "no Vast offer snapshot yet (the controller has not published one)", "no_snapshot"),
])
def test_a_stale_or_missing_snapshot_admits_the_pod_with_the_reason(now, no_snapshot, reason, kind):
    hook = Harness(no_snapshot=no_snapshot)
    hook.now = now
    review = captured("pod-create-generatename")
    pod = patched(review, hook.review(review))
    assert annotations_of(pod)["vast.ai/selection-error"] == reason
    assert pod["spec"]["tolerations"] == with_ours(review)
    assert hook.metric("kube_vast_webhook_selection_errors_total", reason=kind) == 1


# --- denials ----------------------------------------------------------------------------------

def test_a_bad_annotation_is_denied_with_the_annotation_the_value_and_the_accepted_form(hook):
    response = hook.review(captured("pod-create-bad-annotation"))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400 and response["status"]["reason"] == "BadRequest"
    assert response["status"]["message"].startswith("vast.ai/price-max: invalid value 'free': expected a price")
    assert "patch" not in response


@pytest.mark.parametrize("annotations, message", [
    ({"vast.ai/price_max": "0.5"}, "vast.ai/price_max: invalid value '0.5': expected one of the known annotations"),
    ({"vast.ai/min-gpu-memory": "lots"}, "vast.ai/min-gpu-memory: invalid value 'lots'"),
    ({"vast.ai/region": "Mars"}, "vast.ai/region: invalid value 'Mars'"),
    ({"vast.ai/gpu-fallbacks": "A4000"}, "to be used together with vast.ai/gpu-type"),
    ({"vast.ai/disk": "5"}, "vast.ai/disk: invalid value '5': expected a disk size of at least 8 GB (Vast's minimum)"),
    ({"vast.ai/price-max": "1e-310"}, "vast.ai/price-max: invalid value '1e-310': expected a price in $/hour of at least"),
    ({"vast.ai/interruptible": "true", "vast.ai/bid-max": "0.00001"},
     "vast.ai/bid-max: invalid value '0.00001': expected a price in $/hour of at least 0.0001"),
])
def test_every_override_annotation_is_validated(hook, annotations, message):
    response = hook.review(annotated(captured("pod-create-generatename"), annotations))["response"]
    assert response["allowed"] is False and message in response["status"]["message"]


def test_a_pod_with_a_sidecar_and_an_init_container_is_denied_with_every_reason(hook):
    response = hook.review(captured("pod-create-sidecar-and-init-container"))["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert response["status"]["message"] == (
        "this pod cannot run on Vast: it has 2 containers ('app', 'proxy'); a Vast instance runs exactly one; "
        "init containers ('fetch-model') cannot run on a Vast instance")


def test_a_container_without_an_image_is_denied(hook):
    review = captured("pod-create-generatename")
    del review["request"]["object"]["spec"]["containers"][0]["image"]
    response = hook.review(review)["response"]
    assert response["allowed"] is False and "container 'whisper' has no image" in response["status"]["message"]


def test_an_invalid_gpu_quantity_is_denied_with_the_field(hook):
    review = captured("pod-create-generatename")
    for section in ("limits", "requests"):
        review["request"]["object"]["spec"]["containers"][0]["resources"][section]["nvidia.com/gpu"] = "1.5"
    response = hook.review(review)["response"]
    assert response["allowed"] is False
    assert "spec.containers[0].resources.nvidia.com/gpu: invalid value '1.5'" in response["status"]["message"]


# --- what is left alone -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pod-update", "deployment-create"])
def test_requests_other_than_pod_create_are_allowed_without_a_patch(hook, name):
    response = hook.review(captured(name))["response"]
    assert response == {"uid": captured(name)["request"]["uid"], "allowed": True}


@pytest.mark.parametrize("namespace", ["kube-system", "kube-vast"])
def test_pods_in_kube_system_and_the_release_namespace_are_untouched_even_when_sent(hook, namespace):
    review = captured("pod-create-generatename")
    review["request"]["namespace"] = review["request"]["object"]["metadata"]["namespace"] = namespace
    assert patch_of(hook.review(review)) == []
    assert hook.metric("kube_vast_webhook_requests_total", outcome="allowed_untouched") == 1


def test_a_pod_that_opted_out_is_untouched(hook):
    review = captured("pod-create-bad-annotation")  # not even validated
    review["request"]["object"]["metadata"]["labels"]["vast.ai/enabled"] = "false"
    assert hook.review(review)["response"] == {"uid": review["request"]["uid"], "allowed": True}


# --- scheduler name and warnings --------------------------------------------------------------

def test_a_custom_scheduler_name_is_kept_with_a_warning(hook):
    review = captured("pod-create-generatename")
    review["request"]["object"]["spec"]["schedulerName"] = "volcano"
    reply = hook.review(review)
    assert patched(review, reply)["spec"]["schedulerName"] == "volcano"
    assert any("'volcano' kept" in w for w in reply["response"]["warnings"])


def test_the_scheduler_name_is_left_alone_when_not_configured():
    hook = Harness(WebhookSettings(scheduler_name=None))
    review = captured("deployment-pod-create")
    assert patched(review, hook.review(review))["spec"]["schedulerName"] == "default-scheduler"


def test_a_gpu_model_no_offer_has_gets_a_warning(hook):
    review = annotated(captured("pod-create-generatename"), {"vast.ai/gpu-type": "RTX9090"})
    warnings = hook.review(review)["response"]["warnings"]
    assert any("no offer among the 6 in the snapshot has GPU RTX9090" in w for w in warnings)


def test_a_pod_opted_in_by_its_own_label_without_a_gpu_is_denied_saying_so(hook):
    review = captured("pod-create-generatename")
    del review["request"]["object"]["spec"]["containers"][0]["resources"]["limits"]
    review["request"]["object"]["spec"]["containers"][0]["resources"]["requests"].pop("nvidia.com/gpu", None)
    response = hook.review(review)["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert response["status"]["message"].startswith("this pod cannot run on Vast: it requests no nvidia.com/gpu")


# --- dry run, metrics, logs -------------------------------------------------------------------

def test_a_dry_run_gets_the_same_answer_and_counts_no_selection(hook, caplog):
    caplog.set_level(logging.INFO, logger="kube_vast.webhook")
    dry = captured("pod-create-dry-run")
    assert dry["request"]["dryRun"] is True
    real = with_object(captured("pod-create-generatename"), dry["request"]["object"])
    assert patch_of(hook.review(dry)) == patch_of(hook.review(real))
    assert hook.metric("kube_vast_webhook_selections_total", result="offer") == 1, "only the real one"
    assert hook.metric("kube_vast_webhook_dry_run_requests_total") == 1
    assert hook.metric("kube_vast_webhook_requests_total", outcome="mutated") == 2
    assert "dry_run=true" in caplog.text and "dry run: no side effects" in caplog.text


def test_metrics_count_outcomes_and_latency(hook):
    hook.review(captured("pod-create-generatename"))
    hook.review(captured("pod-create-bad-annotation"))
    hook.review(captured("pod-update"))
    hook.post(None, raw=b"nope")
    text = hook.http.get("/metrics").get_data(as_text=True)
    for outcome in ("mutated", "denied", "allowed_untouched", "bad_request"):
        assert f'kube_vast_webhook_requests_total{{outcome="{outcome}"}} 1.0' in text
    assert "kube_vast_webhook_request_seconds_count 3.0" in text
    assert "kube_vast_offer_snapshot_age_seconds 10.0" in text and "kube_vast_offers_seen 6.0" in text


# --- malformed reviews and HTTP -----------------------------------------------------------------

def _review(**request):
    base = {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "operation": "CREATE",
            "namespace": "ml", "object": {"kind": "Pod", "metadata": {}, "spec": {}}}
    base.update(request)
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": base}).encode()


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"), (b"\xff\xfe", "not JSON"), (b"", "must be a JSON object"), (b"[]", "must be a JSON object"),
    (b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}',
     "expected apiVersion admission.k8s.io/v1"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request must be an object"),
    (_review(uid=None), "uid is missing"), (_review(uid=""), "uid is missing"), (_review(uid=7), "uid is missing"),
    (_review(operation=None), "operation is missing"), (_review(resource=None), "resource must be an object"),
    (_review(object=None), "request.object must be an object"), (_review(object=[1]), "request.object must be an object"),
    (_review(object={"kind": "Deployment"}), "is a 'Deployment', not a Pod"),
    (_review(dryRun="yes"), "dryRun must be true or false"),
])
def test_a_malformed_review_is_a_400_with_a_message(hook, raw, message):
    reply = hook.post(None, raw=raw)
    assert reply.status_code == 400 and reply.is_json
    assert message in reply.get_json()["error"]


@pytest.mark.parametrize("obj, message", [
    ({"metadata": []}, "metadata: expected an object, got a list"),
    ({"metadata": {"annotations": {"a": 1}}}, "metadata.annotations[a]: expected a string, got a number"),
    ({"metadata": {"labels": []}}, "metadata.labels: expected an object of strings, got a list"),
    ({"spec": {"tolerations": {}}}, "spec.tolerations: expected a list, got an object"),
])
def test_a_review_of_a_pod_with_a_field_of_the_wrong_shape_is_answered_with_a_denial(hook, obj, message):
    response = hook.review(json.loads(_review(object={"kind": "Pod", **obj})))["response"]
    assert response["uid"] == "u-1" and response["allowed"] is False
    assert response["status"] == {"code": 400, "reason": "BadRequest", "message": f"invalid pod: {message}"}


def test_a_trailing_slash_is_served_without_a_redirect(hook):
    assert hook.post(captured("pod-update"), path="/mutate/").status_code == 200


@pytest.mark.parametrize("method, path, code", [("get", "/mutate", 405), ("post", "/nowhere", 404)])
def test_http_errors_are_json(hook, method, path, code):
    reply = getattr(hook.http, method)(path)
    assert reply.status_code == code and "error" in reply.get_json()


def test_a_bug_is_a_500_with_a_json_message_and_is_counted():
    def broken_snapshot_source():
        raise RuntimeError("boom")
    registry = CollectorRegistry()
    app = create_app(WebhookSettings(), config=SelectionConfig(), snapshots=broken_snapshot_source, registry=registry)
    reply = app.test_client().post("/mutate", data=json.dumps(captured("pod-create-generatename")))
    assert reply.status_code == 500 and reply.get_json() == {"error": "internal error: RuntimeError"}
    assert registry.get_sample_value("kube_vast_webhook_requests_total", {"outcome": "error"}) == 1


def test_health_and_readiness(hook):
    assert hook.http.get("/healthz").get_json() == {"status": "ok"}
    ready = hook.http.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["snapshot"] == "fresh" and ready["offers"] == 6
    hook.now = NOW + 1000
    assert hook.http.get("/readyz").get_json()["snapshot"] == "stale"
    assert Harness(no_snapshot=True).http.get("/readyz").get_json() == {"status": "ready", "snapshot": "missing"}


def test_readiness_says_why_the_offers_are_old_while_the_search_quota_pauses_them_and_pods_still_get_one(hook):
    hook.snapshot = market().paused(SearchPause("search_quota_exceeded", "Vast's search quota is used up",
                                                since=NOW, until=NOW + 7200))
    hook.now = NOW + 3600
    ready = hook.http.get("/readyz").get_json()
    assert ready["snapshot"] == "stale" and "Vast's search quota is used up" in ready["reason"]
    review = captured("pod-create-generatename")
    reply = hook.review(review)
    assert reply["response"]["allowed"] is True
    assert patched(review, reply)["metadata"]["annotations"]["vast.ai/offer-id"] == "2"
