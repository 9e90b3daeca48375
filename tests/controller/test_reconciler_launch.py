"""The reconciler's money paths, branch by branch, at the controller's own seams: a fake Vast client
(:class:`FakeVast`, scripted rents and destroys, a listing lag) and the fake Kubernetes gateway
(:class:`FakeKube`), on a clock the test moves — so the uncertain-rent wait is crossed without
sleeping. Launch, adopt, de-duplicate, fail over and tear down; and exactly one rental per pod
when a rent is made and its answer lost, also across a controller restart."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from controller.checkpoints import Checkpoints
from controller.fleet import Fleet, OfferSource, instance_label
from controller.reconciler import A_INSTANCE, A_LAUNCH, FINALIZER, Reconciler, safe_reconcile
from controller.settings import ControllerSettings
from controller.uncertain import RENTING
from vastmarket.config import SelectionConfig
from vastmarket.errors import InvalidResponse, VastRejected, VastUnavailable
from vastmarket.snapshot import SnapshotPoller

from tests.unit.offer_factory import make_offer

from .fake_kube import FakeKube
from .fake_vast import LOST, FakeVast, Outcome, gone

NS = "money"
NODE = "vast-gpu-node-1"
CLUSTER = "unit1"
WAIT = 60.0  # uncertain_rent_wait in these tests


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Crash(Exception):
    """The controller dies here (the process is gone; nothing after this line ran)."""


class CrashAt(Checkpoints):
    def __init__(self, point: str) -> None:
        super().__init__()
        self.point = point

    def __call__(self, name: str, **context: object) -> None:
        if name == self.point:
            raise Crash(name)


@dataclass
class World:
    clock: Clock
    kube: FakeKube
    vast: FakeVast
    offers: OfferSource
    settings: ControllerSettings
    fleet: Fleet
    rec: Reconciler

    def restart(self, checkpoint: Checkpoints | None = None) -> None:
        """A new controller process: nothing in memory; the same pods, instances and settings."""
        self.fleet = Fleet(self.vast, CLUSTER, clock=self.clock)  # type: ignore[arg-type]
        self.rec = Reconciler(self.kube, self.vast, self.fleet, self.offers, self.settings,  # type: ignore[arg-type]
                              SelectionConfig(), clock=self.clock, checkpoint=checkpoint or Checkpoints())

    def step(self, name: str = "gpu") -> float | None:
        """One look at the pod, as the work queue gives it (the fleet listing refreshed first); the
        clock then moves by the delay asked for."""
        self.fleet.refresh()
        delay = safe_reconcile(self.rec, NS, name)
        self.clock.advance(min(max(delay if delay is not None else 1.0, 0.1), 5.0))
        return delay

    def run(self, until: Callable[[dict[str, Any] | None], bool], name: str = "gpu", *, steps: int = 80) -> None:
        for _ in range(steps):
            if until(self.kube.get_pod(NS, name)):
                return
            self.step(name)
        raise AssertionError(f"not reached; events {self.kube.events[-6:]}")

    def pod(self, name: str = "gpu") -> dict[str, Any]:
        pod = self.kube.get_pod(NS, name)
        assert pod is not None
        return pod

    def label(self, name: str = "gpu") -> str:
        return instance_label(CLUSTER, self.pod(name)["metadata"]["uid"])

    def record(self, name: str = "gpu") -> dict[str, Any]:
        return dict(json.loads(self.pod(name)["metadata"]["annotations"][A_LAUNCH]))

    def reasons(self) -> list[str]:
        return self.kube.reasons()


def make_world(**settings: Any) -> World:
    clock = Clock()
    offers = {i: make_offer(i, dph_total=0.10 + i / 100, machine_id=100 + i) for i in range(1, 13)}
    vast = FakeVast(offers, clock)
    poller = SnapshotPoller(lambda: list(vast.offers.values()), lambda s: None, clock=clock)
    poller.poll_once()
    config = ControllerSettings(**{"cluster_id": CLUSTER, "uncertain_rent_wait": WAIT, "boot_timeout": 30.0,
                                   "max_grace_period": 0.0, **settings})
    world = World(clock, FakeKube(), vast, OfferSource(poller, clock), config, None, None)  # type: ignore[arg-type]
    world.restart()
    return world


@pytest.fixture
def world() -> Iterator[World]:
    yield make_world()


def gpu_pod(name: str = "gpu", *, gpu: bool = True, annotations: dict[str, str] | None = None,
            env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": "1"} if gpu else {}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "uid": str(uuid.uuid4()), "labels": {"app": name},
                         "annotations": dict(annotations or {})},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": "ghcr.io/example/train:1.0", "env": env or [],
                                     "resources": {"limits": limits}}]},
            "status": {"phase": "Pending"}}


def serving(pod: dict[str, Any] | None) -> bool:
    return pod is not None and any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in pod.get("status", {}).get("conditions", []))


def gone_pod(pod: dict[str, Any] | None) -> bool:
    return pod is None


def launched(world: World, name: str = "gpu") -> int:
    """Create the pod and run it until it is served; its instance id."""
    world.kube.add_pod(gpu_pod(name))
    world.run(serving, name)
    return int(world.pod(name)["metadata"]["annotations"][A_INSTANCE])


# --- launch -----------------------------------------------------------------------------------------


def test_the_intent_and_the_uncertain_rent_marker_are_on_the_pod_before_the_rent_goes_out(world: World) -> None:
    seen: list[dict[str, Any]] = []
    rent = world.vast.rent

    def watching(offer_id: int, request: Any) -> int:
        seen.append(world.pod())
        return rent(offer_id, request)

    world.vast.rent = watching  # type: ignore[method-assign]
    world.kube.add_pod(gpu_pod())
    world.step()
    [at_rent] = seen
    assert FINALIZER in at_rent["metadata"]["finalizers"]
    record = json.loads(at_rent["metadata"]["annotations"][A_LAUNCH])
    assert record[RENTING]["offerId"] == world.vast.ledger[0].offer_id
    assert record["label"] == world.label()
    assert A_INSTANCE not in at_rent["metadata"]["annotations"]


def test_an_answered_rent_writes_the_instance_and_clears_the_marker_in_one_write(world: World) -> None:
    instance = launched(world)
    assert world.vast.rentals() == [instance]
    assert RENTING not in world.record()
    write = next(patch for _, what, patch in world.kube.journal
                 if what == "patch pod" and A_INSTANCE in (patch.get("metadata", {}).get("annotations") or {}))
    assert RENTING not in json.loads(write["metadata"]["annotations"][A_LAUNCH])
    assert world.reasons()[:3] == ["LaunchRecorded", "Renting", "Rented"]


@pytest.mark.parametrize("pod, reason", [
    (gpu_pod(gpu=False), "NoGPURequested"),
    (gpu_pod(annotations={"vast.ai/gpu-type": "H100"}), "NoMatchingOffer"),
    (gpu_pod(annotations={"vast.ai/price-max": "cheap"}), "UnsupportedPod"),
    (gpu_pod(env=[{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]),
     "CreateContainerConfigError"),
], ids=["no GPU", "no offer matches", "bad annotation", "missing ConfigMap"])
def test_a_pod_that_cannot_be_launched_waits_with_its_reason_and_nothing_is_rented(
        world: World, pod: dict[str, Any], reason: str) -> None:
    world.kube.add_pod(pod)
    for _ in range(3):
        world.step()
    assert reason in world.reasons(), world.kube.events
    assert world.pod()["status"]["phase"] == "Pending" and world.vast.rent_calls == []


def test_without_an_offer_snapshot_nothing_is_rented() -> None:
    world = make_world()
    world.offers.poller.latest = None
    world.offers.poller._search = lambda: (_ for _ in ()).throw(VastUnavailable("search down"))  # type: ignore[attr-defined]
    world.kube.add_pod(gpu_pod())
    world.step()
    assert "NoOfferSnapshot" in world.reasons()
    assert world.vast.rent_calls == []


def test_a_rent_over_the_budget_is_refused_before_it_goes_out() -> None:
    world = make_world(max_instances=1)
    launched(world, "first")
    world.kube.add_pod(gpu_pod("second"))
    world.step("second")
    assert "BudgetExceeded" in world.reasons()
    assert len(world.vast.rent_calls) == 1


# --- fail over --------------------------------------------------------------------------------------


@pytest.mark.parametrize("refusal, reason", [
    (gone(0), "OfferGone"),
    (VastRejected("vast rent: invalid_args", status=400, error="invalid_args"), "RentRejected"),
])
def test_a_certain_refusal_fails_over_to_another_machine_at_once(world: World, refusal: Exception,
                                                                 reason: str) -> None:
    world.vast.next_rents(Outcome(made=False, error=refusal))  # type: ignore[arg-type]
    instance = launched(world)
    first, second = world.vast.rent_calls
    record = world.record()
    assert record["failedMachines"] == [100 + first]
    assert world.vast.ledger[0].machine_id != 100 + first and world.vast.rentals() == [instance]
    assert reason in world.reasons() and "RentUncertain" not in world.reasons()


def test_vast_out_of_reach_for_certain_retries_later_without_the_marker(world: World) -> None:
    world.vast.next_rents(Outcome(made=False, error=VastUnavailable("vast rent: a connect timeout after 4 attempts")))
    world.kube.add_pod(gpu_pod())
    assert world.step() == 15.0
    assert "VastUnavailable" in world.reasons()
    assert RENTING not in world.record() and world.vast.rentals() == []
    world.run(serving)
    assert len(world.vast.rentals()) == 1


def test_launch_attempts_run_out_then_pause_and_start_over(world: World) -> None:
    world = make_world(max_launch_attempts=2)
    world.vast.next_rents(*[Outcome(made=False, error=gone(0))] * 2)
    world.kube.add_pod(gpu_pod())
    world.run(lambda pod: "LaunchAttemptsExhausted" in world.reasons())
    assert len(world.vast.rent_calls) == 2 and world.vast.rentals() == []
    world.run(serving)
    assert len(world.vast.rentals()) == 1


@pytest.mark.parametrize("status", ["created", "offline"])
def test_an_instance_that_dies_before_serving_is_destroyed_and_replaced_on_another_machine(
        world: World, status: str) -> None:
    world.vast.boot_status = status
    world.kube.add_pod(gpu_pod())
    world.step()
    first = world.vast.ledger[0]
    world.vast.boot_status = "running"
    world.run(serving)
    assert first.destroyed and len(world.vast.rentals()) == 2
    assert first.machine_id in world.record()["failedMachines"]
    assert "InstanceFailed" in world.reasons()


def test_an_instance_that_never_boots_is_replaced_after_the_boot_timeout(world: World) -> None:
    world.vast.boot_status = "loading"
    world.kube.add_pod(gpu_pod())
    world.step()
    world.vast.boot_status = "running"
    world.run(serving)
    assert world.vast.ledger[0].destroyed and len(world.vast.rentals()) == 2
    assert any("not running after" in m for _, r, m in world.kube.events if r == "InstanceFailed")


def test_an_instance_billed_over_the_cap_is_destroyed_and_another_rented() -> None:
    world = make_world(price_tolerance=0.0)
    world.vast.bill_next(3.0)
    world.kube.add_pod(gpu_pod(annotations={"vast.ai/price-max": "0.5"}))
    world.run(serving)
    assert world.vast.ledger[0].destroyed and len(world.vast.rentals()) == 2
    assert "PriceMismatch" in world.reasons()
    assert world.vast.ledger[0].machine_id in world.record()["failedMachines"]


def test_an_instance_lost_while_serving_fails_the_pod_and_nothing_more_is_rented(world: World) -> None:
    instance = launched(world)
    world.vast.set_status(instance, "offline")
    world.run(lambda pod: pod is not None and pod["status"].get("phase") == "Failed")
    assert world.pod()["status"]["reason"] == "InstanceLost"
    for _ in range(3):
        world.step()
    assert world.vast.rentals() == [instance]


# --- a rent whose answer is lost: exactly once ------------------------------------------------------

LOST_ANSWERS = {
    "503": LOST,
    "connection lost": VastUnavailable("vast rent: connection failed; the outcome is unknown", uncertain=True),
    "500 from an older client": VastRejected("vast rent: Internal Server Error", status=500),
    "no instance id": InvalidResponse("vast rent: no instance id (new_contract) in the answer", uncertain=True),
}


@pytest.mark.parametrize("lag", [0.0, 20.0], ids=["listed at once", "listing lags 20s"])
@pytest.mark.parametrize("error", list(LOST_ANSWERS.values()), ids=list(LOST_ANSWERS))
@pytest.mark.parametrize("restart", [False, True], ids=["same controller", "restarted before the next look"])
def test_a_rent_made_whose_answer_is_lost_is_adopted_never_made_again(
        world: World, error: Exception, lag: float, restart: bool) -> None:
    world.vast.listing_lag = lag
    world.vast.next_rents(Outcome(made=True, error=error))  # type: ignore[arg-type]
    world.kube.add_pod(gpu_pod())
    world.step()
    assert "RentUncertain" in world.reasons()
    assert world.record()[RENTING]["offerId"] == world.vast.ledger[0].offer_id
    if restart:
        world.restart()
    world.run(serving)
    [instance] = world.vast.rentals()
    assert world.vast.rent_calls == [world.vast.ledger[0].offer_id]
    assert world.pod()["metadata"]["annotations"][A_INSTANCE] == str(instance)
    assert RENTING not in world.record()


def test_a_lost_rent_that_was_not_made_is_rented_again_only_after_the_wait(world: World) -> None:
    world.vast.listing_lag = 10.0
    world.vast.next_rents(Outcome(made=False, error=LOST))
    world.kube.add_pod(gpu_pod())
    sent = world.clock.now
    world.step()
    while world.clock.now < sent + WAIT - 1:
        world.step()
        assert len(world.vast.rent_calls) == 1, "rented again inside the uncertain-rent wait"
    assert world.pod()["status"]["reason"] == "RentUncertain"
    world.run(serving)
    assert len(world.vast.rent_calls) == 2 and len(world.vast.rentals()) == 1
    assert world.clock.now >= sent + WAIT
    assert "RentNotFound" in world.reasons()
    assert world.record()["lastFailure"]["reason"] == "RentNotFound"


@pytest.mark.parametrize("lag", [0.0, 20.0], ids=["listed at once", "listing lags 20s"])
def test_a_controller_killed_after_the_answer_and_before_writing_it_adopts_the_instance(world: World,
                                                                                         lag: float) -> None:
    world.vast.listing_lag = lag
    world.restart(CrashAt("rent-answered"))
    world.kube.add_pod(gpu_pod())
    with pytest.raises(Crash):
        world.rec.reconcile(NS, "gpu")
    assert A_INSTANCE not in world.pod()["metadata"]["annotations"] and len(world.vast.rentals()) == 1
    world.restart()
    world.run(serving)
    assert len(world.vast.rentals()) == 1 and len(world.vast.rent_calls) == 1


def test_a_controller_killed_before_the_rent_went_out_waits_out_the_marker_then_rents_once(world: World) -> None:
    world.restart(CrashAt("rent-sending"))
    world.kube.add_pod(gpu_pod())
    with pytest.raises(Crash):
        world.rec.reconcile(NS, "gpu")
    marked = world.clock.now
    world.restart()
    world.run(serving)
    assert len(world.vast.rentals()) == 1
    assert world.clock.now >= marked + WAIT  # the price of not knowing: the whole wait


def test_an_instance_already_carrying_the_pods_label_is_adopted_not_rented(world: World) -> None:
    world.kube.add_pod(gpu_pod())
    world.restart(CrashAt("intent-recorded"))
    with pytest.raises(Crash):
        world.rec.reconcile(NS, "gpu")
    world.vast.rent(3, _request(world.label()))  # rented by an earlier controller, never written down
    world.restart()
    world.run(serving)
    assert world.vast.rent_calls == [3]
    assert world.pod()["metadata"]["annotations"][A_INSTANCE] == str(world.vast.rentals()[0])


def test_an_unreadable_marker_restarts_the_wait_from_now(world: World) -> None:
    world.kube.add_pod(gpu_pod())
    world.restart(CrashAt("rent-sending"))
    with pytest.raises(Crash):
        world.rec.reconcile(NS, "gpu")
    record = world.record()
    record[RENTING] = {"offerId": 1, "sentAt": "yesterday"}
    world.kube.patch_pod(NS, "gpu", {"metadata": {"annotations": {A_LAUNCH: json.dumps(record)}}})
    world.restart()
    world.step()
    restarted = world.clock.now
    assert world.record()[RENTING]["sentAt"] != "yesterday"
    world.run(serving)
    assert world.clock.now >= restarted + WAIT - 5 and len(world.vast.rentals()) == 1


# --- de-duplicate -----------------------------------------------------------------------------------


def test_an_extra_instance_for_a_pod_is_destroyed_keeping_the_annotated_one(world: World) -> None:
    instance = launched(world)
    extra = world.vast.rent(5, _request(world.label()))
    world.step()
    assert world.vast.live(world.label()) == [instance]
    assert next(r for r in world.vast.ledger if r.id == extra).destroyed
    assert "DuplicateDestroyed" in world.reasons()


def test_without_an_annotation_the_running_instance_is_kept_over_a_booting_one(world: World) -> None:
    world.kube.add_pod(gpu_pod())
    world.restart(CrashAt("intent-recorded"))
    with pytest.raises(Crash):
        world.rec.reconcile(NS, "gpu")
    world.vast.boot_status = "loading"
    booting = world.vast.rent(4, _request(world.label()))
    world.vast.boot_status = "running"
    running = world.vast.rent(6, _request(world.label()))
    world.restart()
    world.run(serving)
    assert world.vast.live(world.label()) == [running]
    assert booting in world.vast.destroy_calls


# --- tear down --------------------------------------------------------------------------------------


def test_a_deleted_pod_has_its_instance_destroyed_before_its_finalizer_goes(world: World) -> None:
    instance = launched(world)
    world.kube.delete_gracefully(NS, "gpu", grace=0)
    world.run(gone_pod)
    assert world.vast.live() == [] and world.vast.destroy_calls == [instance]
    assert "InstanceDestroyed" in world.reasons()


def test_a_destroy_whose_answer_is_lost_is_confirmed_and_the_pod_released(world: World) -> None:
    instance = launched(world)
    world.vast.next_destroys(Outcome(made=True, error=VastUnavailable("vast destroy: HTTP 503 after 4 attempts")))
    world.kube.delete_gracefully(NS, "gpu", grace=0)
    assert world.step() == 2.0  # the error is logged and the pod looked at again
    assert FINALIZER in world.pod()["metadata"]["finalizers"]
    world.run(gone_pod)
    assert world.vast.live() == [] and instance in world.vast.destroy_calls


def test_a_destroy_that_did_not_take_keeps_the_finalizer_and_is_sent_again(world: World) -> None:
    instance = launched(world)
    world.vast.next_destroys(Outcome(made=False))
    world.kube.delete_gracefully(NS, "gpu", grace=0)
    world.step()
    assert FINALIZER in world.pod()["metadata"]["finalizers"] and world.vast.live() == [instance]
    world.run(gone_pod)
    assert world.vast.destroy_calls == [instance, instance] and world.vast.live() == []


def test_a_pod_deleted_while_its_rent_is_uncertain_keeps_its_finalizer_until_the_instance_is_found(
        world: World) -> None:
    world.vast.listing_lag = 20.0
    world.vast.next_rents(Outcome(made=True, error=LOST))
    world.kube.add_pod(gpu_pod())
    world.step()
    world.kube.delete_gracefully(NS, "gpu", grace=0)
    world.step()
    assert FINALIZER in world.pod()["metadata"]["finalizers"]
    world.run(gone_pod)
    assert world.vast.live() == [] and len(world.vast.rentals()) == 1


def test_a_pod_deleted_while_a_rent_that_was_not_made_is_uncertain_is_released_after_the_wait(
        world: World) -> None:
    world.vast.next_rents(Outcome(made=False, error=LOST))
    world.kube.add_pod(gpu_pod())
    world.step()
    sent = world.clock.now
    world.kube.delete_gracefully(NS, "gpu", grace=0)
    world.run(gone_pod)
    assert world.clock.now >= sent + WAIT - 5 and world.vast.rentals() == []


def test_a_finished_pod_is_torn_down_and_kept(world: World) -> None:
    instance = launched(world)
    world.kube.patch_pod_status(NS, "gpu", {"phase": "Succeeded"})
    world.run(lambda pod: pod is not None and FINALIZER not in (pod["metadata"].get("finalizers") or []))
    assert world.vast.destroy_calls == [instance] and world.kube.get_pod(NS, "gpu") is not None


def test_a_deleted_pod_that_never_got_its_intent_is_simply_let_go(world: World) -> None:
    world.kube.add_pod(gpu_pod())
    world.kube.delete_gracefully(NS, "gpu", grace=0)
    world.kube.pods[(NS, "gpu")]["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:00Z"
    world.step()
    assert world.kube.get_pod(NS, "gpu") is None and world.vast.rent_calls == []


def test_a_deleted_pod_with_a_grace_period_is_stopped_first_then_destroyed() -> None:
    world = make_world(max_grace_period=300.0)
    instance = launched(world)
    world.kube.delete_gracefully(NS, "gpu", grace=30)
    world.step()
    assert "Killing" in world.reasons() and world.vast.destroy_calls == []
    world.run(gone_pod)
    assert world.vast.destroy_calls == [instance]


def _request(label: str) -> Any:
    from vastmarket.instances import RentRequest

    return RentRequest(image="ghcr.io/example/train:1.0", label=label)
