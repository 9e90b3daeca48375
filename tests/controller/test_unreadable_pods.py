"""The controller's read of a pod (controller.intake): a pod with a field kube-vast reads in the wrong
shape gets nothing rented and an ``InvalidPod`` Event naming the field; a deleted one still gives
back its instance; a bug in a reconcile never ends the worker. Against the simulator over real
HTTP, with :class:`FakeKube` at the controller's Kubernetes seam."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from controller.reconciler import FINALIZER, RETRY_LATER, safe_reconcile

from .test_reconciler_lifecycle import NS, gpu_pod, simulator, world  # noqa: F401 - world: the fixture

sim = pytest.fixture(simulator(seed=11, offers=200), name="sim")


@pytest.mark.parametrize("where, value, path", [
    (("containers", 0, "resources", "limits", "nvidia.com/gpu"), [], "spec.containers[0].resources.limits[nvidia.com/gpu]"),
    (("containers",), 5, "spec.containers"),
    (("containers", 0, "ports"), True, "spec.containers[0].ports"),
    (("containers", 0, "env"), {"A": "1"}, "spec.containers[0].env"),
    (("restartPolicy",), ["Never"], "spec.restartPolicy"),
])
def test_a_pod_with_a_field_of_the_wrong_shape_gets_nothing_rented_and_an_event_naming_it(world, where, value, path):
    pod = gpu_pod("odd")
    node = pod["spec"]
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    world.kube.add_pod(pod)
    for _ in range(3):
        world.fleet.refresh()
        assert world.rec.reconcile(NS, "odd") is None
    assert world.ledger() == [], "nothing rented"
    stored = world.kube.get_pod(NS, "odd")
    assert stored is not None and FINALIZER not in (stored["metadata"].get("finalizers") or [])
    [(kind, reason, message)] = [e for e in world.kube.events if e[1] == "InvalidPod"]
    assert kind == "Warning" and f"{path}: expected" in message, message


def test_a_pod_whose_metadata_cannot_be_read_is_only_logged(world, caplog):
    pod = gpu_pod("nameless")
    pod["metadata"]["labels"] = ["app"]
    world.kube.add_pod(pod)
    with caplog.at_level(logging.WARNING, logger="kube_vast.controller"):
        assert world.rec.reconcile(NS, "nameless") is None
    assert world.ledger() == [] and world.kube.events == []
    assert "metadata.labels: expected an object of strings, got a list" in caplog.text


def test_a_pod_on_another_node_is_not_reported_even_when_it_cannot_be_read(world):
    pod = gpu_pod("elsewhere")
    pod["spec"]["nodeName"] = "cpu-node-1"
    pod["spec"]["containers"] = "app"
    world.kube.add_pod(pod)
    assert world.rec.reconcile(NS, "elsewhere") is None
    assert world.kube.events == [] and world.ledger() == []


def test_a_deleted_pod_whose_spec_became_unreadable_still_gives_back_its_instance(world):
    world.kube.add_pod(gpu_pod("served", grace=0))
    world.drive("served", lambda p: bool(p and p["status"].get("phase") == "Running"), what="running")
    [instance] = world.ledger()
    stored = world.kube.pods[(NS, "served")]
    stored["spec"]["containers"][0]["ports"] = 8000  # as no API server would store it
    world.kube.delete_gracefully(NS, "served", grace=0)
    world.drive("served", lambda p: p is None, what="pod gone")
    [after] = [i for i in world.ledger() if i["id"] == instance["id"]]
    assert after["destroyed"], after
    assert "InvalidPod" in world.kube.reasons()


class _Broken:
    """A Kubernetes seam whose read fails with a bug (not a KubeError)."""

    def get_pod(self, namespace: str, name: str) -> Any:
        raise RuntimeError("a bug")


def test_a_bug_in_a_reconcile_is_logged_and_retried_later_never_raised(world, caplog):
    world.rec.kube = _Broken()  # type: ignore[assignment]
    with caplog.at_level(logging.ERROR, logger="kube_vast.controller"):
        assert safe_reconcile(world.rec, NS, "any") == RETRY_LATER
    assert "reconcile failed with a bug" in caplog.text and "RuntimeError: a bug" in caplog.text
