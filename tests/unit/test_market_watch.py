"""The market watcher: when it searches (refresh, pods waiting for an offer, new wants), what it
publishes, truncated answers completed, and Vast's search quota honoured (no search before
Retry-After, the last offers served with the pause on them). Vast is the simulator's pure search
engine behind the watcher's ``search`` seam; time is a fake clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bench.market_profile import standard_config, standard_pods
from controller.demand import pod_demand
from vastmarket.errors import SearchQuotaExceeded, VastUnavailable
from vastmarket import market_watch
from vastmarket.market_watch import Demand, MarketWatcher, SearchStats, next_utc_midnight
from vastmarket.offers import Offer, ParsedOffers, parse_offers
from vastmarket.requirements import Requirements
from vastmarket.selection import ScoringPolicy
from vastmarket.snapshot import OfferSnapshot
from vastsim.catalog import GPU_MODELS
from vastsim.offerset import generate_offers
from vastsim.search import parse_offer_query, search_offers

NOW = 1_750_000_000.0
MARKET = generate_offers(5, 4000, now=NOW)
FIELDS = frozenset(MARKET[0])
NAMES = sorted({m.name for m in GPU_MODELS})


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Vast:
    """The search seam: the simulator's engine, a row cap, and failures to raise next."""

    cap: int | None = None
    fail: list[Exception] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    extra: list[Offer] = field(default_factory=list)  # answered with every search (made past the schema)

    def __call__(self, filters: dict[str, Any], order: list[tuple[str, str]], limit: int) -> ParsedOffers:
        self.searches.append(filters)
        if self.fail:
            raise self.fail.pop(0)
        body = {**filters, "order": [list(o) for o in order], "limit": limit}
        answer = search_offers(MARKET, parse_offer_query(body, fields=FIELDS), now=NOW, cap=self.cap)
        parsed = parse_offers(answer.offers)
        return ParsedOffers(parsed.offers + tuple(self.extra), parsed.dropped, truncated=answer.truncated)


def watcher(vast: Vast, demand: Callable[[], Demand], clock: Clock, **kw: Any) -> tuple[MarketWatcher, list[OfferSnapshot]]:
    published: list[OfferSnapshot] = []
    return MarketWatcher(vast, published.append, demand, lambda: NAMES, clock=clock, **kw), published


def whole_market() -> OfferSnapshot:
    usable = [o for o in MARKET if o["rentable"] and not o["rented"] and not o["external"]]
    return OfferSnapshot(parse_offers(usable).offers, taken_at=NOW)


def best_ids(snapshot: OfferSnapshot) -> list[int | None]:
    config = standard_config()
    policy = ScoringPolicy.from_config(config)
    out = []
    for req in pod_demand(config, standard_pods()).requirements:
        best = snapshot.rank(req, policy).best
        out.append(best.offer.id if best else None)
    return out


def profile() -> Demand:
    return pod_demand(standard_config(), standard_pods())


@pytest.mark.parametrize("cap", [None, 150], ids=["whole answers", "answers truncated at 150 rows"])
def test_a_refresh_places_every_pod_where_the_whole_market_would(cap: int | None) -> None:
    vast = Vast(cap=cap)
    watch, published = watcher(vast, profile, Clock())
    snapshot = watch.poll_once()
    assert snapshot is not None and published == [snapshot]
    assert best_ids(snapshot) == best_ids(whole_market())
    assert len(snapshot) < len(whole_market()) / 4
    if cap is not None:
        assert watch.stats.truncated > 0 and watch.stats.incomplete == 0


def test_the_whole_demand_is_searched_every_refresh_interval_and_not_between() -> None:
    vast, clock = Vast(), Clock()
    watch, published = watcher(vast, profile, clock, refresh_interval=240, interval=30)
    watch.step()
    searches = len(vast.searches)
    for _ in range(47):  # 235 s in steps of 5 s: nobody waits for an offer, nothing new
        clock.now += 5
        assert watch.step() is None
    assert len(vast.searches) == searches and len(published) == 1
    clock.now += 5
    assert watch.step() is not None and len(published) == 2


def test_a_pod_waiting_without_an_offer_is_searched_for_every_interval() -> None:
    vast, clock = Vast(), Clock()
    nothing = Requirements(gpu_types=("H100",), max_price=0.05)  # no offer that cheap: it waits
    demand = Demand((Requirements(gpu_types=("RTX4090",)), nothing), waiting=(nothing,))
    watch, published = watcher(vast, lambda: demand, clock, refresh_interval=240, interval=30)
    watch.step()
    rounds = []
    for _ in range(12):  # a minute
        clock.now += 5
        rounds.append(watch.step() is not None)
    assert rounds.count(True) == 2
    assert all(s["gpu_name"] == {"in": ["H100 NVL", "H100 PCIE", "H100 SXM"]} for s in vast.searches[-2:])


def test_a_waiting_pod_that_has_an_offer_costs_no_search() -> None:
    vast, clock = Vast(), Clock()
    placeable = Requirements(gpu_types=("RTX4090",), max_price=2.0)
    watch, _ = watcher(vast, lambda: Demand((placeable,), waiting=(placeable,)), clock)
    watch.step()
    searches = len(vast.searches)
    clock.now += 60
    assert watch.step() is None and len(vast.searches) == searches


