"""The reconciler's container-exit and graceful-termination lifecycle, against the simulator over
real HTTP (the simulated image exits with the code and after the time the pod's env asks), with a
fake only at the controller's own Kubernetes seam (:class:`FakeKube`).

Each test drives ``reconcile`` as the work queue would (the fleet listing refreshed on every turn)
until the pod reaches the state the test names, then checks the simulator's ledger."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from controller.fleet import Fleet, OfferSource
from controller.reconciler import FINALIZER, Reconciler
from controller.settings import ControllerSettings
from vastmarket.client import RetryPolicy, VastClient, broad_query
from vastmarket.config import SelectionConfig
from vastmarket.snapshot import SnapshotPoller
from vastsim import SimulatorServer

from .fake_kube import FakeKube

NS = "jobs"
NODE = "vast-gpu-node-1"
CLUSTER = "lc1"


@dataclass
class World:
    sim: SimulatorServer
    kube: FakeKube
    vast: VastClient
    fleet: Fleet
    offers: OfferSource
    settings: ControllerSettings
    rec: Reconciler

    def controller(self) -> Reconciler:
        """A freshly started controller: nothing in memory, the same pods, instances and settings."""
        self.fleet = Fleet(self.vast, CLUSTER)
        self.rec = Reconciler(self.kube, self.vast, self.fleet, self.offers, self.settings, SelectionConfig())
        return self.rec

    def drive(self, name: str, until: Callable[[dict[str, Any] | None], bool], *, timeout: float = 20.0,
              what: str = "") -> dict[str, Any] | None:
        """Reconcile `name` until `until(pod)` holds; the pod then (None once it is gone)."""
        deadline = time.monotonic() + timeout
        while True:
            pod = self.kube.get_pod(NS, name)
            if until(pod):
                return pod
            assert time.monotonic() < deadline, (f"{what or 'condition'} not reached; status "
                                                 f"{json.dumps((pod or {}).get('status'))[:600]}; "
                                                 f"events {self.kube.events[-6:]}")
            self.fleet.refresh()
            delay = self.rec.reconcile(NS, name)
            time.sleep(min(0.05, delay if delay is not None else 0.05))

    def ledger(self) -> list[dict[str, Any]]:
        return [i for i in self.sim.state()["instances"] if (i["label"] or "").startswith(f"kv:{CLUSTER}:")]


def make_world(sim: SimulatorServer, **settings: Any) -> World:
    vast = VastClient(sim.url, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05))
    poller = SnapshotPoller(lambda: vast.search_offers(broad_query(), limit=10_000).offers, lambda s: None)
    poller.poll_once()
    world = World(sim, FakeKube(), vast, Fleet(vast, CLUSTER), OfferSource(poller),
                  ControllerSettings(**{"cluster_id": CLUSTER, "restart_backoff": 0.0, "boot_timeout": 20, **settings}),
                  None)  # type: ignore[arg-type]
    world.controller()
    return world


def simulator(seed: int, offers: int) -> Callable[[], Iterator[SimulatorServer]]:
    """A ``sim`` fixture: a simulator of ``offers`` offers (``seed``) whose instances boot at once."""
    def sim() -> Iterator[SimulatorServer]:
        with SimulatorServer(seed=seed, offers=offers, boot_seconds=(0.02, 0.05)) as server:
            yield server
    return sim


sim = pytest.fixture(simulator(seed=5, offers=300), name="sim")


@pytest.fixture
def world(sim: SimulatorServer) -> Iterator[World]:
    """A controller with default settings on ``sim`` (a test module's own ``sim`` fixture)."""
    world = make_world(sim)
    yield world
    world.vast.close()


def gpu_pod(name: str, *, restart_policy: str = "Always", env: dict[str, str] | None = None,
            grace: int | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": NODE, "restartPolicy": restart_policy, "schedulerName": "vast-scheduler",
        "containers": [{"name": "main", "image": "ghcr.io/example/train:1.0",
                        "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"}],
                        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
    }
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "uid": str(uuid.uuid4()), "labels": labels or {"app": name},
                         "annotations": {}},
            "spec": spec, "status": {"phase": "Pending"}}


def service(app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"{app}-svc", "namespace": NS, "uid": str(uuid.uuid4())},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8000,
                                                          "protocol": "TCP"}]}}


def container(pod: dict[str, Any] | None) -> dict[str, Any]:
    assert pod is not None
    [status] = pod["status"]["containerStatuses"]
    return status  # type: ignore[no-any-return]


def phase(wanted: str) -> Callable[[dict[str, Any] | None], bool]:
    return lambda pod: pod is not None and pod.get("status", {}).get("phase") == wanted


