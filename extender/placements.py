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
last :data:`KEPT` pods: kube-scheduler judges one pod at a time, so prioritize comes right after
its filter, and every placement kept is more for the cyclic garbage collector to walk.
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
KEPT = 64

PlacementOf = Callable[[ExtenderArgs, Context], Placement]


Key = tuple[str, str, tuple[tuple[Any, Any], ...]]


def _identity(pod: Mapping[str, Any]) -> Key | None:
    meta = pod.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    uid, version, annotations = meta.get("uid"), meta.get("resourceVersion"), meta.get("annotations")
    if not (isinstance(uid, str) and uid and isinstance(version, str) and version):
        return None
    key = (uid, version, tuple(annotations.items()) if isinstance(annotations, Mapping) else ())
    try:
        hash(key)
    except TypeError:  # an annotation that is not a string: judged (and refused) every time
        return None
    return key


class RecentPlacements:
    """``placement_for`` with the answers of the last :data:`KEPT` pods reused (see the module)."""

    def __init__(self, compute: PlacementOf = placement_for, *, kept: int = KEPT,
                 reuse_seconds: float = REUSE_SECONDS) -> None:
        self._compute = compute
        self._kept = kept
        self._reuse_seconds = reuse_seconds
        self._snapshot: OfferSnapshot | None = None
        self._data: dict[Key, tuple[float, Placement]] = {}
        self._lock = threading.Lock()

    def __call__(self, args: ExtenderArgs, ctx: Context) -> Placement:
        key = _identity(args.pod)
        if key is None:
            return self._compute(args, ctx)
        with self._lock:
            if ctx.snapshot is not self._snapshot:
                self._snapshot = ctx.snapshot
                self._data.clear()
            hit = self._data.get(key)
        if hit is not None and 0.0 <= ctx.now - hit[0] <= self._reuse_seconds:
            return hit[1]
        placement = self._compute(args, ctx)
        with self._lock:
            if ctx.snapshot is self._snapshot:
                self._data.pop(key, None)
                self._data[key] = (ctx.now, placement)
                while len(self._data) > self._kept:
                    del self._data[next(iter(self._data))]
        return placement
