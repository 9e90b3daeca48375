"""`VastClient.instance_logs` against the simulator: the request, the polled result_url (never with
the key), the bounded wait, refusals and retries."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.contract.conftest import API_KEY
from vastmarket.client import ApiKey, LogPolling, RetryPolicy, VastClient, broad_query
from vastmarket.errors import VastRejected, VastUnavailable
from vastmarket.instances import RentRequest
from vastsim import SimulatorServer


class Clock:
    """The simulator's clock, moved by the client's sleeps: polling takes no real time."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked(clock: Clock) -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=11, offers=200, boot_seconds=(0.0, 0.0), api_key=API_KEY, clock=clock) as server:
        yield server


@pytest.fixture
def vast(clocked: SimulatorServer, clock: Clock) -> Iterator[VastClient]:
    c = VastClient(clocked.url, ApiKey(API_KEY), retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01),
                   sleep=clock.sleep)
    yield c
    c.close()


def running_instance(client: VastClient, sim: SimulatorServer) -> int:
    offer = client.search_offers({**broad_query(), "direct_port_count": {"gte": 1}}, limit=1).offers[0]
    instance_id = client.rent(offer.id, RentRequest(image="ghcr.io/example/job:1", label="kv:t:logs", ports=(8000,),
                                                    args=("--epochs", "2")))
    sim.market.advance()
    return instance_id


def test_the_log_is_polled_at_result_url_until_it_is_uploaded(vast: VastClient, clocked: SimulatorServer,
                                                              clock: Clock) -> None:
    instance_id = running_instance(vast, clocked)
    clocked.market.logs.set_upload_seconds(1.0)
    text = vast.instance_logs(instance_id)
    assert text.splitlines()[:2] == [f"[vastsim] instance {instance_id} started ghcr.io/example/job:1",
                                     "[vastsim] command: <image entrypoint> --epochs 2"]
    assert clock.sleeps == [0.3] * 4  # ready 1.0 s after the request: polls at 0, 0.3, 0.6, 0.9, 1.2


def test_the_result_url_is_fetched_without_the_api_key(vast: VastClient, clocked: SimulatorServer) -> None:
    instance_id = running_instance(vast, clocked)
    vast.instance_logs(instance_id)
    counters = clocked.state()["counters"]
    assert counters["log_downloads"] >= 1 and counters["log_downloads_with_key"] == 0


def test_tail_asks_for_the_last_lines(vast: VastClient, clocked: SimulatorServer) -> None:
    instance_id = running_instance(vast, clocked)
    clocked.market.append_log(instance_id, [f"line {i}" for i in range(5)])
    assert vast.instance_logs(instance_id, tail=2) == "line 3\nline 4\n"
    with pytest.raises(ValueError, match="tail"):
        vast.instance_logs(instance_id, tail=-1)


def test_a_log_that_never_arrives_fails_after_the_bounded_polls(vast: VastClient, clocked: SimulatorServer,
                                                                clock: Clock) -> None:
    instance_id = running_instance(vast, clocked)
    clocked.market.logs.set_upload_seconds(600)
    with pytest.raises(VastUnavailable, match=r"not ready after 5 tries .*HTTP 404"):
        vast.instance_logs(instance_id, poll=LogPolling(attempts=5, interval=0.5))
    assert clock.sleeps == [0.5] * 4


def test_the_log_of_an_unknown_instance_is_refused(vast: VastClient) -> None:
    with pytest.raises(VastRejected) as refused:
        vast.instance_logs(20_999_999)
    assert refused.value.status == 404 and refused.value.error == "no_such_instance"


def test_a_failed_log_request_is_retried(vast: VastClient, clocked: SimulatorServer) -> None:
    instance_id = running_instance(vast, clocked)
    clocked.faults.fail_next("request_logs", status=502, count=1)
    assert "started" in vast.instance_logs(instance_id)
    assert clocked.state()["counters"]["answers"]["request_logs"] == {"200": 1, "502": 1}


def test_a_long_log_is_cut_to_its_last_whole_lines(vast: VastClient, clocked: SimulatorServer) -> None:
    instance_id = running_instance(vast, clocked)
    clocked.market.append_log(instance_id, [f"{i:04d} " + "x" * 95 for i in range(1000)])  # 100 bytes a line
    text = vast.instance_logs(instance_id, poll=LogPolling(max_bytes=1050))
    assert text.splitlines() == [f"{i:04d} " + "x" * 95 for i in range(990, 1000)]
