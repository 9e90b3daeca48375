"""What the cluster wants from the Vast market: the requirements the market watcher searches for.

:func:`pod_demand` is pure: the selection config's own requirements (for pods still to come,
which the webhook places from the snapshot) and those of every opted-in GPU pod that is pending
or bound to a virtual node — its GPU model and fallbacks, region, price cap, reliability, VRAM,
ports (:func:`vastmarket.requirements.requirements_for`). A pod is opted in when it carries the
label ``vast.ai/enabled: "true"``, an annotation the webhook writes, or the toleration of the
virtual node's taint. Finished pods want nothing; a pod whose annotations are invalid is left out
(the webhook and the controller refuse it with the reason).

:class:`ClusterDemand` is the thin I/O: it lists the pending pods and the pods on the virtual
nodes through :class:`~controller.kube.KubeGateway`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vastmarket.config import SelectionConfig
from vastmarket.errors import RequirementError
from vastmarket.market_watch import Demand
from vastmarket.requirements import Requirements, base_requirements, requests_gpu, requirements_for

from .kube import KubeGateway
from .node import TAINT_KEY

log = logging.getLogger(__name__)

OPT_IN_LABEL = "vast.ai/enabled"
# Annotations the webhook writes on every pod it admitted for Vast.
WEBHOOK_MARKS = ("vast.ai/offer-id", "vast.ai/selection", "vast.ai/selection-error")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def opted_in(pod: Mapping[str, Any]) -> bool:
    meta = _mapping(pod.get("metadata"))
    if _mapping(meta.get("labels")).get(OPT_IN_LABEL) == "true":
        return True
    if any(k in _mapping(meta.get("annotations")) for k in WEBHOOK_MARKS):
        return True
    tolerations = _mapping(pod.get("spec")).get("tolerations")
    return isinstance(tolerations, list) and any(
        isinstance(t, Mapping) and t.get("key") == TAINT_KEY for t in tolerations)


def wants_vast(pod: Mapping[str, Any]) -> bool:
    """An opted-in GPU pod that is not finished nor being deleted."""
    meta, status = _mapping(pod.get("metadata")), _mapping(pod.get("status"))
    return (not meta.get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed")
            and opted_in(pod) and requests_gpu(pod))


def waiting(pod: Mapping[str, Any]) -> bool:
    """Pending and bound to no node yet: waiting for an offer (not for its instance)."""
    return _mapping(pod.get("status")).get("phase") == "Pending" and not _mapping(pod.get("spec")).get("nodeName")


def pod_demand(config: SelectionConfig, pods: Iterable[Mapping[str, Any]]) -> Demand:
    """The config's requirements, then each wanting pod's (duplicates once); those of the pods
    waiting for an offer apart too."""
    found: dict[Requirements, None] = {base_requirements(config): None}
    pending: dict[Requirements, None] = {}
    for pod in pods:
        if not wants_vast(pod):
            continue
        try:
            req = requirements_for(config, pod)
        except RequirementError:
            continue
        found.setdefault(req, None)
        if waiting(pod):
            pending.setdefault(req, None)
    return Demand(tuple(found), tuple(pending))


class ClusterDemand:
    """Reads the demand from the cluster: pending pods and the pods of the virtual nodes."""

    def __init__(self, kube: KubeGateway, config: SelectionConfig, virtual_nodes: Sequence[str]) -> None:
        self.kube = kube
        self.config = config
        self.virtual_nodes = tuple(virtual_nodes)
        self.pods = 0  # wanting pods at the last read

    def __call__(self) -> Demand:
        pods, _ = self.kube.list_pods(field_selector="status.phase=Pending")
        seen = {str(_mapping(p.get("metadata")).get("uid")) for p in pods}
        for node in self.virtual_nodes:
            bound, _ = self.kube.list_pods(field_selector=f"spec.nodeName={node}")
            pods += [p for p in bound if str(_mapping(p.get("metadata")).get("uid")) not in seen]
        self.pods = sum(1 for p in pods if wants_vast(p))
        return pod_demand(self.config, pods)
