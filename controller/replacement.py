"""Replacing the instance of a host this controller cannot reach.

A serving instance whose host stops answering at the network level (health probes that cannot
connect: timed out, no route; :attr:`controller.health.ProbeResult.reachable`) is out of its
Services at once, through the readiness probe's failure threshold. If Vast still reports it
running and the host stays unreachable for ``host_unreachable_grace`` seconds
(``KUBE_VAST_HOST_UNREACHABLE_GRACE``, 0: never), the pod gets a new instance, exactly once and
never two at a time:

1. ``replacing`` is written into the pod's ``vast.ai/launch`` record (the old instance, its
   machine, why), with the machine added to ``failedMachines`` — before anything is destroyed;
2. the old instance is destroyed through the Vast API (which still reaches the host) until Vast
   confirms it gone;
3. then, in one patch, ``replacing`` is removed and the old instance's annotations
   (``vast.ai/instance-id``, ``vast.ai/public-ip``, ``vast.ai/ports``, ``vast.ai/restart``)
   are cleared: the pod launches as a new one would (label look-up first, the uncertain-rent
   marker, failover), and its container counts one restart (``lastState`` reason
   ``HostUnreachable``).

A controller killed after step 1 finds ``replacing`` and resumes at step 2 (or 3, when the old
instance is already gone), so the old instance is never kept beside a new one and a pod never
fails as ``InstanceLost`` because of its own replacement. The grace is measured from the first
unreachable probe this controller process saw: a restart starts it over (the pod waits longer,
nothing is rented twice).

When many hosts are unreachable at once, the likelier cause is this controller's own network:
like the node lifecycle controller's full-disruption mode, no instance is replaced while at least
:data:`HOLD_MIN` instances and more than :data:`HOLD_FRACTION` of those probed are unreachable,
nor for one grace after such a hold (hosts come back one by one: each gets its whole grace).

Pure: the reconciler does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .health import HealthState

REPLACING = "replacing"
HOLD_MIN = 3
HOLD_FRACTION = 0.55


@dataclass(frozen=True, slots=True)
class Replacing:
    """The ``replacing`` entry of a launch record: the instance being replaced and why."""

    instance_id: int
    machine_id: int | None
    reason: str
    cause: str = "HostUnreachable"  # the container's lastState reason (VastInterrupted: an outbid move)

    @classmethod
    def read(cls, record: Mapping[str, Any]) -> Replacing | None:
        raw = record.get(REPLACING)
        if not isinstance(raw, Mapping):
            return None
        instance = raw.get("instance")
        if isinstance(instance, bool) or not isinstance(instance, int):
            return None
        machine = raw.get("machine")
        return cls(instance, machine if isinstance(machine, int) and not isinstance(machine, bool) else None,
                   str(raw.get("reason") or ""), str(raw.get("cause") or "HostUnreachable"))

    def encode(self) -> dict[str, Any]:
        return {"instance": self.instance_id, "machine": self.machine_id, "reason": self.reason,
                "cause": self.cause}


def unreachable_for(state: HealthState, now: float) -> float | None:
    """Seconds the instance's host has been unreachable (None: it answers)."""
    return None if state.unreachable_since is None else max(0.0, now - state.unreachable_since)


def due(state: HealthState, now: float, grace: float) -> bool:
    """Is the instance to be replaced: its host unreachable for at least ``grace`` (> 0) seconds."""
    since = unreachable_for(state, now)
    return grace > 0 and since is not None and since >= grace


def held(unreachable: int, probed: int) -> bool:
    """Hold every replacement: so many hosts unreachable that this controller's own network is
    the likelier cause."""
    return unreachable >= HOLD_MIN and probed > 0 and unreachable / probed > HOLD_FRACTION


def begin(record: Mapping[str, Any], replacing: Replacing) -> dict[str, Any]:
    """The launch record with ``replacing`` written and the old machine avoided from now on."""
    out = dict(record)
    failed = [m for m in out.get("failedMachines", []) if isinstance(m, int)]
    if replacing.machine_id is not None and replacing.machine_id not in failed:
        failed.append(replacing.machine_id)
    out["failedMachines"] = failed[-50:]
    out["attempts"] = 0
    out["lastFailure"] = {"reason": replacing.cause, "instanceId": replacing.instance_id}
    out[REPLACING] = replacing.encode()
    return out


def finish(record: Mapping[str, Any]) -> dict[str, Any]:
    """The launch record once the old instance is confirmed gone."""
    return {k: v for k, v in record.items() if k != REPLACING}
