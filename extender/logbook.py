"""Selection logging without flooding: one line per pod and decision at INFO (the whole
seed-style table with it at DEBUG), one line at DEBUG when the same pod is asked about again
with the same answer."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from vastmarket.explain import selection_log
from vastmarket.placement import Placement


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    uid = meta.get("uid")
    name = meta.get("name") or meta.get("generateName") or "?"
    return f"{meta.get('namespace', '?')}/{name}" + (f"#{uid}" if uid else "")


def decision_key(placement: Placement) -> str:
    return f"offer:{placement.chosen.offer_id}" if placement.chosen else f"no:{placement.reason}"


class SelectionLogbook:
    def __init__(self, logger: logging.Logger, *, remember: int = 4096) -> None:
        self._log = logger
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def record(self, pod: Mapping[str, Any], node: str, placement: Placement) -> bool:
        """Log a filter decision on a virtual node; True when the full table was logged."""
        if not self._log.isEnabledFor(logging.INFO):  # nothing to write, so nothing worked out
            return False
        key, decision = pod_key(pod), decision_key(placement)
        with self._lock:
            repeated = self._seen.get(key) == decision
            self._seen[key] = decision
            self._seen.move_to_end(key)
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        verdict = "passes" if placement.ok else "fails"
        if repeated:
            self._log.debug("pod=%s node=%s %s again: %s", key, node, verdict, placement.reason)
            return False
        self._log.info("pod=%s node=%s %s: %s", key, node, verdict, _why(placement))
        # The whole table is the controller's to log when it launches (and `kube-vast explain`
        # prints it on demand); here it is on kube-scheduler's path, once per new pod.
        if placement.ranking is not None and self._log.isEnabledFor(logging.DEBUG):
            for line in selection_log(placement.ranking, selected=placement.chosen,
                                      why="the offer the pod's vast.ai/offer-id names, still matching"):
                self._log.debug("%s", line)
        return True


def _why(placement: Placement) -> str:
    """The reason of a failure in full; for a pass, the offer and how many match (the rejection
    counts are left to the table: working them out for every new pod costs more than the rest
    of the line)."""
    chosen, ranking = placement.chosen, placement.ranking
    if chosen is None or ranking is None:
        return placement.reason
    return (f"{placement.detail}offer {chosen.offer_id} (score {chosen.score:.2f}); "
            f"{ranking.passed} of {ranking.seen} offers match")
