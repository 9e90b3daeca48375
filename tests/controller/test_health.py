import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.health import HealthState, Probe, ProbeResult, check, probe_for
from devcluster import webhook_serving_cert

from .objects import june_pod

FAST = 0.2  # probe timeout where the test waits for it to run out (a server that never answers)
PATIENT = 10.0  # probe timeout where the server answers: generous, for a loaded machine


# --- probe_for ------------------------------------------------------------------------------------

def test_the_june_readiness_probe_is_kept_with_its_named_port_resolved():
    assert probe_for(june_pod()) == Probe(
        "http", 8000, path="/healthz", scheme="HTTP", period_seconds=10, timeout_seconds=2,
        failure_threshold=3, success_threshold=1, initial_delay_seconds=5)


@pytest.mark.parametrize("probe, expected", [
    ({"httpGet": {"port": 8001, "path": "/ready"}},
     Probe("http", 8001, path="/ready")),
    ({"httpGet": {"port": "stt", "path": "ready", "scheme": "HTTPS",
                  "httpHeaders": [{"name": "X-Probe", "value": "1"}, {"name": "Host", "value": "june.local"}]}},
     Probe("http", 8001, path="/ready", scheme="HTTPS", headers=(("X-Probe", "1"), ("Host", "june.local")))),
    ({"httpGet": {"port": 8000}}, Probe("http", 8000, path="/")),
    ({"tcpSocket": {"port": 8001}}, Probe("tcp", 8001)),
    ({"tcpSocket": {"port": "tts"}, "periodSeconds": 3, "failureThreshold": 1},
     Probe("tcp", 8000, period_seconds=3, failure_threshold=1)),
    ({"tcpSocket": {"port": "8001"}}, Probe("tcp", 8001)),
    ({"tcpSocket": {"port": 9090}}, Probe("tcp", 9090)),
], ids=["http number", "https named with headers", "http no path", "tcp number", "tcp named",
        "digits as a string", "undeclared port"])
def test_http_get_and_tcp_socket_probes_are_kept(probe, expected):
    assert probe_for(june_pod(readinessProbe=probe)) == expected


@pytest.mark.parametrize("timings, attribute, value", [
    ({}, "period_seconds", 10),
    ({"periodSeconds": 0}, "period_seconds", 10),
    ({"periodSeconds": -5}, "period_seconds", 10),
    ({"periodSeconds": "5"}, "period_seconds", 10),
    ({"timeoutSeconds": 0.2}, "timeout_seconds", 0.2),
    ({}, "timeout_seconds", 1),
    ({"successThreshold": 2}, "success_threshold", 2),
    ({"failureThreshold": True}, "failure_threshold", 3),
    ({"initialDelaySeconds": 0}, "initial_delay_seconds", 0),
    ({"initialDelaySeconds": 30}, "initial_delay_seconds", 30),
])
def test_probe_timings_default_like_the_api_server(timings, attribute, value):
    probe = probe_for(june_pod(readinessProbe={"tcpSocket": {"port": 8000}, **timings}))
    assert getattr(probe, attribute) == value


@pytest.mark.parametrize("kind", ["exec", "grpc"])
def test_exec_and_grpc_probes_fall_back_to_tcp_on_the_first_port_and_say_so(kind):
    raw = {"exec": {"command": ["cat", "/tmp/ready"]}} if kind == "exec" else {"grpc": {"port": 9000}}
    probe = probe_for(june_pod(readinessProbe={**raw, "periodSeconds": 5}))
    assert (probe.kind, probe.container_port, probe.period_seconds) == ("tcp", 8000, 5)
    assert probe.note == f"{kind} readiness probes cannot run on Vast: TCP connect to container port 8000 instead"


def test_an_exec_probe_without_ports_cannot_be_checked():
    probe = probe_for(june_pod(readinessProbe={"exec": {"command": ["true"]}}, ports=None))
    assert probe.kind == "none" and "exec readiness probes cannot run on Vast" in (probe.note or "")


@pytest.mark.parametrize("ports, expected", [
    ([{"containerPort": 8001, "name": "stt"}, {"containerPort": 8000}], Probe("tcp", 8001)),
    ([{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 8000}], Probe("tcp", 8000)),
])
def test_without_a_readiness_probe_the_first_tcp_port_is_checked_with_default_timings(ports, expected):
    probe = probe_for(june_pod(readinessProbe=None, ports=ports))
    assert probe == Probe(expected.kind, expected.container_port, note=probe.note)
    assert (probe.period_seconds, probe.timeout_seconds, probe.failure_threshold, probe.success_threshold) \
        == (10, 1, 3, 1)


@pytest.mark.parametrize("ports", [None, [], [{"containerPort": 53, "protocol": "UDP"}]],
                         ids=["no ports", "empty", "only udp"])
