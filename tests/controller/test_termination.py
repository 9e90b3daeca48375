"""Graceful termination: the deadline read from the deleted pod, bounded by the controller, and
what to do with its instance at each moment — controller.termination's table, row by row."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from controller.termination import Drain, deadline, drain_step, grace_seconds
from vastmarket.instances import parse_instance

from .objects import june_pod

DELETED = "2025-03-01T10:00:30Z"  # deletionTimestamp: the moment of deletion + the grace
END = datetime(2025, 3, 1, 10, 0, 30, tzinfo=timezone.utc).timestamp()


def deleted(grace: int | None = 30, spec_grace: int | None = None) -> dict:
    pod = june_pod()
    pod["metadata"]["deletionTimestamp"] = DELETED
    if grace is not None:
        pod["metadata"]["deletionGracePeriodSeconds"] = grace
    if spec_grace is not None:
        pod["spec"]["terminationGracePeriodSeconds"] = spec_grace
    return pod


def test_the_deadline_is_the_pods_deletion_timestamp():
    assert deadline(deleted(30), max_grace=300) == END


def test_the_controller_bounds_a_long_grace():
    assert deadline(deleted(3600), max_grace=300) == END - 3600 + 300


def test_a_pod_not_being_deleted_or_with_a_bad_timestamp_has_no_deadline():
    assert deadline(june_pod(), max_grace=300) is None
    pod = deleted()
    pod["metadata"]["deletionTimestamp"] = "soon"
    assert deadline(pod, max_grace=300) is None


@pytest.mark.parametrize("grace, spec_grace, seconds", [(5, 60, 5), (None, 60, 60), (None, None, 30), (0, 60, 0)])
def test_the_grace_comes_from_the_deletion_then_the_spec_then_30(grace, spec_grace, seconds):
    assert grace_seconds(deleted(grace, spec_grace)) == seconds


def instance(actual, intended="running"):
    return parse_instance({"id": 1, "actual_status": actual, "intended_status": intended})


@pytest.mark.parametrize("inst, now, action", [
    (instance("running"), END - 10, Drain.STOP),
    (instance("running", "stopped"), END - 10, Drain.WAIT),
    (instance("stopped", "stopped"), END - 10, Drain.DESTROY),
    (instance("exited", "stopped"), END - 10, Drain.DESTROY),
    (instance("exited"), END - 10, Drain.DESTROY),
    (instance("loading"), END - 10, Drain.DESTROY),
    (instance(None), END - 10, Drain.DESTROY),
    (instance("running", "stopped"), END, Drain.DESTROY),
    (instance("running"), END + 1, Drain.DESTROY),
])
def test_each_moment_of_a_drain_follows_the_table(inst, now, action):
    assert drain_step(inst, now=now, deadline=END) is action


def test_without_a_deadline_the_instance_is_destroyed_at_once():
    assert drain_step(instance("running"), now=END, deadline=None) is Drain.DESTROY
