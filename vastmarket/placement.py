"""Can this pod be placed on Vast right now, and on which offer? The one decision that the
scheduler extender (filter/prioritize) and the admission webhook both take, from the offer
snapshot only — never by calling Vast.

:func:`place` returns a :class:`Placement`: the pod's requirements, the ranking, the chosen
offer (the one the webhook annotated when it still matches, else the best), or the reason
why not: no snapshot yet, a stale snapshot (one published while Vast's search quota pauses the
searches is still served: :meth:`~vastmarket.snapshot.OfferSnapshot.stale_reason`), invalid
requirements, or no matching offer.
Pure function of its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import SelectionConfig
from .errors import RequirementError
from .requirements import Requirements, requirements_for
from .selection import Ranking, ScoredOffer, ScoringPolicy
from .snapshot import OfferSnapshot

OFFER_ID_ANNOTATION = "vast.ai/offer-id"


@dataclass(frozen=True, slots=True)
class Placement:
    """``chosen`` is set when the pod can go to Vast now; otherwise :attr:`reason` says why not.

    With a ranking, the reason is its summary after ``detail``, put together only when it is
    read: the extender's filter and prioritize seldom read it, and they judge every new pod on
    kube-scheduler's clock."""

    chosen: ScoredOffer | None
    detail: str  # the whole reason without a ranking; what comes before its summary with one
    requirements: Requirements | None = None
    ranking: Ranking | None = None
    invalid: bool = False
    annotated_offer_gone: bool = False

    @property
    def ok(self) -> bool:
        return self.chosen is not None

    @property
    def reason(self) -> str:
        if self.ranking is None:
            return self.detail
        text = self.detail + self.ranking.summary()
        req = self.requirements
        if self.chosen is None and req is not None and req.gpu_origin:
            text += f" (the GPU is required by the pod's {req.gpu_origin})"
        return text


def annotated_offer_id(pod: Mapping[str, Any]) -> int | None:
    meta = pod.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    raw = annotations.get(OFFER_ID_ANNOTATION) if isinstance(annotations, Mapping) else None
    try:
        return int(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def place(
    pod: Mapping[str, Any],
    *,
    snapshot: OfferSnapshot | None,
    now: float,
    config: SelectionConfig,
    policy: ScoringPolicy,
    max_age: float,
) -> Placement:
    """Decide whether ``pod`` can be placed on a Vast offer from ``snapshot`` at ``now``."""
    try:
        req = requirements_for(config, pod)
    except RequirementError as exc:
        return Placement(None, f"invalid pod requirements: {exc}", invalid=True)
    if snapshot is None:
        return Placement(None, "no Vast offer snapshot yet (the controller has not published one)",
                         requirements=req)
    stale = snapshot.stale_reason(now, max_age)
    if stale is not None:
        return Placement(None, stale, requirements=req)
    ranking = snapshot.rank(req, policy)
    wanted = annotated_offer_id(pod)
    # The offer the webhook chose, while it still matches: its score alone is worked out, not
    # every passing offer's (a pod reaches the extender with it).
    annotated = ranking.find(wanted) if wanted is not None else None
    if annotated is not None:
        return Placement(annotated, "", requirements=req, ranking=ranking)
    best = ranking.best
    if best is None or wanted is None:
        return Placement(best, "", requirements=req, ranking=ranking)
    return Placement(best, f"annotated offer {wanted} is gone; ", requirements=req, ranking=ranking,
                     annotated_offer_gone=True)
