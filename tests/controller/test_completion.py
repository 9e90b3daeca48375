"""What a container exit means by restartPolicy, the back-off, and each step of a restart on the
same instance — the tables of controller.completion, row by row."""

from __future__ import annotations

from typing import Any

import pytest

from controller.completion import (
    A_RESTART, SETTLE_SECONDS, Action, ContainerExit, Restart, Verdict, backoff, begin_restart, restart_policy,
    restart_step, verdict,
)
from vastmarket.instances import parse_instance

from .objects import june_pod

NOW = 1_750_000_000.0


def instance(actual: str | None, intended: str = "running", status_msg: str = "") -> Any:
    return parse_instance({"id": 7, "actual_status": actual, "intended_status": intended, "status_msg": status_msg})


@pytest.mark.parametrize("policy, code, expected", [
    ("Never", 0, Verdict.SUCCEEDED),
    ("Never", 3, Verdict.FAILED),
    ("Never", None, Verdict.FAILED),
    ("OnFailure", 0, Verdict.SUCCEEDED),
    ("OnFailure", 3, Verdict.RESTART),
    ("OnFailure", None, Verdict.RESTART),
    ("Always", 0, Verdict.RESTART),
    ("Always", 137, Verdict.RESTART),
    ("Always", None, Verdict.RESTART),
])
def test_an_exit_means_what_the_restart_policy_says(policy, code, expected):
    assert verdict(policy, ContainerExit(code, "")) is expected


@pytest.mark.parametrize("spec, policy", [({"restartPolicy": "Never"}, "Never"), ({"restartPolicy": "OnFailure"}, "OnFailure"),
                                          ({}, "Always"), ({"restartPolicy": "Sometimes"}, "Always")])
def test_the_restart_policy_defaults_to_always_as_the_api_server_does(spec, policy):
    assert restart_policy({"spec": spec}) == policy


@pytest.mark.parametrize("status_msg, code, reason", [
    ("Exited (0) 3 seconds ago", 0, "Completed"),
    ("Exited (3) 3 seconds ago", 3, "Error"),
    ("container died", None, "ExitCodeUnknown"),
])
def test_an_exit_is_read_from_the_instance_with_the_kubelets_reasons(status_msg, code, reason):
    exit = ContainerExit.of(instance("exited", status_msg=status_msg))
    assert (exit.code, exit.reason) == (code, reason)
    state = exit.terminated(started_at="2025-01-01T00:00:00Z", finished_at="2025-01-01T00:01:00Z")
    assert state == {"exitCode": -1 if code is None else code, "reason": reason, "message": status_msg,
                     "startedAt": "2025-01-01T00:00:00Z", "finishedAt": "2025-01-01T00:01:00Z"}


@pytest.mark.parametrize("restarts, base, seconds", [(1, 10, 10), (2, 10, 20), (3, 10, 40), (6, 10, 300),
                                                     (60, 10, 300), (1, 0, 0), (0, 10, 0)])
def test_the_back_off_doubles_up_to_five_minutes(restarts, base, seconds):
    assert backoff(restarts, base) == seconds


def record(step: str, **changes: Any) -> Restart:
    values: dict[str, Any] = {"instance": 7, "count": 1, "step": step, "not_before": NOW, "since": NOW - 1,
                              "last": {"exitCode": 3}, "from_status": "stopped", "seen_starting": False}
    values.update(changes)
    return Restart(**values)


@pytest.mark.parametrize("rec, inst, action", [
    (record("stopping"), instance("exited"), Action.STOP),
    (record("stopping"), instance("running", "stopped"), Action.WAIT),
    (record("stopping", not_before=NOW + 5), instance("stopped", "stopped"), Action.WAIT),
    (record("stopping"), instance("stopped", "stopped"), Action.START),
    (record("stopping"), instance("exited", "stopped"), Action.START),
    (record("stopping"), instance("loading"), Action.STARTING),
    (record("stopping"), instance("running"), Action.STARTED),
    (record("starting"), instance("running"), Action.STARTED),
    (record("starting"), instance("loading"), Action.WAIT),
    (record("starting"), instance("stopped", "stopped"), Action.START),
    (record("starting"), instance("exited"), Action.EXITED),
    (record("starting", from_status="exited"), instance("exited"), Action.WAIT),
    (record("starting", from_status="exited", seen_starting=True), instance("exited"), Action.EXITED),
    (record("starting", from_status="exited", since=NOW - SETTLE_SECONDS - 1), instance("exited"), Action.EXITED),
    (record("starting", since=NOW - 1000), instance("loading"), Action.LOST),
])
def test_each_restart_step_follows_the_table(rec, inst, action):
    assert restart_step(rec, inst, now=NOW, boot_timeout=900).action is action


def test_a_step_that_moves_on_records_it_before_acting():
    start = restart_step(record("stopping"), instance("stopped", "stopped"), now=NOW, boot_timeout=900)
    assert start.record is not None and (start.record.step, start.record.from_status) == ("starting", "stopped")
    started = restart_step(record("starting"), instance("running"), now=NOW, boot_timeout=900)
    assert started.record is not None and started.record.step == "running"
    seen = restart_step(record("starting", from_status="exited"), instance("loading"), now=NOW, boot_timeout=900)
    assert seen.record is not None and seen.record.seen_starting
    assert restart_step(record("stopping"), instance("exited"), now=NOW, boot_timeout=900).record is None


def test_the_back_off_wait_ends_when_the_back_off_does():
    step = restart_step(record("stopping", not_before=NOW + 2.5), instance("stopped", "stopped"), now=NOW,
                        boot_timeout=900)
    assert step.action is Action.WAIT and step.seconds == pytest.approx(2.5)


def test_a_restart_counts_on_from_the_record_or_the_pods_restart_count():
    exit = ContainerExit(3, "Exited (3) 1 second ago")
    first = begin_restart(None, 7, exit, restarts_so_far=0, now=NOW, base_backoff=10, started_at=None,
                          finished_at="t")
    assert (first.count, first.step, first.not_before) == (1, "stopping", NOW + 10)
    again = begin_restart(record("running", count=4), 7, exit, restarts_so_far=0, now=NOW, base_backoff=10,
                          started_at=None, finished_at="t")
    assert (again.count, again.not_before) == (5, NOW + 160)
    elsewhere = begin_restart(record("running", count=4, instance=8), 7, exit, restarts_so_far=2, now=NOW,
                              base_backoff=10, started_at=None, finished_at="t")
    assert elsewhere.count == 3


def test_the_record_survives_its_annotation_and_a_bad_one_reads_as_none():
    rec = record("starting", from_status="exited", seen_starting=True)
    pod = june_pod()
    pod["metadata"]["annotations"][A_RESTART] = rec.encode()
    assert Restart.read(pod["metadata"]["annotations"]) == rec
    for bad in ("", "{", "[]", '{"step": "dancing", "instance": 7, "count": 1}', '{"step": "running"}'):
        assert Restart.read({A_RESTART: bad}) is None
    assert rec.active_for(7) and not rec.active_for(8) and not record("running").active_for(7)
