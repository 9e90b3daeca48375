"""How money is really lost: commit then fail (the rental or the destroy is done, the answer is a
5xx, a dropped connection or late), a slow answer, and a listing that lags behind new instances.
Over real HTTP with the standard-library client, and through `/_sim/` as a test or the demo would."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
from typing import Any

import pytest

from tests.simulator.support import FakeClock, Vast, port_offer, rent_body, wait_for
from vastsim import SimulatorServer


def admin_ok(vast: Vast, path: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = vast.admin(path, body)
    assert reply.status == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def labelled(vast: Vast, label: str) -> list[int]:
    """The ids the v1 list shows for a label."""
    reply = vast.list(select_filters={"label": {"eq": label}})
    assert reply.status == 200, reply.text
    return [i["id"] for i in reply.json()["instances"]]


def live_ids(sim: SimulatorServer) -> list[int]:
    return [i["id"] for i in sim.state()["instances"] if not i["destroyed"]]


# --- commit then fail: create ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_rental_that_answers_5xx_was_made_all_the_same(sim: SimulatorServer, vast: Vast, status: int) -> None:
    admin_ok(vast, "faults/commit_then_fail", {"endpoint": "create", "status": status})
    reply = vast.rent(port_offer(vast)["id"], rent_body(label="lost-5xx"))
    assert reply.status == status
    [instance] = [i for i in sim.state()["instances"] if i["label"] == "lost-5xx"]
    assert not instance["destroyed"]
    assert labelled(vast, "lost-5xx") == [instance["id"]]
    assert sim.state()["counters"]["answers"]["create"] == {str(status): 1}


def test_a_rental_whose_connection_is_dropped_was_made_all_the_same(sim: SimulatorServer, vast: Vast) -> None:
    sim.faults.commit_then_fail("create", answer="drop")
    offer = port_offer(vast)["id"]
    with pytest.raises((http.client.RemoteDisconnected, urllib.error.URLError, ConnectionError)):
        vast.rent(offer, rent_body(label="lost-drop"))
    assert [i["label"] for i in sim.state()["instances"] if not i["destroyed"]] == ["lost-drop"]
    assert sim.state()["counters"]["answers"]["create"] == {"dropped": 1}


def test_a_rental_answered_after_the_clients_timeout_was_made_before(sim: SimulatorServer, vast: Vast) -> None:
    sim.faults.commit_then_fail("create", answer="late", seconds=3.0)
    offer = port_offer(vast)["id"]
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        vast.rent(offer, rent_body(label="lost-late"), timeout=0.5)
    # The client gave up; the rental is already there, listed and billed.
    assert labelled(vast, "lost-late") == live_ids(sim)


def test_only_calls_that_take_effect_use_up_a_commit_then_fail(sim: SimulatorServer, vast: Vast) -> None:
    sim.faults.commit_then_fail("create", status=503)
    assert vast.rent(99, rent_body()).status == 404  # no such offer: nothing done, the fault waits
    assert sim.state()["faults"]["commit_then_fail"] == {"create": [
        {"answer": "status", "status": 503, "body": "json", "seconds": 0.0}]}
    assert vast.rent(port_offer(vast)["id"], rent_body()).status == 503
    assert vast.rent(port_offer(vast)["id"], rent_body()).status == 200
    assert len(live_ids(sim)) == 2


# --- commit then fail: destroy --------------------------------------------------------------------


@pytest.mark.parametrize("lost", [{"status": 502}, {"answer": "drop"}, {"answer": "late", "seconds": 2.0}])
def test_a_destroy_whose_answer_is_lost_destroyed_the_instance(sim: SimulatorServer, vast: Vast,
                                                               lost: dict[str, Any]) -> None:
    instance_id = vast.rent(port_offer(vast)["id"], rent_body()).json()["new_contract"]
    admin_ok(vast, "faults/commit_then_fail", {"endpoint": "destroy", **lost})
    try:
        reply = vast.call("DELETE", f"/api/v0/instances/{instance_id}/", {}, timeout=0.5)
        assert reply.status == lost.get("status")
    except (http.client.RemoteDisconnected, urllib.error.URLError, ConnectionError, TimeoutError):
        assert "answer" in lost
    assert vast.instance(instance_id) is None
    assert sim.state()["counters"]["live_instances"] == 0
    assert vast.destroy(instance_id).json()["error"] == "no_such_instance"  # a retry finds it gone


# --- slow answer ------------------------------------------------------------------------------------


def test_a_slow_answer_comes_after_the_action_is_done(sim: SimulatorServer, vast: Vast) -> None:
    admin_ok(vast, "faults/slow_answer", {"endpoint": "create", "seconds": 2.0})
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        vast.rent(port_offer(vast)["id"], rent_body(label="slow"), timeout=0.5)
    assert labelled(vast, "slow") == live_ids(sim)
    admin_ok(vast, "faults/slow_answer", {"endpoint": "create", "seconds": 0})
    assert vast.rent(port_offer(vast)["id"], rent_body(label="fast"), timeout=5).status == 200


def test_a_slow_answer_reaches_a_patient_client(sim: SimulatorServer, vast: Vast) -> None:
    sim.faults.set_slow_answer("get_instance", 0.3)
    instance_id = vast.rent(port_offer(vast)["id"], rent_body()).json()["new_contract"]
    started = time.monotonic()
    assert vast.instance(instance_id) is not None
    assert time.monotonic() - started >= 0.3


# --- a call held in flight ---------------------------------------------------------------------------


def test_a_held_rent_is_made_only_when_released_even_if_its_client_gave_up(sim: SimulatorServer,
                                                                           vast: Vast) -> None:
    offer = port_offer(vast)["id"]
    admin_ok(vast, "faults/hold", {"endpoint": "create"})
    assert sim.state()["faults"]["held"] == ["create"]
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        vast.rent(offer, rent_body(label="held"), timeout=0.5)
    assert sim.state()["counters"]["calls"]["create"] == 1  # received, and waiting
    assert sim.state()["counters"]["rentals"] == 0
    admin_ok(vast, "faults/release", {"endpoint": "create"})
    wait_for(lambda: labelled(vast, "held"))
    assert sim.state()["faults"]["held"] == []
    assert vast.rent(port_offer(vast)["id"], rent_body(), timeout=5).status == 200  # no hold any more


def test_stopping_the_simulator_lets_held_calls_go() -> None:
    server = SimulatorServer(seed=3, offers=50, boot_seconds=(0.02, 0.04)).start()
    server.faults.hold("search")
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        Vast(server.url).search({"limit": 1}, timeout=0.3)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(timeout=30)  # stop() joins the request threads: the held one must be let go
    assert not stopper.is_alive()


# --- listing lag ------------------------------------------------------------------------------------


def test_a_new_instance_is_missing_from_the_list_for_the_lag_but_found_by_id() -> None:
    clock = FakeClock()
    with SimulatorServer(seed=3, offers=200, boot_seconds=(1.0, 2.0), clock=clock) as sim:
        vast = Vast(sim.url)
        admin_ok(vast, "faults/listing_lag", {"seconds": 5})
        old = vast.rent(port_offer(vast)["id"], rent_body(label="kv:x:old")).json()["new_contract"]
        clock.advance(6)
        new = vast.rent(port_offer(vast)["id"], rent_body(label="kv:x:new")).json()["new_contract"]
        assert labelled(vast, "kv:x:new") == []
        assert [i["id"] for i in vast.list().json()["instances"]] == [old]
        assert vast.instance(new) is not None
        clock.advance(4.9)
        assert labelled(vast, "kv:x:new") == []
        clock.advance(0.1)
        assert labelled(vast, "kv:x:new") == [new]
        sim.faults.set_listing_lag(0)
        assert sim.state()["faults"]["listing_lag"] == 0


# --- bad arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path, body, words", [
    ("faults/commit_then_fail", {"endpoint": "search"}, "endpoint must be one of create, destroy, update"),
    ("faults/commit_then_fail", {"endpoint": "create", "answer": "later"}, "answer must be one of"),
    ("faults/commit_then_fail", {"endpoint": "create", "status": 429}, "status must be one of"),
    ("faults/commit_then_fail", {"endpoint": "create", "answer": "late"}, "answer late needs seconds > 0"),
    ("faults/commit_then_fail", {"endpoint": "create", "seconds": 2}, "seconds goes with answer late"),
    ("faults/commit_then_fail", {"endpoint": "create", "count": 0}, "count must be a positive integer"),
    ("faults/slow_answer", {"endpoint": "create", "seconds": -1}, "seconds must be a non-negative number"),
    ("faults/slow_answer", {"endpoint": "nope", "seconds": 1}, "unknown endpoint"),
    ("faults/listing_lag", {"seconds": "soon"}, "seconds must be a non-negative number"),
    ("faults/listing_lag", {"lag": 3}, "unexpected keyword"),
])
def test_a_bad_lost_answer_fault_is_a_400_that_says_why(vast: Vast, path: str, body: dict[str, Any],
                                                        words: str) -> None:
    reply = vast.admin(path, body)
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_args"
    assert words in reply.json()["msg"], reply.json()
    assert json.dumps(vast.admin("faults").json()).count("commit_then_fail") == 1  # nothing was queued
    assert vast.admin("faults").json()["commit_then_fail"] == {}
