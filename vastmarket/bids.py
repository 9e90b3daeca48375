"""Interruptible (bid) rentals: the policy settings, the bid arithmetic and the pod's choice.

Vast rents an offer as *interruptible* when the create body carries ``price`` (the bid, $/h for
the machine's GPUs). The bid must be at least the offer's ``min_bid``; an instance whose bid
falls under the market's ``min_bid`` (another renter bid more) is stopped — *paused*, not
destroyed: it keeps its disk and keeps billing storage, and runs again once its bid is raised to
the market's ``min_bid`` (``PUT /api/v0/instances/bid_price/{id}/``).

Prices here are hourly totals where a pod states a ceiling: ``vast.ai/bid-max`` (like
``vast.ai/price-max``) bounds what the instance costs per hour, the bid plus its storage. The bid
itself is ``min_bid × (1 + margin)``, cut to the ceiling, never under ``min_bid``
(:func:`bid_for`).

What a pod chose (:class:`BidChoice`) comes, lowest precedence first, from the config's
``interruptible`` section (``default``, ``namespaces``, ``policy``) and then the pod's annotations
``vast.ai/interruptible``, ``vast.ai/bid-max`` and ``vast.ai/interruption-policy``. Pure; no I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from marshmallow import RAISE, Schema, fields, validate

from .instances import Instance
from .offers import Offer

BID_MARGIN = 0.10  # bid this much above min_bid by default: a small rise of the market does not pause us
MOVE_AFTER_SECONDS = 60.0  # how long a paused instance may take to resume before it is moved


class InterruptionPolicy(str, enum.Enum):
    """What the controller does when an interruptible instance is outbid (paused)."""

    RAISE_THEN_MOVE = "raise-then-move"  # raise the bid within bid-max; move if it does not resume
    MOVE = "move"                        # rent a replacement (after move_after_seconds)
    WAIT = "wait"                        # keep the instance and wait for the market to come back

    @classmethod
    def parse(cls, text: str) -> InterruptionPolicy:
        for policy in cls:
            if text.strip().lower() == policy.value:
                return policy
        raise ValueError(POLICY_FORM)


POLICY_FORM = "one of " + ", ".join(p.value for p in InterruptionPolicy)


@dataclass(frozen=True, slots=True)
class InterruptibleConfig:
    """The config file's ``interruptible`` section."""

    default: bool = False                    # every opted-in pod is interruptible unless it says no
    namespaces: frozenset[str] = frozenset()  # pods of these namespaces are interruptible by default
    policy: InterruptionPolicy = InterruptionPolicy.RAISE_THEN_MOVE
    bid_margin: float = BID_MARGIN
    move_after_seconds: float = MOVE_AFTER_SECONDS

    def default_for(self, namespace: str | None) -> bool:
        return self.default or (namespace is not None and namespace in self.namespaces)


class InterruptibleSchema(Schema):
    """``interruptible:`` in the selection config (unknown keys refused, like the rest)."""

    class Meta:
        unknown = RAISE

    default = fields.Boolean()
    namespaces = fields.List(fields.String(validate=validate.Regexp(
        r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", error="expected a namespace name")))
    policy = fields.String(validate=validate.OneOf([p.value for p in InterruptionPolicy], error=f"expected {POLICY_FORM}"))
    bid_margin = fields.Float(validate=validate.Range(min=0, max=10, error="expected a fraction from 0 to 10 such as 0.1"))
    move_after_seconds = fields.Float(validate=validate.Range(min=0, max=86400, error="expected seconds from 0 to 86400"))


def interruptible_config(loaded: dict[str, object] | None) -> InterruptibleConfig:
    """The section as :class:`InterruptibleSchema` loaded it."""
    if not loaded:
        return InterruptibleConfig()
    policy = loaded.get("policy")
    margin = loaded.get("bid_margin")
    after = loaded.get("move_after_seconds")
    names = loaded.get("namespaces")
    return InterruptibleConfig(
        default=bool(loaded.get("default", False)),
        namespaces=frozenset(names) if isinstance(names, list) else frozenset(),
        policy=InterruptionPolicy.parse(policy) if isinstance(policy, str) else InterruptionPolicy.RAISE_THEN_MOVE,
        bid_margin=float(margin) if isinstance(margin, (int, float)) else BID_MARGIN,
        move_after_seconds=float(after) if isinstance(after, (int, float)) else MOVE_AFTER_SECONDS,
    )


@dataclass(frozen=True, slots=True)
class BidChoice:
    """Whether a pod rents interruptibly, its ceiling ($/h, bid plus storage) and its policy."""

    interruptible: bool = False
    bid_max: float | None = None
    policy: InterruptionPolicy = InterruptionPolicy.RAISE_THEN_MOVE


def bid_for(min_bid: float, *, margin: float, ceiling: float) -> float | None:
    """The bid ($/h for the GPUs) to place over ``min_bid``: ``min_bid × (1 + margin)``, cut to
    ``ceiling`` (what the bid may be at most); ``None`` when even ``min_bid`` is over it."""
    if not (math.isfinite(min_bid) and min_bid > 0 and math.isfinite(ceiling)):
        return None
    if min_bid > ceiling + 1e-9:
        return None
    return round(min(min_bid * (1.0 + margin), ceiling), 4)


def interruptible_price(*, min_bid: float | None, dph_base: float | None, dph_total: float | None) -> float | None:
    """An offer's hourly price rented at ``min_bid``: its on-demand total with the on-demand GPU
    price swapped for ``min_bid`` (the storage stays). ``None`` when the offer has no ``min_bid``."""
    if min_bid is None or dph_total is None:
        return None
    storage = max(0.0, dph_total - dph_base) if dph_base is not None else 0.0
    return min_bid + storage


def bid_priced(offers: Sequence[Offer]) -> tuple[Offer, ...]:
    """The offers as an interruptible pod sees them: ``dph_total`` is the hourly price at
    ``min_bid`` (:func:`interruptible_price`; ``None``, so never matching, without one). Ranking
    these ranks on the bid price; every reason, score and ``vast.ai/offer-price`` follows.
    ``dph_base`` becomes ``min_bid``: the GPU part of that price (the rest is storage)."""
    return tuple(replace(o, dph_total=interruptible_price(min_bid=o.min_bid, dph_base=o.dph_base,
                                                          dph_total=o.dph_total), dph_base=o.min_bid)
                 for o in offers)


HOURS_PER_MONTH = 720.0  # Vast's storage_cost is $/GB/month


@dataclass(frozen=True, slots=True)
class InstanceBid:
    """An interruptible instance's bid ($/h for its GPUs), the machine's ``min_bid`` now, and the
    $/h it saves against the same machine on demand (``dph_base`` plus its storage)."""

    bid: float | None
    min_bid: float | None
    saved: float | None


def instance_bid(inst: Instance, *, placed: float | None = None) -> InstanceBid | None:
    """``None`` for an on-demand instance. ``placed``: the bid as recorded when it was placed;
    else its billed price less its storage."""
    if not inst.is_bid:
        return None
    storage = (inst.storage_cost or 0.0) * (inst.disk_space or 0.0) / HOURS_PER_MONTH
    bid = placed if placed is not None else (
        None if inst.dph_total is None else round(inst.dph_total - storage, 6))
    on_demand = None if inst.dph_base is None else inst.dph_base + storage
    return InstanceBid(bid, inst.min_bid, savings(billed=inst.dph_total, on_demand=on_demand))


def savings(*, billed: float | None, on_demand: float | None) -> float | None:
    """$/h saved against renting the same machine on demand."""
    if billed is None or on_demand is None:
        return None
    return round(on_demand - billed, 6)
