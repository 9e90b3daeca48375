"""The webhook's policy, pure: which requests are judged, and the verdict for a pod.

Order of questions for a pod CREATE: excluded namespace or ``vast.ai/enabled: "false"`` →
untouched; no ``nvidia.com/gpu`` → untouched when only its namespace opted in, denied when the
pod opted in by its own label (only GPU pods go to Vast); not runnable on Vast (containers,
volumes, a runtime class other than a GPU one), an invalid ``vast.ai/*`` annotation or a GPU node
selector that cannot be translated → denied (400, the message names the field, the value and the
accepted form); otherwise the placement
(:func:`vastmarket.placement.place`, the same decision the scheduler extender takes) picks the
offer, and the pod is patched with it — or, without one, with ``vast.ai/selection-error``
(denied instead when ``deny_without_offer``). The toleration and the scheduler name are added
in both cases, so that the extender keeps a pod without an offer Pending with the same reason,
and so are GPU node selectors rewritten so that the virtual node can satisfy them
(:func:`vastmarket.selectors.for_virtual_node`).

Workloads (Deployment, StatefulSet, ReplicaSet, Job, CronJob) are reviewed at CREATE and at an
UPDATE that changes the pod template: the template is judged by the same questions as a pod
(:func:`review_pod`), and a template its pods would be denied for denies the workload with the
same message, prefixed by where the template is (``spec.template: …``). Templates are never
patched; an offer is chosen for each pod when it is created.

Idempotent: a pod that already carries the offer the placement keeps gets no new annotations,
and a toleration or scheduler name already there is not added again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vastmarket.config import SelectionConfig
from vastmarket.errors import InvalidPod, RequirementError
from vastmarket.names import display_gpu
from vastmarket.placement import Placement, annotated_offer_id, place
from vastmarket.pods import check_pod, describe
from vastmarket.requirements import GPU_RESOURCE, pod_needs, requirements_for
from vastmarket.selection import ScoringPolicy
from vastmarket.snapshot import OfferSnapshot

from .admission import AdmissionRequest, Verdict, template_at
from .budgets import QUEUED_ANNOTATION, BudgetView, judge as judge_budget
from .mutation import (
    OFFER_ANNOTATIONS, OFFER_ID, SELECTION_ERROR, Mutation, offer_annotations, patch_for, replaces_scheduler,
)
from .settings import WebhookSettings
from .validation import ENABLED_LABEL, GPU_RUNTIME_CLASSES, NO_GPU, denial_message, soft_problems, unrunnable_reasons


MUTATED = "mutated"
UNTOUCHED = "allowed_untouched"
DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a decision depends on, captured when the request arrives."""

    snapshot: OfferSnapshot | None
    now: float
    config: SelectionConfig
    policy: ScoringPolicy
    settings: WebhookSettings
    budgets: BudgetView | None = None  # the team budgets the controller published (webhooks/budgets.py)


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict plus what the shell logs and counts: the outcome (``mutated``,
    ``allowed_untouched``, ``denied``), the pod, why, and for a judged pod without an offer the
    kind of selection error (``no_snapshot``, ``stale_snapshot``, ``no_match``)."""

    verdict: Verdict
    outcome: str
    pod: str
    note: str
    placement: Placement | None = None
    selection_error: str | None = None
    budget_charge: tuple[str, float] | None = None  # (namespace, $/h) an admitted pod adds to its budgets

    @property
    def selected(self) -> bool:
        """A selection was made (with or without an offer): what selection metrics count."""
        return self.placement is not None and not self.placement.invalid


def _meta(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = pod.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _string_map(meta: Mapping[str, Any], key: str) -> Mapping[str, str]:
    value = meta.get(key)
    return value if isinstance(value, Mapping) else {}


def describe_pod(request: AdmissionRequest) -> str:
    """``namespace/name`` for logs; ``namespace/prefix*`` before the name is generated."""
    meta = _meta(request.obj or {})
    namespace = request.namespace or meta.get("namespace") or "?"
    name = request.name or meta.get("name") or ""
    if not name:
        generate = meta.get("generateName")
        name = f"{generate}*" if generate else "?"
    return f"{namespace}/{name}"


def _untouched(pod: str, note: str) -> Decision:
    return Decision(Verdict.allow(), UNTOUCHED, pod, note)


def _denied(pod: str, code: int, message: str, placement: Placement | None = None, *,
            warnings: tuple[str, ...] = (), error_kind: str | None = None) -> Decision:
    return Decision(Verdict.deny(code, message, warnings=warnings), DENIED, pod, message, placement, error_kind)


def _error_kind(placement: Placement, snapshot: OfferSnapshot | None) -> str:
    if snapshot is None:
        return "no_snapshot"
    return "stale_snapshot" if placement.ranking is None else "no_match"


def _gpu_name_warning(placement: Placement) -> str | None:
    """Every offer in the snapshot rejected for its GPU type usually means a misspelt model."""
    ranking, req = placement.ranking, placement.requirements
    if ranking is None or req is None or not req.gpu_types or ranking.seen == 0:
        return None
    if dict(ranking.rejections).get("gpu_type") != ranking.seen:
        return None
    names = ", ".join(display_gpu(g) for g in req.gpu_types)
    return (f"no offer among the {ranking.seen} in the snapshot has GPU {names}: "
            "check the model name (Vast sells e.g. RTX3060, RTX4090, A4000, A100, H100)")


def review_pod(pod: Mapping[str, Any], config: SelectionConfig,
               gpu_runtime_classes: frozenset[str] = GPU_RUNTIME_CLASSES) -> tuple[str | None, str | None]:
    """The questions a pod (or a pod template) must pass before an offer is chosen for it:
    ``(denial message, None)``, ``(None, why it is left to the cluster)`` or ``(None, None)``
    when it goes to Vast. ``pod`` opted in by its own label when it carries
    ``vast.ai/enabled: "true"``, else by its namespace."""
    own_opt_in = _string_map(_meta(pod), "labels").get(ENABLED_LABEL) == "true"
    reasons: list[str] = []
    try:
        needs = pod_needs(pod)
    except RequirementError as exc:
        return str(exc), None
    if needs.requested_gpus == 0:
        if not own_opt_in:
            return None, f"requests no {GPU_RESOURCE}: left to the cluster"
        reasons.append(NO_GPU)
    reasons.extend(unrunnable_reasons(pod, gpu_runtime_classes))
    message = denial_message(reasons)
    if message:
        return message, None
    try:
        requirements_for(config, pod)
    except RequirementError as exc:
        return str(exc), None
    return None, None


def _with_claims(spec: Mapping[str, Any], statefulset: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec a StatefulSet's pods get: one ``persistentVolumeClaim`` volume per
    ``volumeClaimTemplates`` entry, replacing a volume of the same name (as its controller does)."""
    outer = statefulset.get("spec")
    claims = outer.get("volumeClaimTemplates") if isinstance(outer, Mapping) else None
    names = [_meta(c).get("name") for c in claims if isinstance(c, Mapping)] if isinstance(claims, list) else []
    names = [n for n in names if isinstance(n, str) and n]
    if not names:
        return spec
    name = _meta(statefulset).get("name") or "set"
    volumes = spec.get("volumes")
    kept = [v for v in (volumes if isinstance(volumes, list) else [])
            if not (isinstance(v, Mapping) and v.get("name") in names)]
    claimed = [{"name": n, "persistentVolumeClaim": {"claimName": f"{n}-{name}-0"}} for n in names]
    return {**spec, "volumes": kept + claimed}


