"""Parsing requests to the virtual node's kubelet API: routes, PodLogOptions as the kubelet reads
them, and the answers for what is refused."""

from __future__ import annotations

import datetime as dt

import pytest

from controller.kubelet_requests import (
    KubeletRequestError, LogOptions, LogRequest, PodRef, Unsupported, parse_log_options, parse_request,
)

LOGS = "/containerLogs/speech/june-5c894c66d8-x8qx9/speech"
REF = PodRef("speech", "june-5c894c66d8-x8qx9", "speech")


def q(**values: str) -> dict[str, list[str]]:
    return {key: [value] for key, value in values.items()}


def test_a_container_logs_path_is_a_log_request_for_that_container() -> None:
    assert parse_request("GET", LOGS, {}) == LogRequest(REF, LogOptions())


@pytest.mark.parametrize(("query", "options"), [
    # What the API server sends for `kubectl logs` flags (LogLocation).
    (q(follow="true"), LogOptions(follow=True)),
    (q(previous="true"), LogOptions(previous=True)),
    (q(timestamps="true"), LogOptions(timestamps=True)),
    (q(tailLines="20"), LogOptions(tail_lines=20)),
    (q(tailLines="0"), LogOptions(tail_lines=0)),
    (q(sinceSeconds="300"), LogOptions(since_seconds=300)),
    (q(limitBytes="4096"), LogOptions(limit_bytes=4096)),
    (q(stream="All"), LogOptions()),
    (q(sinceTime="2026-01-02T15:04:05Z"), LogOptions(since_time=dt.datetime(2026, 1, 2, 15, 4, 5,
                                                                           tzinfo=dt.timezone.utc).timestamp())),
    (q(sinceTime="2026-01-02T16:04:05+01:00"), LogOptions(since_time=dt.datetime(2026, 1, 2, 15, 4, 5,
                                                                                tzinfo=dt.timezone.utc).timestamp())),
    # The kubelet's legacy `tail`, with `all` for every line.
    (q(tail="5"), LogOptions(tail_lines=5)),
    (q(tail="all", tailLines="5"), LogOptions()),
    # Booleans as the kubelet decodes them: only absent, 0 and false (any case) are false.
    (q(follow="1"), LogOptions(follow=True)),
    (q(follow=""), LogOptions(follow=True)),
    (q(follow="yes"), LogOptions(follow=True)),
    (q(follow="0"), LogOptions()),
    (q(follow="FALSE"), LogOptions()),
    # Unknown parameters are ignored, as by the kubelet.
    (q(color="blue"), LogOptions()),
])
def test_log_options_are_read_as_the_kubelet_reads_them(query: dict[str, list[str]], options: LogOptions) -> None:
    assert parse_log_options(query) == options


@pytest.mark.parametrize(("query", "words"), [
    (q(tailLines="-1"), "tailLines='-1': must be 0 or more"),
    (q(tailLines="ten"), "tailLines='ten': expected a whole number"),
    (q(sinceSeconds="0"), "sinceSeconds='0': must be 1 or more"),
    (q(limitBytes="0"), "limitBytes='0': must be 1 or more"),
    (q(sinceSeconds="10", sinceTime="2026-01-02T15:04:05Z"), "at most one of sinceSeconds or sinceTime"),
    (q(sinceTime="yesterday"), "expected an RFC 3339 time"),
    (q(sinceTime="2026-01-02T15:04:05"), "needs a zone"),
    (q(stream="Stdout"), "only stream=All is served"),
])
def test_a_bad_log_parameter_is_a_400_that_names_it(query: dict[str, list[str]], words: str) -> None:
    with pytest.raises(KubeletRequestError) as refused:
        parse_request("GET", LOGS, query)
    assert refused.value.status == 400 and words in refused.value.message


@pytest.mark.parametrize(("path", "kind"), [
    ("/exec/speech/june-5c894c66d8-x8qx9/speech", "exec"),
    ("/attach/speech/june-5c894c66d8-x8qx9/speech", "attach"),
    ("/portForward/speech/june-5c894c66d8-x8qx9", "port-forward"),
    ("/run/speech/june-5c894c66d8-x8qx9/speech", "run"),
])
def test_streaming_routes_are_unsupported_requests_named_as_kubectl_names_them(path: str, kind: str) -> None:
    request = parse_request("POST", path, q(command="ls", output="1"))
    assert isinstance(request, Unsupported) and request.kind == kind
    assert request.ref == (REF if kind != "port-forward" else PodRef("speech", "june-5c894c66d8-x8qx9", ""))


def test_a_streaming_route_without_a_pod_is_still_refused_as_unsupported() -> None:
    assert parse_request("POST", "/exec/speech", {}) == Unsupported("exec", None)


@pytest.mark.parametrize(("method", "path", "status", "words"), [
    ("GET", "/pods", 404, "a kubelet route kube-vast does not serve"),
    ("GET", "/stats/summary", 404, "a kubelet route kube-vast does not serve"),
    ("GET", "/metrics/resource", 404, "a kubelet route kube-vast does not serve"),
    ("GET", "/", 404, "only GET /containerLogs/{namespace}/{pod}/{container}"),
    ("GET", "/favicon.ico", 404, "404 page not found: /favicon.ico"),
    ("POST", LOGS, 405, "POST is not allowed on /containerLogs/"),
    ("GET", "/containerLogs/speech/june", 400, "expected /containerLogs/{namespace}/{pod}/{container}"),
    ("GET", "/containerLogs/speech/june/speech/extra", 400, "valid Kubernetes names"),
    ("GET", "/containerLogs/Speech/june/speech", 400, "valid Kubernetes names"),
    ("GET", "/containerLogs/../../etc/passwd", 400, "valid Kubernetes names"),
])
def test_other_paths_and_methods_are_answered_with_a_message(method: str, path: str, status: int, words: str) -> None:
    with pytest.raises(KubeletRequestError) as refused:
        parse_request(method, path, {})
    assert refused.value.status == status and words in refused.value.message


def test_since_is_measured_back_from_now_or_is_the_given_time() -> None:
    assert LogOptions(since_seconds=60).since(1000.0) == 940.0
    assert LogOptions(since_time=500.0).since(1000.0) == 500.0
    assert LogOptions().since(1000.0) is None
