"""Prometheus gauges of the offer snapshot a component reads, shared by the extender and the
webhook: its age, how many offers it holds and whether Vast's search quota pauses the searches
that renew it, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vastmarket.snapshot import OfferSnapshot


class SnapshotCollector(Collector):
    def __init__(self, snapshots: Callable[[], OfferSnapshot | None], clock: Callable[[], float]) -> None:
        self._snapshots = snapshots
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshots()
        if snapshot is None:
            return
        yield GaugeMetricFamily("kube_vast_offer_snapshot_age_seconds", "Age of the offer snapshot",
                                value=snapshot.age(self._clock()))
        yield GaugeMetricFamily("kube_vast_offers_seen", "Offers in the current snapshot", value=len(snapshot))
        now = self._clock()
        paused = snapshot.pause is not None and now < snapshot.pause.until
        yield GaugeMetricFamily("kube_vast_offer_search_paused",
                                "1 while Vast's search quota pauses the controller's searches (the offers are old)",
                                value=1.0 if paused else 0.0)


def register_snapshot_metrics(registry: CollectorRegistry, snapshots: Callable[[], OfferSnapshot | None],
                              clock: Callable[[], float]) -> None:
    registry.register(SnapshotCollector(snapshots, clock))