def finished(pod: dict[str, Any] | None) -> bool:
    """Succeeded or Failed, with the instance destroyed and the finalizer gone."""
    return pod is not None and pod["status"].get("phase") in ("Succeeded", "Failed") \
        and FINALIZER not in (pod["metadata"].get("finalizers") or [])


def is_ready(pod: dict[str, Any] | None) -> bool:
    return pod is not None and any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in pod.get("status", {}).get("conditions", []))


def restarted_running(pod: dict[str, Any] | None) -> bool:
    return pod is not None and bool(pod.get("status", {}).get("containerStatuses")) \
        and container(pod)["restartCount"] >= 1 and container(pod)["state"].get("running") is not None


def exit_events(world: World) -> list[str]:
    return [m for _, r, m in world.kube.events if r in ("ContainerExited", "BackOff")]


# --- restartPolicy Never: one run, one rental -------------------------------------------------


def test_a_never_pod_whose_container_exits_0_succeeds_and_its_one_instance_is_destroyed(world: World) -> None:
    world.kube.add_pod(gpu_pod("job-ok", restart_policy="Never", env={"KUBE_VAST_SIM_EXIT_CODE": "0",
                                                                      "KUBE_VAST_SIM_EXIT_AFTER": "0.3"}))
    pod = world.drive("job-ok", finished, what="pod finished")
    assert pod is not None and pod["status"]["phase"] == "Succeeded"
    terminated = container(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert terminated["message"].startswith("Exited (0) ")
    assert pod["status"].get("reason") is None
    [instance] = world.ledger()
    assert instance["destroyed"] and [e["exit_code"] for e in instance["exits"]] == [0]
    for _ in range(5):  # a finished pod is never run again
        world.fleet.refresh()
        world.rec.reconcile(NS, "job-ok")
    assert len(world.ledger()) == 1 and "InstanceLost" not in world.kube.reasons()


def test_a_never_pod_whose_container_exits_3_fails_with_exit_code_3_and_one_rental(world: World) -> None:
    world.kube.add_pod(gpu_pod("job-bad", restart_policy="Never", env={"KUBE_VAST_SIM_EXIT_CODE": "3"}))
    pod = world.drive("job-bad", finished, what="pod finished")
    assert pod is not None and pod["status"]["phase"] == "Failed"
    terminated = container(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert container(pod)["restartCount"] == 0
    [instance] = world.ledger()
    assert instance["destroyed"] and instance["runs"] == 1
    assert "InstanceLost" not in world.kube.reasons()
    assert any("exited with code 3" in m for m in exit_events(world))


def test_an_exit_whose_code_vast_does_not_say_fails_the_pod_with_a_clear_reason(world: World) -> None:
    world.sim.faults.fate_next("exited", running_seconds=0.2, status_msg="container stopped")
    world.kube.add_pod(gpu_pod("job-mute", restart_policy="Never"))
    pod = world.drive("job-mute", finished, what="pod finished")
    assert pod is not None and pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "ExitCodeUnknown" and "not with which code" in pod["status"]["message"]
    terminated = container(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (-1, "ExitCodeUnknown",
                                                                                     "container stopped")
    assert len(world.ledger()) == 1


def test_a_host_going_offline_is_still_instance_lost(world: World) -> None:
    world.kube.add_pod(gpu_pod("job-host", restart_policy="Never"))
    world.drive("job-host", is_ready, what="pod ready")
    [instance] = world.ledger()
    world.sim.market.set_fate(instance["id"], "offline")
    pod = world.drive("job-host", finished, what="pod finished")
    assert pod is not None and pod["status"]["reason"] == "InstanceLost"
    assert container(pod)["state"]["terminated"]["exitCode"] == -137


# --- OnFailure and Always: restart on the same instance ---------------------------------------


def test_on_failure_restarts_the_container_on_the_same_instance_until_it_exits_0(world: World) -> None:
    world.kube.add_pod(gpu_pod("job-retry", restart_policy="OnFailure",
                               env={"KUBE_VAST_SIM_EXIT_CODE": "3,0", "KUBE_VAST_SIM_EXIT_AFTER": "0.3"}))
    pod = world.drive("job-retry", finished, what="pod finished")
    assert pod is not None and pod["status"]["phase"] == "Succeeded"
    status = container(pod)
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert status["state"]["terminated"]["exitCode"] == 0
    [instance] = world.ledger()
    assert instance["runs"] == 2 and [e["exit_code"] for e in instance["exits"]] == [3, 0]
    assert instance["stop_requested_at"] is not None  # restarted by stop, then start


def test_always_restarts_after_an_exit_0_and_serves_again_on_the_same_instance(world: World) -> None:
    world.kube.services.append(service("web"))
    world.kube.add_pod(gpu_pod("web", restart_policy="Always"))
    world.drive("web", is_ready, what="pod ready")
    [instance] = world.ledger()
    first_ports = instance["listening"]
    world.sim.market.set_fate(instance["id"], "exited", exit_code=0)
    pod = world.drive("web", lambda p: restarted_running(p) and is_ready(p), what="pod ready again")
    status = container(pod)
    assert status["restartCount"] == 1 and status["lastState"]["terminated"]["exitCode"] == 0
    assert pod is not None and pod["status"]["phase"] == "Running"
    [again] = world.ledger()
    assert again["id"] == instance["id"] and not again["destroyed"] and again["runs"] == 2
    assert again["listening"] != first_ports
    [endpoint_slice] = world.kube.slices.values()
    assert endpoint_slice["endpoints"][0]["conditions"]["ready"] is True
    assert endpoint_slice["ports"][0]["port"] == int(json.loads(pod["metadata"]["annotations"]["vast.ai/ports"])["8000"])
    assert "BackOff" in world.kube.reasons() and "Started" in world.kube.reasons()


def test_a_restart_waits_out_the_back_off_with_crash_loop_back_off(sim: SimulatorServer) -> None:
    world = make_world(sim, restart_backoff=1.0)
    world.kube.add_pod(gpu_pod("crash", restart_policy="Always", env={"KUBE_VAST_SIM_EXIT_CODE": "1",
                                                                      "KUBE_VAST_SIM_EXIT_AFTER": "0.2"}))
    pod = world.drive("crash", lambda p: p is not None and bool(p["status"].get("containerStatuses"))
                      and (container(p)["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff",
                      what="CrashLoopBackOff")
    assert pod is not None and pod["status"]["phase"] == "Running"
    assert "back-off 1s restarting failed container=main" in container(pod)["state"]["waiting"]["message"]
    [instance] = world.ledger()
    stopped_at = instance["stop_requested_at"]
    world.drive("crash", lambda p: len(world.ledger()[0]["exits"]) >= 2, what="second exit")
    second_start = min(e["at"] for e in world.ledger()[0]["exits"] if e["run"] == 1) - 0.2
    assert second_start - stopped_at >= 0.95  # the first back-off: 1 s
    world.drive("crash", lambda p: container(p)["restartCount"] >= 2, what="second restart")
    assert "back-off 2s" in container(world.kube.get_pod(NS, "crash"))["state"]["waiting"]["message"]
    assert len(world.ledger()) == 1


def test_a_controller_restarted_in_the_middle_of_a_restart_finishes_it_and_counts_the_exit_once(
        sim: SimulatorServer) -> None:
    world = make_world(sim, restart_backoff=0.6)
    world.kube.add_pod(gpu_pod("resume", restart_policy="OnFailure",
                               env={"KUBE_VAST_SIM_EXIT_CODE": "3,0", "KUBE_VAST_SIM_EXIT_AFTER": "0.3"}))
    world.drive("resume", lambda p: "vast.ai/restart" in (p or {})["metadata"]["annotations"], what="restart begun")
    world.controller()
    pod = world.drive("resume", finished, what="pod finished")
    assert pod is not None and pod["status"]["phase"] == "Succeeded" and container(pod)["restartCount"] == 1
    [instance] = world.ledger()
    assert instance["runs"] == 2


# --- graceful termination --------------------------------------------------------------------


def serving_pod(world: World, name: str, *, grace: int, stop_seconds: float) -> dict[str, Any]:
    world.kube.services.append(service(name))
    world.kube.add_pod(gpu_pod(name, grace=grace, env={"KUBE_VAST_SIM_STOP_SECONDS": str(stop_seconds)}))
    pod = world.drive(name, is_ready, what="pod ready")
    assert pod is not None and world.kube.slices
    return pod


def slice_writes(world: World) -> list[tuple[float, dict[str, Any]]]:
    return [(at, body["endpoints"][0]["conditions"]) for at, what, body in world.kube.journal if what == "apply slice"]


def test_a_pod_is_reported_ready_only_once_its_services_point_at_the_instance(world: World) -> None:
    """`kubectl wait --for=condition=Ready` and then a request through the Service must find the
    instance there: the ready EndpointSlice is written before the Ready status."""
    serving_pod(world, "first", grace=0, stop_seconds=0)
    writes = [what for _, what, detail in world.kube.journal
              if (what == "apply slice" and detail["endpoints"][0]["conditions"]["ready"])
              or (what == "patch status" and any(c["type"] == "Ready" and c["status"] == "True"
                                                 for c in detail["status"].get("conditions", [])))]
    assert writes[:2] == ["apply slice", "patch status"], writes


def test_a_deleted_pod_leaves_its_services_then_is_stopped_then_destroyed_once_stopped(world: World) -> None:
    serving_pod(world, "api", grace=30, stop_seconds=0.5)
    deleted_at = time.time()
    world.kube.delete_gracefully(NS, "api")
    world.drive("api", lambda p: p is None, what="pod gone")
    [instance] = world.ledger()
    assert instance["destroyed"] and instance["stopped_at"] is not None
    assert deleted_at <= instance["stop_requested_at"] < instance["stopped_at"] <= instance["destroyed_at"]
    assert instance["stopped_at"] - instance["stop_requested_at"] == pytest.approx(0.5, abs=0.05)
    assert instance["destroyed_at"] - deleted_at < 10, "destroyed once stopped, long before the 30 s grace"
    not_ready = [at for at, conditions in slice_writes(world) if conditions == {"ready": False, "serving": True,
                                                                               "terminating": True}]
    assert not_ready and not_ready[0] < instance["stop_requested_at"], "out of the Services before SIGTERM"
    assert not world.kube.slices
    assert "Killing" in world.kube.reasons()


def test_a_container_ignoring_sigterm_gets_the_grace_period_and_then_the_instance_is_destroyed(
        world: World) -> None:
    serving_pod(world, "stubborn", grace=2, stop_seconds=600)
    world.kube.delete_gracefully(NS, "stubborn")
    deadline = world.kube.get_pod(NS, "stubborn")["metadata"]["deletionTimestamp"]  # type: ignore[index]
    world.drive("stubborn", lambda p: p is None, what="pod gone")
    [instance] = world.ledger()
    assert instance["destroyed"] and instance["stopped_at"] is None, "destroyed while still shutting down"
    end = time.mktime(time.strptime(deadline, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert end <= instance["destroyed_at"] < end + 2, "destroyed when the grace ran out, not before"
    assert instance["destroyed_at"] - instance["stop_requested_at"] >= 0.9


def test_the_controller_bounds_a_long_grace_period(sim: SimulatorServer) -> None:
    world = make_world(sim, max_grace_period=1.0)
    serving_pod(world, "patient", grace=3600, stop_seconds=600)
    world.kube.delete_gracefully(NS, "patient")
    world.drive("patient", lambda p: p is None, timeout=15, what="pod gone")
    [instance] = world.ledger()
    assert instance["destroyed"] and instance["destroyed_at"] - instance["stop_requested_at"] < 3


def test_a_controller_restarted_during_the_grace_period_still_destroys_the_instance(world: World) -> None:
    serving_pod(world, "restarted", grace=3, stop_seconds=600)
    world.kube.delete_gracefully(NS, "restarted")
    world.drive("restarted", lambda p: world.ledger()[0]["stop_requested_at"] is not None, what="stop sent")
    world.controller()  # a new process: nothing in memory; the pod's deletionTimestamp is the record
    world.drive("restarted", lambda p: p is None, what="pod gone")
    [instance] = world.ledger()
    assert instance["destroyed"]
    assert sim_live(world) == (0, 0)


def test_a_pod_deleted_before_its_instance_runs_is_destroyed_at_once(world: World) -> None:
    world.sim.faults.fate_next("loading")
    world.kube.add_pod(gpu_pod("early", grace=3600))
    world.drive("early", lambda p: bool(world.ledger()), what="rented")
    world.kube.delete_gracefully(NS, "early")
    # Gone within drive's own 20 s, far inside the hour of grace: the grace was not waited out.
    world.drive("early", lambda p: p is None, what="pod gone")
    [instance] = world.ledger()
    assert instance["destroyed"] and instance["stop_requested_at"] is None


def sim_live(world: World) -> tuple[int, int]:
    counters = world.sim.state()["counters"]
    return counters["live_instances"], counters["open_ports"]


def test_nothing_is_left_running_after_a_finished_job(world: World) -> None:
    world.kube.add_pod(gpu_pod("tidy", restart_policy="Never", env={"KUBE_VAST_SIM_EXIT_CODE": "0"}))
    world.drive("tidy", finished, what="pod finished")
    assert sim_live(world) == (0, 0)
    pod = copy.deepcopy(world.kube.get_pod(NS, "tidy"))
    assert pod is not None and FINALIZER not in (pod["metadata"].get("finalizers") or [])
