"""Renting, instance lifecycle and its quirks, real instance ports, listing, update and destroy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.simulator.support import (
    FakeClock,
    Vast,
    call,
    host_port,
    port_offer,
    refuses,
    rent_body,
    rent_running,
    running,
    wait_for,
)
from vastsim import SimulatorServer
from vastsim.offerset import storage_dph


def test_renting_answers_the_new_contract_and_an_instance_key(vast: Vast) -> None:
    offer = port_offer(vast)
    reply = vast.rent(offer["id"], rent_body())
    assert reply.status == 200
    body = reply.json()
    assert body["success"] is True
    assert isinstance(body["new_contract"], int)
    assert isinstance(body["instance_api_key"], str) and body["instance_api_key"]


def test_an_instance_goes_null_then_loading_then_running_as_the_clock_moves(
    clocked: SimulatorServer, clock: FakeClock
) -> None:
    vast = Vast(clocked.url)
    instance_id = vast.rent(port_offer(vast)["id"], rent_body()).json()["new_contract"]
    seen = []
    for step in (0.0, 5.0, 6.0, 10.0, 10.0):  # t = 0, 5, 11, 21, 31 s; loading at 10, running at 30
        clock.advance(step)
        seen.append(vast.instance(instance_id)["actual_status"])  # type: ignore[index]
    assert seen == [None, None, "loading", "loading", "running"]


def test_ports_are_null_until_running_then_docker_style_with_string_host_ports(
    clocked: SimulatorServer, clock: FakeClock
) -> None:
    vast = Vast(clocked.url)
    body = rent_body(env={"-p 8000:8000": "1", "-p 8081:8081/udp": "1", "-p 9000:9000": "1"})
    instance_id = vast.rent(port_offer(vast, ports=3)["id"], body).json()["new_contract"]
    clock.advance(15)
    loading = vast.instance(instance_id)
    assert loading is not None and loading["actual_status"] == "loading" and loading["ports"] is None
    clock.advance(20)
    running = vast.instance(instance_id)
    assert running is not None and running["actual_status"] == "running"
    assert set(running["ports"]) == {"8000/tcp", "8081/udp", "9000/tcp"}
    for mappings in running["ports"].values():
        assert mappings[0]["HostIp"] == "0.0.0.0"
        assert isinstance(mappings[0]["HostPort"], str) and mappings[0]["HostPort"].isdigit()
    assert running["ports"]["8000/tcp"][0]["HostPort"] != "8000"  # a random host port


def test_public_ipaddr_carries_whitespace_around_the_real_address(vast: Vast) -> None:
    instance = rent_running(vast)
    assert instance["public_ipaddr"] != instance["public_ipaddr"].strip()
    assert instance["public_ipaddr"].strip() == "127.0.0.1"
    assert instance["local_ipaddrs"].endswith("\n")


def test_a_running_instance_really_listens_and_destroy_closes_the_port(vast: Vast) -> None:
    instance = rent_running(vast)
    port = host_port(instance)
    reply = call("GET", f"http://{instance['public_ipaddr'].strip()}:{port}/health")
    assert reply.status == 200
    assert reply.json() == {"instance_id": instance["id"], "container_port": 8000, "path": "/health", "status": 200}
    assert vast.destroy(instance["id"]).json() == {"success": True}
    assert refuses(port)


def test_the_instance_describes_what_was_rented(vast: Vast) -> None:
    offer = port_offer(vast)
    instance_id = vast.rent(offer["id"], rent_body(label="web-1", disk=20)).json()["new_contract"]
    instance = vast.instance(instance_id)
    assert instance is not None
    assert instance["ask_id"] == offer["id"]
    assert instance["machine_id"] == offer["machine_id"]
    assert instance["gpu_name"] == offer["gpu_name"] and instance["num_gpus"] == offer["num_gpus"]
    assert instance["label"] == "web-1"
    assert instance["image_uuid"] == "vastai/test:latest"
    assert instance["extra_env"] == [["HF_TOKEN", "x"], ["-p 8000:8000", "1"]]
    assert instance["disk_space"] == 20
    assert instance["dph_total"] == pytest.approx(offer["dph_base"] + storage_dph(offer["storage_cost"], 20), abs=1e-6)
    assert instance["intended_status"] == "running" and instance["cur_state"] == "running"
    assert instance["ssh_host"].endswith(".vast.ai") and isinstance(instance["ssh_port"], int)


def test_the_billed_price_equals_the_searched_price_for_the_same_storage(vast: Vast) -> None:
    offer = vast.offers(direct_port_count={"gte": 1}, rentable={"eq": True}, allocated_storage=32, limit=1)[0]
    instance_id = vast.rent(offer["id"], rent_body(disk=32)).json()["new_contract"]
    assert vast.instance(instance_id)["dph_total"] == offer["dph_total"]  # type: ignore[index]


def test_renting_a_gone_offer_is_a_404_no_such_ask(vast: Vast) -> None:
    offer = port_offer(vast)
    assert vast.rent(offer["id"], rent_body()).status == 200
    reply = vast.rent(offer["id"], rent_body())
    assert reply.status == 404
    assert reply.json() == {
        "success": False,
        "error": "no_such_ask",
        "msg": f"no_such_ask Instance type by id {offer['id']} is not available.",
        "ask_id": offer["id"],
    }


def test_renting_an_unknown_offer_is_a_404_no_such_ask(vast: Vast) -> None:
    reply = vast.rent(1, rent_body())
    assert reply.status == 404 and reply.json()["error"] == "no_such_ask"


BAD_RENTS: list[tuple[str, dict[str, Any]]] = [
    ("no image", {"image": None}),
    ("empty image", {"image": " "}),
    ("image too long", {"image": "x" * 1025}),
    ("label too long", {"label": "l" * 257}),
    ("label not text", {"label": 5}),
    ("env as a flag string", {"env": "-e A=1 -p 8000:8000"}),
    ("env value not text", {"env": {"A": {"nested": 1}}}),
    ("bad port mapping", {"env": {"-p eighty:80": "1"}}),
    ("port out of range", {"env": {"-p 70001:70001": "1"}}),
    ("args not a list", {"args": "serve"}),
    ("scripts too long", {"onstart": "x" * 4097}),
    ("unknown runtype", {"runtype": "telnet"}),
    ("disk not positive", {"disk": 0}),
    ("disk larger than the offer", {"disk": 900_000}),
    ("bad target state", {"target_state": "paused"}),
]


@pytest.mark.parametrize(("name", "overrides"), BAD_RENTS, ids=[b[0] for b in BAD_RENTS])
def test_invalid_rent_bodies_are_a_400_invalid_args(vast: Vast, name: str, overrides: dict[str, Any]) -> None:
    offer = port_offer(vast)
    reply = vast.rent(offer["id"], rent_body(**overrides))
    assert reply.status == 400, reply.text
    assert reply.json()["error"] == "invalid_args"
    assert reply.json()["ask_id"] == offer["id"]
    assert vast.offers(id={"eq": offer["id"]}), "a refused rental leaves the offer on the market"


@pytest.mark.parametrize("price", [0, 0.0001, 500, "cheap"])
def test_a_price_out_of_range_is_a_400_invalid_price(vast: Vast, price: Any) -> None:
    reply = vast.rent(port_offer(vast)["id"], rent_body(price=price))
    assert reply.status == 400 and reply.json()["error"] == "invalid_price"


def test_more_port_mappings_than_direct_ports_is_a_400(vast: Vast) -> None:
    offer = vast.offers(direct_port_count={"eq": 0}, rentable={"eq": True}, limit=1)[0]
    reply = vast.rent(offer["id"], rent_body())
    assert reply.status == 400 and reply.json()["error"] == "invalid_args"
    assert "direct ports" in reply.json()["msg"]


def test_a_malformed_rent_body_is_a_400_never_a_500(vast: Vast) -> None:
    reply = vast.call("PUT", f"/api/v0/asks/{port_offer(vast)['id']}/", raw=b"{'image': 'x'}")
    assert reply.status == 400 and reply.json()["error"] == "invalid_request"


def test_a_bid_below_the_minimum_leaves_a_stopped_instance_and_answers_an_error_with_new_contract(vast: Vast) -> None:
    offer = port_offer(vast)
    reply = vast.rent(offer["id"], rent_body(price=max(0.001, round(offer["min_bid"] / 2, 4))))
    assert reply.status == 400
    body = reply.json()
    assert body["success"] is False and body["error"] == "invalid_price"
    instance = vast.instance(body["new_contract"])
    assert instance is not None
    assert (instance["actual_status"], instance["intended_status"], instance["cur_state"]) == ("stopped", "stopped", "stopped")
    assert vast.destroy(body["new_contract"]).status == 200


def test_a_bid_at_or_above_the_minimum_rents_an_interruptible_instance(vast: Vast) -> None:
    offer = port_offer(vast)
    reply = vast.rent(offer["id"], rent_body(price=offer["min_bid"] + 0.01))
    instance = vast.instance(reply.json()["new_contract"])
    assert instance is not None and instance["is_bid"] is True


def test_getting_a_destroyed_or_unknown_instance_answers_instances_null(vast: Vast) -> None:
    instance = rent_running(vast)
    vast.destroy(instance["id"])
    assert vast.instance(instance["id"]) is None
    assert vast.instance(99) is None


def test_destroying_twice_answers_no_such_instance(vast: Vast) -> None:
    instance = rent_running(vast)
    assert vast.destroy(instance["id"]).status == 200
    reply = vast.destroy(instance["id"])
    assert reply.status == 404
    assert reply.json()["success"] is False and reply.json()["error"] == "no_such_instance"


def test_a_label_can_be_set_and_a_too_long_one_is_refused(vast: Vast) -> None:
    instance = rent_running(vast)
    assert vast.update(instance["id"], {"label": "renamed"}).json() == {"success": True}
    assert vast.instance(instance["id"])["label"] == "renamed"  # type: ignore[index]
    reply = vast.update(instance["id"], {"label": "x" * 257})
    assert reply.status == 400 and reply.json()["error"] == "label_too_long"


def test_updating_an_unknown_instance_answers_no_such_instance(vast: Vast) -> None:
    reply = vast.update(12345, {"label": "x"})
    assert reply.status == 404 and reply.json()["error"] == "no_such_instance"


def test_stopping_closes_the_ports_and_starting_runs_again_on_new_ports(vast: Vast) -> None:
    instance = rent_running(vast)
    port = host_port(instance)
    assert vast.update(instance["id"], {"state": "stopped"}).json() == {"success": True}
    stopped = vast.instance(instance["id"])
    assert stopped is not None and stopped["actual_status"] == "stopped" and stopped["ports"] is None
    assert refuses(port)
    vast.update(instance["id"], {"state": "running"})
    again = wait_for(lambda: running(vast, instance["id"]))
    assert call("GET", f"http://127.0.0.1:{host_port(again)}/").status == 200


def test_the_deprecated_v0_list_answers_410(vast: Vast) -> None:
    reply = vast.call("GET", "/api/v0/instances/")
    assert reply.status == 410
    body = reply.json()
    assert body["success"] is False and body["error"] == "deprecated_endpoint"
    assert "Use /api/v1/instances/ instead." in body["msg"]


def rent_many(vast: Vast, count: int, label: str) -> list[int]:
    offers = vast.offers(rentable={"eq": True}, limit=count, order=[["id", "asc"]])
    ids = []
    for offer in offers:
        reply = vast.rent(offer["id"], rent_body(label=label, env={}))
        assert reply.status == 200, reply.text
        ids.append(reply.json()["new_contract"])
    return ids


def test_the_v1_list_pages_by_25_and_filters_on_label(vast: Vast) -> None:
    mine = rent_many(vast, 30, "batch-a")
    others = rent_many(vast, 4, "batch-b")
    pages, token = [], None
    while True:
        params: dict[str, Any] = {"select_filters": {"label": {"eq": "batch-a"}}}
        if token:
            params["after_token"] = token
        body = vast.list(**params).json()
        pages.append(body)
        token = body["next_token"]
        if token is None:
            break
    assert [len(p["instances"]) for p in pages] == [25, 5]
    assert [p["instances_found"] for p in pages] == [25, 5]
    assert all(p["total_instances"] == 30 and p["success"] for p in pages)
    assert pages[0]["label_counts"] == {"batch-a": 30}
    assert [i["id"] for p in pages for i in p["instances"]] == sorted(mine)
    everything = vast.list(limit=100).json()
    assert everything["total_instances"] == 34 and len(everything["instances"]) == 25
    assert everything["label_counts"] == {"batch-a": 30, "batch-b": 4}
    assert not set(others) & {i["id"] for p in pages for i in p["instances"]}


def test_the_v1_list_orders_descending_and_selects_columns(vast: Vast) -> None:
    ids = rent_many(vast, 6, "cols")
    body = vast.list(order_by=[{"col": "id", "dir": "desc"}], select_cols=["id", "label"], limit=4).json()
    assert body["instances"] == [{"id": i, "label": "cols"} for i in sorted(ids, reverse=True)[:4]]
    rest = vast.list(order_by=[{"col": "id", "dir": "desc"}], after_token=body["next_token"]).json()
    assert [i["id"] for i in rest["instances"]] == sorted(ids, reverse=True)[4:]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [(["running"], "running"), (["loading", None], "booting")],
)
def test_the_v1_list_filters_on_actual_status(
    clocked: SimulatorServer, clock: FakeClock, statuses: list[Any], expected: str
) -> None:
    vast = Vast(clocked.url)
    running = rent_many(vast, 1, "early")[0]
    clock.advance(60)
    booting = rent_many(vast, 1, "late")[0]
    found = {i["id"] for i in vast.list(select_filters={"actual_status": {"in": statuses}}).json()["instances"]}
    assert found == {running if expected == "running" else booting}


@pytest.mark.parametrize(
    "params",
    [
        {"select_filters": {"dph_total": {"lt": 1}}},
        {"select_filters": {"num_gpus": {"eq": 1}}},
        {"select_filters": {"label": {"like": "x"}}},
        {"select_filters": "not json"},
        {"order_by": [{"col": "dph_total", "dir": "asc"}]},
        {"after_token": "not-a-token"},
        {"limit": "many"},
    ],
)
def test_the_v1_list_refuses_bad_parameters_with_a_400(vast: Vast, params: dict[str, Any]) -> None:
    reply = vast.list(**params)
    assert reply.status == 400, reply.text
    assert reply.json()["success"] is False and reply.json()["msg"]


def test_the_v1_list_never_shows_destroyed_instances(vast: Vast) -> None:
    kept, gone = rent_many(vast, 2, "x")
    vast.destroy(gone)
    assert [i["id"] for i in vast.list().json()["instances"]] == [kept]


def test_an_unlabelled_instance_matches_an_empty_label_filter(vast: Vast) -> None:
    unlabelled = rent_many(vast, 1, "")[0]
    vast.update(unlabelled, {"label": None})
    rent_many(vast, 1, "named")
    body = vast.list(select_filters={"label": {"eq": ""}}).json()
    assert [i["id"] for i in body["instances"]] == [unlabelled]
    assert body["instances"][0]["label"] is None and body["label_counts"] == {"": 1}


def test_parallel_rents_of_one_offer_succeed_exactly_once(vast: Vast) -> None:
    offer = port_offer(vast)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: vast.rent(offer["id"], rent_body()).status, range(8)))
    assert sorted(statuses) == [200] + [404] * 7


def test_parallel_clients_are_all_served(vast: Vast) -> None:
    offers = vast.offers(rentable={"eq": True}, direct_port_count={"gte": 1}, limit=20)
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda o: vast.rent(o["id"], rent_body()), offers))
        searches = list(pool.map(lambda _: vast.search({"limit": 5}), range(40)))
    assert [r.status for r in replies] == [200] * 20
    assert {r.status for r in searches} == {200}
    assert vast.state()["counters"]["live_instances"] == 20


def test_each_rental_boots_in_the_time_boot_draw_gives_it(clocked: SimulatorServer, clock: FakeClock) -> None:
    draws = iter([(1.0, 4.0), (2.0, 40.0)])
    clocked.market.boot_draw = lambda: next(draws)
    vast = Vast(clocked.url)
    quick = vast.rent(port_offer(vast)["id"], rent_body()).json()["new_contract"]
    slow = vast.rent(port_offer(vast)["id"], rent_body()).json()["new_contract"]
    clock.advance(5)
    assert vast.instance(quick)["actual_status"] == "running"  # type: ignore[index]
    assert vast.instance(slow)["actual_status"] == "loading"  # type: ignore[index]
    clock.advance(36)
    assert vast.instance(slow)["actual_status"] == "running"  # type: ignore[index]
