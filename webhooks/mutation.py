"""Mutating a pod for Vast: change a deep copy, then diff it against the original into a JSON
Patch (``jsonpatch.make_patch``) — never hand-assembled paths, so absent ``annotations`` or
``tolerations`` and ``/`` in keys (``vast.ai~1offer-id``) come out right. Pure functions.

:func:`patch_for` copies and diffs only :func:`owned_part` of the pod — ``metadata.annotations``,
``spec.tolerations``, ``spec.schedulerName``, and ``spec.nodeSelector``/``spec.affinity`` (GPU node
selectors rewritten for the virtual node), at their own paths — so the patch is the same as
for the whole pod (which the webhook never changes elsewhere) at a fraction of the cost: a
pod's managedFields, volumes and containers are neither copied nor compared.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from vastmarket.explain import compact_explanation
from vastmarket.selectors import for_virtual_node
from vastmarket.selection import Ranking, ScoredOffer

OFFER_ID = "vast.ai/offer-id"
SELECTED_AT = "vast.ai/selected-at"
SELECTION = "vast.ai/selection"
SELECTION_ERROR = "vast.ai/selection-error"
# Everything that describes the chosen offer; written together, removed together.
OFFER_ANNOTATIONS: tuple[str, ...] = (
    OFFER_ID, "vast.ai/offer-score", "vast.ai/offer-price", "vast.ai/offer-gpu",
    "vast.ai/offer-location", "vast.ai/offer-reliability", SELECTED_AT, SELECTION, "vast.ai/offer-price-type",
)
DEFAULT_SCHEDULER = "default-scheduler"

_TAINT = re.compile(r"^(?P<key>[^=:\s]+)(?:=(?P<value>[^:\s]*))?:(?P<effect>NoSchedule|PreferNoSchedule|NoExecute)$")
TAINT_FORM = "key[=value]:Effect, e.g. virtual-kubelet.io/provider=vast:NoSchedule"


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str

    @classmethod
    def parse(cls, text: str) -> Taint:
        """``key[=value]:Effect``; raises ``ValueError`` with the accepted form."""
        found = _TAINT.match(text.strip())
        if not found:
            raise ValueError(TAINT_FORM)
        return cls(found["key"], found["value"] or "", found["effect"])

    def toleration(self) -> dict[str, str]:
        """The toleration kube-vast adds: operator Equal on key, value and effect."""
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}"


VIRTUAL_NODE_TAINT = Taint("virtual-kubelet.io/provider", "vast", "NoSchedule")


def tolerates(toleration: Any, taint: Taint) -> bool:
    """Whether one toleration already tolerates ``taint`` (the scheduler's rule)."""
    if not isinstance(toleration, Mapping):
        return False
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return bool(operator == "Exists")
    if key != taint.key:
        return False
    return bool(operator == "Exists" or (toleration.get("value") or "") == taint.value)


def rfc3339(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def offer_annotations(chosen: ScoredOffer, ranking: Ranking, *, now: float) -> dict[str, str]:
    """The annotations that record ``chosen`` (and why) on the pod."""
    o = chosen.offer
    gpu = f"{o.num_gpus}x {o.gpu_name}" if o.num_gpus > 1 else o.gpu_name
    return {
        OFFER_ID: str(o.id),
        "vast.ai/offer-score": f"{chosen.score:.3f}",
        "vast.ai/offer-price": "" if o.dph_total is None else f"{o.dph_total:.4f}",
        # Which price the choice was made on: min_bid plus storage for an interruptible pod (vastmarket.bids).
        "vast.ai/offer-price-type": "bid" if ranking.requirements.interruptible else "on-demand",
        "vast.ai/offer-gpu": gpu,
        "vast.ai/offer-location": o.location.label,
        "vast.ai/offer-reliability": "" if o.reliability is None else f"{o.reliability:.4f}",
        SELECTED_AT: rfc3339(now),
        SELECTION: json.dumps(compact_explanation(ranking), separators=(",", ":")),
    }


@dataclass(frozen=True, slots=True)
class Mutation:
    """What to change on a pod: annotations to set and to remove, a taint to tolerate, the
    scheduler to hand it to (replacing only an empty or ``default-scheduler`` name), and whether
    to let the virtual node satisfy the pod's GPU node selectors (``route_selectors``)."""

    set_annotations: Mapping[str, str] = field(default_factory=dict)
    remove_annotations: frozenset[str] = frozenset()
    tolerate: Taint | None = None
    scheduler_name: str | None = None
    route_selectors: bool = False


def replaces_scheduler(current: Any) -> bool:
    """Only a pod left to the default scheduler is handed to ours."""
    return current in (None, "", DEFAULT_SCHEDULER)


def mutate(pod: Mapping[str, Any], mutation: Mutation) -> dict[str, Any]:
    """A deep copy of ``pod`` with ``mutation`` applied; applying it twice changes nothing more."""
    out: dict[str, Any] = copy.deepcopy(dict(pod))
    meta = out.get("metadata")
    if not isinstance(meta, dict):
        meta = out["metadata"] = {}
    annotations = meta.get("annotations")
    annotations = dict(annotations) if isinstance(annotations, Mapping) else {}
    for key in mutation.remove_annotations:
        annotations.pop(key, None)
    annotations.update(mutation.set_annotations)
    if annotations or isinstance(meta.get("annotations"), Mapping):
        meta["annotations"] = annotations
    spec = out.get("spec")
    if not isinstance(spec, dict):
        spec = out["spec"] = {}
    if mutation.tolerate is not None:
        tolerations = spec.get("tolerations")
        tolerations = list(tolerations) if isinstance(tolerations, list) else []
        if not any(tolerates(t, mutation.tolerate) for t in tolerations):
            tolerations.append(mutation.tolerate.toleration())
            spec["tolerations"] = tolerations
    if mutation.scheduler_name and replaces_scheduler(spec.get("schedulerName")):
        spec["schedulerName"] = mutation.scheduler_name
    if mutation.route_selectors:
        for name, value in zip(("nodeSelector", "affinity"), for_virtual_node(spec)):
            if value is None:
                spec.pop(name, None)
            else:
                spec[name] = value
    return out


def diff(original: Mapping[str, Any], mutated: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON Patch (RFC 6902) that turns ``original`` into ``mutated``."""
    ops: list[dict[str, Any]] = jsonpatch.make_patch(original, mutated).patch
    return ops


# The only fields the webhook changes, by section.
OWNED_FIELDS: dict[str, tuple[str, ...]] = {
    "metadata": ("annotations",), "spec": ("tolerations", "schedulerName", "nodeSelector", "affinity")}


def owned_part(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``pod`` that :func:`mutate` may change, at the same paths (a section that is
    present stays present, so a patch computed on this part applies to the whole pod)."""
    part: dict[str, Any] = {}
    for section, names in OWNED_FIELDS.items():
        if section not in pod:
            continue
        value = pod[section]
        part[section] = {k: value[k] for k in names if k in value} if isinstance(value, Mapping) else value
    return part


def patch_for(pod: Mapping[str, Any], mutation: Mutation) -> list[dict[str, Any]]:
    """The JSON Patch that applies ``mutation`` to ``pod`` (empty when it changes nothing)."""
    part = owned_part(pod)
    return diff(part, mutate(part, mutation))
