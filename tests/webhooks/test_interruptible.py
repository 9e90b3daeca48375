"""Interruptible pods at admission (vastmarket.bids): the annotations are validated like the
others, the offer is chosen on the bid price (min_bid plus storage) and the offer annotations say
so; the config's per-namespace default applies to a pod whose namespace only the request names."""

from __future__ import annotations

import copy

from prometheus_client import CollectorRegistry

from tests.unit.offer_factory import make_offer
from tests.webhooks.conftest import NOW, Harness, annotated, captured, patched
from vastmarket.config import config_from_mapping
from vastmarket.snapshot import OfferSnapshot
from webhooks.app import create_app

GPU = {"vast.ai/gpu-type": "RTX3060"}


def bid_market() -> OfferSnapshot:
    # Offer 2 is the cheapest on demand; offer 7 is far cheaper as a bid. Storage: 0.01 $/h.
    return OfferSnapshot([
        make_offer(2, gpu_name="RTX 3060", dph_total=0.19, dph_base=0.18, min_bid=0.15),
        make_offer(7, gpu_name="RTX 3060", dph_total=0.31, dph_base=0.30, min_bid=0.04),
    ], taken_at=NOW - 10)


def test_an_interruptible_pod_gets_the_cheapest_bid_and_the_annotations_say_it_is_a_bid_price() -> None:
    hook = Harness(snapshot=bid_market())
    review = annotated(captured("pod-create-generatename"), {**GPU, "vast.ai/interruptible": "true"})
    notes = patched(review, hook.review(review))["metadata"]["annotations"]
    assert notes["vast.ai/offer-id"] == "7" and notes["vast.ai/offer-price"] == "0.0500"
    assert notes["vast.ai/offer-price-type"] == "bid"
    plain = annotated(captured("pod-create-generatename"), GPU)
    notes = patched(plain, hook.review(plain))["metadata"]["annotations"]
    assert notes["vast.ai/offer-id"] == "2" and notes["vast.ai/offer-price-type"] == "on-demand"


def test_bad_interruptible_annotations_are_denied_naming_the_annotation() -> None:
    hook = Harness(snapshot=bid_market())
    for notes, named in (({"vast.ai/interruptible": "yes please"}, "vast.ai/interruptible"),
                         ({"vast.ai/interruptible": "true", "vast.ai/bid-max": "cheap"}, "vast.ai/bid-max"),
                         ({"vast.ai/interruption-policy": "panic"}, "vast.ai/interruption-policy"),
                         ({"vast.ai/bid-max": "0.2"}, "vast.ai/bid-max")):
        reply = hook.review(annotated(captured("pod-create-generatename"), {**GPU, **notes}))["response"]
        assert reply["allowed"] is False and reply["status"]["message"].startswith(named + ":"), notes


def test_a_namespace_the_config_makes_interruptible_gets_a_bid_without_annotations() -> None:
    hook = Harness(snapshot=bid_market())
    hook.app = create_app(hook.settings, config=config_from_mapping({"interruptible": {"namespaces": ["batch"]}}),
                          snapshots=lambda: hook.snapshot, clock=lambda: hook.now, registry=CollectorRegistry())
    hook.http = hook.app.test_client()
    review = copy.deepcopy(annotated(captured("pod-create-generatename"), GPU))
    review["request"]["namespace"] = "batch"
    review["request"]["object"]["metadata"].pop("namespace", None)
    notes = patched(review, hook.review(review))["metadata"]["annotations"]
    assert notes["vast.ai/offer-id"] == "7" and notes["vast.ai/offer-price-type"] == "bid"
