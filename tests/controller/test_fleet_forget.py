"""The fleet's listing never brings back an instance destroyed while the listing was in flight
(the race that made a replaced instance serve again, then fail its pod as InstanceLost), and a
listing begun after the destroy still shows an instance the destroy did not remove."""

from __future__ import annotations

import threading

from controller.fleet import Fleet
from vastmarket.instances import Instance, parse_instance


def instance(iid: int) -> Instance:
    return parse_instance({"id": iid, "label": f"kv:c1:pod-{iid}", "actual_status": "running",
                              "public_ipaddr": " 198.51.100.2\n", "ports": None, "dph_total": 0.1})


class SlowVast:
    """The fleet's seam to Vast: a listing that is taken when called and answered when released."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self.called = threading.Event()
        self.release = threading.Event()
        self.hold = False

    def list_instances(self) -> list[Instance]:
        taken = list(self.instances)
        self.called.set()
        if self.hold:
            assert self.release.wait(30)
        return taken


def test_a_listing_in_flight_does_not_bring_back_an_instance_forgotten_meanwhile() -> None:
    vast = SlowVast([instance(1), instance(2)])
    fleet = Fleet(vast, "c1")  # type: ignore[arg-type]
    assert fleet.refresh() and sorted(i.id for i in fleet.instances()) == [1, 2]
    vast.hold = True
    listing = threading.Thread(target=fleet.refresh)
    listing.start()
    assert vast.called.wait(30)  # the listing has been taken: it still shows instance 1
    vast.instances = [instance(2)]  # destroyed on Vast...
    fleet.forget(1)  # ...and forgotten by the controller
    vast.release.set()
    listing.join(30)
    assert [i.id for i in fleet.instances()] == [2]
    assert fleet.for_pod("pod-1") == []


def test_a_listing_begun_after_the_forget_shows_an_instance_still_there() -> None:
    vast = SlowVast([instance(1)])
    fleet = Fleet(vast, "c1")  # type: ignore[arg-type]
    fleet.refresh()
    fleet.forget(1)  # a destroy that did not take: Vast still lists it
    assert fleet.instances() == []
    assert fleet.refresh() and [i.id for i in fleet.instances()] == [1]
    fleet.forget(1)
    fleet.refresh()
    assert [i.id for i in fleet.instances()] == [1], "the tombstone is gone once a later listing saw it"
