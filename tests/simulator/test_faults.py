"""Fault injection and inspection: the `/_sim/` admin routes and the same controls in Python."""

from __future__ import annotations

import socket
import time
from typing import Any, Callable

import pytest

from tests.simulator.support import (
    FakeClock,
    Reply,
    Vast,
    call,
    host_port,
    port_offer,
    refuses,
    rent_body,
    rent_running,
)
from vastsim import SimulatorServer

ENDPOINT_CALLS: dict[str, Callable[[Vast, int], Reply]] = {
    "search": lambda vast, _: vast.search({"limit": 1}),
    "create": lambda vast, _: vast.rent(port_offer(vast)["id"], rent_body()),
    "get_instance": lambda vast, instance_id: vast.call("GET", f"/api/v0/instances/{instance_id}/"),
    "list_instances": lambda vast, _: vast.list(),
    "update": lambda vast, instance_id: vast.update(instance_id, {"label": "x"}),
    "destroy": lambda vast, instance_id: vast.destroy(instance_id),
}


def admin_ok(vast: Vast, path: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = vast.admin(path, body)
    assert reply.status == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def rented(vast: Vast) -> int:
    instance_id: int = vast.rent(port_offer(vast)["id"], rent_body()).json()["new_contract"]
    return instance_id


# --- failures per endpoint ---------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(ENDPOINT_CALLS))
@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_5xx_burst_fails_the_next_calls_of_one_endpoint_only(vast: Vast, endpoint: str, status: int) -> None:
    instance_id = rented(vast)
    admin_ok(vast, "faults/fail", {"endpoint": endpoint, "status": status, "count": 2})
    call_it = ENDPOINT_CALLS[endpoint]
    assert [call_it(vast, instance_id).status for _ in range(2)] == [status, status]
    others = [e for e in ENDPOINT_CALLS if e not in (endpoint, "destroy")]
    assert all(ENDPOINT_CALLS[e](vast, instance_id).status == 200 for e in others)
    assert call_it(vast, instance_id).status == 200


def test_a_502_is_an_nginx_html_page_and_a_503_is_json(vast: Vast) -> None:
    admin_ok(vast, "faults/fail", {"endpoint": "search", "status": 502})
    admin_ok(vast, "faults/fail", {"endpoint": "search", "status": 503})
    bad_gateway = vast.search()
    assert bad_gateway.content_type == "text/html" and "502 Bad Gateway" in bad_gateway.text
    unavailable = vast.search()
    assert unavailable.status == 503 and unavailable.json()["success"] is False


@pytest.mark.parametrize(
    ("form", "content_type", "check"),
    [
        ("text", "text/plain", lambda r: r.text == "API requests too frequent endpoint threshold=4.5"),
        ("detail", "application/json", lambda r: r.json() == {"detail": "API requests too frequent endpoint threshold=4.5"}),
        ("error", "application/json", lambda r: r.json() == {"error": "rate_limit_exceeded"}),
    ],
)
def test_an_injected_429_comes_in_each_body_form_without_retry_after(
    vast: Vast, form: str, content_type: str, check: Callable[[Reply], bool]
) -> None:
    admin_ok(vast, "faults/fail", {"endpoint": "create", "status": 429, "body": form})
    reply = vast.rent(port_offer(vast)["id"], rent_body())
    assert reply.status == 429
    assert reply.content_type.startswith(content_type)
    assert check(reply), reply.text
    assert reply.headers.get("Retry-After") is None


def test_a_rate_limit_refuses_calls_closer_than_its_interval_per_key(vast: Vast) -> None:
    admin_ok(vast, "faults/rate_limit", {"endpoint": "search", "interval": 60, "body": "detail"})
    alice = Vast(vast.base, headers={"Authorization": "Bearer alice"})
    bob = Vast(vast.base, headers={"Authorization": "Bearer bob"})
    assert alice.search({"limit": 1}).status == 200
    refused = alice.search({"limit": 1})
    assert refused.status == 429 and refused.json() == {"detail": "API requests too frequent endpoint threshold=60"}
    assert refused.headers.get("Retry-After") is None
    assert bob.search({"limit": 1}).status == 200
    assert alice.call("GET", "/api/v1/instances/").status == 200  # other endpoints are not limited
    admin_ok(vast, "faults/rate_limit", {"endpoint": "search", "interval": 0})
    assert alice.search({"limit": 1}).status == 200


def test_latency_delays_one_endpoint(vast: Vast) -> None:
    admin_ok(vast, "faults/latency", {"endpoint": "get_instance", "seconds": 0.3})
    started = time.monotonic()
    vast.instance(1)
    assert time.monotonic() - started >= 0.3
    # Other endpoints are not held: with get_instance held far longer than a client waits, a
    # search is still answered (no upper bound on how fast: the machine may be loaded).
    admin_ok(vast, "faults/latency", {"endpoint": "get_instance", "seconds": 60})
    with pytest.raises(OSError):
        vast.call("GET", "/api/v0/instances/1/", timeout=0.5)
    assert vast.search({"limit": 1}, timeout=30).status == 200
    admin_ok(vast, "faults/latency", {"endpoint": "get_instance", "seconds": 0})


def test_the_python_api_injects_the_same_failures(sim: SimulatorServer, vast: Vast) -> None:
    sim.faults.fail_next("create", status=503, count=2)
    offer = port_offer(vast)
    assert [vast.rent(offer["id"], rent_body()).status for _ in range(3)] == [503, 503, 200]


# --- offers vanishing --------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "tail"), [(404, "is not available."), (410, "is no longer available.")])
def test_the_next_rent_finds_its_offer_vanished(vast: Vast, status: int, tail: str) -> None:
    admin_ok(vast, "faults/vanish", {"count": 1, "status": status})
    offer = port_offer(vast)
    reply = vast.rent(offer["id"], rent_body())
    assert reply.status == status
    assert reply.json() == {
        "success": False,
        "error": "no_such_ask",
        "msg": f"no_such_ask Instance type by id {offer['id']} {tail}",
        "ask_id": offer["id"],
    }
    assert vast.offers(id={"eq": offer["id"]}) == []
    assert vast.rent(port_offer(vast)["id"], rent_body()).status == 200


def test_a_given_offer_can_be_vanished(vast: Vast) -> None:
    offer = port_offer(vast)
    admin_ok(vast, "faults/vanish", {"offer_id": offer["id"]})
    assert vast.offers(id={"eq": offer["id"]}) == []
    assert vast.rent(offer["id"], rent_body()).status == 404
    assert offer["id"] in vast.state()["market"]["vanished"]


# --- instance fates ----------------------------------------------------------------------------


def status_after(vast: Vast, clock: FakeClock, instance_id: int, seconds: float) -> dict[str, Any]:
    clock.advance(seconds)
    instance = vast.instance(instance_id)
    assert instance is not None
    return instance


def test_an_instance_can_be_stuck_in_loading(clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    admin_ok(vast, "faults/fate", {"status": "loading"})
    instance_id = rented(vast)
    assert status_after(vast, clock, instance_id, 15)["actual_status"] == "loading"
    stuck = status_after(vast, clock, instance_id, 3600)
    assert stuck["actual_status"] == "loading" and stuck["ports"] is None


@pytest.mark.parametrize("status", ["exited", "offline", "unknown"])
def test_an_instance_can_die_instead_of_running(clocked: SimulatorServer, clock: FakeClock, status: str) -> None:
    vast = Vast(clocked.url)
    admin_ok(vast, "faults/fate", {"status": status})
    instance_id = rented(vast)
    assert status_after(vast, clock, instance_id, 15)["actual_status"] == "loading"
    dead = status_after(vast, clock, instance_id, 20)
    assert dead["actual_status"] == status and dead["ports"] is None
    assert status_after(vast, clock, instance_id, 3600)["actual_status"] == status


def test_an_instance_can_die_after_running_for_a_while(clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    admin_ok(vast, "faults/fate", {"status": "exited", "running_seconds": 60})
    instance_id = rented(vast)
    running = status_after(vast, clock, instance_id, 31)
    assert running["actual_status"] == "running"
    port = host_port(running)
    assert call("GET", f"http://127.0.0.1:{port}/").status == 200
    assert status_after(vast, clock, instance_id, 61)["actual_status"] == "exited"
    assert refuses(port)


def test_a_fate_applies_to_the_next_rentals_only(clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    admin_ok(vast, "faults/fate", {"status": "exited", "count": 1})
    doomed, healthy = rented(vast), rented(vast)
    clock.advance(31)
    assert vast.instance(doomed)["actual_status"] == "exited"  # type: ignore[index]
    assert vast.instance(healthy)["actual_status"] == "running"  # type: ignore[index]


def test_a_created_fate_carries_the_oci_message(clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    admin_ok(vast, "faults/fate", {"status": "created", "status_msg": "OCI runtime create failed: bad image"})
    instance = status_after(vast, clock, rented(vast), 31)
    assert instance["actual_status"] == "created"
    assert "OCI runtime create failed" in instance["status_msg"]


def test_an_outbid_instance_shows_stopped_everywhere(clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    instance_id = rented(vast)
    clock.advance(31)
    admin_ok(vast, "faults/fate", {"instance_id": instance_id, "status": "stopped"})
    instance = vast.instance(instance_id)
    assert instance is not None
    assert (instance["actual_status"], instance["intended_status"], instance["cur_state"], instance["next_state"]) == (
        "stopped",
        "stopped",
        "stopped",
        "stopped",
    )


def test_a_given_running_instance_can_go_offline(vast: Vast) -> None:
    instance = rent_running(vast)
    port = host_port(instance)
    admin_ok(vast, "faults/fate", {"instance_id": instance["id"], "status": "offline"})
    assert vast.instance(instance["id"])["actual_status"] == "offline"  # type: ignore[index]
    assert refuses(port)


# --- health answers ----------------------------------------------------------------------------


def test_an_instance_port_can_answer_another_status(vast: Vast) -> None:
    instance = rent_running(vast)
    admin_ok(vast, "faults/health", {"instance_id": instance["id"], "status": 503})
    reply = call("GET", f"http://127.0.0.1:{host_port(instance)}/health")
    assert reply.status == 503 and reply.json()["status"] == 503


def test_an_instance_port_can_refuse_connections_and_come_back(vast: Vast) -> None:
    instance = rent_running(vast)
    port = host_port(instance)
    admin_ok(vast, "faults/health", {"instance_id": instance["id"], "mode": "refuse"})
    assert refuses(port)
    assert host_port(vast.instance(instance["id"])) == port  # type: ignore[arg-type]  # still advertised
    admin_ok(vast, "faults/health", {"instance_id": instance["id"], "mode": "answer"})
    assert call("GET", f"http://127.0.0.1:{port}/").status == 200


def test_an_instance_port_can_accept_and_never_answer(vast: Vast) -> None:
    instance = rent_running(vast)
    admin_ok(vast, "faults/health", {"instance_id": instance["id"], "mode": "hang"})
    with socket.create_connection(("127.0.0.1", host_port(instance)), timeout=2.0) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.settimeout(0.3)
        with pytest.raises(socket.timeout):
            conn.recv(100)
    vast.destroy(instance["id"])
    assert vast.state()["counters"]["open_sockets"] == 0


def test_the_next_instance_can_come_up_unhealthy(vast: Vast) -> None:
    admin_ok(vast, "faults/health", {"status": 500})
    instance = rent_running(vast)
    assert call("GET", f"http://127.0.0.1:{host_port(instance)}/").status == 500


# --- billing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drift", "billed"),
    [({"factor": 1.5}, lambda offered: round(offered * 1.5, 6)), ({"dph_total": 9.99}, lambda offered: 9.99)],
)
def test_the_next_instance_can_be_billed_at_another_price(
    vast: Vast, drift: dict[str, float], billed: Callable[[float], float]
) -> None:
    admin_ok(vast, "faults/price", drift)
    offer = vast.offers(direct_port_count={"gte": 1}, rentable={"eq": True}, allocated_storage=10, limit=1)[0]
    instance_id = vast.rent(offer["id"], rent_body(disk=10)).json()["new_contract"]
    assert vast.instance(instance_id)["dph_total"] == pytest.approx(billed(offer["dph_total"]))  # type: ignore[index]
    audit = next(i for i in vast.state()["instances"] if i["id"] == instance_id)
    assert audit["offer_dph_total"] == offer["dph_total"]


# --- state and reset ---------------------------------------------------------------------------


def test_state_accounts_for_every_instance_and_call(vast: Vast) -> None:
    first = rent_running(vast)
    second = rented(vast)
    vast.destroy(first["id"])
    state = vast.state()
    assert state["counters"]["rentals"] == 2
    assert state["counters"]["destroys"] == 1
    assert state["counters"]["live_instances"] == 1
    assert state["counters"]["calls"]["create"] == 2 and state["counters"]["calls"]["destroy"] == 1
    assert state["counters"]["answers"]["create"] == {"200": 2}
    records = {i["id"]: i for i in state["instances"]}
    assert records[first["id"]]["destroyed"] is True and records[first["id"]]["destroyed_at"] is not None
    assert records[first["id"]]["cur_state"] == "unloaded" and records[first["id"]]["listening"] == []
    assert records[second]["destroyed"] is False and records[second]["label"] == "test"
    assert set(records[second]) >= {"offer_id", "dph_total", "ports", "created_at", "running_at", "actual_status"}


def test_nothing_leaks_when_every_instance_is_destroyed(vast: Vast) -> None:
    ids = [rent_running(vast)["id"] for _ in range(3)]
    assert vast.state()["counters"]["open_ports"] == 3
    for instance_id in ids:
        vast.destroy(instance_id)
    counters = vast.state()["counters"]
    assert (counters["live_instances"], counters["open_ports"], counters["open_sockets"]) == (0, 0, 0)


def test_reset_clears_faults_and_can_regenerate_the_market(sim: SimulatorServer, vast: Vast) -> None:
    instance = rent_running(vast)
    admin_ok(vast, "faults/fail", {"endpoint": "search", "status": 503, "count": 5})
    admin_ok(vast, "reset", {})
    assert vast.admin("faults").json()["failures"] == {}
    assert vast.search({"limit": 1}).status == 200
    assert vast.instance(instance["id"]) is not None, "a plain reset keeps instances"
    old = {o["id"] for o in vast.offers(limit=10_000)}
    admin_ok(vast, "reset", {"regenerate": True, "seed": 99, "offers": 50})
    new = vast.offers(limit=10_000)
    assert len(new) == 50 and {o["id"] for o in new} != old
    assert vast.instance(instance["id"]) is None
    assert refuses(host_port(instance))
    assert vast.state()["counters"]["rentals"] == 0
    assert rented(vast) > instance["id"], "instance ids are never reused"


# --- admin errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("faults/fail", {"endpoint": "nope"}, 400),
        ("faults/fail", {"endpoint": "search", "status": 418}, 400),
        ("faults/fail", {"endpoint": "search", "count": 0}, 400),
        ("faults/fail", {"endpoint": "search", "colour": "red"}, 400),
        ("faults/latency", {"endpoint": "search", "seconds": -1}, 400),
        ("faults/rate_limit", {"endpoint": "search"}, 400),
        ("faults/vanish", {"status": 500}, 400),
        ("faults/vanish", {"offer_id": 1}, 404),
        ("faults/fate", {"status": "exploded"}, 400),
        ("faults/fate", {"instance_id": 424242, "status": "exited"}, 404),
        ("faults/health", {"instance_id": 424242, "status": 503}, 404),
        ("faults/health", {"mode": "sulk"}, 400),
        ("faults/price", {"factor": 1.1, "dph_total": 1.0}, 400),
        ("reset", {"seed": "x"}, 400),
        ("nowhere", {}, 404),
    ],
)
def test_bad_admin_calls_are_4xx_with_a_message(vast: Vast, path: str, body: dict[str, Any], status: int) -> None:
    reply = vast.admin(path, body)
    assert reply.status == status, reply.text
    assert reply.json()["msg"]


def test_a_malformed_admin_body_is_a_400(vast: Vast) -> None:
    reply = call("POST", f"{vast.base}/_sim/faults/fail", raw=b"{")
    assert reply.status == 400
