"""A container that ended on its Vast instance: what its exit means for the pod, and the restart of
that container on the same instance — like a kubelet, by the pod's ``restartPolicy``.

Contract
--------
- Pure: functions of the pod (a plain Kubernetes JSON dict), the instance as Vast shows it
  (:class:`~vastmarket.instances.Instance`), the restart record and the time. The reconciler
  executes what they decide.
- An instance whose ``actual_status`` is ``exited`` while meant to run is a container exit (the
  host is fine); the code comes from Vast's ``status_msg`` and may be unknown. Host loss
  (``offline``/``unknown``, gone) is not a container exit and is not handled here.

What an exit means (:func:`verdict`):

============  =========================  ==================================
restartPolicy  exit code 0                non-zero, or unknown
============  =========================  ==================================
Never          Succeeded (Completed)      Failed (Error / ExitCodeUnknown)
OnFailure      Succeeded (Completed)      restart on the same instance
Always         restart                    restart on the same instance
============  =========================  ==================================

A Succeeded or Failed pod is never run again: its instance is destroyed and never replaced, so a
Job pays exactly one rental per run.

A restart is Vast's stop, then start (a ``start`` alone does not revive an exited container):
the record ``vast.ai/restart`` on the pod is written *before* each step, so a restarted
controller resumes it and never counts one exit twice. The steps (:func:`restart_step`):

=========  ==============================================  =================================
step       the instance shows                              then
=========  ==============================================  =================================
stopping   exited, intended running                        STOP (ask again: harmless)
stopping   intended stopped, still running                 WAIT (the container shuts down)
stopping   stopped, back-off not over                      WAIT until ``notBefore``
stopping   stopped, back-off over                          START → step starting
stopping   intended running, not exited                    the start went through: STARTING
starting   running                                         STARTED → step running
starting   loading / provisioning                          WAIT (marks ``seenStarting``); LOST after the boot timeout
starting   intended stopped                                START again
starting   exited, intended running                        EXITED: a new exit to judge *
=========  ==============================================  =================================

\\* Unless the start was sent on an instance that read ``exited`` (a stopped container, as docker
shows it) and nothing since showed the container starting: then the ``exited`` may be the old
one, and it is judged a new exit only after ``SETTLE_SECONDS``.

The back-off before each start is the kubelet's: ``base × 2^(restarts−1)``, at most 300 s.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from vastmarket.instances import Instance

from .shapes import mapping as _mapping, text as _text

A_RESTART = "vast.ai/restart"
UNKNOWN_EXIT_CODE = -1  # written when Vast does not say the code (Kubernetes needs a number)
MAX_BACKOFF = 300.0  # the kubelet's MaxContainerBackOff
SETTLE_SECONDS = 60.0
POLICIES = ("Always", "OnFailure", "Never")


class Verdict(enum.Enum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    RESTART = "Restart"


@dataclass(frozen=True, slots=True)
class ContainerExit:
    """How the container ended: ``code`` (None when Vast did not say) and Vast's message."""

    code: int | None
    message: str

    @classmethod
    def of(cls, instance: Instance) -> ContainerExit:
        return cls(instance.exit_code, (instance.status_msg or "").strip())

    @property
    def reason(self) -> str:
        """The container's terminated reason, as a kubelet writes it (or ``ExitCodeUnknown``)."""
        if self.code is None:
            return "ExitCodeUnknown"
        return "Completed" if self.code == 0 else "Error"

    @property
    def exit_code(self) -> int:
        return UNKNOWN_EXIT_CODE if self.code is None else self.code

    def describe(self) -> str:
        if self.code is None:
            return f"exited without an exit code Vast reports (status_msg {self.message!r})"
        return f"exited with code {self.code}"

    def terminated(self, *, started_at: str | None, finished_at: str) -> dict[str, Any]:
        """The ``terminated`` container state (for ``lastState`` or the final state)."""
        body: dict[str, Any] = {"exitCode": self.exit_code, "reason": self.reason, "finishedAt": finished_at}
        if self.message:
            body["message"] = self.message
        if started_at:
            body["startedAt"] = started_at
        return body


def restart_policy(pod: Mapping[str, Any]) -> str:
    """The pod's ``restartPolicy`` (the API server's default, ``Always``, when absent)."""
    policy = _text(_mapping(pod.get("spec")).get("restartPolicy"))
    return policy if policy in POLICIES else "Always"


def verdict(policy: str, exit: ContainerExit) -> Verdict:
    """What the exit means under ``policy`` (the table in the module docstring)."""
    if policy == "Always":
        return Verdict.RESTART
    if exit.code == 0:
        return Verdict.SUCCEEDED
    return Verdict.RESTART if policy == "OnFailure" else Verdict.FAILED


