"""The ``admission.k8s.io/v1`` AdmissionReview wire format. Pure functions, no I/O.

:func:`decode_review` turns a request body into an :class:`AdmissionRequest` or raises
:class:`BadReview` (answered with HTTP 400); :func:`encode_response` turns a :class:`Verdict`
into the response AdmissionReview; :func:`build_response` is the two around a decision function.

What the apiserver checks in the reply (``webhook/request/admissionreview.go``): apiVersion and
kind, ``response.uid`` equal to the request's, ``patch`` and ``patchType`` together. A denial's
``status.message`` is shown to the user after ``admission webhook "<name>" denied the request:``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
POD_RESOURCE = ("", "v1", "pods")
# Workloads whose pod template the webhook reviews, and where the template is in the object.
WORKLOAD_TEMPLATES: Mapping[tuple[str, str, str], tuple[str, ...]] = {
    ("apps", "v1", "deployments"): ("spec", "template"),
    ("apps", "v1", "statefulsets"): ("spec", "template"),
    ("apps", "v1", "replicasets"): ("spec", "template"),
    ("batch", "v1", "jobs"): ("spec", "template"),
    ("batch", "v1", "cronjobs"): ("spec", "jobTemplate", "spec", "template"),
}

# Status reasons (metav1.StatusReason) for the codes used in denials.
_REASONS = {400: "BadRequest", 403: "Forbidden", 422: "Invalid"}


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of ``AdmissionReview.request`` the webhook uses. ``obj`` is the object as sent
    (a plain dict; for a pod CREATE, an object whose kind is Pod)."""

    uid: str
    operation: str
    group: str
    version: str
    resource: str
    sub_resource: str
    kind: str
    namespace: str
    name: str
    obj: Mapping[str, Any] | None
    dry_run: bool = False
    old: Mapping[str, Any] | None = None

    @property
    def template_path(self) -> tuple[str, ...] | None:
        """Where the pod template is, for a workload the webhook reviews; else ``None``."""
        if self.sub_resource:
            return None
        return WORKLOAD_TEMPLATES.get((self.group, self.version, self.resource))

    @property
    def is_pod(self) -> bool:
        return (self.group, self.version, self.resource) == POD_RESOURCE and not self.sub_resource

    @property
    def is_pod_create(self) -> bool:
        return self.is_pod and self.operation == "CREATE"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one request: allowed (with an optional JSON Patch) or denied (``code``,
    ``message``). ``warnings`` reach the user (kubectl prints them)."""

    allowed: bool
    patch: Sequence[Mapping[str, Any]] = ()
    code: int = 200
    message: str = ""
    warnings: tuple[str, ...] = ()
    audit: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def allow(cls, patch: Sequence[Mapping[str, Any]] = (), *, warnings: tuple[str, ...] = (),
              audit: Mapping[str, str] | None = None) -> Verdict:
        return cls(True, tuple(patch), warnings=warnings, audit=dict(audit or {}))

    @classmethod
    def deny(cls, code: int, message: str, *, warnings: tuple[str, ...] = ()) -> Verdict:
        return cls(False, (), code=code, message=message, warnings=warnings)


def _mapping(value: Any, where: str, *, optional: bool = True) -> Mapping[str, Any] | None:
    if value is None and optional:
        return None
    if not isinstance(value, Mapping):
        raise BadReview(f"{where} must be an object")
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadReview(f"{where} must be a string")
    return value


def template_at(obj: Mapping[str, Any] | None, path: Sequence[str]) -> Mapping[str, Any] | None:
    """The object found by following ``path`` in ``obj`` (``None`` when a step is missing)."""
    found: Any = obj
    for step in path:
        if not isinstance(found, Mapping):
            return None
        found = found.get(step)
    return found if isinstance(found, Mapping) else None


def _check_pod(obj: Any) -> Mapping[str, Any]:
    """An object whose kind (when present) is Pod: anything else is not a Pod (400), not a pod to
    judge. The fields the webhook reads are checked by the policy
    (:func:`vastmarket.pods.check_pod`), which denies a pod with a field of the wrong shape."""
    pod = _mapping(obj, "request.object", optional=False)
    assert pod is not None
    kind = pod.get("kind")
    if kind is not None and kind != "Pod":
        raise BadReview(f"request.object is a {kind!r}, not a Pod")
    return pod


def decode_review(body: Any) -> AdmissionRequest:
    """The request of an ``admission.k8s.io/v1`` AdmissionReview, or :class:`BadReview`."""
    if not isinstance(body, Mapping):
        raise BadReview("the body must be a JSON object (an AdmissionReview)")
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if kind != KIND or api_version != API_VERSION:
        raise BadReview(f"expected apiVersion {API_VERSION} and kind {KIND}, "
                        f"got {api_version!r} and {kind!r}")
    request = _mapping(body.get("request"), "AdmissionReview.request", optional=False)
    assert request is not None
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("AdmissionReview.request.uid is missing")
    operation = _string(request.get("operation"), "request.operation")
    if not operation:
        raise BadReview("AdmissionReview.request.operation is missing")
    resource = _mapping(request.get("resource"), "request.resource", optional=False)
    kind_ref = _mapping(request.get("kind"), "request.kind") or {}
    assert resource is not None
    dry_run = request.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise BadReview("request.dryRun must be true or false")
    decoded = AdmissionRequest(
        uid=uid, operation=operation,
        group=_string(resource.get("group"), "request.resource.group"),
        version=_string(resource.get("version"), "request.resource.version"),
        resource=_string(resource.get("resource"), "request.resource.resource"),
        sub_resource=_string(request.get("subResource"), "request.subResource"),
        kind=_string(kind_ref.get("kind"), "request.kind.kind"),
        namespace=_string(request.get("namespace"), "request.namespace"),
        name=_string(request.get("name"), "request.name"),
        obj=None, dry_run=dry_run,
    )
    obj, old = request.get("object"), request.get("oldObject")
    old = old if isinstance(old, Mapping) else None
    if decoded.is_pod_create:
        return replace(decoded, obj=_check_pod(obj))
    path = decoded.template_path
    if path is not None and decoded.operation in ("CREATE", "UPDATE"):
        return replace(decoded, obj=_mapping(obj, "request.object"), old=old)
    return replace(decoded, obj=obj if isinstance(obj, Mapping) else None, old=old)


def encode_patch(patch: Sequence[Mapping[str, Any]]) -> str:
    return base64.b64encode(json.dumps(list(patch), separators=(",", ":")).encode()).decode()


def encode_response(uid: str, verdict: Verdict) -> dict[str, Any]:
    """The response AdmissionReview for ``verdict``; ``patch``/``patchType`` only with a patch."""
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if verdict.allowed:
        if verdict.patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = encode_patch(verdict.patch)
    else:
        response["status"] = {"code": verdict.code, "message": verdict.message,
                              "reason": _REASONS.get(verdict.code, "BadRequest")}
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    if verdict.audit:
        response["auditAnnotations"] = dict(verdict.audit)
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def build_response(body: Any, decide: Callable[[AdmissionRequest], Verdict]) -> dict[str, Any]:
    """Decode ``body``, decide, encode: the whole webhook as a function of its inputs.
    Raises :class:`BadReview` for a body that is not an AdmissionReview."""
    request = decode_review(body)
    return encode_response(request.uid, decide(request))
