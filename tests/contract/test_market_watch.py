"""Placement equality on a large simulated market, over real HTTP: the market watcher's snapshot
for the standard demand profile (3 GPU models, 2 regions, 20 pods) gives every pod the offer a
search of the whole market would give it, with answers whole and with answers truncated at a
row cap, while receiving a fraction of the market's rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.market_profile import standard_config, standard_pods
from controller.demand import pod_demand
from vastmarket.client import VastClient
from vastmarket.market_watch import MarketWatcher
from vastmarket.offers import parse_offers
from vastmarket.selection import ScoringPolicy
from vastmarket.snapshot import OfferSnapshot
from vastsim import SimulatorServer
from vastsim.offerset import generate_offers

NOW = 1_767_225_600.0
SEED, OFFERS = 7, 20_000


@pytest.fixture(scope="module")
def whole_market() -> OfferSnapshot:
    raw = [o for o in generate_offers(SEED, OFFERS, now=NOW) if o["rentable"] and not o["rented"] and not o["external"]]
    return OfferSnapshot(parse_offers(raw).offers, taken_at=NOW)


def chosen(snapshot: OfferSnapshot) -> list[tuple[int, ...]]:
    """Each pod's three best offers, as kube-vast ranks them."""
    config = standard_config()
    policy = ScoringPolicy.from_config(config)
    return [tuple(s.offer.id for s in snapshot.rank(req, policy).top(3))
            for req in pod_demand(config, standard_pods()).requirements]


@pytest.fixture(params=[None, 1000], ids=["whole answers", "answers cut at 1000 rows"])
def watched(request: pytest.FixtureRequest) -> Iterator[tuple[MarketWatcher, SimulatorServer]]:
    with SimulatorServer(seed=SEED, offers=OFFERS, clock=lambda: NOW, search_row_cap=request.param) as sim:
        client = VastClient(sim.url)
        config, pods = standard_config(), standard_pods()
        watcher = MarketWatcher(lambda f, o, n: client.search_offers(f, order=o, limit=n), lambda s: None,
                                lambda: pod_demand(config, pods), client.gpu_names, clock=lambda: NOW)
        yield watcher, sim
        client.close()


def test_the_demand_driven_snapshot_places_every_pod_as_the_whole_market_does(
        watched: tuple[MarketWatcher, SimulatorServer], whole_market: OfferSnapshot) -> None:
    watcher, sim = watched
    snapshot = watcher.poll_once()
    assert snapshot is not None, watcher.last_error
    assert chosen(snapshot) == chosen(whole_market)
    assert all(best for best in chosen(snapshot)), "every pod of the profile has offers"
    assert watcher.stats.incomplete == 0
    assert watcher.stats.rows < len(whole_market) / 5, "a fraction of the market's rows"
    if sim.search_limits.row_cap() is not None:
        assert watcher.stats.truncated > 0 and sim.state()["search"]["rows_served"] == watcher.stats.rows
