"""vastmarket.pacing on a fake clock: the endpoint of each request, the pacing setting, the
per-endpoint pacer (spacing, independence, order, time waited) and the create queue (oldest pod
first, one per interval, estimates, announcements once, pods that stop asking leave the line)."""

from __future__ import annotations

import threading

import pytest

from vastmarket.errors import ConfigError
from vastmarket.pacing import (
    PUBLISHED_INTERVALS, CreateQueue, Pacer, Turn, create_slot_message, endpoint_of, parse_pacing,
)
from vastsim.faults import THRESHOLDS


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("method, path, endpoint", [
    ("POST", "/bundles/", "search"),
    ("PUT", "/api/v0/search/asks/", "search"),
    ("PUT", "/asks/123/", "create"),
    ("GET", "/instances/77/", "get_instance"),
    ("PUT", "/instances/77/", "update"),
    ("DELETE", "/instances/77/", "destroy"),
    ("PUT", "/instances/request_logs/77/", "request_logs"),
    ("PUT", "/instances/bid_price/77/", "update"),
    ("GET", "/api/v1/instances/", "list_instances"),
    ("GET", "/gpu_names/unique/", None),
    ("GET", "/users/current/", None),
])
def test_each_request_is_counted_under_the_endpoint_vast_limits(method: str, path: str, endpoint: str | None) -> None:
    assert endpoint_of(method, path) == endpoint


def test_the_published_intervals_are_the_ones_the_simulator_enforces() -> None:
    assert dict(PUBLISHED_INTERVALS) == THRESHOLDS


@pytest.mark.parametrize("text, expected", [
    ("published", dict(PUBLISHED_INTERVALS)),
    (" OFF ", {}),
    ("create=6, search=10", {**PUBLISHED_INTERVALS, "create": 6.0, "search": 10.0}),
    ("get_instance=0", {**PUBLISHED_INTERVALS, "get_instance": 0.0}),
])
def test_the_pacing_setting_reads_published_off_or_overrides(text: str, expected: dict[str, float]) -> None:
    assert parse_pacing(text) == expected


@pytest.mark.parametrize("text, phrase", [
    ("fast", "expected published, off or endpoint=seconds"),
    ("rent=4", "endpoints: search, create"),
    ("create=soon", "create='soon' is not a number of seconds"),
    ("create=-1", "is not a number of seconds"),
    ("create=nan", "is not a number of seconds"),
])
def test_a_bad_pacing_setting_is_refused_with_what_is_expected(text: str, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase.replace("(", r"\(")):
        parse_pacing(text)


def test_calls_of_one_endpoint_are_spaced_by_the_interval_and_the_margin() -> None:
    t = FakeTime()
    pacer = Pacer({"create": 4.5}, margin=0.1, clock=t.clock, sleep=t.sleep)
    sent = []
    for _ in range(4):
        pacer.wait_turn("create")
        sent.append(t.now)
    assert [round(b - a, 6) for a, b in zip(sent, sent[1:])] == [4.6, 4.6, 4.6]
    assert pacer.calls == {"create": 4} and pacer.waits["create"] == pytest.approx(3 * 4.6)


def test_a_call_after_a_quiet_spell_waits_for_nothing() -> None:
    t = FakeTime()
    pacer = Pacer({"create": 4.5}, clock=t.clock, sleep=t.sleep)
    pacer.wait_turn("create")
    t.now += 60
    assert pacer.wait_turn("create") == 0.0


def test_endpoints_are_paced_independently_and_unlimited_ones_not_at_all() -> None:
    t = FakeTime()
    pacer = Pacer({"create": 4.5, "get_instance": 2.0}, margin=0.0, clock=t.clock, sleep=t.sleep)
    assert pacer.book("create") == 0.0
    assert pacer.book("get_instance") == 0.0
    assert pacer.book("create") == 4.5
    assert pacer.book("get_instance") == 2.0
    assert pacer.book("list_instances") == 0.0 and pacer.book(None) == 0.0
    assert pacer.interval("search") == 0.0 and pacer.interval("create") == 4.5


def test_concurrent_callers_each_get_their_own_slot() -> None:
    t = FakeTime()
    pacer = Pacer({"update": 1.0}, margin=0.0, clock=t.clock, sleep=lambda s: None)
    delays: list[float] = []
    lock = threading.Lock()

    def call() -> None:
        delay = pacer.book("update")
        with lock:
            delays.append(delay)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(delays) == [float(k) for k in range(10)]


