"""How the market watcher shows itself: Prometheus metrics, the virtual node's
``OfferSearchPaused`` condition, and the Event when searches pause or resume.

:func:`market_condition` and :func:`market_event` are pure functions of the watcher's state;
:class:`MarketCollector` reads it at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vastmarket.market_watch import MarketWatcher

from .demand import ClusterDemand
from .node import MarketCondition

PAUSED_REASON = "SearchQuotaExceeded"
RESUMED_REASON = "OfferSearchResumed"


def market_condition(watcher: MarketWatcher, max_age: float, now: float | None = None) -> MarketCondition:
    """``OfferSearchPaused``: True while Vast's search quota stops the searches."""
    moment = time.time() if now is None else now
    snapshot = watcher.latest
    if watcher.paused_until(moment) is not None and watcher.pause is not None:
        served = f"; serving the {len(snapshot)} offers found {snapshot.age(moment):.0f}s ago" if snapshot else ""
        return MarketCondition(True, PAUSED_REASON, watcher.pause.describe(moment) + served)
    if snapshot is None:
        return MarketCondition(False, "NoOffersYet", "no offer search has succeeded yet")
    stale = snapshot.staleness(moment, max_age)
    return MarketCondition(False, "OffersStale" if stale else "OffersFresh",
                           stale or f"{len(snapshot)} offers from {len(watcher.queries)} demand-driven searches, "
                                    f"{snapshot.age(moment):.0f}s old")


def market_event(watcher: MarketWatcher, now: float | None = None) -> tuple[str, str, bool]:
    """(reason, message, warning) of the Event on the virtual node when searches pause or resume."""
    moment = time.time() if now is None else now
    if watcher.paused_until(moment) is not None and watcher.pause is not None:
        return PAUSED_REASON, f"offer searches paused: {watcher.pause.describe(moment)}; the last offers are " \
                              "served until then", True
    return RESUMED_REASON, "offer searches resumed; the offers are fresh again", False


class MarketCollector(Collector):
    def __init__(self, watcher: MarketWatcher, demand: ClusterDemand | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._watcher = watcher
        self._demand = demand
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        w, now = self._watcher, self._clock()
        stats = w.stats
        yield CounterMetricFamily("kube_vast_market_searches", "Offer searches sent to Vast", value=stats.searches)
        yield CounterMetricFamily("kube_vast_market_rows", "Offer rows received from Vast's searches", value=stats.rows)
        yield CounterMetricFamily("kube_vast_market_truncated_answers", "Search answers Vast cut short (truncated)",
                                  value=stats.truncated)
        yield CounterMetricFamily("kube_vast_market_incomplete_searches",
                                  "Searches whose truncated answer could not be completed", value=stats.incomplete)
        yield CounterMetricFamily("kube_vast_market_unusable_offers",
                                  "Offers left out of a snapshot: values the offer table cannot hold",
                                  value=stats.unusable)
        yield GaugeMetricFamily("kube_vast_market_rows_per_day", "Offer rows per day, from the last hour's searches",
                                value=stats.rows_per_day())
        yield GaugeMetricFamily("kube_vast_market_searches_per_hour", "Offer searches per hour, over the last hour",
                                value=stats.searches_per_hour())
        yield GaugeMetricFamily("kube_vast_market_queries", "Searches in one round of demand-driven market watching",
                                value=len(w.queries))
        if self._demand is not None:
            yield GaugeMetricFamily("kube_vast_market_demand_pods", "Opted-in GPU pods the market watcher searches for",
                                    value=self._demand.pods)
        until = w.paused_until(now)
        yield GaugeMetricFamily("kube_vast_market_search_paused", "1 while Vast's search quota pauses the searches",
                                value=1.0 if until is not None else 0.0)
        yield GaugeMetricFamily("kube_vast_market_search_resume_timestamp_seconds",
                                "When searching resumes (epoch seconds; 0 when not paused)", value=until or 0.0)
        if w.latest is not None:
            yield GaugeMetricFamily("kube_vast_offer_snapshot_age_seconds", "Age of the offer snapshot",
                                    value=w.latest.age(now))
            yield GaugeMetricFamily("kube_vast_offers_seen", "Offers in the current snapshot", value=len(w.latest))
