"""Interruptible rentals in the domain (vastmarket.bids): the annotations and config section are
validated like the others, interruptible pods are ranked on the bid price, the bid is a margin
over min_bid cut to the ceiling."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.offer_factory import make_offer
from vastmarket.bids import InterruptionPolicy, bid_for, interruptible_price
from vastmarket.config import config_from_mapping
from vastmarket.errors import ConfigError, RequirementError
from vastmarket.requirements import bid_choice, requirements_for
from vastmarket.snapshot import OfferSnapshot


def pod(annotations: dict[str, str] | None = None, namespace: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": namespace, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}


def test_an_interruptible_pod_caps_its_price_at_bid_max_which_defaults_to_price_max() -> None:
    config = config_from_mapping({"max_price_per_hour": 0.8})
    assert not requirements_for(config, pod()).interruptible
    req = requirements_for(config, pod({"vast.ai/interruptible": "true", "vast.ai/price-max": "0.5"}))
    assert req.interruptible and req.max_price == 0.5
    req = requirements_for(config, pod({"vast.ai/interruptible": "true", "vast.ai/bid-max": "0.25"}))
    assert req.max_price == 0.25
    choice = bid_choice(config, pod({"vast.ai/interruptible": "true", "vast.ai/interruption-policy": "wait"}))
    assert choice.interruptible and choice.bid_max == 0.8 and choice.policy is InterruptionPolicy.WAIT


@pytest.mark.parametrize(("annotations", "named"), [
    ({"vast.ai/interruptible": "maybe"}, "vast.ai/interruptible"),
    ({"vast.ai/interruptible": "true", "vast.ai/bid-max": "free"}, "vast.ai/bid-max"),
    ({"vast.ai/interruptible": "true", "vast.ai/interruption-policy": "pray"}, "vast.ai/interruption-policy"),
    ({"vast.ai/bid-max": "0.3"}, "vast.ai/bid-max"),  # a ceiling on a bid the pod does not place
])
def test_bad_interruptible_annotations_are_refused_naming_the_annotation(annotations: dict[str, str],
                                                                          named: str) -> None:
    with pytest.raises(RequirementError) as caught:
        requirements_for(config_from_mapping({}), pod(annotations))
    assert str(caught.value).startswith(named + ":")


def test_the_config_makes_pods_interruptible_by_default_or_by_namespace_and_a_pod_may_say_no() -> None:
    by_namespace = config_from_mapping({"interruptible": {"namespaces": ["batch"], "policy": "move"}})
    assert requirements_for(by_namespace, pod(namespace="batch")).interruptible
    assert not requirements_for(by_namespace, pod(namespace="web")).interruptible
    assert bid_choice(by_namespace, pod(namespace="batch")).policy is InterruptionPolicy.MOVE
    everywhere = config_from_mapping({"interruptible": {"default": True}})
    assert requirements_for(everywhere, pod()).interruptible
    assert not requirements_for(everywhere, pod({"vast.ai/interruptible": "false"})).interruptible


@pytest.mark.parametrize(("section", "path"), [
    ({"policy": "sometimes"}, "interruptible.policy"),
    ({"bid_margin": -1}, "interruptible.bid_margin"),
    ({"namespaces": ["Not A Namespace"]}, "interruptible.namespaces"),
    ({"bogus": 1}, "interruptible.bogus"),
])
def test_a_bad_interruptible_config_is_refused_naming_the_key(section: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"interruptible": section})
    assert path in str(caught.value)


def test_interruptible_pods_are_ranked_on_the_bid_price_and_on_demand_pods_on_the_on_demand_price() -> None:
    # A is cheaper on demand; B is much cheaper as a bid. Storage is 0.02 $/h on both.
    a = make_offer(1, dph_total=0.22, dph_base=0.20, min_bid=0.18)
    b = make_offer(2, dph_total=0.32, dph_base=0.30, min_bid=0.05)
    no_bid = make_offer(3, dph_total=0.10, dph_base=0.08, min_bid=None)
    snapshot = OfferSnapshot([a, b, no_bid], taken_at=0.0)
    config = config_from_mapping({})
    on_demand = snapshot.rank(requirements_for(config, pod({"vast.ai/price-max": "0.3"})))
    assert on_demand.best is not None and on_demand.best.offer.id == 3
    assert {s.offer.id for s in on_demand.top(5)} == {1, 3}
    bid = snapshot.rank(requirements_for(config, pod({"vast.ai/interruptible": "true", "vast.ai/bid-max": "0.1"})))
    assert bid.best is not None and bid.best.offer.id == 2
    assert bid.best.offer.dph_total == pytest.approx(0.07)  # min_bid + storage: what vast.ai/offer-price shows
    assert [s.offer.id for s in bid.top(5)] == [2]  # A's bid price 0.20 is over 0.1; no min_bid: no bid


def test_the_bid_is_a_margin_over_min_bid_cut_to_the_ceiling_and_none_when_there_is_no_room() -> None:
    assert bid_for(0.10, margin=0.1, ceiling=1.0) == pytest.approx(0.11)
    assert bid_for(0.10, margin=0.5, ceiling=0.12) == pytest.approx(0.12)
    assert bid_for(0.10, margin=0.1, ceiling=0.10) == pytest.approx(0.10)
    assert bid_for(0.10, margin=0.1, ceiling=0.09) is None
    assert bid_for(0.0, margin=0.1, ceiling=1.0) is None
    assert interruptible_price(min_bid=0.1, dph_base=0.3, dph_total=0.32) == pytest.approx(0.12)
    assert interruptible_price(min_bid=None, dph_base=0.3, dph_total=0.32) is None


def test_the_market_watch_search_for_an_interruptible_pod_keeps_offers_cheap_only_as_bids() -> None:
    from vastmarket.demand import MarketQuery, want_of
    from vastmarket.offers import parse_offers
    from vastsim.offerset import generate_offers
    from vastsim.search import parse_offer_query, search_offers

    market = generate_offers(3, 2000)
    req = requirements_for(config_from_mapping({}), pod({"vast.ai/interruptible": "true", "vast.ai/bid-max": "0.1"}))
    filters = MarketQuery(want_of(req, [])).filters()
    assert "dph_total" not in filters, "the search filters on-demand prices; a bid-max is not one"
    found = search_offers(market, parse_offer_query({**filters, "limit": 10_000}, fields=frozenset(market[0])),
                          now=1.75e9).offers
    ranked = OfferSnapshot(parse_offers(found).offers, taken_at=0.0).rank(req)
    assert ranked.best is not None and ranked.best.offer.dph_total is not None
    cheap_as_bids = [o for o in ranked.top(1000) if o.offer.min_bid and o.offer.dph_total and
                     next(m for m in market if m["id"] == o.offer.id)["dph_base"] > 0.1]
    assert cheap_as_bids, "offers over bid-max on demand but under it as bids are found"
