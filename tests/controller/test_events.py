"""Events as the controller's gateway records them, on a real kube-apiserver, read back by the real
kubectl: ``kubectl get events --sort-by=.lastTimestamp`` shows every Event with its time and in
time order, and the same Event again is counted instead of copied."""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

import pytest
from kubernetes import client

from controller.kube import KubeGateway
from devcluster import create_namespace, find_binaries

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def world(control_plane: Any) -> tuple[Any, KubeGateway, str, dict[str, Any]]:
    api = control_plane.api_client()
    namespace = f"events-{uuid.uuid4().hex[:8]}"
    create_namespace(api, namespace)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu", "namespace": namespace},
           "spec": {"containers": [{"name": "c", "image": "x"}]}}
    created = client.CoreV1Api(api).create_namespaced_pod(namespace, pod)
    body = api.sanitize_for_serialization(created)
    return control_plane, KubeGateway(api, host="test-host"), namespace, body


def kubectl(control_plane: Any, *args: str) -> str:
    done = subprocess.run([str(find_binaries().kubectl), "--kubeconfig", str(control_plane.kubeconfig_path), *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_events_carry_the_timestamps_and_count_kubectl_sorts_and_shows(world):
    control_plane, kube, namespace, pod = world
    now = time.time()
    # Recorded out of time order: kubectl must sort them by lastTimestamp, not by creation.
    kube.event(pod, "Rented", "instance 42 rented on offer 7", now=now - 60)
    kube.event(pod, "Renting", "renting offer 7", now=now - 120)
    kube.event(pod, "InstanceRunning", "instance 42 running", now=now - 30)

    [*items] = client.CoreV1Api(control_plane.api_client()).list_namespaced_event(namespace).items
    assert sorted((e.reason, e.count) for e in items) == [("InstanceRunning", 1), ("Rented", 1), ("Renting", 1)]
    for e in items:
        assert e.first_timestamp is not None and e.first_timestamp == e.last_timestamp
        assert e.source.component == "kube-vast-controller" and e.source.host == "test-host"
        assert e.involved_object.name == "gpu" and e.involved_object.uid == pod["metadata"]["uid"]

    out = kubectl(control_plane, "get", "events", "-n", namespace, "--sort-by=.lastTimestamp",
                  "-o", "custom-columns=LAST:.lastTimestamp,REASON:.reason,COUNT:.count")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[1] for r in rows] == ["Renting", "Rented", "InstanceRunning"], out
    assert "<nil>" not in out and "<none>" not in out
    table = kubectl(control_plane, "get", "events", "-n", namespace, "--sort-by=.lastTimestamp")
    assert "<nil>" not in table and "<unknown>" not in table and "Renting" in table


def test_the_same_event_again_is_counted_on_the_first_one(world):
    control_plane, kube, namespace, pod = world
    now = time.time()
    kube.event(pod, "NoMatchingOffer", "no offer matches: 3 seen", type_="Warning", now=now - 20)
    kube.event(pod, "NoMatchingOffer", "no offer matches: 3 seen", type_="Warning", now=now - 10)
    kube.event(pod, "NoMatchingOffer", "no offer matches: 3 seen", type_="Warning", now=now)
    kube.event(pod, "NoMatchingOffer", "no offer matches: 4 seen", type_="Warning", now=now)

    events = [e for e in client.CoreV1Api(control_plane.api_client()).list_namespaced_event(namespace).items
              if e.reason == "NoMatchingOffer"]
    by_message = {e.message: e for e in events}
    assert len(events) == 2
    repeated = by_message["no offer matches: 3 seen"]
    assert repeated.count == 3 and repeated.type == "Warning"
    assert (repeated.last_timestamp - repeated.first_timestamp).total_seconds() == pytest.approx(20, abs=1)
    assert by_message["no offer matches: 4 seen"].count == 1


def test_a_refused_event_is_logged_never_raised(world, caplog):
    _, kube, _, pod = world
    ghost = {**pod, "metadata": {**pod["metadata"], "namespace": "no-such-namespace"}}
    kube.event(ghost, "Rented", "instance 42 rented")
    assert any("could not record event Rented" in r.getMessage() for r in caplog.records)


def test_the_events_read_as_complete_events_k8s_io_events_too(world):
    control_plane, kube, namespace, pod = world
    kube.event(pod, "InstanceHealthy", "probe passes")
    items = client.EventsV1Api(control_plane.api_client()).list_namespaced_event(namespace).items
    [event] = [e for e in items if e.reason == "InstanceHealthy"]
    assert event.event_time is not None and event.regarding.name == "gpu"
    assert event.deprecated_count == 1 and event.deprecated_last_timestamp is not None
