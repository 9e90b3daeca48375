"""Replacing the instance of an unreachable host (controller.replacement): the pure rules, the
probe telling an unreachable host from one that answers badly, and the reconciler against the
simulator over real HTTP, its hosts on their own network (a namespace this test run made) so
that a partition is real, with a fake only at the Kubernetes seam.

The reconciler tests sample the simulator's ledger on every turn: at no sample may the pod have
two live instances, and the replacement is rented only after the old instance was destroyed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controller import health, replacement
from controller.reconciler import A_INSTANCE, A_LAUNCH, A_PUBLIC_IP
from tests.controller.test_reconciler_lifecycle import NS, World, container, gpu_pod, is_ready, make_world, service
from vastsim import SimulatorServer
from vastsim.hostnet import HostNetwork

PROBE = {"tcpSocket": {"port": 8000}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2}


# --- the pure rules ---------------------------------------------------------------------------


def state_with(results: list[tuple[float, bool, bool]]) -> health.HealthState:
    state = health.HealthState(health.Probe("tcp", 8000, period_seconds=1, failure_threshold=2), now=0.0)
    for at, ok, reachable in results:
        state.observe(ok, at, "m", reachable=reachable)
    return state


def test_unreachable_since_is_the_start_of_the_current_run_of_unreachable_results() -> None:
    assert state_with([(1, True, True)]).unreachable_since is None
    assert state_with([(1, True, True), (2, False, False), (3, False, False)]).unreachable_since == 2
    # Any answer from the host (a refusal, an HTTP error) ends the run; a new run starts over.
    assert state_with([(2, False, False), (3, False, True)]).unreachable_since is None
    assert state_with([(2, False, False), (3, False, True), (4, False, False)]).unreachable_since == 4
    assert state_with([(2, False, False), (3, True, True)]).unreachable_since is None


def test_a_replacement_is_due_once_the_grace_is_over_and_never_with_grace_0() -> None:
    state = state_with([(10, False, False)])
    assert not replacement.due(state, 14.9, 5.0)
    assert replacement.due(state, 15.0, 5.0)
    assert not replacement.due(state, 1000.0, 0.0)
    assert not replacement.due(state_with([(10, False, True)]), 1000.0, 5.0)
    assert replacement.unreachable_for(state, 12.5) == 2.5


@pytest.mark.parametrize("unreachable, probed, held", [(1, 1, False), (2, 2, False), (3, 3, True), (3, 5, True),
                                                       (3, 6, False), (6, 20, False), (12, 20, True), (0, 0, False)])
def test_replacements_are_held_when_most_hosts_are_unreachable_at_once(unreachable: int, probed: int,
                                                                       held: bool) -> None:
    assert replacement.held(unreachable, probed) is held


def test_the_replacing_record_is_written_before_and_removed_after() -> None:
    record = {"label": "kv:c:u", "attempts": 3, "failedMachines": [7]}
    replacing = replacement.Replacing(20000001, 42, "host unreachable")
    begun = replacement.begin(record, replacing)
    assert replacement.Replacing.read(begun) == replacing
    assert begun["failedMachines"] == [7, 42] and begun["attempts"] == 0
    assert begun["lastFailure"] == {"reason": "HostUnreachable", "instanceId": 20000001}
    assert record == {"label": "kv:c:u", "attempts": 3, "failedMachines": [7]}, "the input is not changed"
    done = replacement.finish(begun)
    assert replacement.Replacing.read(done) is None and done["failedMachines"] == [7, 42]
    for bad in ({"replacing": "x"}, {"replacing": {"instance": "1"}}, {"replacing": {"instance": True}}, {}):
        assert replacement.Replacing.read(bad) is None


# --- the probe: unreachable or answering badly --------------------------------------------------


def test_a_refused_connect_and_an_http_error_come_from_a_reachable_host() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = health.check(health.Probe("tcp", 8000, timeout_seconds=1), "127.0.0.1", port)
    assert (result.ok, result.reachable) == (False, True)
    with SimulatorServer(seed=5, offers=50, boot_seconds=(0.01, 0.02)) as sim:
        world = make_world(sim)
        world.kube.add_pod(gpu_pod("web"))
        world.drive("web", is_ready, what="pod ready")
        [instance] = world.ledger()
        host_port = int(instance["ports"]["8000/tcp"][0]["HostPort"])
        sim.market.set_health(instance["id"], status=503)
        result = health.check(health.Probe("http", 8000, path="/healthz", timeout_seconds=1), "127.0.0.1", host_port)
        assert (result.ok, result.reachable) == (False, True) and "503" in result.message
        sim.market.set_health(instance["id"], mode="hang")  # connected, never answered: the host is there
        result = health.check(health.Probe("http", 8000, timeout_seconds=0.3), "127.0.0.1", host_port)
        assert (result.ok, result.reachable) == (False, True)
        world.vast.close()


def test_a_partitioned_host_is_unreachable_for_tcp_and_http_probes(host_network: HostNetwork) -> None:
    with SimulatorServer(seed=5, offers=50, boot_seconds=(0.01, 0.02), network=host_network) as sim:
        world = make_world(sim)
        world.kube.add_pod(gpu_pod("web"))
        world.drive("web", is_ready, what="pod ready")
        [instance] = world.ledger()
        ip, host_port = instance["host"], int(instance["ports"]["8000/tcp"][0]["HostPort"])
        for probe in (health.Probe("tcp", 8000, timeout_seconds=0.5), health.Probe("http", 8000, timeout_seconds=0.5),
                      health.Probe("http", 8000, scheme="HTTPS", timeout_seconds=0.5)):
            assert health.check(probe, ip, host_port).ok is (probe.scheme == "HTTP")
        sim.partition(instance["id"])
        for probe in (health.Probe("tcp", 8000, timeout_seconds=0.5), health.Probe("http", 8000, timeout_seconds=0.5),
                      health.Probe("http", 8000, scheme="HTTPS", timeout_seconds=0.5)):
            result = health.check(probe, ip, host_port)
            assert (result.ok, result.reachable) == (False, False), result
            assert "host unreachable" in result.message
        world.vast.close()


# --- the reconciler -----------------------------------------------------------------------------


class Sampler:
    """Samples the ledger in a thread of its own: the most live instances one pod had at once."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.samples = 0
        self.max_live: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            live: dict[str, int] = {}
            for i in self.world.ledger():
                if not i["destroyed"]:
                    live[i["label"]] = live.get(i["label"], 0) + 1
            for label, n in live.items():
                self.max_live[label] = max(self.max_live.get(label, 0), n)
            self.samples += 1


