"""Mutating a copy and diffing it: what the patch contains, and that the original is untouched."""

from __future__ import annotations

import copy

import jsonpatch
import pytest

from tests.webhooks.conftest import captured
from webhooks.mutation import VIRTUAL_NODE_TAINT, Mutation, Taint, diff, mutate, patch_for, rfc3339, tolerates

OURS = VIRTUAL_NODE_TAINT.toleration()


def pod(**spec):
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}], **spec}}


def test_the_original_is_never_changed():
    original = pod(tolerations=[{"key": "k", "operator": "Exists"}])
    frozen = copy.deepcopy(original)
    mutate(original, Mutation({"vast.ai/offer-id": "1"}, frozenset(), VIRTUAL_NODE_TAINT, "vast-scheduler"))
    assert original == frozen


def test_absent_annotations_and_tolerations_are_added_whole():
    original = pod()
    ops = diff(original, mutate(original, Mutation({"vast.ai/offer-id": "1"}, frozenset(), VIRTUAL_NODE_TAINT)))
    assert {"op": "add", "path": "/metadata/annotations", "value": {"vast.ai/offer-id": "1"}} in ops
    assert {"op": "add", "path": "/spec/tolerations", "value": [OURS]} in ops


def test_keys_with_slashes_and_tildes_are_escaped():
    original = {"metadata": {"annotations": {"a~b/c": "x"}}, "spec": {}}
    mutated = mutate(original, Mutation({"vast.ai/offer-id": "1", "x~/y": "2"}, frozenset({"a~b/c"})))
    ops = diff(original, mutated)
    paths = {op["path"] for op in ops}
    assert paths == {"/metadata/annotations/vast.ai~1offer-id", "/metadata/annotations/x~0~1y",
                     "/metadata/annotations/a~0b~1c"}
    assert jsonpatch.apply_patch(original, ops) == mutated


def test_nothing_to_change_gives_an_empty_patch():
    original = pod(tolerations=[OURS], schedulerName="vast-scheduler")
    assert diff(original, mutate(original, Mutation({}, frozenset(), VIRTUAL_NODE_TAINT, "vast-scheduler"))) == []


@pytest.mark.parametrize("current, expected", [
    (None, "vast-scheduler"), ("", "vast-scheduler"), ("default-scheduler", "vast-scheduler"),
    ("volcano", "volcano"), ("vast-scheduler", "vast-scheduler")])
def test_only_an_empty_or_default_scheduler_name_is_replaced(current, expected):
    original = pod(**({} if current is None else {"schedulerName": current}))
    assert mutate(original, Mutation(scheduler_name="vast-scheduler"))["spec"]["schedulerName"] == expected


@pytest.mark.parametrize("toleration, covers", [
    (OURS, True),
    ({"key": "virtual-kubelet.io/provider", "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),
    ({"key": "virtual-kubelet.io/provider", "value": "vast"}, True),  # operator defaults to Equal
    ({"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "vast", "effect": "NoExecute"}, False),
    ({"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "azure"}, False),
    ({"key": "other", "operator": "Exists"}, False),
    ({"operator": "Equal", "value": "vast"}, False),
    ("not a toleration", False),
])
def test_a_toleration_covers_the_taint_by_the_schedulers_rule(toleration, covers):
    assert tolerates(toleration, VIRTUAL_NODE_TAINT) is covers


@pytest.mark.parametrize("text, taint", [
    ("virtual-kubelet.io/provider=vast:NoSchedule", VIRTUAL_NODE_TAINT),
    ("dedicated:NoExecute", Taint("dedicated", "", "NoExecute")),
])
def test_a_taint_parses_from_the_kubectl_form(text, taint):
    assert Taint.parse(text) == taint


@pytest.mark.parametrize("text", ["vast", "a=b", "a=b:Sometimes", "=b:NoSchedule", "a b=c:NoSchedule"])
def test_a_malformed_taint_is_refused_with_the_form(text):
    with pytest.raises(ValueError, match="key\\[=value\\]:Effect"):
        Taint.parse(text)


def test_times_are_rfc3339_utc():
    assert rfc3339(0) == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("name", ["pod-create-generatename", "pod-create-named-two-gpus", "deployment-pod-create"])
@pytest.mark.parametrize("mutation", [
    Mutation({"vast.ai/offer-id": "1"}, frozenset({"vast.ai/gpu-type"}), VIRTUAL_NODE_TAINT, "vast-scheduler"),
    Mutation({}, frozenset(), None, None),
    Mutation({"vast.ai/selection-error": "no offer"}, frozenset(), VIRTUAL_NODE_TAINT, None),
])
def test_the_patch_of_the_owned_part_turns_the_whole_pod_into_the_mutated_pod(name, mutation):
    original = captured(name)["request"]["object"]
    assert jsonpatch.apply_patch(original, patch_for(original, mutation)) == mutate(original, mutation)


@pytest.mark.parametrize("original", [{}, {"metadata": None, "spec": None}, {"metadata": {}}, {"spec": {"containers": []}}])
def test_the_patch_of_the_owned_part_applies_to_pods_missing_sections(original):
    mutation = Mutation({"vast.ai/offer-id": "1"}, frozenset(), VIRTUAL_NODE_TAINT, "vast-scheduler")
    assert jsonpatch.apply_patch(original, patch_for(original, mutation)) == mutate(original, mutation)
