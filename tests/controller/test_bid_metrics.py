"""The interruptible instances' metrics (controller.bid_metrics), read from the fleet listing of
a simulator over HTTP: interruptible or not, paused while outbid, the bid, min_bid and saving."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest

from controller.bid_metrics import BidCollector
from controller.fleet import Fleet
from tests.simulator.support import port_offer, rent_body, running, wait_for
from tests.simulator.support import Vast
from vastmarket.client import RetryPolicy, VastClient
from vastsim import SimulatorServer


def samples(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_each_instance_shows_whether_it_is_interruptible_paused_its_bid_min_bid_and_saving() -> None:
    with SimulatorServer(seed=7, offers=300, boot_seconds=(0.02, 0.04)) as sim:
        vast = Vast(sim.url)
        offer = port_offer(vast)
        bid = round(offer["min_bid"] * 1.1, 4)
        spot = vast.rent(offer["id"], rent_body(label="kv:m1:a", price=bid)).json()["new_contract"]
        plain = vast.rent(port_offer(vast)["id"], rent_body(label="kv:m1:b")).json()["new_contract"]
        wait_for(lambda: running(vast, spot))
        fleet = Fleet(VastClient(sim.url, retry=RetryPolicy(attempts=2, base_delay=0.01)), "m1")
        fleet.refresh()
        registry = CollectorRegistry()
        registry.register(BidCollector(fleet))
        got = samples(registry)
        assert got[f'kube_vast_instance_interruptible{{instance="{spot}"}}'] == 1.0
        assert got[f'kube_vast_instance_interruptible{{instance="{plain}"}}'] == 0.0
        assert got[f'kube_vast_instance_bid_dollars_per_hour{{instance="{spot}"}}'] == bid
        assert got[f'kube_vast_instance_min_bid_dollars_per_hour{{instance="{spot}"}}'] == offer["min_bid"]
        assert got[f'kube_vast_instance_saved_dollars_per_hour{{instance="{spot}"}}'] > 0
        assert got[f'kube_vast_instance_paused{{instance="{spot}"}}'] == 0.0
        assert f'kube_vast_instance_bid_dollars_per_hour{{instance="{plain}"}}' not in got
        sim.market.outbid(spot)
        deadline = time.monotonic() + 20
        while samples(registry).get(f'kube_vast_instance_paused{{instance="{spot}"}}') != 1.0:
            assert time.monotonic() < deadline, "the outbid never showed"
            time.sleep(0.05)  # the next listing
            fleet.refresh()
