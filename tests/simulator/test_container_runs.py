"""The simulated image: a container that exits with the code and after the time its rental's
environment asks for, shows it in Vast's fields, restarts on stop-then-start as a new run, and
takes its shutdown time after a stop. On the fake clock: an instance loads 10 s after its
rental and runs at 30 s."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simulator.support import FakeClock, Vast, call, host_port, port_offer, refuses, rent_body
from vastsim import SimulatorServer


def rent_script(vast: Vast, **env: str) -> int:
    body = rent_body(env={"-p 8000:8000": "1", **env})
    reply = vast.rent(port_offer(vast)["id"], body)
    assert reply.status == 200, reply.text
    instance_id: int = reply.json()["new_contract"]
    return instance_id


def at(vast: Vast, clock: FakeClock, instance_id: int, seconds: float) -> dict[str, Any]:
    """The instance `seconds` after the fake clock's start."""
    clock.now = 1_750_000_000.0 + seconds
    instance = vast.instance(instance_id)
    assert instance is not None
    return instance


def audit(vast: Vast, instance_id: int) -> dict[str, Any]:
    found: dict[str, Any] = next(i for i in vast.state()["instances"] if i["id"] == instance_id)
    return found


def states(instance: dict[str, Any]) -> tuple[str | None, str, str, str]:
    return instance["actual_status"], instance["intended_status"], instance["cur_state"], instance["next_state"]


