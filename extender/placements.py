"""The placements of the pods just judged, asked for again.

kube-scheduler calls prioritize right after filter for the same pod, in the same scheduling
cycle, and a pod the scheduler retries is filtered again: each time the extender would read the
pod's requirements and rank the offer snapshot anew. A pod's uid and resourceVersion name its
content (any change to the pod, such as the webhook's annotations, makes a new resourceVersion),
so the placement for the same pod, on the same snapshot, a few seconds later, is the same one.
The annotations (where a pod's requirements are mostly written) are part of the key as well, so
that even a client that changes a pod without a new resourceVersion gets a fresh judgement.

Kept only for the snapshot being served (a new snapshot starts afresh, so no old offer table is
kept alive) and for :data:`REUSE_SECONDS` (a placement also depends on the time, through the
snapshot's staleness). A pod without a uid or resourceVersion is judged every time. Only the
last :data:`KEPT` pods: kube-scheduler judges one pod at a time (a scheduling loop per profile),
so prioritize comes right after its filter. Every placement kept is young until the cyclic
garbage collector's next pass, which walks it (on the request path, every few dozen requests);
with few kept, most are freed before that, never walked (docs/benchmarks.md: at 64 kept, here
and in the snapshot's rankings, those passes took about 3 times the bare endpoint's).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from vastmarket.placement import Placement
from vastmarket.snapshot import OfferSnapshot

from .decisions import Context, placement_for
from .protocol import ExtenderArgs

REUSE_SECONDS = 5.0
KEPT = 16

PlacementOf = Callable[[ExtenderArgs, Context], Placement]


Key = tuple[str, str]  # uid, resourceVersion


def _identity(pod: Mapping[str, Any]) -> tuple[Key, dict[Any, Any] | None] | None:
    """The pod's uid and resourceVersion, and a copy of its annotations (compared on a hit)."""
    meta = pod.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    uid, version, annotations = meta.get("uid"), meta.get("resourceVersion"), meta.get("annotations")
    if not (isinstance(uid, str) and uid and isinstance(version, str) and version):
        return None
    return (uid, version), dict(annotations) if isinstance(annotations, Mapping) else None


class RecentPlacements:
    """``placement_for`` with the answers of the last :data:`KEPT` pods reused (see the module)."""

    def __init__(self, compute: PlacementOf = placement_for, *, kept: int = KEPT,
                 reuse_seconds: float = REUSE_SECONDS) -> None:
        self._compute = compute
        self._kept = kept
        self._reuse_seconds = reuse_seconds
        self._snapshot: OfferSnapshot | None = None
        self._data: dict[Key, tuple[float, dict[Any, Any] | None, Placement]] = {}
        self._lock = threading.Lock()

    def __call__(self, args: ExtenderArgs, ctx: Context) -> Placement:
        identity = _identity(args.pod)
        if identity is None:
            return self._compute(args, ctx)
        key, annotations = identity
        with self._lock:
            if ctx.snapshot is not self._snapshot:
                self._snapshot = ctx.snapshot
                self._data.clear()
            hit = self._data.get(key)
        if hit is not None and 0.0 <= ctx.now - hit[0] <= self._reuse_seconds and hit[1] == annotations:
            return hit[2]
        placement = self._compute(args, ctx)
        with self._lock:
            if ctx.snapshot is self._snapshot:
                self._data.pop(key, None)
                self._data[key] = (ctx.now, annotations, placement)
                while len(self._data) > self._kept:
                    del self._data[next(iter(self._data))]
        return placement
