"""The client against the simulator over real HTTP: a fresh simulator per test, fast boots."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vastmarket.client import ApiKey, RetryPolicy, VastClient
from vastsim import SimulatorServer

API_KEY = "vast_api_key_contract_s3cr3t"


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=11, offers=400, boot_seconds=(0.05, 0.05), api_key=API_KEY) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sim: SimulatorServer, sleeps: list[float]) -> Iterator[VastClient]:
    c = VastClient(sim.url, ApiKey(API_KEY), retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05),
                   sleep=sleeps.append)
    yield c
    c.close()
