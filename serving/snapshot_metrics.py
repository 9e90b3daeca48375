"""Prometheus gauges of the offer snapshot a component reads, shared by the extender and the
webhook: its age and how many offers it holds, read at scrape time."""

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


def register_snapshot_metrics(registry: CollectorRegistry, snapshots: Callable[[], OfferSnapshot | None],
                              clock: Callable[[], float]) -> None:
    registry.register(SnapshotCollector(snapshots, clock))