def backoff(restarts: int, base: float) -> float:
    """Seconds to wait before restart number ``restarts`` (1 = the first)."""
    if restarts < 1 or base <= 0:
        return 0.0
    return float(min(base * 2 ** min(restarts - 1, 30), MAX_BACKOFF))


# --- the restart record -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Restart:
    """The pod's ``vast.ai/restart`` annotation: the restarts of its container on ``instance``."""

    instance: int
    count: int  # restarts so far: the container's restartCount
    step: str  # "stopping" | "starting" | "running"
    not_before: float  # epoch seconds: no start before (the back-off)
    since: float  # epoch seconds: when this step began
    last: Mapping[str, Any] = field(default_factory=dict)  # lastState.terminated
    from_status: str | None = None  # actual_status when the start was sent
    seen_starting: bool = False  # the container was seen loading or running since the start

    def active_for(self, instance_id: int) -> bool:
        """A stop or start of ``instance_id`` is under way."""
        return self.instance == instance_id and self.step in ("stopping", "starting")

    def encode(self) -> str:
        return json.dumps({"instance": self.instance, "count": self.count, "step": self.step,
                           "notBefore": self.not_before, "since": self.since, "last": dict(self.last),
                           "fromStatus": self.from_status, "seenStarting": self.seen_starting},
                          separators=(",", ":"))

    @classmethod
    def read(cls, annotations: Mapping[str, str]) -> Restart | None:
        """The record on a pod, or None (absent or unreadable: nothing is under way)."""
        try:
            raw = json.loads(annotations.get(A_RESTART) or "null")
            if not isinstance(raw, dict) or raw.get("step") not in ("stopping", "starting", "running"):
                return None
            return cls(instance=int(raw["instance"]), count=int(raw["count"]), step=str(raw["step"]),
                       not_before=float(raw.get("notBefore") or 0.0), since=float(raw.get("since") or 0.0),
                       last=dict(_mapping(raw.get("last"))),
                       from_status=raw.get("fromStatus") if isinstance(raw.get("fromStatus"), str) else None,
                       seen_starting=raw.get("seenStarting") is True)
        except (TypeError, ValueError, KeyError):
            return None


def begin_restart(previous: Restart | None, instance_id: int, exit: ContainerExit, *, restarts_so_far: int,
                  now: float, base_backoff: float, started_at: str | None, finished_at: str) -> Restart:
    """The record for restarting after ``exit``: one more restart, stopping first, the back-off
    counted from now. ``restarts_so_far`` is the pod's restartCount when no record is on it."""
    done = previous.count if previous is not None and previous.instance == instance_id else restarts_so_far
    count = done + 1
    return Restart(instance=instance_id, count=count, step="stopping", since=now,
                   not_before=now + backoff(count, base_backoff),
                   last=exit.terminated(started_at=started_at, finished_at=finished_at))


class Action(enum.Enum):
    STOP = "stop"  # ask Vast to stop the instance
    START = "start"  # ask Vast to start it
    STARTING = "starting"  # a start went through: record step starting
    STARTED = "started"  # running again: record step running
    EXITED = "exited"  # a new exit: judge it
    LOST = "lost"  # it never came back
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    seconds: float = 1.0  # when to look again
    record: Restart | None = None  # the record to write before acting (None: unchanged)


def restart_step(record: Restart, instance: Instance, *, now: float, boot_timeout: float,
                 poll: float = 1.0) -> Step:
    """The next step of the restart under way on ``instance`` (the table in the module docstring)."""
    if record.step == "stopping":
        if not instance.stop_requested:
            if instance.actual_status == "exited":
                return Step(Action.STOP, poll)
            if instance.running:
                return Step(Action.STARTED, record=replace(record, step="running", since=now))
            return Step(Action.STARTING, poll, replace(record, step="starting", since=now, from_status=None,
                                                       seen_starting=True))
        if not instance.stopped:
            return Step(Action.WAIT, poll)
        if now < record.not_before:
            return Step(Action.WAIT, min(poll * 5, record.not_before - now))
        return Step(Action.START, poll, replace(record, step="starting", since=now,
                                                from_status=instance.actual_status, seen_starting=False))
    if record.step != "starting":
        return Step(Action.WAIT, poll)
    if instance.running:
        return Step(Action.STARTED, record=replace(record, step="running", since=now))
    if instance.stop_requested:
        return Step(Action.START, poll)
    if instance.container_exited:
        fresh = record.from_status != "exited" or record.seen_starting or now - record.since > SETTLE_SECONDS
        return Step(Action.EXITED) if fresh else Step(Action.WAIT, poll)
    if now - record.since > boot_timeout:
        return Step(Action.LOST)
    if instance.pending and not record.seen_starting:
        return Step(Action.WAIT, poll, replace(record, seen_starting=True))
    return Step(Action.WAIT, poll)
