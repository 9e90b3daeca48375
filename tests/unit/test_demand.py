"""Demand-driven market watching, the pure part: requirements become Vast filters that never lose
an offer the pod accepts, few searches cover many pods, truncated answers are continued."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.offer_factory import make_offer
from vastmarket.demand import MarketQuery, Want, covers, merge, narrow, plan, split, want_of
from vastmarket.offers import parse_offers
from vastmarket.requirements import Requirements
from vastmarket.selection import OfferTable, rank
from vastsim.catalog import GPU_MODELS
from vastsim.offerset import generate_offers
from vastsim.search import parse_offer_query, search_offers

NAMES = sorted({m.name for m in GPU_MODELS})
MARKET = generate_offers(3, 3000)
FIELDS = frozenset(MARKET[0])


def vast(filters: dict[str, Any]) -> set[int]:
    """The ids the simulator's search engine (Vast's semantics) answers for ``filters``."""
    answer = search_offers(MARKET, parse_offer_query({**filters, "limit": 10_000}, fields=FIELDS), now=1.75e9)
    return {o["id"] for o in answer.offers}


TABLE = OfferTable(parse_offers([o for o in MARKET if o["rentable"] and not o["external"]]).offers)


def passing(req: Requirements) -> set[int]:
    """The ids kube-vast's own ranking accepts for ``req`` on the whole market."""
    return set(rank(TABLE, req).offer_ids())


def test_gpu_models_become_vasts_names_with_families_and_fallbacks() -> None:
    want = want_of(Requirements(gpu_types=("RTX3060", "A100", "A4000")), NAMES)
    assert want.gpu_names == {"RTX 3060", "A100 PCIE", "A100 SXM4", "RTX A4000"}


def test_a_model_the_market_does_not_have_is_not_searched_for() -> None:
    assert want_of(Requirements(gpu_types=("RTX3060", "RTX9999")), NAMES).gpu_names == {"RTX 3060"}
    nowhere = want_of(Requirements(gpu_types=("RTX9999",)), NAMES)
    assert nowhere.gpu_names == frozenset() and plan([nowhere]) == []
    assert want_of(Requirements(), NAMES).gpu_names is None


def test_without_a_name_list_vast_does_not_filter_gpu_models() -> None:
    assert want_of(Requirements(gpu_types=("RTX3060",)), []).gpu_names is None


def test_regions_become_the_endings_vast_matches_including_spelled_out_countries() -> None:
    tails = want_of(Requirements(locations=("US-CA", "DE")), NAMES).geolocations
    assert tails is not None and {"US", "DE", "ES"} <= tails  # "California, United States" ends in ES


def test_the_filters_carry_every_hard_requirement_vast_can_apply() -> None:
    req = Requirements(gpu_types=("RTX4090",), max_price=0.6, min_reliability=0.97, min_gpu_memory_gb=24,
                       num_gpus=2, direct_ports=2, min_download_mbps=300, min_disk_gb=40, verified_only=True,
                       locations=("US",))
    filters = MarketQuery(want_of(req, NAMES)).filters()
    assert filters["gpu_name"] == {"in": ["RTX 4090"]} and filters["dph_total"] == {"lte": 0.6}
    assert filters["reliability"] == {"gte": 0.97} and filters["num_gpus"] == {"gte": 2}
    assert filters["direct_port_count"] == {"gte": 2} and filters["inet_down"] == {"gte": 300}
    assert filters["disk_space"] == {"gte": 40} and filters["verified"] == {"eq": True}
    assert filters["gpu_ram"]["gte"] == pytest.approx(24_000)
    assert filters["external"] == {"eq": False} and filters["rentable"] == {"eq": True}
    assert "external" not in MarketQuery(want_of(req, NAMES), include_external=True).filters()


