"""The placements of pods just judged are reused for the same pod (uid, resourceVersion and
annotations), on the same snapshot, for a few seconds; anything else is judged again."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from extender.decisions import Context, VirtualNodes, filter_nodes, placement_for, priorities
from extender.placements import RecentPlacements
from extender.protocol import ExtenderArgs, decode_args
from tests.extender.conftest import NOW, captured, market
from vastmarket.config import SelectionConfig
from vastmarket.placement import Placement
from vastmarket.selection import ScoringPolicy
from vastmarket.snapshot import OfferSnapshot

CONFIG = SelectionConfig()


def context(snapshot: OfferSnapshot, now: float = NOW) -> Context:
    return Context(snapshot=snapshot, now=now, config=CONFIG, policy=ScoringPolicy.from_config(CONFIG),
                   virtual=VirtualNodes(), max_snapshot_age=120)


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, args: ExtenderArgs, ctx: Context) -> Placement:
        self.calls += 1
        return placement_for(args, ctx)


def args_with(**meta: Any) -> ExtenderArgs:
    body = copy.deepcopy(captured("filter-nodenames.json"))
    for key, value in meta.items():
        if value is None:
            body["Pod"]["metadata"].pop(key, None)
        else:
            body["Pod"]["metadata"][key] = value
    return decode_args(body)


@pytest.fixture
def snap() -> OfferSnapshot:
    return market()


def test_prioritize_after_filter_reuses_the_placement_and_answers_the_same(snap):
    counting = Counting()
    recent = RecentPlacements(counting)
    args, ctx = args_with(), context(snap)
    decision = filter_nodes(args, ctx, recent)
    scores = priorities(args, context(snap, NOW + 0.5), recent)
    assert counting.calls == 1
    assert decision.placement is not None and decision.placement.chosen.offer.id == 1  # the annotated one
    assert scores == priorities(args, context(snap, NOW + 0.5))  # as judged afresh


@pytest.mark.parametrize("change", [
    {"resourceVersion": "1235"},
    {"uid": "another-pod"},
    {"annotations": {"vast.ai/gpu-type": "RTX3060", "vast.ai/price-max": "0.10"}},
])
def test_another_pod_or_a_changed_one_is_judged_again(snap, change):
    counting = Counting()
    recent = RecentPlacements(counting)
    first = recent(args_with(), context(snap))
    again = recent(args_with(**change), context(snap))
    assert counting.calls == 2
    if "annotations" in change:
        assert first.chosen.offer.id == 1 and again.chosen is None  # nothing RTX3060 under $0.10


def test_a_new_snapshot_or_an_old_answer_is_judged_again(snap):
    counting = Counting()
    recent = RecentPlacements(counting, reuse_seconds=5.0)
    args = args_with()
    recent(args, context(snap))
    recent(args, context(snap, NOW + 4.9))
    assert counting.calls == 1
    recent(args, context(snap, NOW + 10.0))
    assert counting.calls == 2
    recent(args, context(market(), NOW + 10.0))
    assert counting.calls == 3


@pytest.mark.parametrize("meta", [
    {"uid": None}, {"resourceVersion": None}, {"resourceVersion": ""},
    {"annotations": {"vast.ai/gpu-type": ["RTX3060"]}},
])
def test_a_pod_without_an_identity_is_judged_every_time(snap, meta):
    counting = Counting()
    recent = RecentPlacements(counting)
    body = captured("filter-nodenames.json")
    body["Pod"]["metadata"].update({k: v for k, v in meta.items() if v is not None})
    for key in [k for k, v in meta.items() if v is None]:
        del body["Pod"]["metadata"][key]
    args = decode_args(body, validate=False)
    for _ in range(2):
        try:
            recent(args, context(snap))
        except ValueError:  # the unreadable annotation: refused each time
            pass
    assert counting.calls == 2


def test_only_the_newest_pods_are_kept(snap):
    counting = Counting()
    recent = RecentPlacements(counting, kept=2)
    pods = [args_with(uid=f"pod-{k}") for k in range(3)]
    for args in pods:
        recent(args, context(snap))
    recent(pods[2], context(snap))
    assert counting.calls == 3
    recent(pods[0], context(snap))
    assert counting.calls == 4
