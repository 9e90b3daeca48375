"""Hosts on their own network (vastsim.hostnet, vastsim.sites): instances listen on the address of
their machine's host, in a namespace this test run made, reached over a veth link; a partition
takes that link down (the ports stop answering while the Vast API still reports the instance
running) and healing brings them back. Without a host network a partition is refused with the
reason."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Iterator

import pytest

from tests.simulator.conftest import FAST_BOOT
from tests.simulator.support import Vast, call, host_port, port_offer, rent_body, running, wait_for
from vastsim import SimulatorServer
from vastsim.hostnet import RANGES, HostNetwork


@pytest.fixture
def hosted(host_network: HostNetwork) -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=7, offers=300, boot_seconds=FAST_BOOT, network=host_network) as server:
        yield server


def rent_on_new_machine(vast: Vast, used: set[int]) -> dict[str, Any]:
    offers = vast.offers(direct_port_count={"gte": 2}, rentable={"eq": True}, limit=50, order=[["dph_total", "asc"]])
    offer = next(o for o in offers if o["machine_id"] not in used)
    used.add(offer["machine_id"])
    instance_id = vast.rent(offer["id"], rent_body()).json()["new_contract"]
    return wait_for(lambda: running(vast, instance_id))


def answers(address: str, port: int, timeout: float = 1.0) -> bool:
    """A TCP connect and an HTTP 200 within `timeout` (a partitioned host never answers)."""
    try:
        return call("GET", f"http://{address}:{port}/healthz", timeout=timeout).status == 200
    except OSError:
        return False


def test_instances_listen_on_their_hosts_own_documentation_range_address(hosted: SimulatorServer,
                                                                         host_network: HostNetwork) -> None:
    vast = Vast(hosted.url)
    used: set[int] = set()
    first, second = rent_on_new_machine(vast, used), rent_on_new_machine(vast, used)
    addresses = [i["public_ipaddr"].strip() for i in (first, second)]
    assert addresses[0] != addresses[1], "two machines rented first are two hosts"
    documentation = [ipaddress.ip_network(r) for r in RANGES]
    for instance, address in zip((first, second), addresses):
        assert any(ipaddress.ip_address(address) in r for r in documentation)
        assert address in [s.address for s in host_network.sites]
        assert answers(address, host_port(instance))
        # Not on this machine's own addresses: the port is inside the namespace only.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", host_port(instance)), timeout=1).close()
    ledger = {i["id"]: i for i in hosted.state()["instances"]}
    assert [ledger[i["id"]]["host"] for i in (first, second)] == addresses
    network = hosted.state()["network"]
    assert network["namespace"] == host_network.namespace and network["partitioned"] == []


def test_a_partition_silences_the_host_while_vast_still_reports_it_running_and_healing_restores_it(
        hosted: SimulatorServer) -> None:
    vast = Vast(hosted.url)
    used: set[int] = set()
    cut, other = rent_on_new_machine(vast, used), rent_on_new_machine(vast, used)
    cut_address, port = cut["public_ipaddr"].strip(), host_port(cut)
    reply = vast.admin("faults/partition", {"instance_id": cut["id"]})
    assert reply.status == 200 and reply.json()["partitioned"] == cut_address
    # The link is down: nothing answers, not even a refusal (a connect times out).
    with pytest.raises((TimeoutError, OSError)) as failure:
        socket.create_connection((cut_address, port), timeout=1.0).close()
    assert not isinstance(failure.value, ConnectionRefusedError)
    assert vast.instance(cut["id"])["actual_status"] == "running"  # the Vast API still sees the host
    assert answers(other["public_ipaddr"].strip(), host_port(other)), "another host is not cut off"
    assert hosted.state()["network"]["partitioned"] == [cut_address]

    healed = vast.admin("faults/heal", {})
    assert healed.status == 200 and healed.json()["healed"] == [cut_address]
    wait_for(lambda: answers(cut_address, port), timeout=10, interval=0.1)
    assert hosted.state()["network"]["partitioned"] == []
    assert vast.admin("faults/partition", {"instance_id": 1}).status == 404
    assert vast.admin("faults/partition", {"instance_id": cut["id"], "at": 1}).status == 400


def test_a_destroy_during_a_partition_closes_the_ports_for_when_the_link_heals(hosted: SimulatorServer) -> None:
    vast = Vast(hosted.url)
    cut = rent_on_new_machine(vast, set())
    address, port = cut["public_ipaddr"].strip(), host_port(cut)
    hosted.partition(cut["id"])
    assert vast.destroy(cut["id"]).json() == {"success": True}  # Vast reaches the host; this machine does not
    assert hosted.heal(cut["id"]) == [address]  # the ledger knows a destroyed instance's host

    def refused() -> bool:
        try:
            socket.create_connection((address, port), timeout=1.0).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False

    wait_for(refused, timeout=10, interval=0.1)


def test_stopping_the_simulator_heals_the_hosts_it_cut_off(host_network: HostNetwork) -> None:
    with SimulatorServer(seed=7, offers=300, boot_seconds=FAST_BOOT, network=host_network) as server:
        instance = rent_on_new_machine(Vast(server.url), set())
        address = server.partition(instance["id"])
        assert host_network.partitioned() == [address]
    assert host_network.partitioned() == []


def test_without_a_host_network_a_partition_is_refused_with_the_reason(vast: Vast) -> None:
    offer = port_offer(vast)
    instance_id = vast.rent(offer["id"], rent_body()).json()["new_contract"]
    reply = vast.admin("faults/partition", {"instance_id": instance_id})
    assert reply.status == 400 and reply.json()["error"] == "invalid_args"
    assert "this machine's own address" in reply.json()["msg"] and "network namespace" in reply.json()["msg"]
    assert vast.admin("faults/heal", {}).status == 400
    assert vast.admin("faults/partition", {"instance_id": "x"}).status == 400
