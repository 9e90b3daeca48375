"""The controller's view of its Vast instances, and of the offers it may rent.

* :class:`Fleet` lists the account's instances on an interval (one paginated call however many
  pods there are — Vast rate-limits per endpoint) and keeps those carrying this cluster's label
  prefix. Waiters are woken on every refresh. An instance forgotten (destroyed) while a listing
  was in flight is not brought back by that listing: only a listing begun after the forget can
  show it again (a destroy that did not take).
* :class:`OfferSource` wraps the market watcher: :meth:`latest` for normal launches,
  :meth:`fresh` for a failover, which wants offers no older than a few seconds and coalesces
  concurrent requests into one search.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from vastmarket.client import VastClient
from vastmarket.errors import VastError
from vastmarket.instances import Instance
from vastmarket.snapshot import OfferSnapshot

log = logging.getLogger(__name__)


def instance_label(cluster_id: str, pod_uid: str) -> str:
    """The Vast label of the instance serving a pod: ``kv:<cluster>:<pod uid>`` (≤ 60 characters)."""
    return f"kv:{cluster_id}:{pod_uid}"


def label_prefix(cluster_id: str) -> str:
    return f"kv:{cluster_id}:"


def pod_uid_of(label: str | None, cluster_id: str) -> str | None:
    prefix = label_prefix(cluster_id)
    return label[len(prefix):] if label and label.startswith(prefix) else None


class Fleet:
    def __init__(self, client: VastClient, cluster_id: str, *, interval: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.cluster_id = cluster_id
        self.interval = interval
        self.clock = clock
        self._instances: dict[int, Instance] = {}
        self._first_seen: dict[int, float] = {}
        self._forgotten: dict[int, int] = {}  # instance id → the tick it was forgotten (destroyed) at
        self._ticks = itertools.count()  # orders forgets and listing starts
        self.refreshed_at: float | None = None
        self.last_error: str | None = None
        self.last_success: float | None = None
        self._changed = threading.Condition()
        self._refresh_lock = threading.Lock()
        self._hurry_until = 0.0
        self.listeners: list[Callable[[], None]] = []  # called after every successful listing

    def hurry(self, seconds: float = 10.0) -> None:
        """Someone waits for an instance to change (booting): list every second for a while.
        One listing serves every waiting pod, however many there are."""
        self._hurry_until = max(self._hurry_until, self.clock() + seconds)

    def next_wait(self) -> float:
        return min(self.interval, 1.0) if self.clock() < self._hurry_until else self.interval

    def refresh(self) -> bool:
        with self._refresh_lock:
            with self._changed:
                started = next(self._ticks)
            try:
                listed = self.client.list_instances()
            except VastError as exc:
                self.last_error = str(exc)
                log.warning("listing Vast instances failed: %s", exc)
                return False
            now = self.clock()
            prefix = label_prefix(self.cluster_id)
            with self._changed:
                # Older than a forget: the listing may show an instance destroyed meanwhile.
                mine = {i.id: i for i in listed if i.label and i.label.startswith(prefix)
                        and self._forgotten.get(i.id, -1) < started}
                self._forgotten = {iid: at for iid, at in self._forgotten.items() if at > started}
                for iid in mine:
                    self._first_seen.setdefault(iid, now)
                for iid in list(self._first_seen):
                    if iid not in mine:
                        del self._first_seen[iid]
                self._instances = mine
                self.refreshed_at = now
                self.last_success = now
                self.last_error = None
                self._changed.notify_all()
            for listener in self.listeners:
                listener()
            return True

    def remember(self, instance: Instance) -> None:
        """Fold in an instance read directly (after a rent or a get), before the next listing."""
        with self._changed:
            self._instances[instance.id] = instance
            self._first_seen.setdefault(instance.id, self.clock())
            self._changed.notify_all()

    def forget(self, instance_id: int) -> None:
        with self._changed:
            self._instances.pop(instance_id, None)
            self._forgotten[instance_id] = next(self._ticks)
            self._changed.notify_all()

    def instances(self) -> list[Instance]:
        with self._changed:
            return list(self._instances.values())

    def for_pod(self, pod_uid: str) -> list[Instance]:
        label = instance_label(self.cluster_id, pod_uid)
        return [i for i in self.instances() if i.label == label and not i.gone]

    def first_seen(self, instance_id: int) -> float | None:
        with self._changed:
            return self._first_seen.get(instance_id)

    def hourly_spend(self, *, excluding: str | None = None) -> tuple[float, int]:
        """($/h, count) of live instances of this cluster, optionally without one pod's."""
        total, count = 0.0, 0
        for inst in self.instances():
            if inst.gone or (excluding and pod_uid_of(inst.label, self.cluster_id) == excluding):
                continue
            total += inst.dph_total or 0.0
            count += 1
        return total, count

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.refresh()
            stop.wait(self.next_wait())


class OfferPoller(Protocol):
    """What publishes the offers: :class:`vastmarket.market_watch.MarketWatcher` (or a
    :class:`vastmarket.snapshot.SnapshotPoller`). ``poll_once`` searches unless Vast's quota
    pauses the searches."""

    @property
    def latest(self) -> OfferSnapshot | None: ...

    def poll_once(self) -> OfferSnapshot | None: ...


class OfferSource:
    def __init__(self, poller: OfferPoller, clock: Callable[[], float] = time.time) -> None:
        self.poller = poller
        self.clock = clock
        self._lock = threading.Lock()

    def latest(self) -> OfferSnapshot | None:
        return self.poller.latest

    def fresh(self, max_age: float = 10.0) -> OfferSnapshot | None:
        """A snapshot no older than ``max_age`` (searching now if needed; one search at a time)."""
        with self._lock:
            current = self.poller.latest
            if current is not None and current.age(self.clock()) <= max_age:
                return current
            return self.poller.poll_once() or current
