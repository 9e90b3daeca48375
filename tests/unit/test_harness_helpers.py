"""The long runs' shared pieces (devcluster): the loop on a thread of its own, the reaper sweeps
read from a controller's log, a pod's readiness."""

from __future__ import annotations

import threading

from kubernetes import client

from devcluster.background import BackgroundLoop
from devcluster.controller_stack import reaper_sweeps
from devcluster.helpers import pod_ready


class Turns(BackgroundLoop):
    def __init__(self) -> None:
        super().__init__("turns")
        self.turns = 0
        self.turned = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.turns += 1
            self.turned.set()


def test_a_background_loop_turns_on_its_own_thread_until_stopped_then_its_thread_is_gone() -> None:
    loop = Turns()
    assert loop.start() is loop
    assert loop.turned.wait(30)
    assert loop._thread.name == "turns" and loop._thread.daemon
    loop.stop()
    assert not loop._thread.is_alive()


def test_the_reaper_sweeps_are_read_from_a_controller_log_in_order_with_their_orphans() -> None:
    log = ("2026-12-01 INFO controller.checkpoints: checkpoint reaper-swept orphans=0 seen=3\n"
           "2026-12-01 INFO controller.checkpoints: checkpoint destroy-sent pod=a/b instance=7\n"
           "2026-12-01 INFO controller.checkpoints: checkpoint reaper-swept orphans=2 seen=5\n")
    assert reaper_sweeps(log) == [0, 2]
    assert reaper_sweeps("") == []


def _pod(*conditions: tuple[str, str]) -> client.V1Pod:
    return client.V1Pod(status=client.V1PodStatus(conditions=[client.V1PodCondition(type=t, status=s)
                                                              for t, s in conditions]))


def test_a_pod_is_ready_only_with_the_condition_ready_true() -> None:
    assert pod_ready(_pod(("PodScheduled", "True"), ("Ready", "True")))
    assert not pod_ready(_pod(("PodScheduled", "True"), ("Ready", "False")))
    assert not pod_ready(_pod(("ContainersReady", "True")))
    assert not pod_ready(client.V1Pod(status=client.V1PodStatus()))
    assert not pod_ready(client.V1Pod())
