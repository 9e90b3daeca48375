"""Graceful termination of a deleted pod's instance, like a kubelet's: out of its Services first,
then SIGTERM (Vast's stop), then the pod's grace period, then the instance is destroyed.

Contract
--------
- Pure: functions of the pod (a plain Kubernetes JSON dict), the instance as Vast shows it and
  the time; the reconciler does the calls.
- The deadline is the pod's own record: the API server sets ``deletionTimestamp`` to the moment
  of deletion plus ``deletionGracePeriodSeconds`` (the pod's ``terminationGracePeriodSeconds``,
  30 by default, or the delete request's override). A controller restarted in the middle reads
  the same deadline from the pod, so nothing needs writing. The grace is bounded by the
  controller's ``max_grace_period``: a stopped instance still bills for storage, a running one
  for its GPU.

==========================================  ===========
the instance shows                          then
==========================================  ===========
past the deadline (whatever its state)      DESTROY
not running (stopped, exited, loading...)   DESTROY: nothing left to stop
running, intended running                   STOP (SIGTERM to the container)
running, intended stopped                   WAIT: the container is shutting down
==========================================  ===========
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from vastmarket.instances import Instance

from .shapes import mapping as _mapping

DEFAULT_GRACE = 30


class Drain(enum.Enum):
    STOP = "stop"
    WAIT = "wait"
    DESTROY = "destroy"


def grace_seconds(pod: Mapping[str, Any]) -> int:
    """The grace the deletion gave: ``deletionGracePeriodSeconds``, else the pod's
    ``terminationGracePeriodSeconds``, else 30."""
    for value in (_mapping(pod.get("metadata")).get("deletionGracePeriodSeconds"),
                  _mapping(pod.get("spec")).get("terminationGracePeriodSeconds")):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return DEFAULT_GRACE


def deadline(pod: Mapping[str, Any], *, max_grace: float) -> float | None:
    """Epoch seconds by which the deleted pod's instance is destroyed; None when the pod is not
    being deleted or its ``deletionTimestamp`` does not parse (then at once)."""
    stamp = _mapping(pod.get("metadata")).get("deletionTimestamp")
    if not isinstance(stamp, str):
        return None
    try:
        end = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    grace = grace_seconds(pod)
    return end - grace + min(float(grace), max_grace)


def drain_step(instance: Instance, *, now: float, deadline: float | None) -> Drain:
    """What to do with one instance of a deleted pod now (the table in the module docstring)."""
    if deadline is None or now >= deadline or not instance.running:
        return Drain.DESTROY
    return Drain.WAIT if instance.stop_requested else Drain.STOP
