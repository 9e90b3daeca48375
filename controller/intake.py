"""The controller's read of a pod: checked (:func:`vastmarket.pods.pod_problems`, as a stored pod:
named by its metadata) before anything acts on it. Pure.

A pod the API server stores always passes. One that does not — a field kube-vast reads has the
wrong shape — gets nothing rented for it and a Warning Event ``InvalidPod`` naming the fields'
paths; when it is being deleted or has finished, its instances are still given back: the teardown
reads only its metadata (:func:`teardown_view`). A pod whose metadata itself is unreadable
cannot be named in an Event or matched to its instances: it is only logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vastmarket.errors import InvalidPod
from vastmarket.pods import pod_problems

INVALID_POD = "InvalidPod"


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Why a pod cannot be read, and what may still be done with it."""

    problem: InvalidPod
    node: str | None  # spec.nodeName when it is a string
    named: bool  # its metadata is readable: an Event can name it, its instances can be found
    deleted: bool
    finished: bool  # phase Succeeded or Failed

    @property
    def message(self) -> str:
        return f"the pod cannot be read, so kube-vast does not act on it: {self.problem}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def unreadable(pod: Mapping[str, Any]) -> Unreadable | None:
    """``None`` when every field kube-vast reads has its shape; else what is wrong."""
    problems = pod_problems(pod, stored=True)
    if not problems:
        return None
    node = _mapping(pod.get("spec")).get("nodeName")
    meta = _mapping(pod.get("metadata"))
    named = not any(path == "metadata" or path.startswith(("metadata.", "metadata[")) for path, _ in problems)
    return Unreadable(InvalidPod(problems), node if isinstance(node, str) else None, named,
                      deleted=named and bool(meta.get("deletionTimestamp")),
                      finished=_mapping(pod.get("status")).get("phase") in ("Succeeded", "Failed"))


def teardown_view(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What teardown reads of an unreadable pod: its metadata, nothing of its spec or status."""
    return {"metadata": dict(_mapping(pod.get("metadata"))), "spec": {}, "status": {}}
