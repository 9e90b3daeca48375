"""Interruptible (bid) pods (controller.interruptions): the pure plan for a paused instance, and
the reconciler against the simulator over real HTTP (its outbid fault), with a fake only at the
Kubernetes seam. A ledger sampler runs beside the reconciler tests: at no sample may a pod have
two live instances, paused ones included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from controller import interruptions
from controller.interruptions import Action, Interruption, plan
from controller.reconciler import A_INSTANCE, Reconciler
from tests.controller.test_reconciler_lifecycle import NS, World, container, gpu_pod, is_ready, make_world, service
from devcluster.ledger import LedgerSampler
from tests.controller.test_replacement import Sampler
from vastmarket.bids import BidChoice, InterruptibleConfig, InterruptionPolicy
from vastmarket.config import config_from_mapping
from vastmarket.instances import Instance
from vastsim import SimulatorServer

PROBE = {"tcpSocket": {"port": 8000}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}
SETTINGS = InterruptibleConfig(bid_margin=0.1, move_after_seconds=30.0)


def paused(min_bid: float = 0.2, dph_total: float = 0.12) -> Instance:
    return Instance(id=7, actual_status="stopped", intended_status="stopped", cur_state="stopped",
                    next_state="stopped", is_bid=True, min_bid=min_bid, dph_total=dph_total)


def choice(policy: InterruptionPolicy, bid_max: float | None = 0.5) -> BidChoice:
    return BidChoice(True, bid_max, policy)


# --- the plan ---------------------------------------------------------------------------------


def test_raise_then_move_raises_a_margin_over_the_new_min_bid_within_bid_max() -> None:
    decision = plan(Interruption(7, since=100.0), paused(min_bid=0.2, dph_total=0.12),
                    choice=choice(InterruptionPolicy.RAISE_THEN_MOVE), bid=0.1, settings=SETTINGS, now=101.0)
    assert decision.action is Action.RAISE and decision.price == pytest.approx(0.22)
    # Storage (0.02 $/h beside the 0.1 bid) counts against bid-max: 0.23 - 0.02 leaves 0.21.
    decision = plan(Interruption(7, since=100.0), paused(min_bid=0.2, dph_total=0.12),
                    choice=choice(InterruptionPolicy.RAISE_THEN_MOVE, 0.23), bid=0.1, settings=SETTINGS, now=101.0)
    assert decision.action is Action.RAISE and decision.price == pytest.approx(0.21)


def test_raise_then_move_moves_at_once_without_room_and_after_the_wait_once_raised() -> None:
    no_room = plan(Interruption(7, since=100.0), paused(min_bid=0.6), choice=choice(InterruptionPolicy.RAISE_THEN_MOVE),
                   bid=0.1, settings=SETTINGS, now=100.0)
    assert no_room.action is Action.MOVE and "no room" in no_room.why
    raised = Interruption(7, since=100.0, raised_to=0.22, raised_at=110.0)
    waiting = plan(raised, paused(min_bid=0.2), choice=choice(InterruptionPolicy.RAISE_THEN_MOVE), bid=0.22,
                   settings=SETTINGS, now=139.0)
    assert waiting.action is Action.WAIT
    assert plan(raised, paused(min_bid=0.2), choice=choice(InterruptionPolicy.RAISE_THEN_MOVE), bid=0.22,
                settings=SETTINGS, now=140.5).action is Action.MOVE
    # The market rose again over the raised bid: raise again rather than wait.
    assert plan(raised, paused(min_bid=0.3), choice=choice(InterruptionPolicy.RAISE_THEN_MOVE), bid=0.22,
                settings=SETTINGS, now=120.0).action is Action.RAISE


def test_move_waits_the_configured_time_and_wait_never_raises_nor_moves() -> None:
    outbid = Interruption(7, since=100.0)
    assert plan(outbid, paused(), choice=choice(InterruptionPolicy.MOVE), bid=0.1, settings=SETTINGS,
                now=120.0).action is Action.WAIT
    assert plan(outbid, paused(), choice=choice(InterruptionPolicy.MOVE), bid=0.1, settings=SETTINGS,
                now=130.0).action is Action.MOVE
    for now in (100.0, 10_000.0):
        assert plan(outbid, paused(min_bid=5.0), choice=choice(InterruptionPolicy.WAIT), bid=0.1, settings=SETTINGS,
                    now=now).action is Action.WAIT


def test_the_interruption_record_round_trips_and_bad_ones_are_ignored() -> None:
    record = interruptions.with_interruption({"label": "x"}, Interruption(7, 1.0, 0.2, 2.0))
    assert Interruption.read(record) == Interruption(7, 1.0, 0.2, 2.0)
    assert interruptions.with_interruption(record, None) == {"label": "x"}
    for bad in ({"interrupted": "x"}, {"interrupted": {"instance": True, "since": 1}}, {"interrupted": {"instance": 1}}):
        assert Interruption.read(bad) is None


# --- the reconciler against the simulator -----------------------------------------------------


@pytest.fixture
def world() -> Iterator[World]:
    with SimulatorServer(seed=5, offers=300, boot_seconds=(0.02, 0.05)) as sim:
        world = make_world(sim, resync=0.5)
        world.kube.services.append(service("web"))
        world.rec = Reconciler(world.kube, world.vast, world.fleet, world.offers, world.settings,
                               config_from_mapping({"interruptible": {"move_after_seconds": 20}}))
        yield world
        world.vast.close()


def spot_pod(name: str, bid_max: str) -> dict[str, Any]:
    pod = gpu_pod(name, labels={"app": "web"})
    pod["metadata"]["annotations"].update({"vast.ai/interruptible": "true", "vast.ai/bid-max": bid_max})
    pod["spec"]["containers"][0]["readinessProbe"] = PROBE
    return pod


def live(world: World) -> list[dict[str, Any]]:
    return [i for i in world.ledger() if not i["destroyed"]]


def slices(world: World) -> list[tuple[str, bool]]:
    return [(e["addresses"][0], bool(e["conditions"]["ready"]))
            for s in world.kube.list_endpoint_slices(NS, "") for e in s.get("endpoints") or []]


def interrupted(pod: dict[str, Any] | None) -> str | None:
    cond = interruptions.interrupted_condition(pod or {})
    return None if cond is None else str(cond["status"])


def serving_bid(world: World, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = world.drive(name, is_ready, what="pod ready")
    assert pod is not None
    [inst] = live(world)
    return pod, inst


def test_an_interruptible_pod_rents_a_bid_a_margin_over_min_bid(world: World) -> None:
    world.kube.add_pod(spot_pod("web-0", "0.5"))
    pod, inst = serving_bid(world, "web-0")
    assert inst["is_bid"] and inst["bid"] == pytest.approx(round(inst["min_bid"] * 1.1, 4))
    assert pod["metadata"]["annotations"][interruptions.A_BID] == f"{inst['bid']:g}"
    assert inst["dph_total"] == pytest.approx(inst["bid"] + inst["storage_dph"])
    assert any(r == "Renting" and "interruptible: bid" in m for _, r, m in world.kube.events)


def test_an_outbid_instance_leaves_its_services_and_runs_again_on_a_raised_bid(world: World) -> None:
    world.kube.add_pod(spot_pod("web-0", "0.9"))
    with Sampler(world) as sampler:
        pod, inst = serving_bid(world, "web-0")
        world.sim.market.outbid(inst["id"], price=round(inst["bid"] * 1.2, 4))
        pod = world.drive("web-0", lambda p: interrupted(p) == "True" and not is_ready(p), what="interrupted")
        assert slices(world) and not any(ready for _, ready in slices(world)), "a paused host gets no traffic"
        assert any(r == "VastInterrupted" and "outbid" in m for _, r, m in world.kube.events)
        pod = world.drive("web-0", lambda p: is_ready(p) and interrupted(p) == "False", what="resumed")
    assert pod is not None and pod["metadata"]["annotations"][A_INSTANCE] == str(inst["id"]), "the same instance"
    [now] = live(world)
    assert now["id"] == inst["id"] and now["bid"] > inst["bid"] and not now["paused"]
    assert len(world.ledger()) == 1 and all(ready for _, ready in slices(world))
    assert world.kube.reasons().count("BidRaised") == 1 and "VastResumed" in world.kube.reasons()
    assert sampler.samples > 5 and set(sampler.max_live.values()) == {1}


def test_without_room_under_bid_max_the_paused_instance_is_destroyed_and_a_replacement_serves(world: World) -> None:
    world.kube.add_pod(spot_pod("web-0", "0.5"))
    with Sampler(world) as sampler:
        pod, old = serving_bid(world, "web-0")
        world.sim.market.outbid(old["id"], price=0.9)  # over bid-max: no room to raise
        pod = world.drive("web-0", lambda p: is_ready(p) and p["metadata"]["annotations"].get(A_INSTANCE)
                          not in (None, str(old["id"])), timeout=40, what="a replacement serving")
    assert sampler.samples > 5 and set(sampler.max_live.values()) == {1}, sampler.max_live
    ledger = {i["id"]: i for i in world.ledger()}
    [new_id] = set(ledger) - {old["id"]}
    assert ledger[old["id"]]["destroyed"] and ledger[old["id"]]["destroyed_at"] <= ledger[new_id]["created_at"]
    assert ledger[new_id]["is_bid"] and "BidRaised" not in world.kube.reasons()
    assert container(pod)["lastState"]["terminated"]["reason"] == "VastInterrupted"
    assert interrupted(pod) == "False"
    assert [ready for _, ready in slices(world)] == [True]


def test_under_the_wait_policy_a_paused_instance_is_kept_and_nothing_is_raised_or_rented(world: World) -> None:
    pod = spot_pod("web-0", "0.9")
    pod["metadata"]["annotations"]["vast.ai/interruption-policy"] = "wait"
    world.kube.add_pod(pod)
    _, inst = serving_bid(world, "web-0")
    world.sim.market.outbid(inst["id"])
    world.drive("web-0", lambda p: interrupted(p) == "True", what="interrupted")
    for _ in range(10):
        world.fleet.refresh()
        world.rec.reconcile(NS, "web-0")
    [still] = live(world)
    assert still["id"] == inst["id"] and still["paused"] and still["bid"] == inst["bid"]
    assert "BidRaised" not in world.kube.reasons() and len(world.ledger()) == 1


def test_a_controller_restarted_after_the_raise_waits_for_the_same_instance_and_rents_nothing(world: World) -> None:
    world.kube.add_pod(spot_pod("web-0", "0.9"))
    _, inst = serving_bid(world, "web-0")
    world.sim.market.outbid(inst["id"], price=round(inst["bid"] * 1.2, 4))
    world.drive("web-0", lambda p: "BidRaised" in world.kube.reasons(), what="bid raised")
    config = world.rec.config
    world.controller()  # nothing in memory: the launch record says what was done
    world.rec = Reconciler(world.kube, world.vast, world.fleet, world.offers, world.settings, config)
    pod = world.drive("web-0", lambda p: is_ready(p) and interrupted(p) == "False", what="resumed")
    assert pod is not None and pod["metadata"]["annotations"][A_INSTANCE] == str(inst["id"])
    assert world.kube.reasons().count("BidRaised") == 1 and len(world.ledger()) == 1


def test_a_raise_that_would_break_the_budget_moves_instead(world: World) -> None:
    world.kube.add_pod(spot_pod("web-0", "0.9"))
    _, inst = serving_bid(world, "web-0")
    world.rec.max_spend = inst["dph_total"] + 0.001  # room for this instance at its bid, not for a raise
    with LedgerSampler(lambda: world.sim.state()["instances"], "kv:") as sampler:
        world.sim.market.outbid(inst["id"], price=round(inst["bid"] * 1.5, 4))
        world.drive("web-0", lambda p: next(i for i in world.ledger() if i["id"] == inst["id"])["destroyed"],
                    timeout=40, what="the paused instance destroyed")
    assert "BidRaised" not in world.kube.reasons()
    assert any(r == "InterruptedMove" and "over the budget" in m for _, r, m in world.kube.events)
    assert sampler.samples >= 2 and sampler.worst == 1 and not sampler.violations


def test_a_bid_billed_over_its_bid_is_destroyed_and_the_pod_fails_over(world: World) -> None:
    # Billed 30 % over the bid but well under bid-max: the check is against the bid, not the cap.
    world.sim.faults.drift_next_price(factor=1.3)
    world.kube.add_pod(spot_pod("web-0", "5"))
    pod, inst = serving_bid(world, "web-0")
    mismatch = [m for _, r, m in world.kube.events if r == "PriceMismatch"]
    assert len(mismatch) == 1 and "destroyed" in mismatch[0]
    [first, second] = sorted(world.ledger(), key=lambda i: i["id"])
    assert first["destroyed"] and first["dph_total"] > first["bid"] + first["storage_dph"]
    assert second["id"] == inst["id"] and not second["destroyed"]
