"""The server shell: authentication, routing, robustness, clean stop, and the command line."""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.simulator.support import Vast, call, host_port, port_offer, refuses, rent_running, wait_for
from vastsim import SimulatorServer
from vastsim.cli import DEFAULT_PORT, add_arguments, limits, run
from vastsim.faults import THRESHOLDS

KEY = "s3cret-key-0123"
AUTH_ERROR = {"success": False, "error": "auth_error", "msg": "Invalid user key"}


@pytest.fixture
def guarded() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=2, offers=100, api_key=KEY, boot_seconds=(0.02, 0.04)) as server:
        yield server


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer"}],
)
def test_a_request_without_the_right_key_is_a_401(guarded: SimulatorServer, headers: dict[str, str]) -> None:
    reply = call("POST", f"{guarded.url}/api/v0/bundles/", {}, headers=headers)
    assert reply.status == 401
    assert reply.json() == AUTH_ERROR


def test_a_bearer_key_is_accepted(guarded: SimulatorServer) -> None:
    vast = Vast(guarded.url, headers={"Authorization": f"Bearer {KEY}"})
    assert vast.search({"limit": 1}).status == 200


def test_the_legacy_api_key_parameter_is_accepted(guarded: SimulatorServer) -> None:
    assert call("GET", f"{guarded.url}/api/v1/instances/?api_key={KEY}").status == 200


def test_admin_routes_need_no_vast_key(guarded: SimulatorServer) -> None:
    assert call("GET", f"{guarded.url}/_sim/state").status == 200


def test_the_key_is_never_logged_nor_echoed(guarded: SimulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vastsim")
    bearer = Vast(guarded.url, headers={"Authorization": f"Bearer {KEY}"})
    instance = rent_running(bearer)
    replies = [
        call("GET", f"{guarded.url}/api/v0/instances/{instance['id']}/?api_key={KEY}"),
        call("GET", f"{guarded.url}/api/v0/nowhere/?api_key={KEY}"),
        call("GET", f"{guarded.url}/api/v1/instances/?api_key={KEY}&limit=bad"),
        call("GET", f"{guarded.url}/_sim/state"),
        call("POST", f"{guarded.url}/api/v0/bundles/?api_key=nope", {}),
    ]
    assert all(KEY not in reply.text for reply in replies)
    assert caplog.records, "the simulator logs requests at debug level"
    assert KEY not in caplog.text


# --- routing -----------------------------------------------------------------------------------


def test_an_unknown_path_is_a_json_404(vast: Vast) -> None:
    reply = vast.call("GET", "/api/v0/machines/")
    assert reply.status == 404 and reply.content_type == "application/json"


def test_a_path_without_its_trailing_slash_is_a_404_with_a_hint(vast: Vast) -> None:
    reply = vast.call("POST", "/api/v0/bundles", {})
    assert reply.status == 404
    assert "end in '/'" in reply.json()["msg"]


def test_a_wrong_method_is_a_405(vast: Vast) -> None:
    assert vast.call("PATCH", "/api/v0/bundles/", {}).status == 405


def test_a_chunked_body_is_refused_cleanly(sim: SimulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=2.0) as conn:
        conn.sendall(
            b"POST /api/v0/bundles/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        )
        head = conn.recv(200)
    assert head.startswith(b"HTTP/1.0 411")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["gpu_name", "num_gpus", "verified", "geolocation", "order", "limit", "type", "dph_total",
                          "allocated_storage", "driver_version", "image", "env", "label", "disk", "price", "args",
                          "runtype", "state", "select_filters", "order_by", "after_token"])
BODIES = JSON | st.dictionaries(FIELDS, JSON | st.dictionaries(st.sampled_from(["eq", "gt", "in", "x"]), JSON), max_size=5)


@pytest.fixture(scope="module")
def shared() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=5, offers=150, boot_seconds=(0.02, 0.04)) as server:
        yield server


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, route=st.sampled_from(["search", "create", "update", "list"]))
def test_no_request_body_yields_a_5xx(shared: SimulatorServer, body: Any, route: str) -> None:
    vast = Vast(shared.url)
    if route == "search":
        reply = vast.search(body)
    elif route == "create":
        reply = vast.rent(port_offer(vast)["id"], body)
    elif route == "update":
        reply = vast.update(20_000_001, body)
    else:
        params = body if isinstance(body, dict) else {"select_filters": body}
        reply = vast.list(**{k: v for k, v in params.items() if isinstance(k, str)})
    assert reply.status < 500, reply.text
    if reply.status >= 400:
        assert reply.json()["msg"]
    instance_id = reply.json().get("new_contract") if reply.status == 200 and route == "create" else None
    if instance_id is not None:
        vast.destroy(instance_id)


# --- lifecycle of the server -------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count descriptors")
def request_threads_of_other_servers_ended() -> bool:
    return not any("process_request" in t.name for t in threading.enumerate())