REQUIREMENTS = st.builds(
    Requirements,
    gpu_types=st.lists(st.sampled_from(["RTX3060", "RTX4090", "A100", "A4000", "H100", "RTX3090", "L4"]),
                       max_size=3, unique=True).map(tuple),
    min_gpu_memory_gb=st.sampled_from([0, 8, 12, 24, 40]),
    num_gpus=st.sampled_from([1, 1, 2, 4]),
    max_price=st.sampled_from([0.2, 0.5, 1.0, 3.0, 10.0]),
    min_reliability=st.sampled_from([0.0, 0.9, 0.95, 0.99]),
    min_download_mbps=st.sampled_from([0, 100, 500]),
    locations=st.lists(st.sampled_from(["US", "US-CA", "EU", "DE", "ASIA", "JP", "NA"]), max_size=2,
                       unique=True).map(tuple),
    min_disk_gb=st.sampled_from([0, 10, 50]),
    direct_ports=st.sampled_from([0, 1, 3]),
    verified_only=st.booleans(),
    min_cpu_cores=st.sampled_from([0, 4]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REQUIREMENTS)
def test_vast_answers_every_offer_the_pod_accepts(req: Requirements) -> None:
    """The want is a relaxation: Vast's answer holds every offer kube-vast's ranking accepts."""
    assert passing(req) <= vast(MarketQuery(want_of(req, NAMES)).filters())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(REQUIREMENTS, min_size=1, max_size=8), st.integers(1, 3))
def test_the_plan_answers_every_offer_any_pod_accepts_within_its_budget(reqs: list[Requirements], budget: int) -> None:
    queries = plan([want_of(r, NAMES) for r in reqs], max_queries=budget)
    assert 1 <= len(queries) <= budget
    answered = set().union(*(vast(q.filters()) for q in queries))
    for req in reqs:
        assert passing(req) <= answered


def test_a_want_another_covers_costs_no_search() -> None:
    config = want_of(Requirements(gpu_types=("RTX4090", "RTX3090"), max_price=1.0, locations=("US", "EU")), NAMES)
    pod = want_of(Requirements(gpu_types=("RTX4090",), max_price=0.5, locations=("US",), direct_ports=2), NAMES)
    assert covers(config, pod) and not covers(pod, config)
    assert [q.want for q in plan([config, pod, pod])] == [config]


def test_wants_for_other_places_are_merged_down_to_the_budget() -> None:
    wants = [want_of(Requirements(gpu_types=(g,), locations=(r,), max_price=p), NAMES)
             for g, r, p in (("RTX4090", "US", 0.5), ("RTX3090", "EU", 0.4), ("L4", "JP", 0.9))]
    assert len(plan(wants, max_queries=3)) == 3
    (one,) = plan(wants, max_queries=1)
    assert all(covers(one.want, w) for w in wants)
    assert one.want.max_price == 0.9 and one.want.gpu_names == {"RTX 4090", "RTX 3090", "L4"}


def test_merge_takes_the_loosest_bound_of_each_filter() -> None:
    a = Want(gpu_names=frozenset({"A"}), max_price=0.5, min_reliability=0.99, min_direct_ports=3, verified_only=True)
    b = Want(gpu_names=None, max_price=0.3, min_reliability=0.9, min_direct_ports=1)
    m = merge(a, b)
    assert m.gpu_names is None and m.max_price == 0.5 and m.min_reliability == 0.9
    assert m.min_direct_ports == 1 and m.verified_only is False


def test_a_truncated_answer_is_continued_from_its_highest_price() -> None:
    query = MarketQuery(Want(max_price=1.0))
    page = [make_offer(i, dph_total=p) for i, p in enumerate([0.1, 0.2, 0.2, 0.3, 0.3], start=1)]
    narrowed = narrow(query, page)
    assert narrowed is not None
    kept, rest = narrowed
    assert [o.dph_total for o in kept] == [0.1, 0.2, 0.2]
    assert rest.filters()["dph_total"] == {"lte": 1.0, "gte": 0.3}


def test_an_answer_of_one_price_is_split_by_gpu_model_instead() -> None:
    query = MarketQuery(Want(gpu_names=frozenset({"A", "B", "C"}), max_price=1.0))
    assert narrow(query, [make_offer(i, dph_total=0.2) for i in range(3)]) is None
    halves = split(query)
    assert halves is not None
    assert {frozenset(h.want.gpu_names or ()) for h in halves} == {frozenset({"A"}), frozenset({"B", "C"})}
    assert split(replace(query, want=replace(query.want, gpu_names=frozenset({"A"})))) is None
