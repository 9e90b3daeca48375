import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.status import failed_status, pod_status, rfc3339

from .objects import june_pod

T0 = "2025-03-01T10:00:01Z"
T1 = "2025-03-01T10:05:00Z"
NOW = "2025-03-01T10:10:00Z"
IP = "203.0.113.7"


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def container(status: dict[str, Any]) -> dict[str, Any]:
    [only] = status["containerStatuses"]
    return only


def current_state(status: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    [(kind, body)] = [(k, v) for k, v in container(status)["state"].items() if v is not None]
    return kind, body


def running(pod: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"phase": "Running", "ready": True, "public_ip": IP, "started_at": T1, "now": NOW}
    return pod_status(june_pod() if pod is None else pod, **{**args, **kwargs})


def waiting(pod: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"phase": "Pending", "ready": False, "public_ip": None, "started_at": None,
                            "container_state": "waiting", "now": NOW}
    return pod_status(june_pod() if pod is None else pod, **{**args, **kwargs})


def with_status(status: dict[str, Any]) -> dict[str, Any]:
    pod = june_pod()
    pod["status"] = copy.deepcopy(status)
    return pod


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies ``application/merge-patch+json``."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- a running, healthy instance ----------------------------------------------------------------

def test_a_ready_instance_gives_a_running_ready_pod_at_the_public_ip():
    status = running()
    assert status["phase"] == "Running"
    assert {t: c["status"] for t, c in conditions(status).items()} == {
        "PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    assert container(status) == {
        "name": "june", "image": "ghcr.io/june-ai/speech:2.3.1", "imageID": "", "ready": True,
        "started": True, "restartCount": 0, "lastState": {},
        "state": {"running": {"startedAt": T1}, "waiting": None, "terminated": None},
    }
    assert status["hostIP"] == IP and status["hostIPs"] == [{"ip": IP}]
    assert status["startTime"] == NOW
    assert status["qosClass"] == "Burstable"
    assert status["reason"] is None and status["message"] is None


def test_there_is_never_a_pod_ip():
    status = running()
    assert "podIP" not in status and "podIPs" not in status


def test_an_unhealthy_instance_is_running_but_not_ready_with_the_kubelet_reason():
    status = running(ready=False, message="GET http://203.0.113.7:42351/healthz: 503")
    cond = conditions(status)
    for kind in ("ContainersReady", "Ready"):
        assert cond[kind]["status"] == "False"
        assert cond[kind]["reason"] == "ContainersNotReady"
        assert cond[kind]["message"] == "containers with unready status: [june]"
    assert container(status)["ready"] is False and container(status)["started"] is True
    assert status["message"] == "GET http://203.0.113.7:42351/healthz: 503"


def test_the_container_id_and_restart_count_are_set_when_given():
    status = running(container_id="vast://12345", restart_count=2)
    assert container(status)["containerID"] == "vast://12345"
    assert container(status)["restartCount"] == 2


def test_the_image_override_is_the_image_reported():
    pod = june_pod()
    pod["metadata"]["annotations"]["vast.ai/image"] = "docker.io/june/speech-cuda12:2.3.1"
    assert container(running(pod))["image"] == "docker.io/june/speech-cuda12:2.3.1"


# --- waiting -------------------------------------------------------------------------------------

def test_a_pod_waiting_for_its_instance_is_pending_and_container_creating():
    status = waiting(message="Vast instance 12345 is loading")
    assert status["phase"] == "Pending"
    assert current_state(status) == ("waiting", {"reason": "ContainerCreating",
                                                 "message": "Vast instance 12345 is loading"})
    assert container(status)["ready"] is False and container(status)["started"] is False
    assert status["hostIP"] is None and status["hostIPs"] is None
    assert conditions(status)["Ready"]["reason"] == "ContainersNotReady"


def test_a_config_error_is_the_waiting_reason_and_the_pod_reason():
    status = waiting(reason="CreateContainerConfigError", message='secret "june-secrets" not found')
    assert current_state(status) == ("waiting", {"reason": "CreateContainerConfigError",
                                                 "message": 'secret "june-secrets" not found'})
    assert (status["reason"], status["message"]) == ("CreateContainerConfigError", 'secret "june-secrets" not found')


def test_ready_is_ignored_unless_the_container_runs():
    status = waiting(ready=True)
    assert conditions(status)["Ready"]["status"] == "False" and container(status)["ready"] is False


# --- terminated ----------------------------------------------------------------------------------

@pytest.mark.parametrize("phase, exit_code, reason, condition_reason", [
    ("Succeeded", 0, "Completed", "PodCompleted"),
    ("Failed", 1, "Error", "PodFailed"),
])
def test_a_terminated_container_gets_the_kubelet_defaults(phase, exit_code, reason, condition_reason):
    status = running(phase=phase, ready=False, container_state="terminated")
    assert current_state(status) == ("terminated", {"exitCode": exit_code, "reason": reason,
                                                    "startedAt": T1, "finishedAt": NOW})
    assert conditions(status)["Ready"]["reason"] == condition_reason
    assert conditions(status)["ContainersReady"]["reason"] == condition_reason
    assert container(status)["started"] is False


def test_finished_at_is_kept_when_the_container_had_already_terminated():
    first = running(phase="Failed", ready=False, container_state="terminated", exit_code=137, now=T1)
    again = running(with_status(first), phase="Failed", ready=False, container_state="terminated",
                    exit_code=137, now=NOW)
    assert current_state(again)[1]["finishedAt"] == T1


def test_a_lost_instance_fails_the_pod_like_virtual_kubelet():
    before = with_status(running())
    status = failed_status(before, reason="InstanceLost", message="instance 12345 is offline", now=NOW)
    assert status["phase"] == "Failed"
    assert (status["reason"], status["message"]) == ("InstanceLost", "instance 12345 is offline")
    assert current_state(status) == ("terminated", {"exitCode": -137, "reason": "InstanceLost",
                                                    "message": "instance 12345 is offline",
                                                    "startedAt": T1, "finishedAt": NOW})
    assert status["hostIP"] == IP
    assert conditions(status)["Ready"] == {"type": "Ready", "status": "False", "lastProbeTime": None,
                                           "lastTransitionTime": NOW, "reason": "PodFailed"}


def test_a_pod_lost_before_it_ever_ran_fails_without_a_host():
    status = failed_status(june_pod(), reason="InstanceLost", message="gone", now=NOW, exit_code=-1)
    assert status["hostIP"] is None
    assert current_state(status)[1] == {"exitCode": -1, "reason": "InstanceLost", "message": "gone",
                                        "finishedAt": NOW}


# --- carrying the existing status over ------------------------------------------------------------

def test_last_transition_times_are_kept_while_a_condition_keeps_its_value():
    pod = june_pod()  # PodScheduled True since T0, set by the scheduler
    first = waiting(pod, now=T1)
    assert conditions(first)["PodScheduled"]["lastTransitionTime"] == T0
    assert conditions(first)["Ready"]["lastTransitionTime"] == T1

    still_waiting = waiting(with_status(first), now=NOW)
    assert conditions(still_waiting)["Ready"]["lastTransitionTime"] == T1

    now_ready = running(with_status(first), now=NOW)
    assert conditions(now_ready)["Ready"]["lastTransitionTime"] == NOW
    assert conditions(now_ready)["Initialized"]["lastTransitionTime"] == T1
    assert conditions(now_ready)["PodScheduled"]["lastTransitionTime"] == T0


def test_start_time_restart_count_and_last_state_are_carried_over():
    earlier = running(now=T1)
    earlier["containerStatuses"][0]["restartCount"] = 3
    earlier["containerStatuses"][0]["lastState"] = {"terminated": {"exitCode": 137, "reason": "InstanceLost"}}
    status = running(with_status(earlier), now=NOW)
    assert status["startTime"] == T1
    assert container(status)["restartCount"] == 3
    assert container(status)["lastState"] == {"terminated": {"exitCode": 137, "reason": "InstanceLost"}}


def test_conditions_kube_vast_does_not_own_are_kept():
    pod = june_pod()
    disruption = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                  "lastTransitionTime": T0}
    pod["status"]["conditions"].append(disruption)
    status = running(pod)
    assert [c["type"] for c in status["conditions"]] == [
        "PodScheduled", "Initialized", "ContainersReady", "Ready", "DisruptionTarget"]
    assert conditions(status)["DisruptionTarget"] == disruption