def test_stop_closes_every_socket_and_joins_every_thread() -> None:
    wait_for(request_threads_of_other_servers_ended)  # a baseline free of other tests' last requests
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    sim = SimulatorServer(seed=9, offers=100, boot_seconds=(0.02, 0.04)).start()
    vast = Vast(sim.url)
    instances = [rent_running(vast, env={"-p 8000:8000": "1", "-p 9000:9000/udp": "1"}) for _ in range(2)]
    vast.admin("faults/health", {"instance_id": instances[0]["id"], "mode": "hang"})
    hanging = socket.create_connection(("127.0.0.1", host_port(instances[0])), timeout=2.0)
    hanging.sendall(b"GET / HTTP/1.1\r\n\r\n")
    vast.admin("faults/latency", {"endpoint": "search", "seconds": 300})
    searches = sim.state()["counters"]["calls"].get("search", 0)
    slow = threading.Thread(target=lambda: vast.search({"limit": 1}, timeout=600))
    slow.start()
    # The slow search has reached the simulator (it is counted before its latency wait).
    wait_for(lambda: sim.state()["counters"]["calls"].get("search", 0) > searches, timeout=30)
    ports = [sim.port] + [host_port(i) for i in instances]
    started = time.monotonic()
    sim.stop()
    # Far below the 300 s of injected latency: stop() does not wait it out (a loose bound on purpose).
    assert time.monotonic() - started < 60, "stop() does not wait out injected latency"
    slow.join(timeout=5.0)
    hanging.close()
    assert all(refuses(port) for port in ports)
    assert set(threading.enumerate()) == threads_before
    assert open_fds() == fds_before
    sim.stop()  # idempotent


@pytest.mark.parametrize("boot", [(2.0, 1.0), (-1.0, 1.0)])
def test_boot_seconds_must_run_forward(boot: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        SimulatorServer(offers=1, boot_seconds=boot)


def test_the_url_is_unknown_before_start_and_a_server_starts_once() -> None:
    sim = SimulatorServer(offers=10)
    with pytest.raises(RuntimeError):
        _ = sim.url
    with sim:
        assert sim.url == f"http://127.0.0.1:{sim.port}"
        with pytest.raises(RuntimeError):
            sim.start()
    with pytest.raises(RuntimeError):
        sim.start()


# --- command line ------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_command_line_has_sensible_defaults() -> None:
    args = parse()
    assert (args.host, args.port, args.seed, args.offers) == ("127.0.0.1", DEFAULT_PORT, 0, 500)
    assert args.boot_seconds == (1.0, 2.0) and args.api_key_file is None


def test_boot_seconds_are_given_as_seconds_to_loading_comma_to_running() -> None:
    assert parse("--boot-seconds", "0.5,3").boot_seconds == (0.5, 3.0)
    for bad in ("1", "a,b", "-1,2", "3,1"):
        with pytest.raises(SystemExit):
            parse("--boot-seconds", bad)


def test_rate_limits_are_given_as_endpoint_equals_seconds() -> None:
    assert dict(parse("--rate-limit", "create=4.5", "--rate-limit", "search=6").rate_limit) == {"create": 4.5, "search": 6.0}
    for bad in ("create", "creat=1", "create=soon", "create=-1"):
        with pytest.raises(SystemExit):
            parse("--rate-limit", bad)


def test_rate_limits_can_be_on_from_the_start() -> None:
    with SimulatorServer(offers=20, rate_limits={"list_instances": 60}) as sim:
        vast = Vast(sim.url)
        assert [vast.list().status for _ in range(2)] == [200, 429]
        assert vast.list().text.startswith("API requests too frequent")


def test_the_published_minimum_intervals_are_a_mode_single_endpoints_override() -> None:
    options = limits(parse("--published-rate-limits", "--rate-limit", "create=1"))
    assert options["rate_limits"] == {**THRESHOLDS, "create": 1.0}
    assert limits(parse())["rate_limits"] == {}
    with SimulatorServer(offers=20, **options) as sim:
        vast = Vast(sim.url)
        first, second = vast.search({"limit": 1}), vast.search({"limit": 1})
        assert (first.status, second.status) == (200, 429)
        assert second.text == "API requests too frequent endpoint threshold=6" and "Retry-After" not in second.headers


def test_the_search_limits_and_the_credit_are_flags() -> None:
    options = limits(parse("--search-row-cap", "200", "--search-quota", "100000", "--credit", "25"))
    assert (options["search_row_cap"], options["search_quota_rows"], options["credit"]) == (200, 100_000, 25.0)
    with SimulatorServer(offers=300, **options) as sim:
        assert sim.state()["search"]["row_cap"] == 200 and sim.state()["search"]["quota_rows"] == 100_000
        assert Vast(sim.url).call("GET", "/api/v0/users/current").json()["credit"] == 25.0


def test_run_refuses_a_missing_key_file(tmp_path: Path) -> None:
    assert run(parse("--port", "0", "--api-key-file", str(tmp_path / "absent"))) == 2


def test_python_m_serves_until_sigterm_then_stops_cleanly(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vastsim", "--port", "0", "--offers", "50", "--api-key-file", str(key_file),
         "--boot-seconds", "0.02,0.04"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line_containing(proc, "listening on ", timeout=15.0)
        url = line.split("listening on ", 1)[1].split()[0]
        vast = Vast(url, headers={"Authorization": f"Bearer {KEY}"})
        instance = rent_running(vast)
        assert call("POST", f"{url}/api/v0/bundles/", {}).status == 401
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=10.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "stopped" in rest
    assert KEY not in line + rest
    assert refuses(host_port(instance))


def read_line_containing(proc: subprocess.Popen[str], text: str, *, timeout: float) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=deadline - time.monotonic()):
                line = proc.stderr.readline()
                if text in line:
                    return line
                if not line:
                    break
    raise AssertionError(f"the simulator never logged {text!r}")