def test_the_create_queue_grants_the_oldest_waiting_pod_first_once_per_interval() -> None:
    q = CreateQueue(4.5, gather=1.0)
    now = 0.0
    assert not q.ask("young", "2026-12-01T10:00:05Z", now).granted  # the line gathers
    assert not q.ask("old", "2026-12-01T10:00:01Z", now + 0.5).granted
    assert not q.ask("young", "2026-12-01T10:00:05Z", now + 1.0).granted, "an older pod is waiting"
    assert q.ask("old", "2026-12-01T10:00:01Z", now + 1.0).granted
    turn = q.ask("young", "2026-12-01T10:00:05Z", now + 1.0)
    assert not turn.granted and turn.ahead == 0 and turn.wait == pytest.approx(4.5)
    assert q.ask("young", "2026-12-01T10:00:05Z", now + 5.5).granted
    assert q.waiting(now + 5.5) == 0 and q.granted == 2


def test_pods_created_in_the_same_second_go_in_the_order_they_first_asked() -> None:
    q = CreateQueue(2.0, gather=0.0)
    same = "2026-12-01T10:00:00Z"
    assert q.ask("a", same, 0.0).granted
    assert not q.ask("b", same, 0.1).granted and not q.ask("c", same, 0.2).granted
    assert not q.ask("c", same, 2.0).granted
    assert q.ask("b", same, 2.0).granted
    assert q.ask("c", same, 4.0).granted


def test_the_wait_counts_the_pods_ahead_and_is_capped_so_the_pod_asks_again() -> None:
    q = CreateQueue(4.5, gather=0.0, max_wait=30.0)
    assert q.ask("p0", "2026-12-01T10:00:00Z", 0.0).granted
    turns = [q.ask(f"p{k}", f"2026-12-01T10:00:{k:02d}Z", 0.0) for k in range(1, 11)]
    assert [t.ahead for t in turns] == list(range(10))
    assert turns[3].eta == pytest.approx(4.5 * 4) and turns[3].wait == pytest.approx(18.0)
    assert turns[9].eta == pytest.approx(45.0) and turns[9].wait == 30.0
    assert q.waiting(0.0) == 10


def test_a_pod_is_announced_once_and_only_for_a_wait_longer_than_the_gathering() -> None:
    q = CreateQueue(4.5, gather=1.0)
    first = q.ask("a", "2026-12-01T10:00:00Z", 0.0)
    assert not first.announce, "a lone pod's moment of gathering is not worth an Event"
    assert q.ask("a", "2026-12-01T10:00:00Z", 1.0).granted
    second = q.ask("b", "2026-12-01T10:00:01Z", 1.0)
    assert second.announce and second.eta == pytest.approx(4.5)
    assert not q.ask("b", "2026-12-01T10:00:01Z", 3.0).announce


def test_a_pod_that_stops_asking_leaves_the_line_after_the_grace() -> None:
    q = CreateQueue(4.5, gather=0.0, grace=10.0)
    assert q.ask("a", "2026-12-01T10:00:00Z", 0.0).granted
    gone = q.ask("gone", "2026-12-01T10:00:01Z", 0.0)  # then deleted: it never asks again
    assert not q.ask("b", "2026-12-01T10:00:02Z", 4.5).granted
    assert q.waiting(4.5) == 2
    late = 0.0 + gone.wait + 10.0 + 0.1
    assert q.ask("b", "2026-12-01T10:00:02Z", late).granted, "a pod that left must not hold the line"
    assert q.waiting(late) == 0


def test_forget_takes_a_pod_out_of_the_line_at_once() -> None:
    q = CreateQueue(4.5, gather=0.0)
    q.ask("a", "2026-12-01T10:00:00Z", 0.0)
    q.ask("b", "2026-12-01T10:00:01Z", 0.0)
    q.forget("b")
    assert q.waiting(0.0) == 0


def test_no_interval_means_every_pod_may_rent_at_once() -> None:
    q = CreateQueue(0.0)
    assert all(q.ask(k, "", 0.0).granted for k in range(5))


