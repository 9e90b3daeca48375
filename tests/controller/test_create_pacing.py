"""Launches under Vast's create rate limit, at the controller's own seams (the fake Kubernetes
gateway and Vast client, a clock the test moves, a work queue played step by step): rents go out
one per interval, oldest pod first whatever order the pods are looked at in; each pod that has to
wait says so once (a WaitingForCreateSlot Event and a Pending status), and the waiting count the
metric reports drains to zero."""

from __future__ import annotations

import random
from typing import Any

from controller.budgets import BudgetGate
from controller.reconciler import safe_reconcile
from vastmarket.budgets import Refusal
from vastmarket.pacing import CreateQueue, Pacer

from .test_reconciler_launch import NS, World, gpu_pod, make_world, serving

INTERVAL = 4.6  # Vast's 4.5 s create interval and the pacer's margin


def created_at(k: int) -> str:
    return f"2026-12-01T10:{k // 60:02d}:{k % 60:02d}Z"


def play(world: World, names: list[str], *, until: list[str] | None = None,
         steps: int = 2000) -> list[tuple[float, str]]:
    """The work queue: each pod reconciled when its requeue delay is up (ties in a random order),
    until the pods ``until`` (all by default) are served; returns (clock, pod) of every rent, in
    the order they went out."""
    rents: list[tuple[float, str]] = []
    rent = world.vast.rent

    def recording(offer_id: int, request: Any) -> int:
        owner = next(n for n in names if world.label(n) == request.label)
        rents.append((world.clock.now, owner))
        return rent(offer_id, request)

    world.vast.rent = recording  # type: ignore[method-assign]
    rng = random.Random(5)
    due = {name: world.clock.now + rng.random() for name in names}
    for _ in range(steps):
        if not set(until or names) & set(due):
            return rents
        at = min(due.values())
        name = rng.choice([n for n, t in due.items() if t == at])
        world.clock.now = max(world.clock.now, at)
        world.fleet.refresh()
        delay = safe_reconcile(world.rec, NS, name)
        if serving(world.kube.get_pod(NS, name)):
            del due[name]
        else:
            due[name] = world.clock.now + (1.0 if delay is None else max(delay, 0.01))
    raise AssertionError(f"not every pod was served; waiting: {sorted(due)}")


def test_rents_go_out_one_per_interval_oldest_pod_first() -> None:
    world = make_world()
    world.rec.create_slots = CreateQueue(INTERVAL)
    names = [f"gpu-{k}" for k in range(8)]
    for k in random.Random(3).sample(range(8), 8):  # created in one order, added in another
        pod = gpu_pod(names[k])
        pod["metadata"]["creationTimestamp"] = created_at(k)
        world.kube.add_pod(pod)
    rents = play(world, names)
    assert [name for _, name in rents] == names
    gaps = [b - a for (a, _), (b, _) in zip(rents, rents[1:])]
    assert min(gaps) >= INTERVAL - 1e-6, gaps
    assert rents[-1][0] - rents[0][0] <= 7 * INTERVAL + 8 * 1.0, "slots were left unused"
    waiting = [m for _, reason, m in world.kube.events if reason == "WaitingForCreateSlot"]
    assert len(waiting) == 7, "each pod that waited says so once"
    assert any(" pods created earlier go first; about " in m for m in waiting), waiting
    assert world.rec.create_slots.waiting(world.clock.now) == 0


def test_a_waiting_pod_is_pending_with_the_reason_and_counted_until_its_turn() -> None:
    world = make_world()
    world.rec.create_slots = CreateQueue(INTERVAL)
    for k, name in enumerate(("first", "second")):
        pod = gpu_pod(name)
        pod["metadata"]["creationTimestamp"] = created_at(k)
        world.kube.add_pod(pod)
    world.fleet.refresh()
    first = safe_reconcile(world.rec, NS, "first")  # the line gathers for a moment
    assert first is not None and 0 < first <= 1.0 and not world.vast.rent_calls
    world.clock.advance(first)
    safe_reconcile(world.rec, NS, "first")
    assert len(world.vast.rent_calls) == 1
    delay = safe_reconcile(world.rec, NS, "second")
    assert delay is not None and 0 < delay <= INTERVAL
    status = world.pod("second")["status"]
    assert status["phase"] == "Pending"
    assert "WaitingForCreateSlot" in str(status) and "Vast allows one create every 4.6s" in str(status)
    assert world.rec.create_slots.waiting(world.clock.now) == 1
    assert len(world.vast.rent_calls) == 1, "the second pod must not rent before its turn"
    world.clock.advance(INTERVAL)
    safe_reconcile(world.rec, NS, "second")
    assert len(world.vast.rent_calls) == 2
    assert world.rec.create_slots.waiting(world.clock.now) == 0


def test_without_a_create_interval_every_pod_rents_at_once() -> None:
    world = make_world()  # the reconciler's default: no create pacing (the simulator, tests)
    for k in range(3):
        world.kube.add_pod(gpu_pod(f"gpu-{k}"))
    world.fleet.refresh()
    for k in range(3):
        safe_reconcile(world.rec, NS, f"gpu-{k}")
    assert len(world.vast.rent_calls) == 3
    assert "WaitingForCreateSlot" not in world.reasons()


def test_pods_that_cannot_rent_do_not_use_up_the_turns_of_the_others() -> None:
    world = make_world()
    pacer = Pacer({"create": 4.5}, margin=0.1, clock=world.clock, sleep=world.clock.advance)
    world.rec.create_slots = CreateQueue(INTERVAL, free_in=lambda: pacer.free_in("create"))
    rent = world.vast.rent

    def paced(offer_id: int, request: Any) -> int:  # what VastClient does with its pacer
        pacer.wait_turn("create")
        return rent(offer_id, request)

    world.vast.rent = paced  # type: ignore[method-assign]
    names = [f"stuck-{k}" for k in range(4)] + [f"gpu-{k}" for k in range(4)]
    for k, name in enumerate(names):  # the pods no offer fits are the oldest
        pod = gpu_pod(name, annotations={"vast.ai/gpu-type": "H100"} if name.startswith("stuck") else None)
        pod["metadata"]["creationTimestamp"] = created_at(k)
        world.kube.add_pod(pod)
    good = names[4:]
    rents = play(world, good + names[:4], until=good)
    assert [name for _, name in rents] == good
    assert rents[-1][0] - rents[0][0] <= 3 * INTERVAL + 4 * 2.0 + 2.0, rents
    assert "NoMatchingOffer" in world.reasons()


class NotReadYet(BudgetGate):
    """Budgets not read for the first ``times`` asks (a controller just started)."""

    def __init__(self, times: int) -> None:
        self.times = times

    def reserve(self, namespace: str, uid: str, price: float, *, key: str = "") -> Refusal | None:
        if self.times > 0:
            self.times -= 1
            return Refusal(budget="", on_exceed="", message="")
        return None


def test_a_pod_whose_turn_the_controller_could_not_use_keeps_its_place() -> None:
    world = make_world()
    world.rec.create_slots = CreateQueue(INTERVAL)
    world.rec.budgets = NotReadYet(1)
    names = [f"gpu-{k}" for k in range(4)]
    for k, name in enumerate(names):
        pod = gpu_pod(name)
        pod["metadata"]["creationTimestamp"] = created_at(k)
        world.kube.add_pod(pod)
    rents = play(world, names)
    assert [name for _, name in rents] == names