def test_a_new_want_is_searched_at_once_and_added_to_the_snapshot() -> None:
    vast, clock = Vast(), Clock()
    demand = [Demand((Requirements(gpu_types=("RTX4090",), max_price=0.6),))]
    watch, published = watcher(vast, lambda: demand[0], clock)
    first = watch.step()
    assert first is not None and {o.gpu_name for o in first.offers} == {"RTX 4090"}
    clock.now += 5
    assert watch.step() is None
    demand[0] = Demand(demand[0].requirements + (Requirements(gpu_types=("L4",), max_price=0.6),))
    clock.now += 5
    second = watch.step()
    assert second is not None and {o.gpu_name for o in second.offers} == {"RTX 4090", "L4"}
    assert second.taken_at == first.taken_at, "an update keeps the refresh's age"
    assert vast.searches[-1]["gpu_name"] == {"in": ["L4"]}


def test_the_quota_pauses_searches_until_retry_after_and_serves_the_last_offers() -> None:
    vast, clock = Vast(), Clock()
    watch, published = watcher(vast, profile, clock)
    told: list[bool] = []
    watch.listeners.append(lambda: told.append(watch.pause is not None))
    fresh = watch.poll_once()
    assert fresh is not None
    vast.fail.append(SearchQuotaExceeded("quota", retry_after=3600))
    clock.now += 240
    assert watch.step() is None
    paused = published[-1]
    assert paused.pause is not None and paused.pause.until == clock.now + 3600
    assert paused.offers == fresh.offers and paused.taken_at == fresh.taken_at
    searches = len(vast.searches)
    for _ in range(3599 // 5):
        clock.now += 5
        watch.step()
        assert watch.poll_once() is None  # a failover's search waits too
    assert len(vast.searches) == searches, "no search before Retry-After"
    clock.now += 5
    resumed = watch.step()
    assert resumed is not None and resumed.pause is None and watch.pause is None
    assert told == [True, False]


def test_a_quota_answer_without_retry_after_waits_for_the_utc_midnight_reset() -> None:
    vast, clock = Vast(fail=[SearchQuotaExceeded("quota", retry_after=None)]), Clock()
    watch, published = watcher(vast, profile, clock)
    assert watch.poll_once() is None and published == []  # nothing to serve yet, nothing published
    assert watch.pause is not None and watch.pause.until == next_utc_midnight(NOW)


def test_another_failure_keeps_the_snapshot_and_tries_again_after_the_interval() -> None:
    vast, clock = Vast(), Clock()
    watch, published = watcher(vast, profile, clock, refresh_interval=240, interval=30)
    watch.step()
    clock.now += 240
    vast.fail.append(VastUnavailable("HTTP 503 after 4 attempts"))
    assert watch.step() is None and len(published) == 1 and watch.last_error
    clock.now += 25
    assert watch.step() is None
    clock.now += 5
    assert watch.step() is not None and watch.failures == 0


def test_an_offer_the_table_cannot_hold_is_left_out_and_counted_and_the_rest_published() -> None:
    """An offer whose value the offer table cannot take (here a GPU count no float holds, made
    past the offer schema, which refuses it) must not cost every pod a fresh snapshot: the
    refresh and the update after it publish every other offer."""
    good = parse_offers([o for o in MARKET if o["gpu_name"] == "RTX 4090"]).offers[0]
    odd = dataclasses.replace(good, id=999_999_001, num_gpus=10**400)
    vast, clock = Vast(extra=[odd]), Clock()
    demand = [Demand((Requirements(gpu_types=("RTX4090",), max_price=0.6),))]
    watch, published = watcher(vast, lambda: demand[0], clock)
    first = watch.step()
    assert first is not None and len(first) > 0 and published == [first]
    assert odd.id not in {o.id for o in first.offers} and watch.stats.unusable == 1
    demand[0] = Demand(demand[0].requirements + (Requirements(gpu_types=("L4",), max_price=0.6),))
    clock.now += 5
    second = watch.step()  # an update merges the new answer (with the odd offer again) into the last
    assert second is not None and {o.gpu_name for o in second.offers} == {"RTX 4090", "L4"}
    assert odd.id not in {o.id for o in second.offers} and watch.stats.unusable == 2


def test_a_snapshot_that_fails_for_no_single_offer_fails_the_round_and_keeps_the_last(
        monkeypatch: pytest.MonkeyPatch) -> None:
    vast, clock = Vast(), Clock()
    watch, published = watcher(vast, profile, clock, refresh_interval=240)
    assert watch.step() is not None
    clock.now += 240

    def broken(*args: Any, **kwargs: Any) -> OfferSnapshot:
        raise MemoryError("no room for the table")
    monkeypatch.setattr(market_watch, "OfferSnapshot", broken)
    with pytest.raises(MemoryError):
        watch.step()
    assert len(published) == 1 and watch.stats.unusable == 0


def test_search_stats_extrapolate_the_last_hour() -> None:
    clock = Clock()
    stats = SearchStats(clock)
    for _ in range(120):  # a search of 100 rows every 30 s for an hour
        stats.record(100)
        clock.now += 30
    assert stats.searches_per_hour() == pytest.approx(120)
    assert stats.rows_per_day() == pytest.approx(120 * 100 * 24)
