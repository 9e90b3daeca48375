"""Offer search over HTTP: filters, virtual fields, order, limit, pricing, errors."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Callable

import pytest

from tests.simulator.support import Vast, rent_body
from vastsim import SimulatorServer
from vastsim.offerset import driver_vers, storage_dph

Offer = dict[str, Any]


def country(offer: Offer) -> str | None:
    text = offer["geolocation"]
    return text.strip()[-2:].upper() if text else None


FILTERS: list[tuple[str, dict[str, Any], Callable[[Offer], bool]]] = [
    ("gpu_name eq", {"gpu_name": {"eq": "RTX 4090"}}, lambda o: o["gpu_name"] == "RTX 4090"),
    ("gpu_name in", {"gpu_name": {"in": ["RTX 3060", "RTX 4090"]}}, lambda o: o["gpu_name"] in ("RTX 3060", "RTX 4090")),
    ("gpu_name notin", {"gpu_name": {"notin": ["RTX 3060", "RTX 4090"]}}, lambda o: o["gpu_name"] not in ("RTX 3060", "RTX 4090")),
    ("num_gpus gte", {"num_gpus": {"gte": 2}}, lambda o: o["num_gpus"] >= 2),
    ("two ops on one field", {"num_gpus": {"gt": 1, "lte": 4}}, lambda o: 1 < o["num_gpus"] <= 4),
    ("dph_total lt", {"dph_total": {"lt": 0.3}}, lambda o: o["dph_total"] < 0.3),
    ("gpu_ram gte in MB", {"gpu_ram": {"gte": 24000}}, lambda o: o["gpu_ram"] >= 24000),
    ("reliability2 gte", {"reliability2": {"gte": 0.95}}, lambda o: o["reliability2"] >= 0.95),
    ("cpu_cores neq drops nulls", {"cpu_cores": {"neq": 0}}, lambda o: o["cpu_cores"] not in (0, None)),
    ("inet_down gt drops nulls", {"inet_down": {"gt": 128}}, lambda o: o["inet_down"] is not None and o["inet_down"] > 128),
    ("verified true", {"verified": {"eq": True}}, lambda o: o["verification"] == "verified"),
    ("verified false", {"verified": {"eq": False}}, lambda o: o["verification"] != "verified"),
    ("geolocation eq country", {"geolocation": {"eq": "US"}}, lambda o: country(o) == "US"),
    ("geolocation in countries", {"geolocation": {"in": ["DE", "nl"]}}, lambda o: country(o) in ("DE", "NL")),
    ("geolocation notin", {"geolocation": {"notin": ["US"]}}, lambda o: country(o) not in (None, "US")),
    ("datacenter", {"datacenter": {"eq": True}}, lambda o: o["hosting_type"] == 1),
    ("driver_version as text", {"driver_version": {"gte": "550.0.0"}}, lambda o: o["driver_vers"] >= driver_vers("550.0.0")),
    ("compute_cap gte", {"compute_cap": {"gte": 890}}, lambda o: o["compute_cap"] >= 890),
    ("direct_port_count gte", {"direct_port_count": {"gte": 1}}, lambda o: o["direct_port_count"] >= 1),
    ("cuda_max_good gte", {"cuda_max_good": {"gte": 12.4}}, lambda o: o["cuda_max_good"] >= 12.4),
    (
        "the CLI defaults",
        {"verified": {"eq": True}, "external": {"eq": False}, "rentable": {"eq": True}, "rented": {"eq": False}},
        lambda o: o["verification"] == "verified" and o["rentable"] and not o["external"],
    ),
]


@pytest.fixture
def market(vast: Vast) -> list[Offer]:
    return vast.offers(limit=10_000)


@pytest.mark.parametrize(("name", "query", "predicate"), FILTERS, ids=[f[0] for f in FILTERS])
def test_filters_return_exactly_the_matching_offers(
    vast: Vast, market: list[Offer], name: str, query: dict[str, Any], predicate: Callable[[Offer], bool]
) -> None:
    expected = {o["id"] for o in market if predicate(o)}
    found = vast.offers(limit=10_000, **query)
    assert {o["id"] for o in found} == expected
    assert expected, f"{name}: the test market should have matches"


def test_search_answers_json_with_an_offers_list(vast: Vast) -> None:
    reply = vast.search({"limit": 10_000})
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert list(reply.json()) == ["offers"]


def test_a_search_cut_by_its_limit_says_truncated(vast: Vast) -> None:
    reply = vast.search({"limit": 2})
    assert reply.json()["truncated"] is True
    assert len(reply.json()["offers"]) == 2


def test_default_order_is_score_descending(vast: Vast) -> None:
    scores = [o["score"] for o in vast.offers(limit=50)]
    assert scores == sorted(scores, reverse=True)


def test_order_and_limit_give_the_cheapest_offers(vast: Vast, market: list[Offer]) -> None:
    cheapest = vast.offers(order=[["dph_total", "asc"]], limit=5)
    assert [o["dph_total"] for o in cheapest] == sorted(o["dph_total"] for o in market)[:5]


def test_several_order_keys_apply_in_turn(vast: Vast) -> None:
    offers = vast.offers(order=[["num_gpus", "desc"], ["dph_total", "asc"]], limit=10_000)
    keys = [(-o["num_gpus"], o["dph_total"]) for o in offers]
    assert keys == sorted(keys)


def test_nulls_sort_last_in_either_direction(vast: Vast) -> None:
    for direction in ("asc", "desc"):
        values = [o["cpu_cores"] for o in vast.offers(order=[["cpu_cores", direction]], limit=10_000)]
        assert None in values
        assert values.index(None) == len(values) - values.count(None)


def test_allocated_storage_prices_storage_in_and_filters_on_disk_space(vast: Vast, market: list[Offer]) -> None:
    offers = vast.offers(allocated_storage=100, limit=10_000)
    assert {o["id"] for o in offers} == {o["id"] for o in market if o["disk_space"] >= 100}
    for offer in offers:
        assert offer["dph_total"] == pytest.approx(offer["dph_base"] + storage_dph(offer["storage_cost"], 100), abs=1e-6)


@pytest.mark.parametrize("kind", ["bid", "interruptible"])
def test_interruptible_search_prices_at_the_minimum_bid(vast: Vast, kind: str) -> None:
    for offer in vast.offers(type=kind, allocated_storage=10, limit=20):
        assert offer["is_bid"] is True
        assert offer["dph_total"] == pytest.approx(offer["min_bid"] + storage_dph(offer["storage_cost"], 10), abs=1e-6)


@pytest.mark.parametrize("kind", ["on-demand", "ondemand", "reserved"])
def test_on_demand_spellings_price_at_dph_base(vast: Vast, kind: str) -> None:
    for offer in vast.offers(type=kind, limit=20):
        assert offer["is_bid"] is False
        assert offer["dph_total"] > offer["dph_base"]


def test_duration_filters_on_seconds_left(vast: Vast, market: list[Offer]) -> None:
    threshold = sorted(o["duration"] for o in market)[len(market) // 2]
    found = vast.offers(duration={"gte": threshold}, limit=10_000)
    assert found and all(o["duration"] >= threshold - 60 for o in found)
    assert len(found) < len(market)


def test_a_rented_offer_leaves_the_search_and_returns_after_destroy(vast: Vast) -> None:
    offer = vast.offers(rentable={"eq": True}, direct_port_count={"gte": 1}, limit=1)[0]
    instance_id = vast.rent(offer["id"], rent_body()).json()["new_contract"]
    assert vast.offers(id={"eq": offer["id"]}) == []
    assert vast.destroy(instance_id).status == 200
    assert [o["id"] for o in vast.offers(id={"eq": offer["id"]})] == [offer["id"]]


def test_legacy_get_with_q_searches_too(vast: Vast) -> None:
    q = urllib.parse.quote(json.dumps({"num_gpus": {"eq": 8}, "limit": 3}))
    reply = vast.call("GET", f"/api/v0/bundles/?q={q}")
    assert reply.status == 200
    offers = reply.json()["offers"]
    assert len(offers) == 3 and all(o["num_gpus"] == 8 for o in offers)


def test_the_experimental_search_asks_variant_takes_q(vast: Vast) -> None:
    reply = vast.call("PUT", "/api/v0/search/asks/", {"select_cols": ["*"], "q": {"num_gpus": {"eq": 1}, "limit": 4}})
    assert reply.status == 200
    assert reply.json()["success"] is True
    assert [o["num_gpus"] for o in reply.json()["offers"]] == [1, 1, 1, 1]


def test_malformed_json_is_a_400_invalid_request(vast: Vast) -> None:
    reply = vast.call("POST", "/api/v0/bundles/", raw=b"{not json")
    assert reply.status == 400
    assert reply.json() == {"error": "invalid_request", "msg": "Invalid json body"}


BAD_QUERIES: list[tuple[str, Any]] = [
    ("unknown operator", {"num_gpus": {"between": [1, 2]}}),
    ("filter not an object", {"num_gpus": 2}),
    ("in without a list", {"gpu_name": {"in": "RTX 4090"}}),
    ("gt with a boolean", {"num_gpus": {"gt": True}}),
    ("gt with a list", {"num_gpus": {"gt": [1]}}),
    ("unknown field", {"gpu_nmae": {"eq": "RTX 4090"}}),
    ("bad order direction", {"order": [["dph_total", "up"]]}),
    ("order on an unknown field", {"order": [["cheapness", "asc"]]}),
    ("order not a list", {"order": "dph_total"}),
    ("unknown rental type", {"type": "spot"}),
    ("negative limit", {"limit": -1}),
    ("limit as text", {"limit": "10"}),
    ("allocated_storage as text", {"allocated_storage": "lots"}),
    ("bad driver version", {"driver_version": {"gte": "new"}}),
]


@pytest.mark.parametrize(("name", "query"), BAD_QUERIES, ids=[q[0] for q in BAD_QUERIES])
def test_bad_queries_are_a_400_with_a_message(vast: Vast, name: str, query: Any) -> None:
    reply = vast.search(query)
    assert reply.status == 400, reply.text
    assert reply.json()["msg"]


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"42", b"null", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_a_400(vast: Vast, body: bytes) -> None:
    reply = vast.call("POST", "/api/v0/bundles/", raw=body)
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_request"


def test_a_big_market_searches_quickly() -> None:
    with SimulatorServer(offers=10_000, seed=1) as sim:
        vast = Vast(sim.url)
        offers = vast.offers(gpu_name={"in": ["RTX 4090", "RTX 3090"]}, verified={"eq": True}, limit=100)
        assert len(offers) == 100
