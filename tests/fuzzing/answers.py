"""What a well-formed answer is, for any body, however broken: HTTP 200 with the protocol's reply,
or 400 with ``{"error": message}``. Each check returns what is wrong, or ``None``; the in-process
tests assert on it and ``make fuzz`` counts it."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any


def _json(body: bytes) -> tuple[Any, str | None]:
    try:
        return json.loads(body), None
    except ValueError as exc:
        return None, f"the answer is not JSON: {exc}"


def _common(status: int, body: bytes) -> tuple[Any, str | None]:
    if status not in (200, 400):
        return None, f"HTTP {status}"
    data, problem = _json(body)
    if problem:
        return None, problem
    if status == 400:
        if not (isinstance(data, Mapping) and isinstance(data.get("error"), str) and data["error"]):
            return None, "a 400 without an error message"
        return None, None
    return data, None


def _request_uid(document: Any) -> Any:
    request = document.get("request") if isinstance(document, Mapping) else None
    return request.get("uid") if isinstance(request, Mapping) else None


def admission_problem(status: int, body: bytes, document: Any) -> str | None:
    """What is wrong with the webhook's answer to ``document`` (``None`` when the text was damaged)."""
    data, problem = _common(status, body)
    if problem or status == 400:
        return problem
    if not isinstance(data, Mapping) or data.get("apiVersion") != "admission.k8s.io/v1" \
            or data.get("kind") != "AdmissionReview":
        return "not an admission.k8s.io/v1 AdmissionReview"
    response = data.get("response")
    if not isinstance(response, Mapping) or not isinstance(response.get("allowed"), bool):
        return "no response.allowed"
    uid = response.get("uid")
    if not isinstance(uid, str) or not uid or (document is not None and uid != _request_uid(document)):
        return f"response.uid {uid!r} is not the request's"
    if ("patch" in response) != ("patchType" in response):
        return "patch and patchType not together"
    if not response["allowed"]:
        status_ = response.get("status")
        if "patch" in response or not isinstance(status_, Mapping) or not isinstance(status_.get("message"), str) \
                or not isinstance(status_.get("code"), int) or status_["code"] < 400:
            return "a denial without code and message, or with a patch"
    warnings = response.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) and w for w in warnings):
        return "warnings are not strings"
    if "patch" in response:
        try:
            patch = json.loads(base64.b64decode(response["patch"], validate=True))
        except (ValueError, binascii.Error, TypeError):
            return "the patch is not base64 JSON"
        if response["patchType"] != "JSONPatch" or not isinstance(patch, list) or not patch or not all(
                isinstance(op, Mapping) and isinstance(op.get("op"), str) and isinstance(op.get("path"), str)
                for op in patch):
            return "the patch is not a JSON Patch"
    return None


def extender_problem(verb: str, status: int, body: bytes) -> str | None:
    """What is wrong with the extender's answer to one ``filter`` or ``prioritize`` request."""
    data, problem = _common(status, body)
    if problem or status == 400:
        return problem
    if verb == "prioritize":
        if not isinstance(data, list) or not all(
                isinstance(h, Mapping) and isinstance(h.get("Host"), str) and isinstance(h.get("Score"), int)
                and 0 <= h["Score"] <= 10 for h in data):
            return "not a HostPriorityList with scores 0-10"
        return None
    if not isinstance(data, Mapping) or set(data) != {"Nodes", "NodeNames", "FailedNodes",
                                                      "FailedAndUnresolvableNodes", "Error"}:
        return "not an ExtenderFilterResult"
    if (data["Nodes"] is None) == (data["NodeNames"] is None):
        return "neither or both of Nodes and NodeNames"
    for key in ("FailedNodes", "FailedAndUnresolvableNodes"):
        failed = data[key]
        if not isinstance(failed, Mapping) or not all(isinstance(v, str) and v for v in failed.values()):
            return f"{key} is not a map of reasons"
    return None