def test_without_a_probe_or_tcp_port_there_is_nothing_to_check(ports):
    probe = probe_for(june_pod(readinessProbe=None, ports=ports))
    assert probe.kind == "none" and probe.container_port is None
    assert check(probe, "127.0.0.1", 1) == ProbeResult(True, probe.note or "")


@pytest.mark.parametrize("port, fragment", [
    ("metrics", "readiness probe port 'metrics' is not a named TCP port of the container"),
    (0, "is not a valid port"),
    (70000, "is not a valid port"),
    (None, "is not a valid port"),
])
def test_a_probe_port_that_does_not_resolve_can_never_succeed(port, fragment):
    probe = probe_for(june_pod(readinessProbe={"httpGet": {"port": port, "path": "/"}}))
    assert probe.kind == "http" and probe.container_port is None
    assert fragment in (probe.note or "")
    assert check(probe, "127.0.0.1", 8000) == ProbeResult(False, probe.note or "")


def test_a_named_udp_port_does_not_resolve():
    pod = june_pod(ports=[{"name": "dns", "containerPort": 53, "protocol": "UDP"}],
                   readinessProbe={"tcpSocket": {"port": "dns"}})
    assert probe_for(pod).container_port is None


def test_the_http_host_field_is_ignored_with_a_note():
    probe = probe_for(june_pod(readinessProbe={"httpGet": {"port": 8000, "host": "10.0.0.1"}}))
    assert probe.container_port == 8000 and "httpGet.host is ignored" in (probe.note or "")


@pytest.mark.parametrize("probe, text", [
    (Probe("http", 8000, path="/healthz"), "http-get HTTP :8000/healthz"),
    (Probe("tcp", 8001), "tcp-socket :8001"),
    (Probe("tcp", None), "tcp-socket :?"),
    (Probe("none"), "none"),
])
def test_a_probe_describes_itself(probe, text):
    assert probe.describe() == text


# --- check against real loopback servers -----------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []


