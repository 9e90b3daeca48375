"""Fixtures for the simulator tests: a started simulator on an ephemeral port, with fast boots."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.simulator.support import FakeClock, Vast
from vastsim import SimulatorServer

FAST_BOOT = (0.02, 0.04)


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=7, offers=300, boot_seconds=FAST_BOOT) as server:
        yield server


@pytest.fixture
def vast(sim: SimulatorServer) -> Vast:
    return Vast(sim.url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked(clock: FakeClock) -> Iterator[SimulatorServer]:
    """A simulator on the fake clock: an instance loads 10 s after its rental and runs at 30 s."""
    with SimulatorServer(seed=3, offers=200, boot_seconds=(10.0, 30.0), clock=clock) as server:
        yield server
