"""The client's pacer against the simulator's rate limits over real HTTP: a burst of launches
from many threads (list by label, rent, look up, as the controller does) under minimum intervals
per endpoint meets no 429 at all, and without the pacer the same burst is refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from vastmarket.client import ApiKey, RetryPolicy, VastClient, broad_query
from vastmarket.errors import RateLimited
from vastmarket.instances import RentRequest
from vastmarket.pacing import Pacer
from vastsim import SimulatorServer

from .conftest import API_KEY

LIMITS = {"create": 0.5, "get_instance": 0.4, "list_instances": 0.3}
LAUNCHES = 6


@pytest.fixture
def limited(sim: SimulatorServer) -> Iterator[SimulatorServer]:
    for endpoint, interval in LIMITS.items():
        sim.faults.rate_limit(endpoint, interval, body="text")
    yield sim


def burst(client: VastClient, offers: list[int]) -> list[BaseException]:
    """One launch per offer, all at once, each on its own thread."""
    errors: list[BaseException] = []

    def launch(k: int, offer_id: int) -> None:
        try:
            label = f"kv:pace:pod-{k}"
            client.list_instances(label=label)
            instance = client.rent(offer_id, RentRequest(image="ghcr.io/example/speech:1.0", label=label,
                                                         disk_gb=10, ports=(8000,)))
            assert client.get_instance(instance) is not None
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=launch, args=(k, o)) for k, o in enumerate(offers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def offers_for_burst(sim: SimulatorServer) -> list[int]:
    reader = VastClient(sim.url, ApiKey(API_KEY))
    try:
        found = reader.search_offers({**broad_query(), "direct_port_count": {"gte": 2}},
                                     order=[("dph_total", "asc")], limit=LAUNCHES).offers
    finally:
        reader.close()
    assert len(found) == LAUNCHES
    return [o.id for o in found]


def too_soon(sim: SimulatorServer) -> int:
    answers = sim.state()["counters"]["answers"]
    return sum(by_status.get("429", 0) for by_status in answers.values())


def test_a_paced_burst_of_launches_meets_no_rate_limit(limited: SimulatorServer) -> None:
    offers = offers_for_burst(limited)
    pacer = Pacer(LIMITS, margin=0.2)
    client = VastClient(limited.url, ApiKey(API_KEY), retry=RetryPolicy(attempts=1), pacer=pacer)
    try:
        assert burst(client, offers) == []
    finally:
        client.close()
    assert too_soon(limited) == 0
    calls = limited.state()["counters"]["calls"]
    assert calls["create"] == calls["get_instance"] == calls["list_instances"] == LAUNCHES
    assert pacer.calls == {"list_instances": LAUNCHES, "create": LAUNCHES, "get_instance": LAUNCHES}
    assert pacer.waits["list_instances"] > 0, "the burst had to be paced"


def test_the_same_burst_without_the_pacer_is_refused(limited: SimulatorServer) -> None:
    offers = offers_for_burst(limited)
    client = VastClient(limited.url, ApiKey(API_KEY), retry=RetryPolicy(attempts=1))
    try:
        errors = burst(client, offers)
    finally:
        client.close()
    assert errors and all(isinstance(e, RateLimited) for e in errors), errors
    assert too_soon(limited) > 0
