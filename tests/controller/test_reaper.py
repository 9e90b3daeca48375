"""The orphan reaper against the simulator over real HTTP, with a fake at our own Kubernetes seam."""

import pytest

from controller.fleet import Fleet, instance_label
from controller.reaper import Reaper
from vastmarket.client import RetryPolicy, VastClient, broad_query
from vastmarket.instances import RentRequest
from vastsim import SimulatorServer


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeKube:
    def __init__(self, uids):
        self.uids = uids

    def list_pods(self, *, field_selector="", label_selector=""):
        return [{"metadata": {"uid": uid}} for uid in self.uids], "1"


@pytest.fixture
def market():
    with SimulatorServer(seed=4, offers=100, boot_seconds=(0.01, 0.02)) as sim:
        vast = VastClient(sim.url)
        offers = vast.search_offers(broad_query(), limit=3).offers
        ids = {}
        for offer, label in zip(offers, (instance_label("c1", "live"), instance_label("c1", "gone"), "stranger")):
            ids[label] = vast.rent(offer.id, RentRequest(image="x", label=label))
        yield sim, vast, ids


def destroyed(sim, instance_id):
    return next(i for i in sim.state()["instances"] if i["id"] == instance_id)["destroyed"]


def test_only_instances_of_this_cluster_without_a_pod_are_reaped_and_only_after_the_grace(market):
    sim, vast, ids = market
    clock = Clock()
    reaper = Reaper(FakeKube({"live"}), Fleet(vast, "c1", clock=clock), ("vast-gpu-node-1",), grace=60, clock=clock)
    assert reaper.sweep() == []
    clock.now += 59
    assert reaper.sweep() == []
    clock.now += 2
    assert reaper.sweep() == [ids[instance_label("c1", "gone")]]
    assert destroyed(sim, ids[instance_label("c1", "gone")])
    assert not destroyed(sim, ids[instance_label("c1", "live")]) and not destroyed(sim, ids["stranger"])


def test_a_pod_that_reappears_resets_the_grace_period(market):
    sim, vast, ids = market
    clock, kube = Clock(), FakeKube({"live"})
    reaper = Reaper(kube, Fleet(vast, "c1", clock=clock), ("n",), grace=60, clock=clock)
    reaper.sweep()
    clock.now += 30
    kube.uids = {"live", "gone"}
    reaper.sweep()
    kube.uids = {"live"}
    clock.now += 40
    assert reaper.sweep() == [], "the orphan clock started again when the pod was seen"


def test_dry_run_reports_but_destroys_nothing(market):
    sim, vast, ids = market
    clock = Clock()
    reaper = Reaper(FakeKube(set()), Fleet(vast, "c1", clock=clock), ("n",), grace=0, dry_run=True, clock=clock)
    assert sorted(reaper.sweep()) == sorted([ids[instance_label("c1", "live")], ids[instance_label("c1", "gone")]])
    assert not any(destroyed(sim, i) for i in ids.values())


def test_nothing_is_reaped_when_vast_cannot_be_listed(market):
    sim, vast, ids = market
    sim.faults.fail_next("list_instances", status=503, count=10)
    reaper = Reaper(FakeKube(set()), Fleet(VastClient(sim.url, retry=RetryPolicy(attempts=1)), "c1"), ("n",), grace=0)
    assert reaper.sweep() == []
