"""Metrics of this cluster's interruptible (bid) instances, per instance, read from the fleet
listing at scrape time: whether it is interruptible and paused, its bid, the machine's
``min_bid`` now, and the $/hour it saves against on-demand (vastmarket.bids.instance_bid)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vastmarket.bids import instance_bid

from .fleet import Fleet


class BidCollector(Collector):
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["instance"]
        interruptible = GaugeMetricFamily("kube_vast_instance_interruptible",
                                          "1 for an interruptible (bid) instance, 0 on demand", labels=labels)
        paused = GaugeMetricFamily("kube_vast_instance_paused", "1 while an interruptible instance is outbid (paused)",
                                   labels=labels)
        bid = GaugeMetricFamily("kube_vast_instance_bid_dollars_per_hour", "The bid on an interruptible instance",
                                labels=labels)
        min_bid = GaugeMetricFamily("kube_vast_instance_min_bid_dollars_per_hour",
                                    "The machine's minimum bid now", labels=labels)
        saved = GaugeMetricFamily("kube_vast_instance_saved_dollars_per_hour",
                                  "$/hour an interruptible instance saves against on-demand", labels=labels)
        for inst in sorted(self.fleet.instances(), key=lambda i: i.id):
            if inst.gone:
                continue
            key = [str(inst.id)]
            found = instance_bid(inst)
            interruptible.add_metric(key, 1.0 if found is not None else 0.0)
            if found is None:
                continue
            paused.add_metric(key, 1.0 if inst.paused else 0.0)
            for family, value in ((bid, found.bid), (min_bid, found.min_bid), (saved, found.saved)):
                if value is not None:
                    family.add_metric(key, value)
        yield from (interruptible, paused, bid, min_bid, saved)