@pytest.mark.parametrize("gate_condition, ready, message", [
    (None, "False", 'corresponding condition of pod readiness gate "example.com/lb-ready" does not exist.'),
    ("False", "False", 'the status of pod readiness gate "example.com/lb-ready" is not "True", but False'),
    ("True", "True", None),
])
def test_readiness_gates_must_be_true_for_the_pod_to_be_ready(gate_condition, ready, message):
    pod = june_pod()
    pod["spec"]["readinessGates"] = [{"conditionType": "example.com/lb-ready"}]
    if gate_condition:
        pod["status"]["conditions"].append({"type": "example.com/lb-ready", "status": gate_condition})
    cond = conditions(running(pod))
    assert cond["ContainersReady"]["status"] == "True"
    assert cond["Ready"]["status"] == ready
    assert cond["Ready"].get("message") == message
    if ready == "False":
        assert cond["Ready"]["reason"] == "ReadinessGatesNotReady"


def stored(value: Any) -> Any:
    """What the API server keeps of a JSON document: a null field decodes to nothing."""
    if isinstance(value, dict):
        return {k: stored(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [stored(v) for v in value]
    return value


def test_a_merge_patch_of_the_new_status_leaves_nothing_stale():
    served = stored(running())
    pending_again = waiting(with_status(served), reason="InstanceRestarting", message="instance 12345 is loading")
    patched = stored(merge_patch(served, pending_again))
    assert list(patched["containerStatuses"][0]["state"]) == ["waiting"]
    assert "hostIP" not in patched and "hostIPs" not in patched
    back = stored(merge_patch(patched, running(with_status(patched))))
    assert "reason" not in back and "message" not in back
    assert list(back["containerStatuses"][0]["state"]) == ["running"]


def test_the_pod_is_not_modified():
    pod = june_pod()
    before = copy.deepcopy(pod)
    running(pod)
    failed_status(pod, reason="InstanceLost", message="gone", now=NOW)
    assert pod == before


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"phase": "Booting"}, {"container_state": "paused"}])
def test_an_unknown_phase_or_container_state_is_a_bug(kwargs):
    with pytest.raises(ValueError):
        running(**kwargs)


