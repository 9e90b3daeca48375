"""The controller's budget keeper at its own seams (a Kubernetes gateway and a Vast client held in
memory, a clock the test moves): the launch check never lets concurrent launches commit past a
budget, a rent counts until the listing surely shows it, spend is accrued into the status with a
conditional write and continues across a restart, held pods are woken when room frees."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from controller.budgets import CONDITION, BudgetKeeper, held_status
from controller.fleet import Fleet, instance_label
from controller.kube import Conflict, KubeError
from vastmarket.budgets import BudgetStateFile, parse_rfc3339
from vastmarket.instances import Instance

CLUSTER = "c1"
NS = "team-a"
T0 = 1_796_000_000.0  # 2026-11-30


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Kube:
    """What the keeper calls on the Kubernetes gateway, in memory."""

    def __init__(self) -> None:
        self.budgets: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.status_writes = 0
        self.conflict_next = False
        self.pod_status: dict[str, dict[str, Any]] = {}

    def add_budget(self, name: str, spec: Mapping[str, Any], ns: str = NS) -> None:
        self.budgets[(ns, name)] = {"metadata": {"namespace": ns, "name": name, "resourceVersion": "1"},
                                    "spec": dict(spec)}

    def list_vast_budgets(self) -> list[dict[str, Any]]:
        return [dict(b) for b in self.budgets.values()]

    def list_pods(self, *, field_selector: str = "", label_selector: str = "") -> tuple[list[dict[str, Any]], str]:
        if field_selector == "status.phase=Pending":
            return [p for p in self.pods if p["status"]["phase"] == "Pending"], "1"
        return [p for p in self.pods if p["spec"].get("nodeName")], "1"

    def patch_vast_budget_status(self, namespace: str, name: str, status: Mapping[str, Any], *,
                                 resource_version: str) -> dict[str, Any]:
        obj = self.budgets[(namespace, name)]
        if self.conflict_next or obj["metadata"]["resourceVersion"] != resource_version:
            self.conflict_next = False
            raise Conflict("the object has been modified", status=409)
        obj["status"] = dict(status)
        obj["metadata"]["resourceVersion"] = str(int(resource_version) + 1)
        self.status_writes += 1
        return obj

    def patch_pod_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        self.pod_status[f"{namespace}/{name}"] = dict(status)
        return {}


class Vast:
    def __init__(self) -> None:
        self.instances: list[Instance] = []

    def list_instances(self, **_: Any) -> list[Instance]:
        return list(self.instances)


def pod(uid: str, ns: str = NS, *, phase: str = "Running", price: str | None = None) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "namespace": ns, "name": f"p-{uid}",
                         "annotations": {"vast.ai/offer-price": price} if price else {}},
            "spec": {"nodeName": "vast-gpu-node-1"}, "status": {"phase": phase}}


def instance(iid: int, uid: str, price: float, *, start: float = T0) -> Instance:
    return Instance(iid, "running", label=instance_label(CLUSTER, uid), dph_total=price, gpu_name="RTX 4090",
                    start_date=start)


@pytest.fixture
def world(tmp_path):
    clock, kube, vast = Clock(), Kube(), Vast()
    fleet = Fleet(vast, CLUSTER, clock=clock)  # type: ignore[arg-type]

    def keeper() -> BudgetKeeper:
        return BudgetKeeper(kube, fleet, ["vast-gpu-node-1"], BudgetStateFile(tmp_path / "budgets.json"),  # type: ignore[arg-type]
                            hold=15.0, clock=clock)

    return clock, kube, vast, fleet, keeper


def synced_keeper(world: Any, spec: Mapping[str, Any], *, pods: list[dict[str, Any]] | None = None,
                  instances: list[Instance] | None = None) -> BudgetKeeper:
    """A keeper that has read the budget ``gpus`` (``spec``), the pods and the listed instances."""
    _, kube, vast, fleet, keeper = world
    kube.add_budget("gpus", spec)
    if pods is not None:
        kube.pods = pods
    if instances is not None:
        vast.instances = instances
    fleet.refresh()
    k: BudgetKeeper = keeper()
    k.sync()
    return k


def test_nothing_is_launched_before_the_budgets_and_instances_are_read_then_the_pods_are_woken(world):
    clock, kube, vast, fleet, keeper = world
    k = keeper()
    woken: list[str] = []
    k.wake = woken.append
    assert k.reserve(NS, "u1", 0.1, key=f"{NS}/p-u1").budget == ""  # not read yet
    assert k.sync() is False  # the fleet has not listed the instances yet
    assert woken == []
    fleet.refresh()
    assert k.sync() is True and woken == [f"{NS}/p-u1"]
    assert k.reserve(NS, "u1", 0.1) is None


@pytest.mark.parametrize("round_", ["sync", "mirror"])
@pytest.mark.parametrize("failing", ["list_vast_budgets", "list_pods"])
def test_a_round_that_cannot_read_the_cluster_publishes_nothing_and_says_so(world, caplog, round_, failing):
    clock, kube, vast, fleet, keeper = world
    kube.add_budget("gpus", {"maxPricePerHour": 1.0})
    fleet.refresh()
    k = keeper()

    def unreachable(*_: Any, **__: Any) -> Any:
        raise KubeError("apiserver unreachable")

    setattr(kube, failing, unreachable)
    assert getattr(k, round_)() is False
    assert k.state_file.load() is None and k.last_state is None
    assert "budgets not read: apiserver unreachable" in caplog.text


def test_concurrent_launches_never_commit_past_the_budget(world):
    clock, kube, vast, fleet, keeper = world
    k = synced_keeper(world, {"maxPricePerHour": 1.0})
    results: dict[str, Any] = {}
    start = threading.Barrier(8)

    def launch(uid: str) -> None:
        start.wait()
        results[uid] = k.reserve(NS, uid, 0.3, key=f"{NS}/p-{uid}")

    threads = [threading.Thread(target=launch, args=(f"u{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    granted = [u for u, r in results.items() if r is None]
    assert len(granted) == 3
    refused = next(r for r in results.values() if r is not None)
    assert refused.message == ("VastBudget team-a/gpus: maxPricePerHour $1.00/h would be exceeded: committed "
                               "$0.90/h (3 instances), this pod would add $0.30/h")


def test_a_rent_counts_until_the_listing_surely_shows_it_and_a_failed_one_not_at_all(world):
    clock, kube, vast, fleet, keeper = world
    k = synced_keeper(world, {"maxPricePerHour": 0.5})
    assert k.reserve(NS, "u1", 0.3) is None
    k.rented(pod("u1"))
    k.release("u1")  # the launch step ends; the rent went out: it keeps counting
    vast.instances = []  # a listing begun before the rent does not show it
    fleet.refresh()
    assert k.reserve(NS, "u2", 0.3) is not None
    assert k.reserve(NS, "u3", 0.1) is None
    k.release("u3")  # never rented (the offer was gone): no longer counted
    assert k.reserve(NS, "u4", 0.2) is None
    k.release("u4")
    clock.now += 16  # past the hold, and the listing shows u1's instance
    vast.instances = [instance(1, "u1", 0.3)]
    fleet.refresh()
    assert k.reserve(NS, "u5", 0.3) is not None and k.reserve(NS, "u6", 0.2) is None


def test_spend_is_written_to_the_status_and_a_restarted_keeper_continues_it(world):
    clock, kube, vast, fleet, keeper = world
    k = synced_keeper(world, {"maxPricePerHour": 2.0}, pods=[pod("u1")], instances=[instance(1, "u1", 0.72)])
    for _ in range(10):
        clock.now += 60
        fleet.refresh()
        k.sync()
    status = kube.budgets[(NS, "gpus")]["status"]
    assert status["spendThisMonth"] == pytest.approx(0.72 * 600 / 3600)
    assert status["committedPerHour"] == pytest.approx(0.72) and status["liveInstances"] == 1
    assert parse_rfc3339(status["accruedUpTo"]) == pytest.approx(clock.now)
    clock.now += 300  # killed; billing goes on; a new controller starts
    k2 = keeper()
    fleet.refresh()
    k2.sync()
    assert kube.budgets[(NS, "gpus")]["status"]["spendThisMonth"] == pytest.approx(0.72 * 900 / 3600)


def test_a_status_write_that_lost_a_race_is_accrued_again_from_what_was_written(world):
    clock, kube, vast, fleet, keeper = world
    k = synced_keeper(world, {"maxPricePerHour": 2.0}, pods=[pod("u1")], instances=[instance(1, "u1", 1.0)])
    clock.now += 3600
    kube.conflict_next = True
    k.sync()
    clock.now += 3600
    k.sync()
    assert kube.budgets[(NS, "gpus")]["status"]["spendThisMonth"] == pytest.approx(2.0)


def test_a_held_pod_is_woken_once_room_frees(world):
    clock, kube, vast, fleet, keeper = world
    kube.add_budget("gpus", {"maxPricePerHour": 0.5, "onExceed": "queue"})
    kube.pods = [pod("u1")]
    vast.instances = [instance(1, "u1", 0.4)]
    fleet.refresh()
    k = keeper()
    woken: list[str] = []
    k.wake = woken.append
    k.sync()
    assert k.reserve(NS, "u2", 0.3, key=f"{NS}/p-u2") is not None
    k.sync()
    assert woken == []
    vast.instances = []
    fleet.forget(1)
    fleet.refresh()
    k.sync()
    assert woken == [f"{NS}/p-u2"]


def test_a_held_pod_has_a_false_condition_turned_true_when_it_is_rented(world):
    clock, kube, vast, fleet, keeper = world
    fleet.refresh()
    k = keeper()
    k.sync()
    held = {**pod("u9", phase="Pending"), "spec": {"nodeName": "vast-gpu-node-1", "containers": [{"name": "c"}]}}
    status = held_status(held, "VastBudget team-a/gpus: maxPricePerHour $0.50/h would be exceeded", "2026-11-30T00:00:00Z")
    condition = next(c for c in status["conditions"] if c["type"] == CONDITION)
    assert (condition["status"], condition["reason"]) == ("False", "BudgetExceeded")
    assert status["reason"] == "BudgetExceeded" and status["phase"] == "Pending"
    held["status"] = status
    k.rented(held)
    flipped = next(c for c in kube.pod_status[f"{NS}/p-u9"]["conditions"] if c["type"] == CONDITION)
    assert flipped["status"] == "True" and flipped["reason"] == "Launched"


def test_the_published_state_counts_admitted_pods_waiting_for_an_instance(world):
    clock, kube, vast, fleet, keeper = world
    k = synced_keeper(world, {"maxPricePerHour": 2.0},
                      pods=[pod("u1"), {**pod("u2", phase="Pending", price="0.2500"), "spec": {}}],
                      instances=[instance(1, "u1", 0.5)])
    state = k.state_file.load()
    assert state is not None
    usage = state.of(NS).usage
    assert (usage.committed, usage.instances, usage.waiting, usage.waiting_pods) == (0.5, 1, 0.25, 1)


def test_a_raised_bid_fits_only_within_the_namespaces_budget_and_reserves_nothing(world):
    clock, kube, vast, fleet, keeper = world
    k = synced_keeper(world, {"maxPricePerHour": 1.0}, pods=[pod("u1"), pod("u2")],
                      instances=[instance(1, "u1", 0.3), instance(2, "u2", 0.5)])
    assert k.fits(NS, "u1", 0.5) is None  # 0.5 others + 0.5
    refused = k.fits(NS, "u1", 0.6)
    assert refused is not None and "committed $0.50/h (1 instances), this pod would add $0.60/h" in refused.message
    assert k.reserve(NS, "u3", 0.2) is None  # fits() held nothing back


def test_an_outbid_instance_whose_raise_would_break_its_namespaces_budget_moves_instead():
    from controller.budgets import BudgetGate
    from controller.reconciler import Reconciler
    from tests.controller.test_interruptions import spot_pod
    from tests.controller.test_reconciler_lifecycle import NS as LIFE_NS, is_ready, make_world
    from vastmarket.budgets import Refusal
    from vastmarket.config import config_from_mapping
    from vastsim import SimulatorServer

    asked: list[tuple[str, float]] = []

    class Full(BudgetGate):
        def fits(self, namespace: str, uid: str, price: float) -> Refusal | None:
            asked.append((namespace, price))
            return Refusal(f"{namespace}/gpus", "deny", f"VastBudget {namespace}/gpus: maxPricePerHour $0.10/h "
                                                         "would be exceeded")

    with SimulatorServer(seed=5, offers=300, boot_seconds=(0.02, 0.05)) as sim:
        w = make_world(sim, resync=0.5)
        w.rec = Reconciler(w.kube, w.vast, w.fleet, w.offers, w.settings,
                           config_from_mapping({"interruptible": {"move_after_seconds": 20}}))
        try:
            w.kube.add_pod(spot_pod("web-0", "0.9"))
            w.drive("web-0", is_ready, what="pod ready")
            [inst] = [i for i in w.ledger() if not i["destroyed"]]
            w.rec.budgets = Full()
            sim.market.outbid(inst["id"], price=round(inst["bid"] * 1.5, 4))
            w.drive("web-0", lambda p: next(i for i in w.ledger() if i["id"] == inst["id"])["destroyed"],
                    timeout=40, what="the paused instance destroyed")
        finally:
            w.vast.close()
    assert "BidRaised" not in w.kube.reasons()
    assert any(r == "InterruptedMove" and f"VastBudget {LIFE_NS}/gpus" in m for _, r, m in w.kube.events)
    assert asked and asked[0][0] == LIFE_NS and asked[0][1] > inst["dph_total"]


def test_a_standby_replica_publishes_what_the_leader_wrote_for_its_own_webhook(world):
    clock, kube, vast, fleet, keeper = world
    kube.add_budget("gpus", {"maxPricePerHour": 1.0, "onExceed": "queue"})
    kube.budgets[(NS, "gpus")]["status"] = {"committedPerHour": 0.7, "liveInstances": 2, "spendThisMonth": 3.5,
                                           "month": "2026-11", "accruedUpTo": "2026-11-30T00:00:00.000Z"}
    kube.pods = [{**pod("u2", phase="Pending", price="0.2000"), "spec": {}}]
    k = keeper()  # its fleet never listed anything: only the leader lists instances
    assert k.mirror() is True
    state = k.state_file.load()
    assert state is not None
    ns = state.of(NS)
    assert (ns.usage.committed, ns.usage.instances, ns.usage.waiting, ns.usage.waiting_pods) == (0.7, 2, 0.2, 1)
    assert ns.budgets[0].spec.on_exceed == "queue" and ns.budgets[0].accrual.spend == 3.5
    assert kube.status_writes == 0  # a standby writes nothing
