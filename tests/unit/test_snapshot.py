import gc
import json
import os
import sys
import threading

import pytest

from tests.unit.offer_factory import make_offer
from vastmarket.errors import ConfigError, VastUnavailable
from vastmarket.requirements import Requirements
from vastmarket.snapshot import OfferSnapshot, SearchPause, SnapshotFile, SnapshotFollower, SnapshotPoller


def snapshot(n=5, taken_at=100.0):
    return OfferSnapshot([make_offer(i, dph_total=0.1 * i) for i in range(1, n + 1)], taken_at=taken_at)


def test_the_same_requirements_on_the_same_snapshot_are_answered_from_the_cache():
    snap = snapshot()
    first = snap.rank(Requirements(max_price=0.35))
    assert snap.rank(Requirements(max_price=0.35)) is first
    assert snap.rank(Requirements(max_price=0.45)) is not first


def test_the_cache_is_bounded():
    snap = OfferSnapshot([make_offer(1)], taken_at=0, cache_size=2)
    first = snap.rank(Requirements(max_price=1))
    snap.rank(Requirements(max_price=2))
    snap.rank(Requirements(max_price=3))
    assert snap.rank(Requirements(max_price=1)) is not first


def test_age_grows_with_the_clock_and_never_goes_negative():
    snap = snapshot(taken_at=100.0)
    assert snap.age(130.0) == 30.0 and snap.age(90.0) == 0.0


def test_a_published_snapshot_loads_back_identical(tmp_path):
    file = SnapshotFile(tmp_path / "offers.json")
    original = snapshot()
    file.publish(original)
    loaded = file.load()
    assert loaded.offers == original.offers and loaded.taken_at == original.taken_at
    assert [p.name for p in tmp_path.iterdir()] == ["offers.json"], "no temporary files left behind"


@pytest.mark.parametrize("content, message", [
    ("not json", "not JSON"), (json.dumps({"version": 99}), "unknown format"),
    (json.dumps({"version": 1, "taken_at": 1, "offers": [{"id": "x"}]}), "damaged"),
])
def test_a_damaged_snapshot_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "offers.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        SnapshotFile(path).load()


def test_the_follower_installs_new_snapshots_and_keeps_the_last_good_one(tmp_path):
    file = SnapshotFile(tmp_path / "offers.json")
    follower = SnapshotFollower(file)
    assert follower.refresh() is False and follower.current is None
    file.publish(snapshot(n=3, taken_at=1.0))
    assert follower.refresh() is True and len(follower.current) == 3
    assert follower.refresh() is False
    good = follower.current
    (tmp_path / "offers.json").write_text("garbage")
    os.utime(tmp_path / "offers.json", ns=(1, 1))
    assert follower.refresh() is False and follower.current is good


class FakeSearch:
    def __init__(self, results):
        self.results = list(results)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        item = self.results.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def test_the_poller_publishes_each_search_and_keeps_the_old_snapshot_on_failure():
    published = []
    clock = iter([10.0, 20.0, 30.0])
    search = FakeSearch([[make_offer(1)], VastUnavailable("down"), [make_offer(1), make_offer(2)]])
    poller = SnapshotPoller(search, published.append, interval=5, clock=lambda: next(clock))
    assert poller.poll_once() is not None
    assert poller.poll_once() is None and poller.failures == 1 and poller.latest is published[0]
    assert len(poller.poll_once()) == 2 and poller.failures == 0
    assert [s.taken_at for s in published] == [10.0, 20.0]


def test_the_poller_runs_on_its_interval_until_stopped():
    done = threading.Event()
    published = []

    def publish(snap):
        published.append(snap)
        if len(published) == 3:
            done.set()

    poller = SnapshotPoller(lambda: [make_offer(1)], publish, interval=0.01)
    poller.start()
    assert done.wait(5)
    poller.stop()
    count = len(published)
    assert count >= 3


def test_a_non_positive_poll_interval_is_refused():
    with pytest.raises(ConfigError, match="interval"):
        SnapshotPoller(lambda: [], lambda s: None, interval=0)


def test_a_search_pause_travels_with_the_snapshot_file(tmp_path):
    file = SnapshotFile(tmp_path / "offers.json")
    pause = SearchPause("search_quota_exceeded", "Vast's search quota is used up", since=100.0, until=3700.0)
    file.publish(snapshot(taken_at=90.0).paused(pause))
    loaded = file.load()
    assert loaded.pause == pause and loaded.taken_at == 90.0 and len(loaded) == 5
    file.publish(snapshot())
    assert file.load().pause is None


def test_a_paused_snapshot_is_served_past_its_age_until_the_pause_has_ended_for_max_age():
    pause = SearchPause("search_quota_exceeded", "Vast's search quota is used up", since=100.0, until=3700.0)
    paused = snapshot(taken_at=100.0).paused(pause)
    assert paused.stale_reason(3000.0, max_age=300) is None
    assert "stale" in paused.staleness(3000.0, max_age=300) and "search quota" in paused.staleness(3000.0, 300)
    assert paused.stale_reason(4000.0, max_age=300) is None
    reason = paused.stale_reason(4001.0, max_age=300)
    assert reason is not None and "3901s old" in reason and "search quota" in reason
    plain = snapshot(taken_at=100.0)
    assert plain.stale_reason(401.0, max_age=300) == "the Vast offer snapshot is stale (301s old, limit 300s)"
    assert plain.staleness(300.0, max_age=300) is None


def test_a_follower_holds_its_offers_packed_and_answers_as_the_whole_snapshot_does(tmp_path):
    """A follower's process (the extender, the webhook) holds the snapshot long and reads few of
    its offers: 3,000 offers held packed take a few hundred heap blocks, not one or more per
    offer; and every answer is the one the offers loaded whole give."""
    offers = [make_offer(i, dph_total=0.05 + (i % 97) / 100, min_bid=(i % 13) / 200 or None, dph_base=0.04,
                         host_id=10**6 + i // 3, machine_id=None if i % 50 == 0 else 5 * 10**6 + i,
                         public_ip=f"203.0.113.{i % 250}", geolocation=("Texas, US", "Bavaria, DE", None)[i % 3])
              for i in range(1, 3001)]
    file = SnapshotFile(tmp_path / "offers.json")
    file.publish(OfferSnapshot(offers, taken_at=1.0))
    whole = file.load()
    follower = SnapshotFollower(file, freeze_heap=False)
    gc.collect()
    before = sys.getallocatedblocks()
    follower.refresh()
    gc.collect()
    held = sys.getallocatedblocks() - before
    assert held < len(offers) / 4, f"{held} heap blocks held for {len(offers)} offers"
    packed = follower.current
    assert packed is not None and list(packed.offers) == list(whole.offers) == offers
    for req in (Requirements(max_price=0.5), Requirements(max_price=0.3, gpu_types=("RTX3060",), locations=("EU",)),
                Requirements(max_price=0.2, interruptible=True)):
        mine, theirs = packed.rank(req), whole.rank(req)
        assert mine.offer_ids() == theirs.offer_ids() and mine.passed > 0
        assert mine.best == theirs.best and mine.top(5) == theirs.top(5)
        assert mine.find(theirs.offer_ids()[-1]) == theirs.find(theirs.offer_ids()[-1])
