"""The orphan reaper: destroys instances carrying this cluster's label whose pod no longer
exists, once they have been seen without a pod for ``grace`` seconds (so that a pod still being
created, or a listing that lags, never costs a running instance). ``dry_run`` only reports."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vastmarket.errors import VastError

from .checkpoints import INERT, Checkpoints
from .fleet import Fleet, pod_uid_of
from .kube import KubeError, KubeGateway

log = logging.getLogger("kube_vast.controller.reaper")


class Reaper:
    def __init__(self, kube: KubeGateway, fleet: Fleet, nodes: tuple[str, ...], *, grace: float,
                 dry_run: bool = False, clock: Callable[[], float] = time.time,
                 checkpoint: Checkpoints = INERT) -> None:
        self.kube = kube
        self.checkpoint = checkpoint
        self.fleet = fleet
        self.nodes = nodes
        self.grace = grace
        self.dry_run = dry_run
        self.clock = clock
        self._orphaned_since: dict[int, float] = {}
        self.reaped: list[int] = []

    def live_pod_uids(self) -> set[str]:
        uids: set[str] = set()
        for node in self.nodes:
            pods, _ = self.kube.list_pods(field_selector=f"spec.nodeName={node}")
            uids |= {p["metadata"]["uid"] for p in pods}
        return uids

    def sweep(self) -> list[int]:
        """One pass; returns the instance ids destroyed (or that would be, in dry-run mode)."""
        if not self.fleet.refresh():
            return []
        instances = self.fleet.instances()  # listed before the pods: a newer pod cannot be missed
        live = self.live_pod_uids()
        now = self.clock()
        doomed = []
        for inst in instances:
            uid = pod_uid_of(inst.label, self.fleet.cluster_id)
            if uid is None or inst.gone:
                continue
            if uid in live:
                self._orphaned_since.pop(inst.id, None)
                continue
            since = self._orphaned_since.setdefault(inst.id, now)
            if now - since >= self.grace:
                doomed.append(inst.id)
        for iid in doomed:
            if self.dry_run:
                log.warning("reaper (dry run): instance %d has no pod; would destroy it", iid)
                continue
            log.warning("reaper: destroying instance %d: its pod is gone", iid)
            try:
                self.fleet.client.destroy(iid)
                self.fleet.forget(iid)
                self._orphaned_since.pop(iid, None)
                self.reaped.append(iid)
            except VastError as exc:
                log.warning("reaper: destroying instance %d failed, will retry: %s", iid, exc)
        self.checkpoint("reaper-swept", orphans=len(doomed), seen=len(instances))
        return doomed

    def run(self, stop: threading.Event, leading: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            if leading.is_set():
                try:
                    self.sweep()
                except KubeError as exc:
                    log.warning("reaper: listing pods failed: %s", exc)
