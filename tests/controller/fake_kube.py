"""An in-memory stand-in for :class:`controller.kube.KubeGateway`, the controller's own seam to the
API server: pods (JSON merge patches, the status subresource, graceful deletion as the API server
does it), Services, EndpointSlices and Events, with a journal of every write in order."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import time
from collections.abc import Mapping
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies ``application/merge-patch+json``."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeKube:
    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.services: list[dict[str, Any]] = []
        self.slices: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []  # (type, reason, message)
        self.journal: list[tuple[float, str, Any]] = []  # (time.time(), what, detail)
        self._versions = itertools.count(100)
        self._deleting: set[tuple[str, str]] = set()  # deleted with grace 0: gone once unfinalized

    # --- pods ---------------------------------------------------------------------------------
    def add_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        meta.setdefault("resourceVersion", str(next(self._versions)))
        self.pods[(meta["namespace"], meta["name"])] = copy.deepcopy(pod)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        pod = self.pods.get((namespace, name))
        return copy.deepcopy(pod) if pod is not None else None

    def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        patch = copy.deepcopy(dict(patch))
        (patch.get("metadata") or {}).pop("resourceVersion", None)
        return self._patch(namespace, name, patch, "patch pod")

    def patch_pod_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        return self._patch(namespace, name, {"status": dict(status)}, "patch status")

    def _patch(self, namespace: str, name: str, patch: dict[str, Any], what: str) -> dict[str, Any]:
        pod = merge_patch(self.pods[(namespace, name)], patch)
        pod["metadata"]["resourceVersion"] = str(next(self._versions))
        self.pods[(namespace, name)] = pod
        self.journal.append((time.time(), what, copy.deepcopy(patch)))
        self._finish_deletion(namespace, name)
        return copy.deepcopy(pod)

    def delete_gracefully(self, namespace: str, name: str, grace: int | None = None) -> None:
        """What ``kubectl delete pod`` does to a pod bound to a node: the API server sets
        ``deletionTimestamp`` = now + grace and ``deletionGracePeriodSeconds``."""
        pod = self.pods[(namespace, name)]
        seconds = grace if grace is not None else pod["spec"].get("terminationGracePeriodSeconds", 30)
        at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=seconds)
        pod["metadata"]["deletionTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        pod["metadata"]["deletionGracePeriodSeconds"] = seconds
        self.journal.append((time.time(), "delete pod", seconds))

    def delete_pod(self, namespace: str, name: str, *, uid: str, grace_seconds: int = 0) -> None:
        pod = self.pods.get((namespace, name))
        if pod is None or pod["metadata"]["uid"] != uid:
            return
        self.journal.append((time.time(), "delete pod now", grace_seconds))
        self._deleting.add((namespace, name))
        self._finish_deletion(namespace, name)

    def _finish_deletion(self, namespace: str, name: str) -> None:
        pod = self.pods.get((namespace, name))
        if pod is not None and (namespace, name) in self._deleting and not pod["metadata"].get("finalizers"):
            del self.pods[(namespace, name)]

    # --- what pods refer to -------------------------------------------------------------------
    def get_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        return None

    def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return None

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(s) for s in self.services if s["metadata"]["namespace"] == namespace]

    # --- endpoint slices ----------------------------------------------------------------------
    def list_endpoint_slices(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        return [copy.deepcopy(s) for (ns, _), s in self.slices.items() if ns == namespace
                and all((s["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]

    def apply_endpoint_slice(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.slices[(namespace, body["metadata"]["name"])] = copy.deepcopy(dict(body))
        self.journal.append((time.time(), "apply slice", copy.deepcopy(dict(body))))
        return copy.deepcopy(dict(body))

    def delete_endpoint_slice(self, namespace: str, name: str) -> None:
        if self.slices.pop((namespace, name), None) is not None:
            self.journal.append((time.time(), "delete slice", name))

    # --- events -------------------------------------------------------------------------------
    def event(self, obj: Mapping[str, Any], reason: str, message: str, *, kind: str = "Pod",
              type_: str = "Normal", now: float | None = None) -> None:
        self.events.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]