def _template(workload: Mapping[str, Any] | None, path: tuple[str, ...]) -> Mapping[str, Any] | None:
    """The pod template at ``path`` (``None`` when a step is absent); :class:`InvalidPod` when a
    step is not an object."""
    found: Any = workload
    for i, step in enumerate(path):
        found = found.get(step) if isinstance(found, Mapping) else None
        if found is None:
            return None
        if not isinstance(found, Mapping):
            raise InvalidPod([(".".join(path[:i + 1]), f"expected an object, got {describe(found)}")])
    return found if isinstance(found, Mapping) else None


def decide_workload(request: AdmissionRequest, ctx: Context, path: tuple[str, ...]) -> Decision:
    """A workload's pod template: denied with the message its pods would get, else allowed as
    it is (never patched)."""
    name = f"{request.kind or request.resource} {describe_pod(request)}"
    workload = request.obj
    where = ".".join(path)
    try:
        template = _template(workload, path) if request.operation in ("CREATE", "UPDATE") else None
        if template is not None:
            check_pod(template, where=where)
    except InvalidPod as exc:
        return _denied(name, 400, f"invalid pod template: {exc}")
    if workload is None or template is None:
        return _untouched(name, f"no pod template to review ({request.operation})")
    meta = _meta(workload)
    namespace = request.namespace or _text(meta.get("namespace"))
    if namespace in ctx.settings.excluded_namespaces:
        return _untouched(name, f"namespace {namespace} is never touched")
    template_meta = _meta(template)
    if _string_map(template_meta, "labels").get(ENABLED_LABEL) == "false":
        return _untouched(name, f'template opted out ({ENABLED_LABEL}: "false")')
    if request.operation == "UPDATE" and (meta.get("deletionTimestamp")
                                          or template_at(request.old, path) == template):
        return _untouched(name, "pod template unchanged")
    spec = template.get("spec")
    spec = _with_claims(spec if isinstance(spec, Mapping) else {}, workload) if request.resource == "statefulsets" \
        else spec
    pod = {"metadata": {**template_meta, "namespace": namespace}, "spec": spec if isinstance(spec, Mapping) else {}}
    denial, left = review_pod(pod, ctx.config, ctx.settings.gpu_runtime_classes)
    if denial:
        return _denied(name, 400, f"{where}: {denial}")
    if left:
        return _untouched(name, f"{where} {left}")
    warnings = tuple(f"{where}: {w}" for w in soft_problems(pod))
    return Decision(Verdict.allow(warnings=warnings), UNTOUCHED, name, f"{where} reviewed: its pods can run on Vast")


