"""The search limits the real service documents: answers cut at a row cap (`truncated`), the
daily search row quota (429 `search_quota_exceeded` with `Retry-After`), the official client's
string-valued filters, external offers, the account record and the GPU name list."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.simulator.support import FakeClock, Vast, wait_for
from vastsim import SimulatorServer
from vastsim.offerset import generate_offers


@pytest.fixture
def capped() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=7, offers=300, search_row_cap=40, boot_seconds=(0.02, 0.04)) as server:
        yield server


def test_an_answer_over_the_row_cap_is_cut_and_says_truncated(capped: SimulatorServer) -> None:
    vast = Vast(capped.url)
    reply = vast.search({"limit": 10_000})
    assert reply.status == 200
    assert len(reply.json()["offers"]) == 40
    assert reply.json()["truncated"] is True


def test_an_answer_under_the_row_cap_is_whole_and_not_truncated(capped: SimulatorServer) -> None:
    vast = Vast(capped.url)
    few = vast.search({"gpu_name": {"eq": "H100 SXM"}, "limit": 10_000}).json()
    assert 0 < len(few["offers"]) < 40
    assert "truncated" not in few


def test_the_row_cap_counts_every_search_form(capped: SimulatorServer) -> None:
    vast = Vast(capped.url)
    asks = vast.call("PUT", "/api/v0/search/asks/", {"select_cols": ["*"], "q": {"limit": 500}}).json()
    assert len(asks["offers"]) == 40 and asks["truncated"] is True and asks["success"] is True


@pytest.fixture
def quota_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def quota(quota_clock: FakeClock) -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=7, offers=300, search_quota_rows=100, clock=quota_clock) as server:
        yield server


def test_the_search_quota_answers_429_with_retry_after_until_the_utc_day_ends(
        quota: SimulatorServer, quota_clock: FakeClock) -> None:
    vast = Vast(quota.url)
    assert vast.search({"limit": 60}).status == 200
    assert vast.search({"limit": 60}).status == 200  # started under the quota: answered whole
    refused = vast.search({"limit": 1})
    assert refused.status == 429
    assert refused.json() == {"success": False, "error": "search_quota_exceeded", "msg": refused.json()["msg"]}
    midnight = (int(quota_clock()) // 86_400 + 1) * 86_400
    assert int(refused.headers["X-RateLimit-Reset"]) == midnight
    assert int(refused.headers["Retry-After"]) == pytest.approx(midnight - quota_clock(), abs=1)
    quota_clock.advance(midnight - quota_clock() + 1)
    assert vast.search({"limit": 1}).status == 200


def test_the_quota_counts_rows_per_key(quota_clock: FakeClock) -> None:
    with SimulatorServer(seed=7, offers=300, search_quota_rows=50, clock=quota_clock) as sim:
        alice = Vast(sim.url, headers={"Authorization": "Bearer alice"})
        bob = Vast(sim.url, headers={"Authorization": "Bearer bob"})
        assert alice.search({"limit": 50}).status == 200
        assert alice.search({"limit": 1}).status == 429
        assert bob.search({"limit": 1}).status == 200
        assert sim.state()["search"]["used"] == {"alice": 50, "bob": 1}


def test_a_quota_period_of_seconds_and_exhausting_it_now_are_admin_settings(quota_clock: FakeClock) -> None:
    with SimulatorServer(seed=7, offers=300, clock=quota_clock) as sim:
        vast = Vast(sim.url)
        assert vast.admin("search_limits", {"quota_rows": 1000, "quota_period": 30}).status == 200
        assert vast.admin("search_limits/exhaust", {}).status == 200
        refused = vast.search({"limit": 1})
        assert refused.status == 429 and refused.headers["Retry-After"] == "30"
        quota_clock.advance(30)
        assert vast.search({"limit": 1}).status == 200
        assert vast.admin("search_limits", {"quota_rows": -1}).status == 400
        assert vast.admin("search_limits", {"row_cap": 0}).status == 400
        assert sim.state()["search"]["refused"] == 1


def test_a_refused_search_answers_nothing_and_counts_no_rows(quota: SimulatorServer) -> None:
    quota.search_limits.exhaust()
    vast = Vast(quota.url)
    assert vast.search({"limit": 5}).status == 429
    assert quota.state()["search"]["rows_served"] == 0


# --- the official client's filters ---------------------------------------------------------------

STRING_FILTERS = [
    ("num_gpus", {"num_gpus": {"eq": "1"}}, {"num_gpus": {"eq": 1}}),
    ("reliability", {"reliability": {"gt": "0.98"}}, {"reliability": {"gt": 0.98}}),
    ("gpu_ram in MB", {"gpu_ram": {"gte": "24000.0"}}, {"gpu_ram": {"gte": 24000}}),
    ("verified", {"verified": {"eq": "true"}}, {"verified": {"eq": True}}),
    ("rentable", {"rentable": {"eq": "True"}}, {"rentable": {"eq": True}}),
    ("gpu name with _", {"gpu_name": {"eq": "RTX_3060"}}, {"gpu_name": {"eq": "RTX 3060"}}),
    ("gpu names in", {"gpu_name": {"in": ["RTX_4090", "RTX_A4000"]}}, {"gpu_name": {"in": ["RTX 4090", "RTX A4000"]}}),
    ("num_gpus in", {"num_gpus": {"in": ["2", "4"]}}, {"num_gpus": {"in": [2, 4]}}),
    ("direct ports", {"direct_port_count": {"gte": "2"}}, {"direct_port_count": {"gte": 2}}),
    ("driver as a number", {"driver_version": {"gte": "535086005"}}, {"driver_version": {"gte": "535.86.05"}}),
]


@pytest.mark.parametrize("name,as_strings,typed", STRING_FILTERS, ids=[f[0] for f in STRING_FILTERS])
def test_string_valued_filters_match_like_typed_ones(vast: Vast, name: str, as_strings: dict[str, Any],
                                                     typed: dict[str, Any]) -> None:
    loose = {o["id"] for o in vast.offers(limit=10_000, **as_strings)}
    strict = {o["id"] for o in vast.offers(limit=10_000, **typed)}
    assert strict, f"{name}: the test market should have matches"
    assert loose == strict


@pytest.mark.parametrize("query", [{"num_gpus": {"eq": "one"}}, {"verified": {"eq": "maybe"}},
                                   {"dph_total": {"lte": "cheap"}}])
def test_a_string_that_is_no_value_of_the_field_is_a_400_naming_it(vast: Vast, query: dict[str, Any]) -> None:
    reply = vast.search(query)
    assert reply.status == 400
    assert next(iter(query)) in reply.json()["msg"]


def test_some_offers_are_external_and_the_cli_default_leaves_them_out(vast: Vast) -> None:
    every = vast.offers(limit=10_000)
    external = [o for o in every if o["external"]]
    assert 0 < len(external) < len(every) // 10
    internal = vast.offers(limit=10_000, external={"eq": False})
    assert len(internal) == len(every) - len(external)


def test_external_offers_do_not_change_the_rest_of_a_seeded_market() -> None:
    offers = generate_offers(5, 400)
    assert [{k: v for k, v in o.items() if k != "external"} for o in offers] == \
        [{k: v for k, v in o.items() if k != "external"} for o in generate_offers(5, 400)]
    assert any(o["external"] for o in offers)


# --- the account ---------------------------------------------------------------------------------

def test_users_current_answers_the_account_without_a_trailing_slash(vast: Vast) -> None:
    for path in ("/api/v0/users/current", "/api/v0/users/current/"):
        reply = vast.call("GET", path)
        assert reply.status == 200
        user = reply.json()
        assert user["id"] and user["credit"] == 100.0 and "api_key" not in user


def test_rentals_draw_the_balance_down(clock: FakeClock) -> None:
    with SimulatorServer(seed=7, offers=300, clock=clock, credit=50.0) as sim:
        vast = Vast(sim.url)
        offer = vast.offers(limit=1, direct_port_count={"gte": 0})[0]
        rented = vast.rent(offer["id"]).json()["new_contract"]
        price = sim.state()["instances"][0]["dph_total"]
        clock.advance(7200)
        assert vast.call("GET", "/api/v0/users/current").json()["credit"] == pytest.approx(50.0 - 2 * price)
        vast.destroy(rented)
        clock.advance(3600)  # destroyed: billed no more
        assert vast.call("GET", "/api/v0/users/current").json()["credit"] == pytest.approx(50.0 - 2 * price)


def test_gpu_names_lists_the_market_s_models_as_vast_spells_them(vast: Vast) -> None:
    names = vast.call("GET", "/api/v0/gpu_names/unique/").json()["gpu_names"]
    assert {"RTX 3060", "RTX A4000", "H100 SXM"} <= set(names)
    assert {o["gpu_name"] for o in vast.offers(limit=10_000)} <= set(names)


# --- content type --------------------------------------------------------------------------------

def test_a_body_without_the_json_content_type_is_not_seen(vast: Vast) -> None:
    filtered = vast.search({"gpu_name": {"eq": "RTX 3060"}, "limit": 10_000}).json()["offers"]
    unlabelled = vast.search({"gpu_name": {"eq": "RTX 3060"}, "limit": 10_000},
                             headers={"Content-Type": "text/plain"}).json()["offers"]
    assert {o["gpu_name"] for o in filtered} == {"RTX 3060"}
    assert len(unlabelled) > len(filtered), "the filters of an unlabelled body are not applied"
    refused = vast.rent(filtered[0]["id"], headers={"Content-Type": "text/plain"})
    assert (refused.status, refused.json()["error"]) == (400, "invalid_request")


# --- host ports ----------------------------------------------------------------------------------

def test_host_ports_lie_in_the_machine_s_direct_port_range(vast: Vast, sim: SimulatorServer) -> None:
    offers = vast.offers(limit=3, direct_port_count={"gte": 8}, order=[["dph_total", "asc"]])
    for offer in offers:
        env = {f"-p {port}:{port}": "1" for port in (8000, 8001, 9000)}
        instance_id = vast.rent(offer["id"], {"client_id": "me", "image": "x/y:1", "disk": 10, "env": env}).json()[
            "new_contract"]
        shown = wait_for(lambda: (i := vast.instance(instance_id)) and i["ports"] and i)
        first, last = shown["direct_port_start"], shown["direct_port_end"]
        assert last - first + 1 == offer["direct_port_count"]
        host_ports = [int(m[0]["HostPort"]) for m in shown["ports"].values()]
        assert len(set(host_ports)) == 3 and all(first <= p <= last for p in host_ports), (host_ports, first, last)