@contextlib.contextmanager
def http_server(status: int = 200, body: bytes = b"ok", *, tls_dir: Any = None,
                headers: dict[str, str] | None = None) -> Iterator[tuple[int, Recorder]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            recorder.requests.append((self.path, {k: v for k, v in self.headers.items()}))
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls_dir is not None:
        cert, key, _ = webhook_serving_cert(tls_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """Accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_probe(**kwargs: Any) -> Probe:
    return Probe("http", 8000, **{"path": "/healthz", "timeout_seconds": PATIENT, **kwargs})


@pytest.mark.parametrize("status, ok", [(200, True), (204, True), (301, True), (399, True),
                                        (400, False), (404, False), (500, False), (503, False)])
def test_http_succeeds_on_200_to_399_like_the_kubelet(status, ok):
    with http_server(status, b"") as (port, _):
        result = check(http_probe(), "127.0.0.1", port)
    assert result.ok is ok
    assert f"GET http://127.0.0.1:{port}/healthz" in result.message


def test_a_503_fails_with_the_status_and_the_start_of_the_body():
    with http_server(503, b"model still loading " + b"x" * 5000) as (port, _):
        result = check(http_probe(), "127.0.0.1", port)
    assert not result.ok
    assert "HTTP probe failed with statuscode: 503: model still loading" in result.message
    assert len(result.message) < 1200


def test_a_redirect_is_a_success_and_is_not_followed():
    with http_server(302, b"", headers={"Location": "http://192.0.2.1/elsewhere"}) as (port, recorder):
        result = check(http_probe(), "127.0.0.1", port)
    assert result.ok and len(recorder.requests) == 1


def test_the_probe_sends_its_path_and_headers():
    probe = http_probe(path="/healthz?full=1", headers=(("X-Probe", "kube-vast"), ("Host", "june.local")))
    with http_server() as (port, recorder):
        assert check(probe, "127.0.0.1", port).ok
    path, headers = recorder.requests[0]
    assert path == "/healthz?full=1"
    assert headers["X-Probe"] == "kube-vast" and headers["Host"] == "june.local"
    assert headers["User-Agent"].startswith("kube-probe/")


def test_the_host_header_defaults_to_the_probed_address():
    with http_server() as (port, recorder):
        check(http_probe(), "127.0.0.1", port)
    assert recorder.requests[0][1]["Host"] == f"127.0.0.1:{port}"


def test_https_is_probed_without_verifying_the_certificate(tmp_path):
    with http_server(tls_dir=tmp_path) as (port, recorder):
        result = check(http_probe(scheme="HTTPS"), "127.0.0.1", port)
    assert result.ok, result.message
    assert "GET https://127.0.0.1" in result.message and len(recorder.requests) == 1


def test_plain_http_against_an_https_server_fails_without_raising(tmp_path):
    with http_server(tls_dir=tmp_path) as (port, _):
        assert not check(http_probe(), "127.0.0.1", port).ok


@pytest.mark.parametrize("kind", ["http", "tcp"])
def test_a_closed_port_fails_with_the_reason(kind):
    port = closed_port()
    result = check(Probe(kind, 8000, timeout_seconds=FAST), "127.0.0.1", port)
    assert not result.ok
    assert "refused" in result.message.lower()


def test_a_server_that_never_answers_times_out_within_the_probe_timeout():
    with silent_server() as port:
        started = time.monotonic()
        result = check(http_probe(timeout_seconds=FAST), "127.0.0.1", port)
        elapsed = time.monotonic() - started
    assert not result.ok
    assert result.message == f"GET http://127.0.0.1:{port}/healthz: timed out after 0.2s"
    # It waited the timeout, then gave up (the server never answers: without the timeout the probe
    # would hang; the upper bound is loose on purpose, for a loaded machine).
    assert FAST * 0.9 <= elapsed < 30


def test_a_tcp_probe_succeeds_once_the_port_accepts_connections():
    with silent_server() as port:
        result = check(Probe("tcp", 8000, timeout_seconds=FAST), "127.0.0.1", port)
    assert result == ProbeResult(True, f"TCP connect to 127.0.0.1:{port} succeeded")


@pytest.mark.parametrize("probe, port", [
    (Probe("tcp", 8000, timeout_seconds=FAST), 70000),
    (Probe("http", 8000, timeout_seconds=FAST), -1),
    (Probe("http", 8000, timeout_seconds=FAST, headers=(("X-Bad", "a\r\nInjected: 1"),)), None),
    (Probe("http", 8000, timeout_seconds=FAST, path="/with space"), None),
], ids=["port out of range", "negative port", "header injection", "space in path"])
def test_bad_input_fails_the_probe_instead_of_raising(probe, port):
    with http_server() as (live, _):
        result = check(probe, "127.0.0.1", live if port is None else port)
    assert not result.ok and result.message


# --- HealthState ------------------------------------------------------------------------------------

def state(**probe: Any) -> HealthState:
    return HealthState(Probe("tcp", 8000, **probe), now=100.0)


@pytest.mark.parametrize("thresholds, results, readiness", [
    ({}, [True], [True]),
    ({}, [False, False, False], [False, False, False]),
    ({}, [True, False, False, False], [True, True, True, False]),
    ({}, [True, False, False, True, False, False, False], [True, True, True, True, True, True, False]),
    ({"success_threshold": 2}, [True, False, True, True], [False, False, False, True]),
    ({"failure_threshold": 1}, [True, False, True], [True, False, True]),
    ({"success_threshold": 3, "failure_threshold": 2}, [True] * 3 + [False] * 2 + [True] * 2,
     [False, False, True, True, False, False, False]),
], ids=["one success", "failing from the start", "three failures", "interrupted failures",
        "two successes needed", "one failure enough", "both thresholds"])
def test_readiness_follows_consecutive_results_and_thresholds(thresholds, results, readiness):
    health = state(**thresholds)
    assert [health.observe(ok, 100.0 + 10 * i) for i, ok in enumerate(results)] == readiness


def test_the_state_counts_and_remembers_the_last_message():
    health = state()
    health.observe(True, 100.0, "ok")
    health.observe(False, 110.0, "refused")
    health.observe(False, 120.0, "timed out")
    assert (health.ready, health.consecutive_failures, health.consecutive_successes) == (True, 2, 0)
    assert health.last_message == "timed out"


def test_results_before_the_initial_delay_are_ignored():
    health = state(initial_delay_seconds=30)
    assert not health.due(129.9)
    assert health.observe(True, 110.0) is False
    assert health.consecutive_successes == 0 and health.last_probe_at is None
    assert health.due(130.0)
    assert health.observe(True, 130.0) is True


def test_probes_are_due_once_per_period():
    health = state(period_seconds=10)
    assert health.due(100.0)
    health.observe(True, 100.0)
    assert not health.due(109.9)
    assert health.due(110.0)


def test_a_new_state_is_not_ready():
    assert state().ready is False


@given(st.integers(1, 4), st.integers(1, 4), st.lists(st.booleans(), max_size=40))
def test_readiness_changes_only_after_a_full_run_of_results(success_threshold, failure_threshold, results):
    health = state(success_threshold=success_threshold, failure_threshold=failure_threshold)
    before = False
    for i, ok in enumerate(results):
        after = health.observe(ok, 100.0 + i)
        assert health.consecutive_successes == 0 or health.consecutive_failures == 0
        if after and not before:
            assert ok and health.consecutive_successes >= success_threshold
        if before and not after:
            assert not ok and health.consecutive_failures >= failure_threshold
        if health.consecutive_successes >= success_threshold:
            assert after
        if health.consecutive_failures >= failure_threshold:
            assert not after
        before = after
