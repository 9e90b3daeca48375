import logging
import socket
import time
import urllib.request

import pytest

from tests.contract.conftest import API_KEY
from vastmarket.client import ApiKey, RetryPolicy, VastClient, broad_query
from vastmarket.errors import (
    AuthenticationFailed, OfferGone, RateLimited, VastRejected, VastUnavailable,
)
from vastmarket.instances import RentRequest


def wait_for(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def rent_request(label="kv:test:pod-1", ports=(8000,)):
    return RentRequest(image="ghcr.io/example/speech:1.0", label=label, disk_gb=10, ports=ports,
                       env={"MODEL": "small"})


def cheapest(client, **filters):
    query = {**broad_query(), "direct_port_count": {"gte": 2}, **filters}
    return client.search_offers(query, order=[("dph_total", "asc")], limit=5).offers[0]


def test_search_returns_parsed_offers_with_filters_order_and_limit(client):
    found = client.search_offers({**broad_query(), "gpu_name": {"in": ["RTX 3060", "RTX 4090"]},
                                  "dph_total": {"lte": 1.0}}, order=[("dph_total", "asc")], limit=20)
    assert 0 < len(found.offers) <= 20
    assert {o.gpu_name for o in found.offers} <= {"RTX 3060", "RTX 4090"}
    prices = [o.dph_total for o in found.offers]
    assert prices == sorted(prices) and max(prices) <= 1.0
    assert found.dropped == 0


def test_the_broad_search_sees_every_rentable_offer_but_external_ones_by_default(client):
    everything = client.search_offers({}, limit=10_000).offers
    external = {o.id for o in client.search_offers({"external": {"eq": True}}, limit=10_000).offers}
    rentable = {o.id for o in everything if o.rentable and not o.rented}
    broad = client.search_offers(broad_query(), limit=10_000).offers
    assert external and {o.id for o in broad} == rentable - external
    assert len(broad) < len(everything), "the simulator also offers machines that are not rentable"
    with_external = client.search_offers(broad_query(include_external=True), limit=10_000).offers
    assert {o.id for o in with_external} == rentable


def test_an_offer_is_looked_up_by_id_and_is_gone_once_rented(client):
    offer = cheapest(client)
    assert client.get_offer(offer.id).id == offer.id
    client.rent(offer.id, rent_request())
    assert client.get_offer(offer.id) is None


def test_a_rented_instance_goes_from_provisioning_to_running_with_real_ports(client):
    offer = cheapest(client)
    instance_id = client.rent(offer.id, rent_request(ports=(8000, 8001)))
    first = client.get_instance(instance_id)
    assert first is not None and first.pending and first.ports == {}
    running = wait_for(lambda: (i := client.get_instance(instance_id)) and i.running and i)
    assert running.public_ip == "127.0.0.1"  # Vast pads it with whitespace; the client strips it
    assert set(running.ports) >= {8000, 8001}
    assert running.label == "kv:test:pod-1" and running.dph_total == pytest.approx(offer.dph_total, rel=0.05)
    with urllib.request.urlopen(f"http://127.0.0.1:{running.ports[8000]}/healthz", timeout=5) as reply:
        assert reply.status == 200


def test_destroy_closes_the_ports_and_a_second_destroy_counts_as_done(client, sim):
    instance_id = client.rent(cheapest(client).id, rent_request())
    running = wait_for(lambda: (i := client.get_instance(instance_id)) and i.running and i)
    client.destroy(instance_id)
    client.destroy(instance_id)  # no_such_instance is success
    assert client.get_instance(instance_id) is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", running.ports[8000]), timeout=1).close()
    assert sim.state()["counters"]["live_instances"] == 0


def test_instances_are_listed_across_pages_and_filtered_by_label(client):
    offers = client.search_offers({**broad_query(), "direct_port_count": {"gte": 1}},
                                  order=[("dph_total", "asc")], limit=30).offers
    for n, offer in enumerate(offers):
        client.rent(offer.id, rent_request(label="kv:c1:mine" if n % 3 == 0 else "other", ports=()))
    everything = client.list_instances()
    assert len(everything) == 30 and len({i.id for i in everything}) == 30
    mine = client.list_instances(label="kv:c1:mine")
    assert len(mine) == 10 and all(i.label == "kv:c1:mine" for i in mine)


def test_relabel_changes_the_label_seen_in_listings(client):
    instance_id = client.rent(cheapest(client).id, rent_request(label="before"))
    client.relabel(instance_id, "after")
    assert [i.id for i in client.list_instances(label="after")] == [instance_id]


@pytest.mark.parametrize("status", [404, 410])
def test_renting_a_vanished_offer_raises_offer_gone(client, sim, status):
    offer = cheapest(client)
    sim.faults.vanish_next_rent(status=status)
    with pytest.raises(OfferGone) as info:
        client.rent(offer.id, rent_request())
    assert info.value.error == "no_such_ask"
    assert sim.state()["counters"]["live_instances"] == 0


@pytest.mark.parametrize("body", ["text", "detail", "error"])
def test_429_is_retried_with_backoff_whatever_the_body(client, sim, sleeps, body):
    sim.faults.fail_next("search", status=429, count=2, body=body)
    assert client.search_offers(broad_query(), limit=3).offers
    assert len(sleeps) == 2 and all(0 <= s <= 0.05 for s in sleeps)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_on_reads_are_retried(client, sim, status):
    instance_id = client.rent(cheapest(client).id, rent_request())
    sim.faults.fail_next("get_instance", status=status, count=3)
    assert client.get_instance(instance_id).id == instance_id


def test_retries_are_bounded_and_end_in_a_clear_error(client, sim, sleeps):
    sim.faults.fail_next("search", status=429, count=10)
    with pytest.raises(RateLimited, match="still rate limited after 4 attempts"):
        client.search_offers(broad_query())
    assert len(sleeps) == 3
    sim.faults.clear()
    sim.faults.fail_next("list_instances", status=503, count=10)
    with pytest.raises(VastUnavailable, match="HTTP 503 after 4 attempts"):
        client.list_instances()


def test_a_rate_limited_rent_is_retried_because_vast_did_not_act(client, sim):
    sim.faults.fail_next("create", status=429, count=1)
    instance_id = client.rent(cheapest(client).id, rent_request())
    states = sim.state()
    assert states["counters"]["rentals"] == 1 and states["instances"][0]["id"] == instance_id


def test_a_gateway_error_on_rent_is_not_retried_and_is_marked_uncertain(client, sim):
    sim.faults.fail_next("create", status=503, count=1)
    with pytest.raises(VastUnavailable) as info:
        client.rent(cheapest(client).id, rent_request())
    assert info.value.uncertain is True


def test_a_refused_rent_carries_vasts_message(client, sim):
    offer = client.search_offers({**broad_query(), "direct_port_count": {"eq": 0}}, limit=1).offers[0]
    with pytest.raises(VastRejected) as info:
        client.rent(offer.id, rent_request(ports=(8000, 8001)))
    assert info.value.status == 400 and info.value.error == "invalid_args"


def test_a_wrong_key_is_refused_and_never_echoed(sim, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "vast_api_key_WRONG_value_42"
    client = VastClient(sim.url, ApiKey(wrong), retry=RetryPolicy(attempts=1))
    with pytest.raises(AuthenticationFailed) as info:
        client.search_offers(broad_query())
    assert wrong not in str(info.value) and wrong not in repr(info.value)
    assert wrong not in caplog.text and API_KEY not in caplog.text


def test_the_key_never_reaches_the_logs_during_retries(client, sim, caplog):
    caplog.set_level(logging.DEBUG)
    sim.faults.fail_next("search", status=503, count=2)
    client.search_offers(broad_query(), limit=1)
    assert "retrying" in caplog.text and API_KEY not in caplog.text


def test_connection_refused_is_unavailable_after_bounded_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = []
    client = VastClient(f"http://127.0.0.1:{port}", None, retry=RetryPolicy(attempts=3, base_delay=0.01),
                        sleep=sleeps.append)
    with pytest.raises(VastUnavailable, match="after 3 attempts"):
        client.search_offers(broad_query())
    assert len(sleeps) == 2


def test_a_connection_failure_during_rent_is_uncertain():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = VastClient(f"http://127.0.0.1:{port}", None, retry=RetryPolicy(attempts=2, base_delay=0.01),
                        sleep=lambda s: None)
    with pytest.raises(VastUnavailable):
        client.rent(1, rent_request())


def test_the_entrypoint_args_and_image_login_reach_vast_and_the_password_stays_out_of_sight(client, sim, caplog):
    caplog.set_level(logging.DEBUG)
    offer = cheapest(client)
    request = RentRequest(image="ghcr.io/example/speech:1.0", label="kv:test:entrypoint", disk_gb=10, ports=(8000,),
                          env={"MODEL": "small"}, onstart="/usr/local/bin/serve", args=("--port", "8000"),
                          image_login="-u june -p pa55word-secret ghcr.io")
    assert "pa55word-secret" not in repr(request) and "MODEL" not in repr(request)
    instance_id = client.rent(offer.id, request)
    [record] = [i for i in sim.state()["instances"] if i["id"] == instance_id]
    assert (record["onstart"], record["args"], record["image_login_registry"]) == (
        "/usr/local/bin/serve", ["--port", "8000"], "ghcr.io")
    assert "pa55word-secret" not in caplog.text


@pytest.mark.parametrize("change, fragment", [
    ({"disk_gb": 4}, "at least 8 GB"),
    ({"env": {"LONG": "x" * 257}}, "at most 256 per value"),
    ({"env": {f"V{i}": "x" * 250 for i in range(140)}}, "at most 32768 bytes in all"),
    ({"onstart": "/bin/sh", "args": ("-c", "x" * 4090)}, "Vast allows at most 4096 characters"),
], ids=["disk", "env value", "env total", "command line"])
def test_a_request_over_vasts_limits_is_refused_before_it_is_sent(client, sim, change, fragment):
    before = sim.state()["counters"]["calls"].get("create", 0)
    fields = {"image": "ghcr.io/example/speech:1.0", "label": "kv:test:limits", "disk_gb": 10, **change}
    with pytest.raises(VastRejected, match=fragment) as info:
        client.rent(cheapest(client).id, RentRequest(**fields))
    assert info.value.error == "invalid_args" and "xxxx" not in str(info.value)
    assert sim.state()["counters"]["calls"].get("create", 0) == before
