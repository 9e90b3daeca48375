"""Leader election on a ``coordination.k8s.io/v1`` Lease: one replica acts, the others wait and
take over within ``lease_seconds`` when the holder stops renewing.

Optimistic concurrency does the locking: the Lease is replaced with the resourceVersion that
was read, so of two replicas racing for an expired lease exactly one wins (the other gets a
409 Conflict and stays a follower).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .kube import micro_time, Conflict, KubeError, KubeGateway

log = logging.getLogger(__name__)


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc).timestamp()
        except ValueError:
            continue
    return None




class LeaderElector:
    def __init__(self, kube: KubeGateway, *, namespace: str, name: str, identity: str,
                 lease_seconds: float = 15.0, renew_every: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        if renew_every >= lease_seconds:
            raise ValueError("the lease must be renewed more often than it lasts")
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self.clock = clock
        self.leading = threading.Event()

    def _spec(self, now: float, previous: dict[str, Any] | None) -> dict[str, Any]:
        prev = (previous or {}).get("spec") or {}
        taking_over = prev.get("holderIdentity") != self.identity
        transitions = int(prev.get("leaseTransitions") or 0) + (1 if taking_over and previous else 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(max(1, round(self.lease_seconds))),
            "acquireTime": micro_time(now) if taking_over else prev.get("acquireTime", micro_time(now)),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }

    def step(self) -> bool:
        """Acquire or renew once; returns whether this replica leads now."""
        now = self.clock()
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            if lease is None:
                self.kube.create_lease(self.namespace, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, None)})
                return self._lead(True)
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            renewed = _parse_time(spec.get("renewTime")) or 0.0
            duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
            if holder not in (None, "", self.identity) and now < renewed + duration:
                return self._lead(False)
            lease["spec"] = self._spec(now, lease)
            self.kube.replace_lease(self.namespace, lease)
            return self._lead(True)
        except Conflict:
            return self._lead(False)
        except KubeError as exc:
            log.warning("leader election: %s", exc)
            # Without a successful renewal we cannot be sure to lead any more.
            return self._lead(self.leading.is_set() and self._still_within_lease(now))

    def _still_within_lease(self, now: float) -> bool:
        last = getattr(self, "_last_renewal", 0.0)
        return now < last + self.lease_seconds - self.renew_every

    def _lead(self, leading: bool) -> bool:
        if leading:
            self._last_renewal = self.clock()
            if not self.leading.is_set():
                log.info("leader election: %s now leads (lease %s/%s)", self.identity, self.namespace, self.name)
            self.leading.set()
        else:
            if self.leading.is_set():
                log.warning("leader election: %s lost the lease", self.identity)
            self.leading.clear()
        return leading

    def release(self) -> None:
        """Give the lease up on a clean shutdown so that a standby takes over at once."""
        if not self.leading.is_set():
            return
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["renewTime"] = micro_time(0)
                self.kube.replace_lease(self.namespace, lease)
        except KubeError as exc:
            log.warning("leader election: could not release the lease: %s", exc)
        self.leading.clear()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            leading = self.step()
            stop.wait(self.renew_every if leading else min(self.renew_every, 2.0))
        self.release()