def decide(request: AdmissionRequest, ctx: Context) -> Decision:
    path = request.template_path
    if path is not None:
        return decide_workload(request, ctx, path)
    pod_name = describe_pod(request)
    if not request.is_pod_create or request.obj is None:
        return _untouched(pod_name, f"not a pod CREATE ({request.operation} {request.resource})")
    try:
        pod = check_pod(request.obj)
    except InvalidPod as exc:
        return _denied(pod_name, 400, f"invalid pod: {exc}")
    meta = _meta(pod)
    namespace = request.namespace or meta.get("namespace") or ""
    if namespace in ctx.settings.excluded_namespaces:
        return _untouched(pod_name, f"namespace {namespace} is never touched")
    # The config's defaults per namespace (interruptible) read the namespace, which a pod being
    # created may not carry yet: ranked as the namespaced pod it will be; the patch is of the pod as sent.
    view = {**pod, "metadata": {**meta, "namespace": namespace}} if namespace and not meta.get("namespace") else pod
    if _string_map(meta, "labels").get(ENABLED_LABEL) == "false":
        return _untouched(pod_name, f'opted out ({ENABLED_LABEL}: "false")')

    denial, left = review_pod(view, ctx.config, ctx.settings.gpu_runtime_classes)
    if denial:
        return _denied(pod_name, 400, denial)
    if left:
        return _untouched(pod_name, left)
    placement = place(view, snapshot=ctx.snapshot, now=ctx.now, config=ctx.config, policy=ctx.policy,
                      max_age=ctx.settings.max_snapshot_age)
    if placement.invalid:
        return _denied(pod_name, 400, placement.reason, placement)

    warnings = soft_problems(pod)
    annotations = _string_map(meta, "annotations")
    error_kind: str | None = None
    audit: dict[str, str]
    if placement.chosen is not None:
        chosen = placement.chosen
        already = annotated_offer_id(pod) == chosen.offer.id and all(k in annotations for k in OFFER_ANNOTATIONS)
        assert placement.ranking is not None
        mutation_set = {} if already else offer_annotations(chosen, placement.ranking, now=ctx.now)
        remove = frozenset({SELECTION_ERROR})
        if placement.annotated_offer_gone:
            warnings.append(f"the offer in {OFFER_ID} is no longer available; "
                            f"selected offer {chosen.offer.id} instead")
        note = f"offer {chosen.offer.id} (score {chosen.score:.3f})" + (" kept" if already else "")
        audit = {"offer-id": str(chosen.offer.id)}
        price = chosen.offer.dph_total or 0.0
        over = judge_budget(ctx.budgets, str(namespace), price, now=ctx.now)
        if over is not None and over.action == "deny":
            return _denied(pod_name, 403, over.message, placement, warnings=tuple(warnings), error_kind="budget")
        if over is not None:
            warnings.append(over.message)
            if QUEUED_ANNOTATION not in annotations:
                mutation_set = {**mutation_set, QUEUED_ANNOTATION: over.message}
        charge: tuple[str, float] | None = (str(namespace), price)
    else:
        error_kind = _error_kind(placement, ctx.snapshot)
        gpu_warning = _gpu_name_warning(placement)
        if gpu_warning:
            warnings.append(gpu_warning)
        if ctx.settings.deny_without_offer:
            return _denied(pod_name, 403, f"no Vast offer for this pod: {placement.reason}", placement,
                           warnings=tuple(warnings), error_kind=error_kind)
        mutation_set = {SELECTION_ERROR: placement.reason}
        remove = frozenset(OFFER_ANNOTATIONS)
        note = f"no offer: {placement.reason}"
        audit = {"selection-error": placement.reason}
        charge = None

    scheduler = ctx.settings.scheduler_name
    spec = pod.get("spec")
    current = spec.get("schedulerName") if isinstance(spec, Mapping) else None
    if scheduler and not replaces_scheduler(current) and current != scheduler:
        warnings.append(f"spec.schedulerName {current!r} kept: only {scheduler!r} consults the Vast "
                        "scheduler extender, so this pod may never reach the virtual node")
    patch = patch_for(pod, Mutation(mutation_set, remove, ctx.settings.taint, scheduler, route_selectors=True))
    verdict = Verdict.allow(patch, warnings=tuple(warnings), audit=audit)
    return Decision(verdict, MUTATED if patch else UNTOUCHED, pod_name, note, placement, error_kind, charge)
