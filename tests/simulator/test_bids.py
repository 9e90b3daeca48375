"""Interruptible instances in the simulator (vastsim.bids), over HTTP: other renters outbid an
instance (`/_sim/faults/outbid`) and it is paused, not destroyed, billing its storage only; a
raised bid (`PUT /api/v0/instances/bid_price/{id}/`) above the new min_bid runs it again, on new
host ports; the market's min_bid moving pauses and resumes bids too; a search with `type: bid`
prices offers at min_bid."""

from __future__ import annotations

from typing import Any

from tests.simulator.support import Vast, host_port, port_offer, refuses, rent_body, running, wait_for
from vastsim import SimulatorServer


def rent_bid(vast: Vast, *, over: float = 1.1) -> tuple[int, dict[str, Any]]:
    """Rent the cheapest port offer with a bid `over` × its min_bid; (instance id, offer) once running."""
    offer = port_offer(vast)
    reply = vast.rent(offer["id"], rent_body(price=round(offer["min_bid"] * over, 4)))
    assert reply.status == 200, reply.text
    instance_id = reply.json()["new_contract"]
    wait_for(lambda: running(vast, instance_id))
    return instance_id, offer


def paused(vast: Vast, instance_id: int) -> dict[str, Any] | None:
    inst = vast.instance(instance_id)
    states = (inst or {}).get("actual_status"), (inst or {}).get("cur_state"), (inst or {}).get("intended_status"), \
        (inst or {}).get("next_state")
    return inst if states == ("stopped",) * 4 else None


def audit(vast: Vast, instance_id: int) -> dict[str, Any]:
    return next(i for i in vast.state()["instances"] if i["id"] == instance_id)


def bid_price(vast: Vast, instance_id: int, price: Any) -> Any:
    return vast.call("PUT", f"/api/v0/instances/bid_price/{instance_id}/", {"client_id": "me", "price": price})


def test_an_outbid_instance_is_paused_keeps_billing_storage_and_resumes_when_its_bid_is_raised(
        sim: SimulatorServer, vast: Vast) -> None:
    instance_id, offer = rent_bid(vast)
    first = vast.instance(instance_id)
    assert first is not None and first["is_bid"] is True
    old_port = host_port(first)
    bid = audit(vast, instance_id)["bid"]
    assert audit(vast, instance_id)["billed_dph"] == first["dph_total"] > bid  # bid + storage while running

    reply = vast.admin("faults/outbid", {"instance_id": instance_id, "price": round(bid * 1.5, 4)})
    assert reply.status == 200, reply.text
    assert reply.json()["min_bid"] == round(bid * 1.5, 4)
    stopped = wait_for(lambda: paused(vast, instance_id))
    assert stopped["min_bid"] == round(bid * 1.5, 4)
    assert stopped["ports"] is None and refuses(old_port)
    record = audit(vast, instance_id)
    assert record["paused"] is True and record["destroyed"] is False
    assert 0 < record["billed_dph"] == record["storage_dph"] < first["dph_total"], "paused: storage only"
    assert vast.state()["counters"]["outbids"] == 1

    refused = vast.update(instance_id, {"state": "running"})
    assert refused.status == 400 and "outbid" in refused.json()["msg"]
    assert bid_price(vast, instance_id, round(bid * 1.2, 4)).status == 200  # still under min_bid
    assert paused(vast, instance_id) is not None

    assert bid_price(vast, instance_id, round(bid * 1.6, 4)).status == 200
    resumed = wait_for(lambda: running(vast, instance_id))
    assert resumed["id"] == instance_id and host_port(resumed) != old_port
    assert resumed["dph_total"] > first["dph_total"], "billed at the raised bid"
    assert audit(vast, instance_id)["paused"] is False


def test_the_market_min_bid_moving_pauses_and_resumes_bids(sim: SimulatorServer, vast: Vast) -> None:
    instance_id, offer = rent_bid(vast, over=1.05)
    moved = 0
    for seed in range(200):  # until a move lifts this offer's min_bid over the bid
        vast.admin("market/prices", {"fraction": 1.0, "spread": 0.5, "seed": seed})
        if paused(vast, instance_id):
            moved = seed
            break
    assert paused(vast, instance_id) is not None, "no price move outbid the instance"
    for seed in range(moved + 1, moved + 400):  # until one brings it back under the bid
        vast.admin("market/prices", {"fraction": 1.0, "spread": 0.5, "seed": seed})
        if wait_for(lambda: vast.instance(instance_id))["intended_status"] == "running":
            break
    wait_for(lambda: running(vast, instance_id))


def test_bid_price_is_refused_for_on_demand_instances_bad_prices_and_unknown_ids(vast: Vast) -> None:
    offer = port_offer(vast)
    on_demand = vast.rent(offer["id"], rent_body()).json()["new_contract"]
    assert bid_price(vast, on_demand, 0.5).json()["error"] == "invalid_args"
    instance_id, _ = rent_bid(vast)
    for price in (0, -1, "x", None, 1000):
        reply = bid_price(vast, instance_id, price)
        assert reply.status == 400 and reply.json()["error"] == "invalid_price", price
    assert bid_price(vast, 99, 0.5).status == 404
    for body in ({"instance_id": on_demand}, {"instance_id": instance_id, "price": 0.0001},
                 {"instance_id": instance_id, "bogus": 1}, {}):
        assert vast.admin("faults/outbid", body).status == 400, body
    assert vast.admin("faults/outbid", {"instance_id": 99}).status == 404


def test_a_bid_search_prices_offers_at_min_bid(vast: Vast) -> None:
    on_demand = {o["id"]: o for o in vast.offers(limit=50, order=[["id", "asc"]])}
    bids = vast.offers(limit=50, order=[["id", "asc"]], type="bid")
    assert bids and all(o["is_bid"] for o in bids)
    for o in bids:
        storage = on_demand[o["id"]]["dph_total"] - on_demand[o["id"]]["dph_base"]
        assert abs(o["dph_total"] - (o["min_bid"] + storage)) < 1e-5
