"""The controller's side of market watching: which pods make the demand, the virtual node's
OfferSearchPaused condition, the Event text and the metrics, and the settings."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.demand import pod_demand, waiting, wants_vast
from controller.market_metrics import MarketCollector, market_condition, market_event
from controller.settings import settings_from
from tests.unit.offer_factory import make_offer
from vastmarket.config import config_from_mapping
from vastmarket.errors import ConfigError, SearchQuotaExceeded
from vastmarket.market_watch import Demand, MarketWatcher
from vastmarket.offers import ParsedOffers
from vastmarket.requirements import base_requirements

CONFIG = config_from_mapping({"gpu": {"preferred_types": ["RTX4090"]}, "max_price_per_hour": 0.8})


def pod(name: str, *, phase: str = "Pending", node: str | None = None, labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None, tolerate: bool = False, gpus: str | None = "1",
        deleting: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x",
                                            "resources": {"limits": {"nvidia.com/gpu": gpus}} if gpus else {}}]}
    if node:
        spec["nodeName"] = node
    if tolerate:
        spec["tolerations"] = [{"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "vast"}]
    meta: dict[str, Any] = {"name": name, "namespace": "ml", "uid": f"uid-{name}", "labels": labels or {},
                            "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


OPTED = {"labels": {"vast.ai/enabled": "true"}}


@pytest.mark.parametrize("made, wanted", [
    (pod("labelled", **OPTED), True),
    (pod("admitted", annotations={"vast.ai/offer-id": "12"}), True),
    (pod("no-offer-yet", annotations={"vast.ai/selection-error": "no offer"}), True),
    (pod("tolerating", tolerate=True), True),
    (pod("running", phase="Running", node="vast-gpu-node-1", **OPTED), True),
    (pod("not-opted-in"), False),
    (pod("no-gpu", gpus=None, **OPTED), False),
    (pod("finished", phase="Succeeded", **OPTED), False),
    (pod("failed", phase="Failed", **OPTED), False),
    (pod("deleting", deleting=True, **OPTED), False),
])
def test_opted_in_gpu_pods_that_are_not_finished_make_the_demand(made: dict[str, Any], wanted: bool) -> None:
    assert wants_vast(made) is wanted


def test_the_demand_is_the_configs_then_each_pods_and_the_waiting_ones_apart() -> None:
    pods = [pod("a", annotations={"vast.ai/gpu-type": "L4"}, **OPTED),
            pod("b", annotations={"vast.ai/gpu-type": "L4"}, **OPTED),  # the same requirements: once
            pod("c", phase="Pending", node="vast-gpu-node-1", annotations={"vast.ai/gpu-type": "A100"}, **OPTED),
            pod("d", phase="Running", node="vast-gpu-node-1", annotations={"vast.ai/price-max": "2"}, **OPTED),
            pod("bad", annotations={"vast.ai/price-max": "free"}, **OPTED),  # refused elsewhere, with its reason
            pod("other")]
    demand = pod_demand(CONFIG, pods)
    assert demand.requirements[0] == base_requirements(CONFIG)
    assert [r.gpu_types for r in demand.requirements] == [("RTX4090",), ("L4",), ("A100",), ("RTX4090",)]
    assert [r.gpu_types for r in demand.waiting] == [("L4",)], "bound pods wait for their instance, not an offer"
    assert waiting(pods[0]) and not waiting(pods[2]) and not waiting(pods[3])


class Vast:
    def __init__(self) -> None:
        self.fail: list[Exception] = []

    def __call__(self, filters: dict[str, Any], order: list[tuple[str, str]], limit: int) -> ParsedOffers:
        if self.fail:
            raise self.fail.pop(0)
        return ParsedOffers((make_offer(1, gpu_name="RTX 4090"), make_offer(2, gpu_name="RTX 4090")), 0)


def watcher(clock: list[float]) -> tuple[MarketWatcher, Vast]:
    vast = Vast()
    watch = MarketWatcher(vast, lambda s: None, lambda: Demand((base_requirements(CONFIG),)), lambda: ["RTX 4090"],
                          clock=lambda: clock[0])
    return watch, vast


def test_the_node_condition_and_event_say_when_searches_pause_and_resume() -> None:
    clock = [1_800_000_000.0]
    watch, vast = watcher(clock)
    assert market_condition(watch, 300, now=clock[0]).reason == "NoOffersYet"
    watch.poll_once()
    fresh = market_condition(watch, 300, now=clock[0] + 10)
    assert (fresh.paused, fresh.reason) == (False, "OffersFresh") and "2 offers" in fresh.message
    vast.fail.append(SearchQuotaExceeded("quota", retry_after=7200))
    clock[0] += 240
    watch.step()
    paused = market_condition(watch, 300, now=clock[0] + 60)
    assert (paused.paused, paused.reason) == (True, "SearchQuotaExceeded")
    assert "no search before" in paused.message and "serving the 2 offers" in paused.message
    reason, message, warning = market_event(watch, now=clock[0] + 60)
    assert (reason, warning) == ("SearchQuotaExceeded", True) and "offer searches paused" in message
    clock[0] += 7200
    watch.step()
    assert market_condition(watch, 300, now=clock[0]).paused is False
    assert market_event(watch, now=clock[0]) == ("OfferSearchResumed",
                                                 "offer searches resumed; the offers are fresh again", False)


def test_the_metrics_read_the_watcher_at_scrape_time() -> None:
    clock = [1_800_000_000.0]
    watch, vast = watcher(clock)
    registry = CollectorRegistry()
    registry.register(MarketCollector(watch, clock=lambda: clock[0]))
    watch.poll_once()
    assert registry.get_sample_value("kube_vast_market_searches_total") == 1
    assert registry.get_sample_value("kube_vast_market_rows_total") == 2
    assert registry.get_sample_value("kube_vast_market_search_paused") == 0
    assert registry.get_sample_value("kube_vast_market_unusable_offers_total") == 0
    watch.stats.unusable = 3
    assert registry.get_sample_value("kube_vast_market_unusable_offers_total") == 3
    vast.fail.append(SearchQuotaExceeded("quota", retry_after=600))
    clock[0] += 240
    watch.step()
    assert registry.get_sample_value("kube_vast_market_search_paused") == 1
    assert registry.get_sample_value("kube_vast_market_search_resume_timestamp_seconds") == clock[0] + 600
    assert registry.get_sample_value("kube_vast_offer_snapshot_age_seconds") == 240


def test_the_market_watch_settings_are_validated() -> None:
    settings = settings_from({"KUBE_VAST_REFRESH_INTERVAL": "120", "KUBE_VAST_DEMAND_INTERVAL": "2",
                              "KUBE_VAST_MAX_MARKET_QUERIES": "2", "KUBE_VAST_INCLUDE_EXTERNAL_OFFERS": "true"})
    assert (settings.refresh_interval, settings.demand_interval, settings.max_market_queries,
            settings.include_external_offers) == (120.0, 2.0, 2, True)
    for env, message in (({"KUBE_VAST_MAX_MARKET_QUERIES": "0"}, "KUBE_VAST_MAX_MARKET_QUERIES"),
                         ({"KUBE_VAST_INCLUDE_EXTERNAL_OFFERS": "maybe"}, "KUBE_VAST_INCLUDE_EXTERNAL_OFFERS"),
                         ({"KUBE_VAST_REFRESH_INTERVAL": "0"}, "refresh_interval")):
        with pytest.raises(ConfigError, match=message):
            settings_from(copy.deepcopy(env))
