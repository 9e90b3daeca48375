"""Instance logs: `PUT /api/v0/instances/request_logs/{id}/`, the uploaded `result_url`, what the fake
container prints (start, command line without its environment, the requests its ports answer,
exits), lines a test appends through `/_sim/logs`, tail and filter, faults."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from tests.simulator.support import FakeClock, Vast, call, host_port, port_offer, rent_body, rent_running, wait_for
from vastsim import SimulatorServer

SECRET = "hf_s3cr3t_value_never_printed"


def request_logs(vast: Vast, instance_id: int, body: Any = None) -> Any:
    return vast.call("PUT", f"/api/v0/instances/request_logs/{instance_id}/", {} if body is None else body)


def fetch(vast: Vast, instance_id: int, body: Any = None) -> str:
    """Ask for the log and download it from result_url once it is there."""
    reply = request_logs(vast, instance_id, body)
    assert reply.status == 200, reply.text
    url = reply.json()["result_url"]
    return wait_for(lambda: _ready(url)).removesuffix("\0")


def fetch_until(vast: Vast, instance_id: int, words: str) -> str:
    """The log, once it holds `words` (an access line is written just after the answer)."""
    def holding() -> str | None:
        text = fetch(vast, instance_id)
        return text if words in text else None
    return wait_for(holding)


def _ready(url: str) -> str | None:
    reply = call("GET", url)
    return reply.text + "\0" if reply.status == 200 else None  # "\0": an empty log is ready too


@pytest.fixture
def fast(sim: SimulatorServer) -> SimulatorServer:
    sim.market.logs.set_upload_seconds(0)
    return sim


def test_the_log_shows_the_start_and_the_command_line_without_the_environment(fast: SimulatorServer, vast: Vast) -> None:
    instance = rent_running(vast, onstart="python", args=["-m", "server", "--port", "8000"],
                           env={"HF_TOKEN": SECRET, "-p 8000:8000": "1"})
    text = fetch(vast, instance["id"])
    lines = text.splitlines()
    assert lines[0] == f"[vastsim] instance {instance['id']} started vastai/test:latest"
    assert lines[1] == "[vastsim] command: python -m server --port 8000"
    assert lines[2] == "[vastsim] listening on 8000/tcp"
    assert SECRET not in text and "HF_TOKEN" not in text


def test_every_request_an_instance_port_answers_is_a_line_in_its_log(fast: SimulatorServer, vast: Vast) -> None:
    instance = rent_running(vast)
    port = host_port(instance)
    for path in ("/healthz", "/v1/models"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            assert reply.status == 200
    text = fetch_until(vast, instance["id"], "/v1/models")
    access = [line for line in text.splitlines() if "HTTP/1.1" in line]
    assert len(access) == 2
    assert access[0].startswith("127.0.0.1 - - [") and access[0].endswith('"GET /healthz HTTP/1.1" 200 -')
    assert access[1].endswith('"GET /v1/models HTTP/1.1" 200 -')


def test_lines_appended_through_the_admin_route_end_the_log(fast: SimulatorServer, vast: Vast) -> None:
    instance = rent_running(vast)
    reply = vast.admin("logs", {"instance_id": instance["id"], "lines": ["epoch 1 loss 0.5", "epoch 2 loss 0.25"]})
    assert reply.status == 200, reply.text
    assert fetch(vast, instance["id"]).splitlines()[-2:] == ["epoch 1 loss 0.5", "epoch 2 loss 0.25"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"instance_id": 99, "lines": ["x"]}, 404, "no live instance 99"),
    ({"lines": ["x"]}, 400, "instance_id must be an integer"),
    ({"instance_id": "ID", "lines": ["x"]}, 400, "instance_id must be an integer"),
    ("LINES", 400, "lines must be a list of strings"),
    ({"instance_id": "ID", "lines": ["x"], "color": "red"}, 400, "instance_id must be an integer"),
])
def test_a_bad_append_is_refused_with_the_reason(fast: SimulatorServer, vast: Vast, body: Any, status: int,
                                                  words: str) -> None:
    instance = rent_running(vast)
    if body == "LINES":
        body = {"instance_id": instance["id"], "lines": "not a list"}
    reply = vast.admin("logs", body)
    assert (reply.status, words in reply.text) == (status, True), reply.text


def test_tail_and_filter_choose_the_lines_as_the_service_does(fast: SimulatorServer, vast: Vast) -> None:
    instance = rent_running(vast)
    vast.admin("logs", {"instance_id": instance["id"], "lines": [f"step {i}" for i in range(10)]})
    assert fetch(vast, instance["id"], {"tail": "3"}).splitlines() == ["step 7", "step 8", "step 9"]
    assert fetch(vast, instance["id"], {"tail": "0"}) == ""
    assert fetch(vast, instance["id"], {"filter": "step 1", "tail": "1000"}).splitlines() == ["step 1"]


@pytest.mark.parametrize("tail", ["ten", "-1", True, 1.5])
def test_a_tail_that_is_not_a_number_of_lines_is_a_400(fast: SimulatorServer, vast: Vast, tail: Any) -> None:
    instance = rent_running(vast)
    reply = request_logs(vast, instance["id"], {"tail": tail})
    assert reply.status == 400 and reply.json()["error"] == "invalid_args"


def test_the_uploaded_log_answers_no_such_key_until_the_upload_is_done(clocked: SimulatorServer,
                                                                       clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    clocked.market.logs.set_upload_seconds(2.0)
    instance_id = vast.rent(port_offer(vast)["id"], rent_body()).json()["new_contract"]
    clock.advance(31)  # running
    url = request_logs(vast, instance_id).json()["result_url"]
    assert url.startswith(clocked.url + "/_sim/logs/results/") and url.endswith(".log")
    early = call("GET", url)
    assert early.status == 404 and "<Code>NoSuchKey</Code>" in early.text
    clock.advance(2.0)
    late = call("GET", url)
    assert late.status == 200 and late.text.startswith(f"[vastsim] instance {instance_id} started")


def test_a_log_asked_for_before_the_container_ran_is_empty(clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    clocked.market.logs.set_upload_seconds(0)
    instance_id = vast.rent(port_offer(vast)["id"], rent_body()).json()["new_contract"]
    clock.advance(15)  # loading
    assert fetch(vast, instance_id) == ""
    daemon = fetch(vast, instance_id, {"daemon_logs": "true"}).splitlines()
    assert daemon[0].startswith(f"creating instance {instance_id} on machine ")
    assert daemon[1] == "pulling image vastai/test:latest"


def test_an_exit_of_the_container_is_the_last_line(fast: SimulatorServer, vast: Vast) -> None:
    offer = port_offer(vast)
    body = rent_body(env={"-p 8000:8000": "1", "KUBE_VAST_SIM_EXIT_CODE": "3", "KUBE_VAST_SIM_EXIT_AFTER": "0.05"})
    instance_id = vast.rent(offer["id"], body).json()["new_contract"]
    text = fetch_until(vast, instance_id, "exited")
    assert text.splitlines()[-1] == "[vastsim] run 0 exited with code 3"


def test_the_log_of_an_unknown_or_destroyed_instance_is_a_404(fast: SimulatorServer, vast: Vast) -> None:
    instance = rent_running(vast)
    assert vast.destroy(instance["id"]).status == 200
    for instance_id in (instance["id"], 123):
        reply = request_logs(vast, instance_id)
        assert reply.status == 404 and reply.json()["error"] == "no_such_instance"


def test_request_logs_takes_injected_failures_like_every_endpoint(fast: SimulatorServer, vast: Vast) -> None:
    instance = rent_running(vast)
    fast.faults.fail_next("request_logs", status=503)
    assert request_logs(vast, instance["id"]).status == 503
    assert request_logs(vast, instance["id"]).status == 200


def test_downloads_are_counted_with_those_that_carried_a_key(fast: SimulatorServer, vast: Vast) -> None:
    instance = rent_running(vast)
    url = request_logs(vast, instance["id"]).json()["result_url"]
    call("GET", url)
    call("GET", url, headers={"Authorization": "Bearer leaked"})
    counters = fast.state()["counters"]
    assert (counters["log_downloads"], counters["log_downloads_with_key"]) == (2, 1)
