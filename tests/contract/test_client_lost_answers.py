"""The client when Vast acts and the answer is lost (the simulator's commit then fail and slow
answer): a rent is sent once and reported uncertain, whatever the lost answer looked like; a
destroy is retried and counts the instance gone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.conftest import API_KEY
from vastmarket.client import ApiKey, RetryPolicy, Timeouts, VastClient, broad_query
from vastmarket.errors import VastRejected, VastUnavailable
from vastmarket.instances import RentRequest
from vastsim import SimulatorServer

READ_TIMEOUT = 0.5


@pytest.fixture
def impatient(sim: SimulatorServer) -> Iterator[VastClient]:
    """A client whose read timeout is shorter than the late answers below."""
    c = VastClient(sim.url, ApiKey(API_KEY), timeouts=Timeouts(connect=2.0, read=READ_TIMEOUT),
                   retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05), sleep=lambda s: None)
    yield c
    c.close()


def offer_id(client: VastClient) -> int:
    query = {**broad_query(), "direct_port_count": {"gte": 2}}
    return client.search_offers(query, order=[("dph_total", "asc")], limit=1).offers[0].id


LOST = {
    "500": {"status": 500},
    "503 as html": {"status": 503, "body": "html"},
    "dropped": {"answer": "drop"},
    "late": {"answer": "late", "seconds": 3 * READ_TIMEOUT},
}


@pytest.mark.parametrize("lost", list(LOST.values()), ids=list(LOST))
def test_a_rent_whose_answer_is_lost_is_sent_once_and_uncertain(sim: SimulatorServer, impatient: VastClient,
                                                                lost: dict[str, Any]) -> None:
    sim.faults.commit_then_fail("create", **lost)
    request = RentRequest(image="ghcr.io/example/speech:1.0", label="kv:test:lost", disk_gb=10, ports=(8000,))
    with pytest.raises(VastUnavailable) as info:
        impatient.rent(offer_id(impatient), request)
    assert info.value.uncertain is True
    assert "outcome is unknown" in str(info.value)
    state = sim.state()
    assert state["counters"]["calls"]["create"] == 1  # never retried: a retry could rent twice
    assert [i["label"] for i in state["instances"]] == ["kv:test:lost"]  # and Vast did rent


def test_a_rent_answered_too_slowly_is_uncertain(sim: SimulatorServer, impatient: VastClient) -> None:
    sim.faults.set_slow_answer("create", 3 * READ_TIMEOUT)
    request = RentRequest(image="ghcr.io/example/speech:1.0", label="kv:test:slow", disk_gb=10, ports=(8000,))
    with pytest.raises(VastUnavailable) as info:
        impatient.rent(offer_id(impatient), request)
    assert info.value.uncertain is True
    assert sim.state()["counters"]["rentals"] == 1


@pytest.mark.parametrize("lost", list(LOST.values()), ids=list(LOST))
def test_a_destroy_whose_answer_is_lost_is_retried_and_counts_the_instance_gone(
        sim: SimulatorServer, impatient: VastClient, lost: dict[str, Any]) -> None:
    request = RentRequest(image="ghcr.io/example/speech:1.0", label="kv:test:gone", disk_gb=10, ports=(8000,))
    instance_id = impatient.rent(offer_id(impatient), request)
    sim.faults.commit_then_fail("destroy", **lost)
    if lost.get("status") == 500:  # a 500 is not retried for any call: the caller sees it and looks again
        with pytest.raises(VastRejected):
            impatient.destroy(instance_id)
        impatient.destroy(instance_id)
    else:
        impatient.destroy(instance_id)
    assert impatient.get_instance(instance_id) is None
    assert sim.state()["counters"]["live_instances"] == 0
