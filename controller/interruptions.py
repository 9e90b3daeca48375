"""Interruptible (bid) instances: the bid at launch, and what happens when one is outbid.

Vast pauses an outbid instance: it is stopped (``cur_state == intended_status == next_state ==
"stopped"``), keeps its disk and bills its storage, and runs again once its bid reaches the
machine's ``min_bid``. A paused instance serves nothing, so the pod is out of its Services at once.

The pod's phases while interrupted, one row per step (the reconciler dispatches here from
:meth:`Reconciler._drive` whenever an interruptible instance of the pod is paused, or an
interruption is on record):

=================  ==========================================  =============================
seen               written first                               then
=================  ==========================================  =============================
paused, no record  endpoints not ready, ``VastInterrupted``    ``interrupted`` in
                   True + Event                                ``vast.ai/launch`` (instance,
                                                               since)
paused, policy     ``raisedTo``/``raisedAt`` in the record,    ``PUT bid_price`` (a margin over
raise-then-move    ``vast.ai/bid``                             the new ``min_bid``, within
and room                                                       ``bid-max``); wait for it to run
paused/booting     —                                           look again (``RETRY``)
within the wait
paused, policy     ``replacing`` (controller.replacement),     the paused instance destroyed
move, or no room,  the record's ``interrupted`` dropped        until Vast confirms it, then a
or the wait over                                               new launch (exactly once)
running again      the record's ``interrupted`` dropped        ``VastInterrupted`` False +
                                                               Event; probed afresh
=================  ==========================================  =============================

The wait (``interruptible.move_after_seconds``) counts from the raise under ``raise-then-move``
and from the outbid under ``move``; with no room under ``bid-max`` a raise-then-move pod moves at
once. ``wait`` never raises nor moves: the instance runs again when the market's ``min_bid``
falls back to its bid. The move destroys the paused instance *before* the replacement is rented,
so a pod never has two instances (paused or not) at any moment.

:func:`plan` is pure; :class:`Interruptions` is the thin shell the reconciler calls.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vastmarket.bids import BidChoice, InterruptibleConfig, InterruptionPolicy, bid_for
from vastmarket.errors import RequirementError, VastRejected
from vastmarket.instances import Instance
from vastmarket.offers import Offer
from vastmarket.requirements import Requirements, bid_choice

from . import replacement, status
from .kube import now_rfc3339

if TYPE_CHECKING:  # the reconciler calls in; its helpers write the pod
    from .reconciler import Reconciler

log = logging.getLogger("kube_vast.controller")

A_BID = "vast.ai/bid"  # the bid placed on the pod's instance, $/h for its GPUs
INTERRUPTED = "interrupted"  # the launch record's entry while an instance is paused
CONDITION = "VastInterrupted"
RETRY = 1.0


@dataclass(frozen=True, slots=True)
class Bid:
    """A bid for the GPUs and the storage billed beside it, both $/h."""

    price: float
    storage: float

    @property
    def total(self) -> float:
        return round(self.price + self.storage, 6)


def launch_bid(offer: Offer, req: Requirements, *, margin: float) -> Bid | None:
    """The bid on ``offer`` for an interruptible pod (``req.interruptible``), whose ranking priced
    offers at ``min_bid`` plus storage (vastmarket.bids.bid_priced); ``None`` when it has no
    ``min_bid`` or no room under the ceiling."""
    if offer.min_bid is None or offer.dph_total is None:
        return None
    storage = max(0.0, offer.dph_total - offer.min_bid)
    price = bid_for(offer.min_bid, margin=margin, ceiling=req.max_price - storage)
    return None if price is None else Bid(price, storage)


@dataclass(frozen=True, slots=True)
class Interruption:
    """The ``interrupted`` entry of a launch record."""

    instance_id: int
    since: float
    raised_to: float | None = None
    raised_at: float | None = None

    @classmethod
    def read(cls, record: Mapping[str, Any]) -> Interruption | None:
        raw = record.get(INTERRUPTED)
        if not isinstance(raw, Mapping):
            return None
        instance, since = raw.get("instance"), raw.get("since")
        if isinstance(instance, bool) or not isinstance(instance, int) or not isinstance(since, (int, float)):
            return None
        raised_to, raised_at = raw.get("raisedTo"), raw.get("raisedAt")
        return cls(instance, float(since), float(raised_to) if isinstance(raised_to, (int, float)) else None,
                   float(raised_at) if isinstance(raised_at, (int, float)) else None)

    def encode(self) -> dict[str, Any]:
        return {"instance": self.instance_id, "since": self.since, "raisedTo": self.raised_to,
                "raisedAt": self.raised_at}


def with_interruption(record: Mapping[str, Any], interruption: Interruption | None) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k != INTERRUPTED}
    if interruption is not None:
        out[INTERRUPTED] = interruption.encode()
    return out


class Action(enum.Enum):
    RAISE = "raise"
    WAIT = "wait"
    MOVE = "move"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    why: str
    price: float | None = None  # the new bid (RAISE)
    seconds: float = RETRY      # when to look again (WAIT)


def plan(interruption: Interruption, inst: Instance, *, choice: BidChoice, bid: float | None,
         settings: InterruptibleConfig, now: float) -> Decision:
    """What to do about a paused (or resuming) instance. ``bid``: the bid placed on it (None:
    not known, as after an adoption), ``choice.bid_max``: the ceiling, bid plus storage."""
    policy = choice.policy
    after = settings.move_after_seconds
    if policy is InterruptionPolicy.WAIT:
        return Decision(Action.WAIT, "policy wait: the instance runs again when the market falls back to its bid",
                        seconds=5.0)
    if policy is InterruptionPolicy.MOVE:
        left = interruption.since + after - now
        if left > 0:
            return Decision(Action.WAIT, f"policy move: moving in {left:.0f}s unless it runs again",
                            seconds=min(RETRY, left))
        return Decision(Action.MOVE, f"policy move: paused for {now - interruption.since:.0f}s")
    if interruption.raised_at is not None and (not inst.paused or (
            inst.min_bid is not None and interruption.raised_to is not None
            and interruption.raised_to >= inst.min_bid - 1e-9)):
        left = interruption.raised_at + after - now  # raised: wait for it to run again
        if left > 0:
            return Decision(Action.WAIT, f"bid raised to ${interruption.raised_to}/h; waiting up to {left:.0f}s "
                                         "for the instance to run again", seconds=min(RETRY, left))
        return Decision(Action.MOVE, f"the bid was raised to ${interruption.raised_to}/h but the instance did not "
                                     f"run again within {after:.0f}s")
    min_bid = inst.min_bid
    if min_bid is None:
        return Decision(Action.MOVE, "Vast does not say the machine's min_bid: no bid to raise to")
    storage = max(0.0, (inst.dph_total or 0.0) - bid) if bid is not None else 0.0
    ceiling = (choice.bid_max if choice.bid_max is not None else float("inf")) - storage
    price = bid_for(min_bid, margin=settings.bid_margin, ceiling=ceiling)
    if price is None:
        return Decision(Action.MOVE, f"the machine's min_bid is now ${min_bid}/h: no room under the bid-max of "
                                     f"${choice.bid_max}/h (storage ${storage:.4f}/h)")
    return Decision(Action.RAISE, f"min_bid is now ${min_bid}/h; raising the bid to ${price}/h "
                                  f"(bid-max ${choice.bid_max}/h)", price=price)


def condition(interrupted: bool, reason: str, message: str, now: str) -> dict[str, Any]:
    return {"type": CONDITION, "status": "True" if interrupted else "False", "reason": reason,
            "message": message, "lastTransitionTime": now, "lastProbeTime": None}


def with_condition(new_status: dict[str, Any], cond: Mapping[str, Any]) -> dict[str, Any]:
    """``new_status`` (controller.status) with the ``VastInterrupted`` condition set."""
    kept = [c for c in new_status.get("conditions", []) if c.get("type") != CONDITION]
    return {**new_status, "conditions": [*kept, dict(cond)]}


def interrupted_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == CONDITION:
            return c
    return None


def placed_bid(pod: Mapping[str, Any]) -> float | None:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(A_BID)
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def paused_bid(instances: list[Instance], record: Mapping[str, Any]) -> Instance | None:
    """The pod's instance an interruption is about: an interruptible one that is paused, or the
    one on record while it resumes."""
    on_record = Interruption.read(record)
    for inst in instances:
        if on_record is not None and inst.id == on_record.instance_id:
            return inst
    for inst in instances:
        if inst.is_bid and inst.paused:
            return inst
    return None


class Interruptions:
    """The shell: reads and writes through the reconciler's helpers, calls Vast."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.r = reconciler

    def step(self, pod: dict[str, Any], inst: Instance) -> tuple[float | None, dict[str, Any]]:
        """One step for ``inst`` (see the module's table): when to look again, or None once it
        runs again (the caller goes on serving it); and the pod as written."""
        r = self.r
        record = r._launch_record(pod)
        interruption = Interruption.read(record)
        if interruption is not None and interruption.instance_id != inst.id:
            interruption = None
        if inst.running:
            if interruption is not None:
                pod = self._resumed(pod, inst, record)
            return None, pod
        now = r.clock()
        r.fleet.hurry()
        if interruption is None:
            if not inst.paused:
                return None, pod  # not (or no longer) outbid: the usual path judges it
            # Out of service first, then the record: a controller killed in between marks it again.
            self._mark(pod, inst)
            interruption = Interruption(inst.id, now)
            pod = r._patch_annotations(pod, {"vast.ai/launch": _encode(with_interruption(record, interruption))})
        try:
            choice = bid_choice(r.config, pod)
        except RequirementError:
            choice = BidChoice(True, None, r.config.interruptible.policy)
        decision = plan(interruption, inst, choice=choice, bid=placed_bid(pod), settings=r.config.interruptible,
                        now=now)
        if decision.action is Action.RAISE and decision.price is not None:
            over = self._over_budget(pod, inst, decision.price)
            if over is not None:
                return self._move(pod, inst, f"{decision.why}, but {over}"), pod
            raised = replace(interruption, raised_to=decision.price, raised_at=now)
            pod = r._patch_annotations(pod, {"vast.ai/launch": _encode(with_interruption(r._launch_record(pod), raised)),
                                             A_BID: f"{decision.price:g}"})
            try:
                r.vast.set_bid(inst.id, decision.price)
            except VastRejected as exc:
                return self._move(pod, inst, f"raising the bid was refused: {exc}"), pod
            r._event(pod, "BidRaised", f"instance {inst.id} outbid: {decision.why}")
            return RETRY, pod
        if decision.action is Action.MOVE:
            return self._move(pod, inst, decision.why), pod
        return decision.seconds, pod

    def _over_budget(self, pod: Mapping[str, Any], inst: Instance, price: float) -> str | None:
        """Why raising ``inst``'s bid to ``price`` would break the global budget (its $/hour
        counts at its bid), or None."""
        r = self.r
        spend, _ = r.fleet.hourly_spend()
        placed = placed_bid(pod)
        extra = price - placed if placed is not None else price
        if extra > 0 and spend + extra > r.max_spend + 1e-9:
            return (f"that would take this cluster to ${spend + extra:.3f}/h, over the budget's "
                    f"${r.max_spend:.2f}/h")
        meta = pod["metadata"]
        team = r.budgets.fits(meta["namespace"], meta["uid"], (inst.dph_total or 0.0) + max(0.0, extra))
        if extra > 0 and team is not None:  # the namespace's VastBudgets (controller.budgets)
            return f"that would take the namespace over its budget: {team.message}"
        return None

    def _mark(self, pod: dict[str, Any], inst: Instance) -> None:
        r = self.r
        uid = pod["metadata"]["uid"]
        with r._lock:
            r._health.pop(uid, None)  # probed afresh when it runs again
        r._endpoints_not_ready(pod)
        message = (f"instance {inst.id} was outbid (min_bid now ${inst.min_bid}/h) and is paused by Vast; "
                   "out of its Services")
        r._event(pod, CONDITION, message, warning=True)
        now = now_rfc3339()
        base = status.pod_status(pod, phase="Running", ready=False, public_ip=inst.public_ip,
                                 started_at=(pod.get("status") or {}).get("startTime") or now,
                                 container_state="waiting", reason="VastInterrupted", message=message, now=now)
        r._write_status(pod, with_condition(base, condition(True, "Outbid", message, now)))

    def _resumed(self, pod: dict[str, Any], inst: Instance, record: Mapping[str, Any]) -> dict[str, Any]:
        r = self.r
        pod = r._patch_annotations(pod, {"vast.ai/launch": _encode(with_interruption(record, None))})
        with r._lock:
            r._health.pop(pod["metadata"]["uid"], None)
        message = f"instance {inst.id} runs again"
        r._event(pod, "VastResumed", message)
        return self.clear_condition(pod, "Resumed", message)

    def settled(self, pod: dict[str, Any], inst: Instance) -> dict[str, Any]:
        """The pod with ``VastInterrupted`` False once ``inst`` (a replacement) runs."""
        return self.clear_condition(pod, "Replaced", f"instance {inst.id} runs in place of the outbid one")

    def clear_condition(self, pod: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
        """``VastInterrupted`` False, when it was True; the pod as written."""
        found = interrupted_condition(pod)
        if found is None or found.get("status") != "True":
            return pod
        now = now_rfc3339()
        conditions = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != CONDITION]
        return self.r.kube.patch_pod_status(pod["metadata"]["namespace"], pod["metadata"]["name"],
                                            {"conditions": [*conditions, condition(False, reason, message, now)]})

    def _move(self, pod: dict[str, Any], inst: Instance, why: str) -> float:
        r = self.r
        replacing = replacement.Replacing(inst.id, inst.machine_id, f"instance {inst.id} outbid: {why}",
                                          cause="VastInterrupted")
        record = with_interruption(r._launch_record(pod), None)
        pod = r._patch_annotations(pod, {"vast.ai/launch": _encode(replacement.begin(record, replacing)),
                                         A_BID: None})
        r._event(pod, "InterruptedMove", f"instance {inst.id} outbid: {why}; destroying it and renting a "
                                         "replacement", warning=True)
        return r._replace(pod, replacing, [inst])


def _encode(record: Mapping[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))
