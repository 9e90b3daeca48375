"""The client's stop and start, and how it reads a container's exit, against the simulator over
real HTTP."""

import time
import urllib.request

import pytest

from vastmarket.client import VastClient, broad_query
from vastmarket.errors import VastRejected
from vastmarket.instances import Instance, RentRequest


def wait_for_instance(client: VastClient, instance_id: int, predicate, timeout: float = 10.0) -> Instance:
    deadline = time.monotonic() + timeout
    while True:
        instance = client.get_instance(instance_id)
        if instance is not None and predicate(instance):
            return instance
        if time.monotonic() > deadline:
            raise AssertionError(f"instance {instance_id} never matched; last {instance}")
        time.sleep(0.02)


def rent(client: VastClient, **env: str) -> int:
    offer = client.search_offers({**broad_query(), "direct_port_count": {"gte": 1}},
                                 order=[("dph_total", "asc")], limit=1).offers[0]
    return client.rent(offer.id, RentRequest(image="ghcr.io/example/job:1.0", label="kv:test:job",
                                             disk_gb=10, ports=(8000,), env=env))


def test_an_exited_container_is_read_with_its_exit_code(client):
    instance_id = rent(client, KUBE_VAST_SIM_EXIT_CODE="3", KUBE_VAST_SIM_EXIT_AFTER="0.1")
    exited = wait_for_instance(client, instance_id, lambda i: i.actual_status == "exited")
    assert exited.container_exited and not exited.stop_requested and not exited.host_lost
    assert exited.exit_code == 3 and exited.status_msg.startswith("Exited (3) ")


def test_an_exit_without_a_code_in_the_message_reads_as_unknown(client, sim):
    sim.faults.fate_next("exited", running_seconds=0.1, status_msg="container died")
    instance_id = rent(client)
    exited = wait_for_instance(client, instance_id, lambda i: i.actual_status == "exited")
    assert exited.container_exited and exited.exit_code is None


def test_stop_then_start_runs_the_container_again_on_new_ports(client, sim):
    instance_id = rent(client, KUBE_VAST_SIM_EXIT_CODE="3,0", KUBE_VAST_SIM_EXIT_AFTER="0.3")
    first = wait_for_instance(client, instance_id, lambda i: i.running)
    wait_for_instance(client, instance_id, lambda i: i.exit_code == 3)
    client.stop(instance_id)
    client.stop(instance_id)  # asking twice is harmless
    stopped = wait_for_instance(client, instance_id, lambda i: i.stopped)
    assert stopped.stop_requested and not stopped.container_exited and stopped.ports == {}
    client.start(instance_id)
    again = wait_for_instance(client, instance_id, lambda i: i.running)
    assert again.ports[8000] != first.ports[8000]
    with urllib.request.urlopen(f"http://127.0.0.1:{again.ports[8000]}/", timeout=5) as reply:
        assert reply.status == 200
    assert wait_for_instance(client, instance_id, lambda i: i.container_exited).exit_code == 0
    audit = next(i for i in sim.state()["instances"] if i["id"] == instance_id)
    assert audit["runs"] == 2 and [e["exit_code"] for e in audit["exits"]] == [3, 0]


def test_a_stopped_instance_is_stopped_only_once_its_container_has_shut_down(client):
    instance_id = rent(client, KUBE_VAST_SIM_STOP_SECONDS="0.5")
    wait_for_instance(client, instance_id, lambda i: i.running)
    client.stop(instance_id)
    shutting_down = client.get_instance(instance_id)
    assert shutting_down is not None and shutting_down.stop_requested and not shutting_down.stopped
    assert shutting_down.running
    wait_for_instance(client, instance_id, lambda i: i.stopped)


@pytest.mark.parametrize("call", ["stop", "start"])
def test_changing_the_state_of_a_destroyed_instance_is_rejected_as_no_such_instance(client, call):
    instance_id = rent(client)
    client.destroy(instance_id)
    with pytest.raises(VastRejected) as caught:
        getattr(client, call)(instance_id)
    assert caught.value.error == "no_such_instance" and caught.value.status == 404
