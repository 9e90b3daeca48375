"""The client's interruptible rentals against the simulator over HTTP: a bid rents an
interruptible instance billed at the bid, a bid under min_bid raises and leaves nothing behind
(the ledger is checked), an outbid instance reads as paused, and ``set_bid`` resumes it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from vastmarket.client import VastClient
from vastmarket.errors import VastRejected
from vastmarket.instances import Instance, RentRequest
from vastmarket.offers import Offer
from vastsim import SimulatorServer

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(0.02)


def bid_offer(client: VastClient) -> Offer:
    offers = client.search_offers({"rentable": {"eq": True}, "direct_port_count": {"gte": 1}},
                                  order=[("dph_total", "asc")], limit=5).offers
    offer = next(o for o in offers if o.min_bid)
    assert offer.min_bid is not None and offer.dph_base is not None
    return offer


def request(price: float | None) -> RentRequest:
    return RentRequest(image="vastai/test:latest", label="kv:test:bid-pod", ports=(8000,), price=price)


def test_a_bid_under_min_bid_raises_and_leaves_nothing_behind(client: VastClient, sim: SimulatorServer) -> None:
    offer = bid_offer(client)
    assert offer.min_bid is not None
    with pytest.raises(VastRejected) as caught:
        client.rent(offer.id, request(round(offer.min_bid * 0.5, 4)))
    assert "below the minimum" in str(caught.value)
    ledger = sim.state()
    assert ledger["counters"]["rentals"] == 1, "Vast made a stopped instance for the low bid"
    assert ledger["counters"]["live_instances"] == 0
    assert all(i["destroyed"] for i in ledger["instances"])
    assert client.list_instances(label="kv:test:bid-pod") == []


def test_a_bid_rents_an_interruptible_instance_that_reads_paused_when_outbid_and_resumes_on_a_raise(
        client: VastClient, sim: SimulatorServer) -> None:
    offer = bid_offer(client)
    assert offer.min_bid is not None
    bid = round(offer.min_bid * 1.1, 4)
    instance_id = client.rent(offer.id, request(bid))
    first: Instance = wait_for(lambda: (i := client.get_instance(instance_id)) and i.running and i)
    assert first.is_bid and first.min_bid == offer.min_bid and first.dph_base == offer.dph_base
    assert first.dph_total is not None and first.dph_total < offer.dph_total  # the bid, not on-demand
    assert not first.paused
    sim.market.outbid(instance_id, price=round(bid * 1.3, 4))
    outbid: Instance = wait_for(lambda: (i := client.get_instance(instance_id)) and i.paused and i)
    assert outbid.min_bid == round(bid * 1.3, 4) and outbid.dead and not outbid.gone
    client.set_bid(instance_id, round(bid * 1.4, 4))
    wait_for(lambda: (i := client.get_instance(instance_id)) and i.running)
    with pytest.raises(VastRejected):
        client.set_bid(instance_id, 0)
