"""The client and Vast's search limits, over real HTTP: the JSON content type on every body, the
search quota never retried, `Retry-After` honoured, truncated answers noticed, the GPU names.

Most run against the simulator; the `Retry-After` cases use a small loopback server that answers
what the simulator never does (a 429 *with* `Retry-After` outside the quota)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from vastmarket.client import ApiKey, RetryPolicy, VastClient, broad_query
from vastmarket.errors import RateLimited, SearchQuotaExceeded
from vastmarket.instances import RentRequest
from vastsim import SimulatorServer

from .conftest import API_KEY


def test_a_filtered_search_is_filtered_because_the_body_says_it_is_json(client: VastClient) -> None:
    found = client.search_offers({**broad_query(), "gpu_name": {"eq": "RTX 3060"}}, limit=10_000)
    assert found.offers and {o.gpu_name for o in found.offers} == {"RTX 3060"}


def test_the_quota_answer_is_never_retried_and_says_when_to_search_again(
        client: VastClient, sim: SimulatorServer, sleeps: list[float]) -> None:
    sim.search_limits.configure(quota_rows=5, quota_period=600)
    client.search_offers(broad_query(), limit=5)
    calls = sim.state()["counters"]["calls"]["search"]
    with pytest.raises(SearchQuotaExceeded) as info:
        client.search_offers(broad_query(), limit=5)
    assert sim.state()["counters"]["calls"]["search"] == calls + 1, "no retry of a quota answer"
    assert sleeps == []
    assert info.value.retry_after == pytest.approx(600, abs=5)
    assert "search quota" in str(info.value) and API_KEY not in str(info.value)


def test_a_truncated_answer_is_noticed(sim: SimulatorServer, client: VastClient) -> None:
    sim.search_limits.configure(row_cap=25)
    assert client.search_offers(broad_query(), limit=10_000).truncated is True
    assert client.search_offers({**broad_query(), "gpu_name": {"eq": "H100 SXM"}}, limit=10_000).truncated is False


def test_the_gpu_names_are_vasts_spellings(client: VastClient) -> None:
    names = client.gpu_names()
    assert "RTX 3060" in names and "RTX A4000" in names
    assert {o.gpu_name for o in client.search_offers(broad_query(), limit=10_000).offers} <= set(names)


# --- a loopback server for what the simulator does not send ------------------------------------

class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    answers: list[tuple[int, dict[str, str], bytes]] = []
    seen: list[tuple[str, str, str | None]] = []

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.command, self.path, self.headers.get("Content-Type")))
        status, headers, body = type(self).answers.pop(0) if type(self).answers else (200, {}, b'{"offers": []}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Recorder", (_Recorder,), {"answers": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_every_body_goes_with_the_json_content_type(recorder: tuple[str, type[_Recorder]]) -> None:
    url, handler = recorder
    handler.answers = [(200, {}, b'{"offers": []}'), (200, {}, b'{"success": true, "new_contract": 7}'),
                       (200, {}, b'{"success": true}'), (200, {}, b'{"success": true}'), (200, {}, b'{"success": true}')]
    client = VastClient(url, ApiKey("k"))
    client.search_offers(broad_query())
    client.rent(1, RentRequest(image="x", label="kv:t:1"))
    client.relabel(7, "y")
    client.stop(7)
    client.destroy(7)
    assert [(m, t) for m, _, t in handler.seen] == [(m, "application/json") for m in ("POST", "PUT", "PUT", "PUT", "DELETE")]


def test_a_429_with_retry_after_waits_that_long(recorder: tuple[str, type[_Recorder]]) -> None:
    url, handler = recorder
    handler.answers = [(429, {"Retry-After": "3"}, b'{"detail": "API requests too frequent"}'),
                       (200, {}, b'{"offers": []}')]
    sleeps: list[float] = []
    client = VastClient(url, None, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05), sleep=sleeps.append)
    assert client.search_offers(broad_query()).offers == ()
    assert sleeps == [3.0]


def test_a_retry_after_too_long_to_wait_inline_is_raised_with_its_wait(recorder: tuple[str, type[_Recorder]]) -> None:
    url, handler = recorder
    handler.answers = [(429, {"Retry-After": "7200"}, b"API requests too frequent")]
    sleeps: list[float] = []
    client = VastClient(url, None, sleep=sleeps.append)
    with pytest.raises(RateLimited) as info:
        client.list_instances()
    assert info.value.retry_after == 7200 and sleeps == [] and len(handler.seen) == 1


def test_a_quota_answer_without_retry_after_falls_back_to_the_reset_header(
        recorder: tuple[str, type[_Recorder]]) -> None:
    url, handler = recorder
    body = json.dumps({"success": False, "error": "search_quota_exceeded", "msg": "quota"}).encode()
    handler.answers = [(429, {"X-RateLimit-Reset": "1000600"}, body)]
    client = VastClient(url, None, clock=lambda: 1_000_000.0)
    with pytest.raises(SearchQuotaExceeded) as info:
        client.search_offers(broad_query())
    assert info.value.retry_after == 600
