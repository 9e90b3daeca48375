"""The pod ``status`` kube-vast writes through the pod status subresource, like a virtual kubelet
(kubernetes-protocols.md §5) would.

Contract
--------
- Pure: :func:`pod_status`, :func:`failed_status`, :func:`terminated_status` (the container ended:
  Succeeded or Failed by its exit) and :func:`restarting_status` (the container ended and is being
  restarted) build a *complete* ``status`` object from the
  pod (a plain Kubernetes JSON dict, read for its container, readiness gates and current status)
  and what the reconciler knows about the instance. Times are RFC 3339 strings passed in (``now``);
  :func:`rfc3339` formats an epoch (Vast's ``start_date``).
- Conditions ``PodScheduled``, ``Initialized``, ``ContainersReady`` and ``Ready``, with the kubelet's
  reasons (``ContainersNotReady``, ``ReadinessGatesNotReady``, ``PodCompleted``, ``PodFailed``).
  ``lastTransitionTime`` is kept from the existing status when a condition's value does not change.
  Other conditions already on the pod (readiness gates, ``DisruptionTarget``...) are kept as they are;
  ``Ready`` also requires every ``spec.readinessGates`` condition to be ``True``.
- One ``containerStatuses`` entry for the one container: ``state`` ``running{startedAt}``,
  ``waiting{reason,message}`` or ``terminated{exitCode,reason,message,startedAt,finishedAt}``.
  ``restartCount``, ``lastState``, ``startTime``, ``qosClass``, a terminated ``finishedAt`` and a
  running ``startedAt`` (a container that keeps running keeps its start) are carried over from
  the existing status unless given.
- The status is complete, for an update of the status subresource or a merge patch
  ``{"status": ...}``: keys that must not be there (``reason``, ``message``, ``hostIP``,
  ``hostIPs`` and the container states other than the current one) are present as ``None``
  (JSON null), which a JSON merge patch or a strategic merge patch deletes and an update ignores.
- ``hostIP``/``hostIPs`` are the instance's public IP. There is deliberately **no** ``podIP`` /
  ``podIPs``: with a pod IP, the built-in Endpoints/EndpointSlice controllers would publish the
  Service's target port on that address, which nothing in the cluster can reach (the container
  listens on a Vast machine behind random host ports). kube-vast publishes its own EndpointSlices
  (:mod:`controller.endpoints`) pointing at ``public IP:host port`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal

from .shapes import mapping as _mapping, items as _list, text as _text

ContainerState = Literal["running", "waiting", "terminated"]
PHASES = frozenset({"Pending", "Running", "Succeeded", "Failed", "Unknown"})
LOST_EXIT_CODE = -137  # virtual-kubelet's exit code for a pod its provider no longer knows
_OWN_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")


def rfc3339(epoch_seconds: float) -> str:
    """``1700000000.5`` → ``2023-11-14T22:13:20Z`` (whole seconds, UTC, as Kubernetes writes)."""
    return datetime.fromtimestamp(int(epoch_seconds), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_status(
    pod: Mapping[str, Any],
    *,
    phase: str,
    ready: bool,
    public_ip: str | None,
    started_at: str | None,
    reason: str | None = None,
    message: str | None = None,
    container_state: ContainerState = "running",
    now: str,
    exit_code: int | None = None,
    restart_count: int | None = None,
    container_id: str | None = None,
    last_state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The status to write. ``ready`` is the health check's verdict (it only counts while the
    container runs); ``reason``/``message`` go on the pod and on a waiting or terminated container
    state; ``exit_code`` defaults to 0 for Succeeded, 1 otherwise; ``restart_count`` and
    ``last_state`` default to the existing ones; ``container_id`` (e.g. ``vast://12345``) is set
    when given."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {sorted(PHASES)}, not {phase!r}")
    if container_state not in ("running", "waiting", "terminated"):
        raise ValueError(f"container_state must be running, waiting or terminated, not {container_state!r}")
    existing = _mapping(pod.get("status"))
    container = _container(pod)
    name = _text(container.get("name"))
    container_ready = ready and container_state == "running" and phase == "Running"

    status: dict[str, Any] = {
        "phase": phase,
        "conditions": _conditions(pod, existing, phase=phase, container=name,
                                  containers_ready=container_ready, now=now),
        "containerStatuses": [_container_status(
            pod, container, existing, ready=container_ready, state=container_state, phase=phase,
            started_at=started_at, reason=reason, message=message, exit_code=exit_code,
            restart_count=restart_count, container_id=container_id, last_state=last_state, now=now)],
        "startTime": existing.get("startTime") or now,
    }
    # Absent values are JSON nulls: a merge or strategic-merge patch then removes stale ones too.
    status["hostIP"] = public_ip or None
    status["hostIPs"] = [{"ip": public_ip}] if public_ip else None
    status["reason"] = reason or None
    status["message"] = message or None
    if existing.get("qosClass"):
        status["qosClass"] = existing["qosClass"]
    return status


def failed_status(
    pod: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    now: str,
    exit_code: int = LOST_EXIT_CODE,
) -> dict[str, Any]:
    """Failed for good (the instance is lost): the container terminated with ``exit_code``
    (virtual-kubelet's -137 by default), the last known host IP and start time kept."""
    existing = _mapping(pod.get("status"))
    return pod_status(
        pod, phase="Failed", ready=False, public_ip=_text(existing.get("hostIP")) or None,
        started_at=_last_started_at(existing), reason=reason, message=message,
        container_state="terminated", now=now, exit_code=exit_code,
    )


def terminated_status(
    pod: Mapping[str, Any],
    *,
    phase: str,
    exit_code: int,
    reason: str,
    message: str | None,
    now: str,
    pod_reason: str | None = None,
    pod_message: str | None = None,
) -> dict[str, Any]:
    """The container ended for good: ``phase`` Succeeded or Failed, the container terminated with
    ``exit_code`` and ``reason`` (``Completed``, ``Error``…) and Vast's ``message``; the pod's own
    reason only when given (a kubelet sets none for an ordinary exit). The last host IP, the start
    time, the restart count and the last state are kept."""
    existing = _mapping(pod.get("status"))
    status = pod_status(
        pod, phase=phase, ready=False, public_ip=_text(existing.get("hostIP")) or None,
        started_at=_last_started_at(existing), reason=reason, message=message,
        container_state="terminated", now=now, exit_code=exit_code,
    )
    status["reason"] = pod_reason or None
    status["message"] = pod_message or None
    return status


def restarting_status(
    pod: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    last_terminated: Mapping[str, Any],
    restart_count: int,
    now: str,
) -> dict[str, Any]:
    """The container ended and is being restarted on the same instance: the pod stays Running and
    not ready, the container waits (``CrashLoopBackOff`` during the back-off, ``ContainerCreating``
    while the instance starts again) with ``lastState.terminated`` and ``restartCount``."""
    existing = _mapping(pod.get("status"))
    status = pod_status(
        pod, phase="Running", ready=False, public_ip=_text(existing.get("hostIP")) or None,
        started_at=None, reason=reason, message=message, container_state="waiting", now=now,
        restart_count=restart_count, last_state={"terminated": dict(last_terminated)},
    )
    status["reason"] = None
    status["message"] = None
    return status


def restart_count(pod: Mapping[str, Any]) -> int:
    """The container's ``restartCount`` in the pod's current status (0 when none)."""
    existing = _mapping(pod.get("status"))
    name = _text(_container(pod).get("name"))
    count = _existing_container_status(existing, name).get("restartCount")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def started_at(pod: Mapping[str, Any]) -> str | None:
    """When the container last started, from the pod's current status."""
    return _last_started_at(_mapping(pod.get("status")))


# --- parts --------------------------------------------------------------------------------------




def _container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = _list(_mapping(pod.get("spec")).get("containers"))
    return next((c for c in containers if isinstance(c, Mapping)), {})


def _existing_container_status(existing: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    statuses = [_mapping(s) for s in _list(existing.get("containerStatuses"))]
    return next((s for s in statuses if s.get("name") == name), {})


def _last_started_at(existing: Mapping[str, Any]) -> str | None:
    for status in _list(existing.get("containerStatuses")):
        state = _mapping(_mapping(status).get("state"))
        for kind in ("running", "terminated"):
            started = _mapping(state.get(kind)).get("startedAt")
            if isinstance(started, str) and started:
                return started
    return None


def _image(pod: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    """The image that runs: the ``vast.ai/image`` override if any, else the container's."""
    annotations = _mapping(_mapping(pod.get("metadata")).get("annotations"))
    override = _text(annotations.get("vast.ai/image")).strip()
    return override or _text(container.get("image"))


def _container_status(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    existing: Mapping[str, Any],
    *,
    ready: bool,
    state: ContainerState,
    phase: str,
    started_at: str | None,
    reason: str | None,
    message: str | None,
    exit_code: int | None,
    restart_count: int | None,
    container_id: str | None,
    last_state: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    name = _text(container.get("name"))
    previous = _existing_container_status(existing, name)
    previous_state = _mapping(previous.get("state"))
    body: dict[str, Any]
    if state == "running":
        kept = _mapping(previous_state.get("running")).get("startedAt")
        body = {"startedAt": kept if isinstance(kept, str) and kept else started_at or now}
    elif state == "waiting":
        body = {"reason": reason or "ContainerCreating"}
        if message:
            body["message"] = message
    else:
        finished = _mapping(previous_state.get("terminated")).get("finishedAt")
        body = {
            "exitCode": exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1),
            "reason": reason or ("Completed" if phase == "Succeeded" else "Error"),
            "finishedAt": finished if isinstance(finished, str) and finished else now,
        }
        if message:
            body["message"] = message
        if started_at:
            body["startedAt"] = started_at
    count = previous.get("restartCount") if restart_count is None else restart_count
    status: dict[str, Any] = {
        "name": name,
        "image": _image(pod, container),
        "imageID": "",
        "ready": ready,
        "started": state == "running",
        "restartCount": count if isinstance(count, int) and not isinstance(count, bool) else 0,
        "state": {kind: body if kind == state else None for kind in ("running", "waiting", "terminated")},
        "lastState": dict(_mapping(previous.get("lastState") if last_state is None else last_state)),
    }
    if container_id:
        status["containerID"] = container_id
    return status


def _condition(
    kind: str, value: bool, existing: Mapping[str, Mapping[str, Any]], now: str,
    reason: str | None = None, message: str | None = None,
) -> dict[str, Any]:
    status = "True" if value else "False"
    before = existing.get(kind, {})
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since if isinstance(since, str) and since else now,
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _conditions(
    pod: Mapping[str, Any],
    existing_status: Mapping[str, Any],
    *,
    phase: str,
    container: str,
    containers_ready: bool,
    now: str,
) -> list[dict[str, Any]]:
    raw = [_mapping(c) for c in _list(existing_status.get("conditions"))]
    existing = {_text(c.get("type")): c for c in raw}

    not_ready_reason: str | None = None
    not_ready_message: str | None = None
    if phase == "Succeeded":
        not_ready_reason = "PodCompleted"
    elif phase == "Failed":
        not_ready_reason = "PodFailed"
    elif not containers_ready:
        not_ready_reason = "ContainersNotReady"
        not_ready_message = f"containers with unready status: [{container}]"

    gate_message = _unready_gate(pod, existing)
    pod_ready = containers_ready and gate_message is None
    if containers_ready:
        ready_reason, ready_message = ("ReadinessGatesNotReady", gate_message) if gate_message else (None, None)
    else:
        ready_reason, ready_message = not_ready_reason, not_ready_message

    own = [
        _condition("PodScheduled", True, existing, now),
        _condition("Initialized", True, existing, now),
        _condition("ContainersReady", containers_ready, existing, now,
                   None if containers_ready else not_ready_reason,
                   None if containers_ready else not_ready_message),
        _condition("Ready", pod_ready, existing, now, ready_reason, ready_message),
    ]
    others = [dict(c) for c in raw if c.get("type") not in _OWN_CONDITIONS]
    return own + others


def _unready_gate(pod: Mapping[str, Any], existing: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The kubelet's message for the first readiness gate that is not True, else None."""
    for gate in _list(_mapping(pod.get("spec")).get("readinessGates")):
        kind = _text(_mapping(gate).get("conditionType"))
        if not kind:
            continue
        condition = existing.get(kind)
        if condition is None:
            return f'corresponding condition of pod readiness gate "{kind}" does not exist.'
        if condition.get("status") != "True":
            return f'the status of pod readiness gate "{kind}" is not "True", but {condition.get("status")}'
    return None