@pytest.fixture
def hosted(host_network: HostNetwork) -> Iterator[World]:
    with SimulatorServer(seed=5, offers=300, boot_seconds=(0.02, 0.05), network=host_network) as sim:
        world = make_world(sim, host_unreachable_grace=3.0, resync=0.5)
        world.kube.services.append(service("web"))
        yield world
        world.vast.close()


def probed_pod(name: str) -> dict[str, Any]:
    pod = gpu_pod(name, labels={"app": "web"})
    pod["spec"]["containers"][0]["readinessProbe"] = PROBE
    return pod


def serving_instance(world: World, pod: dict[str, Any] | None) -> dict[str, Any]:
    assert pod is not None
    live = [i for i in world.ledger() if not i["destroyed"] and i["label"].endswith(pod["metadata"]["uid"])]
    assert len(live) == 1, live
    return live[0]


def slice_ready(world: World) -> list[tuple[str, bool]]:
    return [(e["addresses"][0], bool(e["conditions"]["ready"]))
            for s in world.kube.list_endpoint_slices(NS, "") for e in s.get("endpoints") or []]


def test_a_partitioned_host_takes_the_pod_out_of_service_then_its_instance_is_replaced_once(hosted: World) -> None:
    world = hosted
    world.kube.add_pod(probed_pod("web-0"))
    with Sampler(world) as sampler:
        pod = world.drive("web-0", is_ready, what="pod ready")
        old = serving_instance(world, pod)
        assert slice_ready(world) == [(old["host"], True)]
        world.sim.partition(old["id"])
        pod = world.drive("web-0", lambda p: not is_ready(p), what="pod not ready")
        # Out of service after failureThreshold (2) failed probes, while the old instance still lives.
        assert slice_ready(world) == [(old["host"], False)]
        assert any(r == "InstanceUnhealthy" and "failed 2 times" in m and "host unreachable" in m
                   for _, r, m in world.kube.events)
        assert not serving_instance(world, pod)["destroyed"] and serving_instance(world, pod)["id"] == old["id"]
        pod = world.drive("web-0", lambda p: is_ready(p) and p["metadata"]["annotations"].get(A_INSTANCE)
                          not in (None, str(old["id"])), timeout=40, what="a replacement serving")
        new = serving_instance(world, pod)
    assert sampler.samples > 10 and set(sampler.max_live.values()) == {1}, sampler.max_live
    ledger = {i["id"]: i for i in world.ledger()}
    assert set(ledger) == {old["id"], new["id"]}, "one replacement, nothing else rented"
    assert ledger[old["id"]]["destroyed"] and ledger[old["id"]]["destroyed_at"] <= ledger[new["id"]]["created_at"]
    assert new["host"] != old["host"] and slice_ready(world) == [(new["host"], True)]
    assert pod is not None and pod["metadata"]["annotations"][A_PUBLIC_IP] == new["host"]
    status = container(pod)
    assert status["restartCount"] == 1 and status["lastState"]["terminated"]["reason"] == "HostUnreachable"
    reasons = world.kube.reasons()
    assert reasons.index("HostUnreachable") < reasons.index("InstanceReplaced")
    assert "InstanceLost" not in reasons
    # The link heals: the old instance stays destroyed (its port refuses), one instance serves.
    world.sim.heal()
    old_port = int(old["ports"]["8000/tcp"][0]["HostPort"])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((old["host"], old_port), timeout=5).close()
    for _ in range(5):
        world.fleet.refresh()
        world.rec.reconcile(NS, "web-0")
    assert len(world.ledger()) == 2 and serving_instance(world, world.kube.get_pod(NS, "web-0"))["id"] == new["id"]