def test_a_container_told_to_exit_shows_exited_with_the_docker_text_and_its_ports_close(
        clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    instance_id = rent_script(vast, KUBE_VAST_SIM_EXIT_CODE="3", KUBE_VAST_SIM_EXIT_AFTER="5")
    running = at(vast, clock, instance_id, 31)
    assert running["actual_status"] == "running"
    port = host_port(running)
    assert call("GET", f"http://127.0.0.1:{port}/").status == 200
    exited = at(vast, clock, instance_id, 37)
    assert states(exited) == ("exited", "running", "running", "running")
    assert exited["status_msg"] == "Exited (3) 2 seconds ago"
    assert exited["ports"] is None and refuses(port)
    assert at(vast, clock, instance_id, 35 + 150)["status_msg"] == "Exited (3) 2 minutes ago"
    assert audit(vast, instance_id)["exits"] == [{"run": 0, "exit_code": 3, "at": 1_750_000_035.0}]


def test_without_a_script_the_container_serves_until_stopped(clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    instance_id = rent_script(vast)
    assert at(vast, clock, instance_id, 100_000)["actual_status"] == "running"
    assert audit(vast, instance_id)["exits"] == []


def test_a_start_does_not_revive_an_exited_container_but_stop_then_start_runs_it_again(
        clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    instance_id = rent_script(vast, KUBE_VAST_SIM_EXIT_CODE="3,0", KUBE_VAST_SIM_EXIT_AFTER="5")
    assert at(vast, clock, instance_id, 36)["actual_status"] == "exited"
    assert vast.update(instance_id, {"state": "running"}).json() == {"success": True}
    assert at(vast, clock, instance_id, 40)["actual_status"] == "exited"  # intended was running already

    assert vast.update(instance_id, {"state": "stopped"}).json() == {"success": True}
    stopped = at(vast, clock, instance_id, 40)
    assert states(stopped) == ("stopped", "stopped", "stopped", "stopped")
    assert vast.update(instance_id, {"state": "running"}).json() == {"success": True}
    assert at(vast, clock, instance_id, 41)["actual_status"] == "loading"  # no provisioning on a restart
    again = at(vast, clock, instance_id, 61)
    assert states(again) == ("running", "running", "running", "running") and again["ports"]
    second = at(vast, clock, instance_id, 66)
    assert second["actual_status"] == "exited" and second["status_msg"].startswith("Exited (0) ")
    record = audit(vast, instance_id)
    assert record["runs"] == 2
    assert [(e["run"], e["exit_code"]) for e in record["exits"]] == [(0, 3), (1, 0)]


def test_a_stop_gives_the_running_container_its_shutdown_time_before_it_is_stopped(
        clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    instance_id = rent_script(vast, KUBE_VAST_SIM_STOP_SECONDS="4")
    port = host_port(at(vast, clock, instance_id, 31))
    assert vast.update(instance_id, {"state": "stopped"}).json() == {"success": True}
    stopping = at(vast, clock, instance_id, 33)
    assert states(stopping) == ("running", "stopped", "running", "stopped")
    assert call("GET", f"http://127.0.0.1:{port}/").status == 200  # still serving what is in flight
    stopped = at(vast, clock, instance_id, 35)
    assert states(stopped) == ("stopped", "stopped", "stopped", "stopped") and refuses(port)
    record = audit(vast, instance_id)
    assert (record["stop_requested_at"], record["stopped_at"]) == (1_750_000_031.0, 1_750_000_035.0)


def test_a_container_that_ignores_the_stop_is_killed_after_ten_seconds(
        clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    instance_id = rent_script(vast, KUBE_VAST_SIM_STOP_SECONDS="600")
    at(vast, clock, instance_id, 31)
    vast.update(instance_id, {"state": "stopped"})
    assert at(vast, clock, instance_id, 40.9)["actual_status"] == "running"
    assert at(vast, clock, instance_id, 41)["actual_status"] == "stopped"


def test_an_instance_destroyed_while_shutting_down_never_counts_as_stopped(
        clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    instance_id = rent_script(vast, KUBE_VAST_SIM_STOP_SECONDS="8")
    at(vast, clock, instance_id, 31)
    vast.update(instance_id, {"state": "stopped"})
    at(vast, clock, instance_id, 33)
    assert vast.destroy(instance_id).status == 200
    clock.advance(60)
    record = audit(vast, instance_id)
    assert record["destroyed"] and record["stop_requested_at"] == 1_750_000_031.0 and record["stopped_at"] is None


def test_a_start_during_the_shutdown_keeps_the_container_running(clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    instance_id = rent_script(vast, KUBE_VAST_SIM_STOP_SECONDS="5")
    at(vast, clock, instance_id, 31)
    vast.update(instance_id, {"state": "stopped"})
    vast.update(instance_id, {"state": "running"})
    assert states(at(vast, clock, instance_id, 100)) == ("running", "running", "running", "running")
    assert audit(vast, instance_id)["runs"] == 1


def test_an_offline_host_takes_neither_stop_nor_start(clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    instance_id = rent_script(vast)
    at(vast, clock, instance_id, 31)
    clocked.market.set_fate(instance_id, "offline")
    vast.update(instance_id, {"state": "stopped"})
    vast.update(instance_id, {"state": "running"})
    assert states(at(vast, clock, instance_id, 60))[:2] == ("offline", "running")


@pytest.mark.parametrize("env, named", [
    ({"KUBE_VAST_SIM_EXIT_CODE": "three"}, "KUBE_VAST_SIM_EXIT_CODE"),
    ({"KUBE_VAST_SIM_EXIT_CODE": "3,256"}, "KUBE_VAST_SIM_EXIT_CODE"),
    ({"KUBE_VAST_SIM_EXIT_CODE": "0", "KUBE_VAST_SIM_EXIT_AFTER": "-1"}, "KUBE_VAST_SIM_EXIT_AFTER"),
    ({"KUBE_VAST_SIM_STOP_SECONDS": "soon"}, "KUBE_VAST_SIM_STOP_SECONDS"),
])
def test_a_malformed_script_is_refused_naming_the_variable(vast: Vast, env: dict[str, str], named: str) -> None:
    reply = vast.rent(port_offer(vast)["id"], rent_body(env={"-p 8000:8000": "1", **env}))
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_args" and named in reply.json()["msg"]


def test_an_exited_fate_reports_its_exit_code_or_a_message_without_one(
        clocked: SimulatorServer, clock: FakeClock) -> None:
    vast = Vast(clocked.url)
    reply = vast.admin("faults/fate", {"status": "exited", "exit_code": 7, "running_seconds": 1})
    assert reply.status == 200, reply.text
    coded = rent_script(vast)
    clocked.faults.fate_next("exited", running_seconds=1, status_msg="container stopped unexpectedly")
    silent = rent_script(vast)
    assert at(vast, clock, coded, 32)["status_msg"] == "Exited (7) 1 second ago"
    assert at(vast, clock, silent, 32)["status_msg"] == "container stopped unexpectedly"
    assert audit(vast, coded)["exits"] == [{"run": 0, "exit_code": 7, "at": 1_750_000_031.0}]


@pytest.mark.parametrize("body", [{"status": "offline", "exit_code": 3}, {"status": "exited", "exit_code": 300},
                                  {"status": "exited", "exit_code": True}])
def test_an_exit_code_only_goes_with_an_exited_fate(vast: Vast, body: dict[str, Any]) -> None:
    reply = vast.admin("faults/fate", body)
    assert reply.status == 400 and "exit_code" in reply.json()["msg"]
