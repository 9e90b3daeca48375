"""The extender's pure core: which nodes pass filter (with a reason when not) and their scores.

Only the virtual Vast node(s) are judged; every other node passes filter untouched.

* Filter: the virtual node passes when an offer in the snapshot satisfies the pod now (the one
  the webhook annotated, or another if it vanished). Otherwise it is reported in
  ``FailedAndUnresolvableNodes`` with the reason — deliberately not ``FailedNodes``: the
  scheduler's preemption does not consult extenders, and evicting pods from a virtual node never
  makes a Vast offer appear, so it must not pick victims there.
* Prioritize: integers 0–10 for every node asked about. The virtual node scores from its best
  offer; real nodes by the burst policy: ``local-first`` gives real nodes 10 and the virtual
  node at most 5, so capacity the cluster already has wins; ``cost-first`` gives the virtual
  node its offer score × 10 and real nodes a fixed score (default 5), so a good cheap offer wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vastmarket.config import SelectionConfig
from vastmarket.placement import Placement, place
from vastmarket.selection import ScoringPolicy
from vastmarket.snapshot import OfferSnapshot

from .protocol import ExtenderArgs, validate_pod

BurstPolicy = Literal["local-first", "cost-first"]
BURST_POLICIES: tuple[str, ...] = ("local-first", "cost-first")
MAX_SCORE = 10


@dataclass(frozen=True, slots=True)
class VirtualNodes:
    """How virtual Vast nodes are recognised: by name, or (full Nodes form) by labels."""

    names: frozenset[str] = frozenset({"vast-gpu-node-1"})
    labels: Mapping[str, str] = field(default_factory=lambda: {"vast.ai/virtual-node": "true"})

    def is_virtual(self, name: str, node: Mapping[str, Any] | None) -> bool:
        if name in self.names:
            return True
        if node is None or not self.labels:
            return False
        meta = node.get("metadata")
        labels = meta.get("labels") if isinstance(meta, Mapping) else None
        if not isinstance(labels, Mapping):
            return False
        return all(labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a decision depends on, captured at the time of the request."""

    snapshot: OfferSnapshot | None
    now: float
    config: SelectionConfig
    policy: ScoringPolicy
    virtual: VirtualNodes
    max_snapshot_age: float
    burst_policy: str = "local-first"
    real_node_score: int = 5


@dataclass(frozen=True, slots=True)
class FilterDecision:
    passed: Sequence[str]
    failed: Mapping[str, str]
    unresolvable: Mapping[str, str]
    placement: Placement | None = None  # set when a virtual node was judged
    virtual: tuple[str, ...] = ()  # the virtual nodes in the request


def _virtual_names(args: ExtenderArgs, ctx: Context) -> frozenset[str]:
    if args.nodes is None:  # names only: a search per virtual node (a set would hash every name)
        return frozenset(name for name in ctx.virtual.names if args.has_name(name))
    return frozenset(name for name, node in zip(args.names, args.nodes) if ctx.virtual.is_virtual(name, node))


def placement_for(args: ExtenderArgs, ctx: Context) -> Placement:
    validate_pod(args.pod)  # the pod's fields are read from here on (BadRequest: a 400)
    return place(args.pod, snapshot=ctx.snapshot, now=ctx.now, config=ctx.config, policy=ctx.policy,
                 max_age=ctx.max_snapshot_age)


def filter_nodes(args: ExtenderArgs, ctx: Context,
                 placement_of: Callable[[ExtenderArgs, Context], Placement] = placement_for) -> FilterDecision:
    virtual = _virtual_names(args, ctx)
    if not virtual:
        return FilterDecision(args.names, {}, {})
    judged = tuple(sorted(virtual))
    placement = placement_of(args, ctx)
    if placement.ok:
        return FilterDecision(args.names, {}, {}, placement, judged)
    reason = f"Vast: {placement.reason}"
    passed = tuple(n for n in args.names if n not in virtual)
    return FilterDecision(passed, {}, dict.fromkeys(judged, reason), placement, judged)


def virtual_score(placement: Placement, burst_policy: str) -> int:
    if placement.chosen is None:
        return 0
    scale = MAX_SCORE if burst_policy == "cost-first" else MAX_SCORE // 2
    return max(0, min(scale, round(placement.chosen.score * scale)))


@dataclass(frozen=True, slots=True)
class Priorities:
    """The scores of one prioritize request: ``virtual_score`` for the virtual nodes in it,
    ``real_score`` for every other node."""

    names: Sequence[str]
    virtual_at: tuple[int, ...]  # the virtual nodes' positions among the names, ascending
    virtual_score: int
    real_score: int

    def scores(self) -> list[tuple[str, int]]:
        virtual = set(self.virtual_at)
        return [(n, self.virtual_score if i in virtual else self.real_score) for i, n in enumerate(self.names)]


def _virtual_positions(args: ExtenderArgs, ctx: Context) -> tuple[int, ...]:
    if args.nodes is None:  # names only: a search per virtual node, as in _virtual_names
        return tuple(sorted(at for name in ctx.virtual.names for at in args.positions(name)))
    return tuple(i for i, (name, node) in enumerate(zip(args.names, args.nodes)) if ctx.virtual.is_virtual(name, node))


def priorities(args: ExtenderArgs, ctx: Context,
               placement_of: Callable[[ExtenderArgs, Context], Placement] = placement_for) -> Priorities:
    virtual_at = _virtual_positions(args, ctx)
    v_score = virtual_score(placement_of(args, ctx), ctx.burst_policy) if virtual_at else 0
    real = MAX_SCORE if ctx.burst_policy == "local-first" else ctx.real_node_score
    return Priorities(args.names, virtual_at, v_score, real)


def prioritize_nodes(args: ExtenderArgs, ctx: Context) -> list[tuple[str, int]]:
    return priorities(args, ctx).scores()