@pytest.mark.parametrize("pod", [
    {},
    {"metadata": {"name": "x"}, "spec": {"containers": []}, "status": None},
    {"spec": {"containers": [{"name": "c"}]}, "status": {"conditions": "nonsense", "containerStatuses": [1]}},
])
def test_a_sparse_or_odd_pod_still_gets_a_well_formed_status(pod):
    status = running(pod)
    assert [c["type"] for c in status["conditions"]] == ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
    assert len(status["containerStatuses"]) == 1


@pytest.mark.parametrize("epoch, text", [(0, "1970-01-01T00:00:00Z"), (1700000000.9, "2023-11-14T22:13:20Z")])
def test_rfc3339_formats_whole_seconds_in_utc(epoch, text):
    assert rfc3339(epoch) == text


# --- properties ------------------------------------------------------------------------------------

@given(
    phase=st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"]),
    ready=st.booleans(),
    state=st.sampled_from(["running", "waiting", "terminated"]),
    ip=st.sampled_from([None, IP]),
    reason=st.sampled_from([None, "ContainerCreating", "InstanceLost"]),
)
def test_every_status_is_consistent(phase, ready, state, ip, reason):
    status = pod_status(june_pod(), phase=phase, ready=ready, public_ip=ip, started_at=T1, reason=reason,
                        container_state=state, now=NOW)
    cond = conditions(status)
    assert len(cond) == len(status["conditions"])
    assert all(c["lastTransitionTime"] for c in status["conditions"])
    expected_ready = ready and state == "running" and phase == "Running"
    assert cond["Ready"]["status"] == cond["ContainersReady"]["status"] == ("True" if expected_ready else "False")
    assert container(status)["ready"] is expected_ready
    assert current_state(status)[0] == state
    assert "podIP" not in status and "podIPs" not in status
    assert status["hostIP"] == ip