@pytest.mark.parametrize("turn, text", [
    (Turn(0.6, 0, True, 0.6), "this pod is next, in about 1s"),
    (Turn(4.5, 1, True, 4.5), "1 pod created earlier goes first; about 4s"),
    (Turn(30.0, 12, True, 58.5), "12 pods created earlier go first; about 58s"),
])
def test_the_waiting_event_says_how_many_go_first_and_how_long(turn: Turn, text: str) -> None:
    message = create_slot_message(turn, 4.5)
    assert message.startswith("waiting for a turn to rent: Vast allows one create every 4.5s; ")
    assert message.endswith(text)


def test_a_granted_pod_that_does_not_rent_costs_the_line_only_the_hold() -> None:
    t = FakeTime()
    pacer = Pacer({"create": 4.5}, margin=0.0, clock=t.clock, sleep=t.sleep)
    q = CreateQueue(4.5, gather=0.0, hold=2.0, free_in=lambda: pacer.free_in("create"))
    assert q.ask("gives-up", "2026-12-01T10:00:00Z", t.now).granted  # then finds no offer: no create
    assert not q.ask("next", "2026-12-01T10:00:01Z", t.now + 1.0).granted
    assert q.ask("next", "2026-12-01T10:00:01Z", t.now + 2.0).granted, "an unused slot must not cost an interval"


def test_after_a_real_create_the_next_grant_waits_for_the_create_endpoint() -> None:
    t = FakeTime()
    pacer = Pacer({"create": 4.5}, margin=0.0, clock=t.clock, sleep=t.sleep)
    q = CreateQueue(4.5, gather=0.0, hold=2.0, lead=0.0, free_in=lambda: pacer.free_in("create"))
    assert q.ask("a", "2026-12-01T10:00:00Z", t.now).granted
    t.now += 0.5
    pacer.wait_turn("create")  # a's rent goes out
    t.now += 1.5
    turn = q.ask("b", "2026-12-01T10:00:01Z", t.now)
    assert not turn.granted and turn.wait == pytest.approx(3.0)
    t.now += 3.0
    assert q.ask("b", "2026-12-01T10:00:01Z", t.now).granted
    assert pacer.wait_turn("create") == 0.0, "the granted create needs no wait in the pacer"


def test_a_pod_back_after_its_turn_goes_after_the_pods_that_had_none() -> None:
    q = CreateQueue(1.0, gather=0.0)
    assert q.ask("old", "2026-12-01T10:00:00Z", 0.0).granted  # and it did not rent: it is back
    assert not q.ask("young", "2026-12-01T10:00:09Z", 0.5).granted
    assert not q.ask("old", "2026-12-01T10:00:00Z", 1.0).granted, "it had its turn"
    assert q.ask("young", "2026-12-01T10:00:09Z", 1.0).granted
    assert q.ask("old", "2026-12-01T10:00:00Z", 2.0).granted


def test_the_next_pod_is_granted_its_lead_before_the_create_endpoint_frees_and_its_rent_waits_the_rest() -> None:
    t = FakeTime()
    pacer = Pacer({"create": 4.5}, margin=0.0, clock=t.clock, sleep=t.sleep)
    q = CreateQueue(4.5, gather=0.0, hold=2.0, lead=2.0, free_in=lambda: pacer.free_in("create"))
    assert q.ask("a", "2026-12-01T10:00:00Z", t.now).granted
    pacer.wait_turn("create")  # a's rent goes out at once: the endpoint is free again in 4.5 s
    t.now += 2.0
    turn = q.ask("b", "2026-12-01T10:00:01Z", t.now)
    assert not turn.granted and turn.wait == pytest.approx(0.5)
    t.now += 0.5
    assert q.ask("b", "2026-12-01T10:00:01Z", t.now).granted
    t.now += 1.0  # b's calls before its rent
    assert pacer.wait_turn("create") == pytest.approx(1.0), "its rent waits for the endpoint, not longer"


def test_a_turn_given_back_keeps_the_pod_first_in_line_and_frees_the_slot() -> None:
    q = CreateQueue(4.5, gather=0.0)
    assert q.ask("old", "2026-12-01T10:00:00Z", 0.0).granted
    q.give_back("old", 0.1)  # the controller could not use it yet (its budgets not read)
    assert not q.ask("young", "2026-12-01T10:00:09Z", 0.5).granted, "the old pod is still first"
    assert q.ask("old", "2026-12-01T10:00:00Z", 1.0).granted, "and need not wait an interval"