def unreachable_for(world: World, name: str) -> float:
    """How long the reconciler has seen the pod's host unreachable (0: it has not)."""
    pod = world.kube.get_pod(NS, name)
    state = world.rec._health.get(pod["metadata"]["uid"]) if pod else None
    return (replacement.unreachable_for(state, world.rec.clock()) or 0.0) if state else 0.0


def reconcile_until_unreachable_for(world: World, names: list[str], seconds: float) -> None:
    """Reconcile the pods until the reconciler has seen each one's host unreachable that long."""
    deadline = time.monotonic() + seconds + 60
    while min(unreachable_for(world, n) for n in names) < seconds:
        assert time.monotonic() < deadline, [unreachable_for(world, n) for n in names]
        world.fleet.refresh()
        for name in names:
            world.rec.reconcile(NS, name)
        time.sleep(0.1)


def test_with_grace_0_an_unreachable_instance_is_never_replaced(host_network: HostNetwork) -> None:
    with SimulatorServer(seed=5, offers=300, boot_seconds=(0.02, 0.05), network=host_network) as sim:
        world = make_world(sim, host_unreachable_grace=0.0, resync=0.5)
        world.kube.add_pod(probed_pod("web-0"))
        old = serving_instance(world, world.drive("web-0", is_ready, what="pod ready"))
        sim.partition(old["id"])
        world.drive("web-0", lambda p: not is_ready(p), what="pod not ready")
        reconcile_until_unreachable_for(world, ["web-0"], 6.0)  # twice the grace the other tests use
        assert [i["id"] for i in world.ledger()] == [old["id"]] and not world.ledger()[0]["destroyed"]
        assert "HostUnreachable" not in world.kube.reasons()
        world.vast.close()


def test_many_hosts_unreachable_at_once_hold_every_replacement_until_they_answer(hosted: World) -> None:
    world = hosted
    for i in range(3):
        world.kube.add_pod(probed_pod(f"web-{i}"))
    for i in range(3):
        world.drive(f"web-{i}", is_ready, what=f"web-{i} ready")
    hosts = {i["host"] for i in world.ledger()}
    assert len(hosts) == 3, "three machines rented first are three hosts"
    for instance in world.ledger():
        world.sim.partition(instance["id"])
    reconcile_until_unreachable_for(world, [f"web-{i}" for i in range(3)], 6.0)  # twice the grace
    assert len(world.ledger()) == 3 and not any(i["destroyed"] for i in world.ledger())
    assert "ReplacementHeld" in world.kube.reasons() and "HostUnreachable" not in world.kube.reasons()
    world.sim.heal()
    for i in range(3):
        world.drive(f"web-{i}", is_ready, what=f"web-{i} ready again on its own instance")
    assert len(world.ledger()) == 3


def with_annotations(world: World, name: str, values: dict[str, Any]) -> None:
    world.kube.patch_pod(NS, name, {"metadata": {"annotations": values}})


@pytest.mark.parametrize("crash_after", ["the record", "the destroy"])
def test_a_controller_restarted_mid_replacement_finishes_it_and_never_fails_the_pod(hosted: World,
                                                                                    crash_after: str) -> None:
    """A controller killed after writing ``replacing`` (or also after the destroy) left the pod as
    this test leaves it; a fresh one destroys the old instance if needed, then launches once."""
    world = hosted
    world.kube.add_pod(probed_pod("web-0"))
    pod = world.drive("web-0", is_ready, what="pod ready")
    assert pod is not None
    old = serving_instance(world, pod)
    import json

    record = json.loads(pod["metadata"]["annotations"][A_LAUNCH])
    begun = replacement.begin(record, replacement.Replacing(old["id"], None, "host unreachable (test)"))
    with_annotations(world, "web-0", {A_LAUNCH: json.dumps(begun)})
    if crash_after == "the destroy":
        world.vast.destroy(old["id"])
    world.controller()  # nothing in memory: a restarted controller
    with Sampler(world) as sampler:
        pod = world.drive("web-0", lambda p: is_ready(p) and p["metadata"]["annotations"].get(A_INSTANCE)
                          not in (None, str(old["id"])), timeout=30, what="a replacement serving")
    assert set(sampler.max_live.values()) <= {1}, sampler.max_live
    assert len(world.ledger()) == 2 and world.ledger()[0]["destroyed"]
    assert "InstanceLost" not in world.kube.reasons() and "InstanceReplaced" in world.kube.reasons()
    assert pod is not None and replacement.Replacing.read(json.loads(pod["metadata"]["annotations"][A_LAUNCH])) is None
