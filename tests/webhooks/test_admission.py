"""The AdmissionReview wire format, as pure functions."""

from __future__ import annotations

import base64
import json

import pytest

from tests.webhooks.conftest import captured
from webhooks.admission import BadReview, Verdict, build_response, decode_review, encode_response


def test_a_captured_pod_create_decodes_with_an_empty_name_and_its_generate_name():
    request = decode_review(captured("pod-create-generatename"))
    assert request.is_pod_create and request.name == "" and request.namespace == "ml-inference"
    assert request.obj is not None and request.obj["metadata"]["generateName"] == "whisper-"
    assert request.dry_run is False


def test_dry_run_is_read_from_the_request():
    assert decode_review(captured("pod-create-dry-run")).dry_run is True


@pytest.mark.parametrize("name, pod_create", [
    ("pod-update", False), ("deployment-create", False), ("deployment-pod-create", True)])
def test_only_pods_create_is_a_pod_create(name, pod_create):
    assert decode_review(captured(name)).is_pod_create is pod_create


def test_a_subresource_is_not_a_pod():
    body = captured("pod-create-generatename")
    body["request"]["subResource"] = "status"
    assert not decode_review(body).is_pod


def test_an_object_the_webhook_does_not_review_is_not_checked_for_shape():
    body = captured("deployment-create")
    body["request"]["resource"] = {"group": "apps", "version": "v1", "resource": "daemonsets"}
    body["request"]["object"] = [1, 2]
    assert decode_review(body).obj is None


def test_a_workload_that_is_not_an_object_is_a_bad_review():
    body = captured("deployment-create")
    body["request"]["object"] = [1, 2]
    with pytest.raises(BadReview, match=r"request\.object must be an object"):
        decode_review(body)


def test_a_workload_carries_its_template_path_and_old_object():
    body = captured("deployment-create")
    assert decode_review(body).template_path == ("spec", "template")
    body["request"]["resource"] = {"group": "batch", "version": "v1", "resource": "cronjobs"}
    body["request"]["operation"] = "UPDATE"
    body["request"]["oldObject"] = {"spec": {}}
    request = decode_review(body)
    assert request.template_path == ("spec", "jobTemplate", "spec", "template")
    assert request.old == {"spec": {}}
    body["request"]["subResource"] = "status"
    assert decode_review(body).template_path is None


def test_an_allowing_verdict_without_a_patch_has_neither_patch_nor_patch_type():
    reply = encode_response("u", Verdict.allow())
    assert reply == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                     "response": {"uid": "u", "allowed": True}}


def test_a_patch_is_base64_json_with_its_type():
    ops = [{"op": "add", "path": "/metadata/annotations/vast.ai~1offer-id", "value": "7"}]
    response = encode_response("u", Verdict.allow(ops, warnings=("careful",)))["response"]
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == ops
    assert response["warnings"] == ["careful"]


def test_a_denial_carries_a_status_with_code_reason_and_message():
    response = encode_response("u", Verdict.deny(400, "vast.ai/price-max: invalid value 'free'"))["response"]
    assert response == {"uid": "u", "allowed": False, "status": {
        "code": 400, "reason": "BadRequest", "message": "vast.ai/price-max: invalid value 'free'"}}
    assert encode_response("u", Verdict.deny(403, "no"))["response"]["status"]["reason"] == "Forbidden"


def test_build_response_is_a_function_of_the_body_and_the_decision():
    body = captured("pod-update")
    seen = []

    def decide(request):
        seen.append(request.operation)
        return Verdict.deny(422, "nope")
    reply = build_response(body, decide)
    assert seen == ["UPDATE"]
    assert reply["response"]["uid"] == body["request"]["uid"] and reply["response"]["allowed"] is False
    assert reply["response"]["status"]["reason"] == "Invalid"


def test_build_response_raises_bad_review_before_deciding():
    with pytest.raises(BadReview, match="uid is missing"):
        build_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}},
                       lambda r: pytest.fail("decided on a malformed review"))
