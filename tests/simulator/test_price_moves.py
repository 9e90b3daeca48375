"""Prices moving (`/_sim/market/prices`, `Market.move_prices`): a fraction of the offers change
price within the spread, searches show the new prices, a rented instance keeps its own."""

from __future__ import annotations

from tests.simulator.support import Vast, port_offer, rent_body
from vastsim import SimulatorServer


def prices(vast: Vast) -> dict[int, float]:
    return {o["id"]: o["dph_total"] for o in vast.offers(limit=1000)}


def test_a_fraction_of_the_offers_move_within_the_spread_and_searches_show_it(sim: SimulatorServer,
                                                                              vast: Vast) -> None:
    offer = port_offer(vast)
    instance_id = vast.rent(offer["id"], rent_body()).json()["new_contract"]
    billed = vast.instance(instance_id)["dph_total"]
    before = prices(vast)
    reply = vast.admin("market/prices", {"fraction": 0.5, "spread": 0.2, "seed": 4})
    assert reply.status == 200 and reply.json()["moved"] == 150  # half of the 300 offers
    after = prices(vast)
    moved = [i for i in before if abs(after[i] - before[i]) > 1e-6]
    assert 100 <= len(moved) <= 150  # a factor may land next to 1
    assert all(0.75 * before[i] <= after[i] <= 1.25 * before[i] for i in before)  # storage is not moved
    assert vast.instance(instance_id)["dph_total"] == billed, "a rented instance keeps its price"
    assert vast.admin("market/prices", {"fraction": 0, "spread": 0.5}).json()["moved"] == 0


def test_bad_price_moves_are_a_400(vast: Vast) -> None:
    for body in ({"fraction": 2, "spread": 0.1}, {"fraction": 0.1, "spread": 1.5}, {"fraction": "x", "spread": 0.1},
                 {"fraction": 0.1}, {"fraction": 0.1, "spread": 0.1, "bogus": 1}):
        reply = vast.admin("market/prices", body)
        assert reply.status == 400 and reply.json()["error"] == "invalid_args", body
