"""The offer snapshot: the offers every reader ranks against (what the controller's market
watcher found, :mod:`vastmarket.market_watch`).

* :class:`OfferSnapshot` — immutable offers + the time they were fetched; ranks requirements
  against them and caches the answer, so the same pod asked twice (filter, prioritize, webhook)
  costs a dictionary lookup. When Vast's search quota stops the searches, the last offers are
  published again with a :class:`SearchPause` (why, and when searching resumes): readers keep
  serving them, whatever their age, until shortly after that, and say why they are old.
* :class:`SnapshotFile` — publishes a snapshot atomically as JSON (write + rename) for readers
  in other processes (the extender and the webhook beside the controller), and loads it back.
* :class:`SnapshotFollower` — a reader's background thread that reloads the file when it
  changes and swaps the current snapshot; request paths only read :attr:`current`.
* :class:`SnapshotPoller` — the single place that runs the broad search on an interval and
  publishes what it finds; on failure it keeps the last snapshot (whose age then grows).

The poller and follower do I/O (files, and the injected search callable); the rest is pure.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bids import bid_priced
from .errors import ConfigError, KubeVastError, VastError
from .files import write_json_atomically
from .offers import OFFER_FIELDS, Offer
from .requirements import Requirements
from .selection import OfferTable, Ranking, ScoringPolicy, rank

log = logging.getLogger(__name__)

Clock = Callable[[], float]
FORMAT_VERSION = 1
RANKINGS_KEPT = 16  # per snapshot (see OfferSnapshot)


@dataclass(frozen=True, slots=True)
class SearchPause:
    """No search before ``until`` (epoch seconds) since ``since``, for ``reason`` (Vast's error
    code, e.g. ``search_quota_exceeded``); ``message`` says it for people."""

    reason: str
    message: str
    since: float
    until: float

    def describe(self, now: float) -> str:
        left = max(0.0, self.until - now)
        return (f"{self.message}; no search before {_utc(self.until)} (in {left:.0f}s), "
                f"paused since {_utc(self.since)}")

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message, "since": self.since, "until": self.until}

    @classmethod
    def from_json(cls, data: Any) -> SearchPause | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(str(data["reason"]), str(data["message"]), float(data["since"]), float(data["until"]))
        except (KeyError, TypeError, ValueError):
            return None


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class OfferSnapshot:
    """Offers fetched at ``taken_at`` (epoch seconds). Immutable; ranking results are cached.
    ``pause``: searches are paused (the offers are the last ones found).

    The cache answers the pods of one Deployment, which share their requirements, and keeps the
    last :data:`RANKINGS_KEPT` requirements: a ranking missed costs tens of microseconds (the
    offer table keeps what rankings share), and every ranking kept is more for the cyclic
    garbage collector to walk, on the request path (few kept: most are freed before its next
    pass, never walked)."""

    def __init__(self, offers: Sequence[Offer], *, taken_at: float, source: str = "",
                 cache_size: int = RANKINGS_KEPT, pause: SearchPause | None = None, packed: bool = False) -> None:
        self.table = OfferTable(offers, packed=packed)
        self._bids: OfferTable | None = None  # the offers at their bid price, built on first use
        self.taken_at = taken_at
        self.source = source
        self.pause = pause
        self._cache: OrderedDict[tuple[Requirements, ScoringPolicy], Ranking] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def offers(self) -> Sequence[Offer]:
        return self.table.offers

    def __len__(self) -> int:
        return len(self.table)

    def age(self, now: float) -> float:
        return max(0.0, now - self.taken_at)

    def paused(self, pause: SearchPause | None) -> OfferSnapshot:
        """The same offers (and taken_at), with searches paused as ``pause`` says."""
        again = OfferSnapshot((), taken_at=self.taken_at, source=self.source, cache_size=self._cache_size,
                              pause=pause)
        again.table = self.table
        return again

    def stale_reason(self, now: float, max_age: float) -> str | None:
        """Why this snapshot must not be served at ``now``, or ``None``. Older than ``max_age`` is
        too old, except while searches are paused (and for ``max_age`` after they resume): the
        last offers are then the best there are, and the controller checks each offer again
        when it rents."""
        age = self.age(now)
        if age <= max_age:
            return None
        if self.pause is not None and now <= self.pause.until + max_age:
            return None
        text = f"the Vast offer snapshot is stale ({age:.0f}s old, limit {max_age:.0f}s)"
        return f"{text}: {self.pause.describe(now)}" if self.pause is not None else text

    def staleness(self, now: float, max_age: float) -> str | None:
        """Why this snapshot is old at ``now``, served or not, or ``None`` when it is fresh."""
        if self.pause is not None and now < self.pause.until:
            return (f"offer snapshot is stale ({self.age(now):.0f}s old) and served: searches paused: "
                    f"{self.pause.describe(now)}; the offers are from {_utc(self.taken_at)}")
        age = self.age(now)
        return f"offer snapshot is stale ({age:.0f}s > {max_age:.0f}s)" if age > max_age else None

    def rank(self, requirements: Requirements, policy: ScoringPolicy = ScoringPolicy()) -> Ranking:
        """Rank this snapshot for ``requirements``; repeated questions are answered from cache."""
        key = (requirements, policy)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        result = rank(self._bid_table() if requirements.interruptible else self.table, requirements, policy)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def _bid_table(self) -> OfferTable:
        """The offers priced at their ``min_bid`` (vastmarket.bids), built on first use."""
        with self._lock:
            table = self._bids
            if table is None:
                table = self._bids = OfferTable(bid_priced(self.table.offers), packed=self.table.packed)
            return table

    def to_json(self) -> dict[str, Any]:
        data = {
            "version": FORMAT_VERSION,
            "taken_at": self.taken_at,
            "source": self.source,
            "offers": [{f: getattr(o, f) for f in OFFER_FIELDS} for o in self.offers],
        }
        if self.pause is not None:
            data["search_pause"] = self.pause.to_json()
        return data

    @classmethod
    def from_json(cls, data: Any, *, packed: bool = False) -> OfferSnapshot:
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ConfigError("offer snapshot file has an unknown format")
        try:
            offers = [Offer(**{f: raw.get(f) for f in OFFER_FIELDS}) for raw in data["offers"]]
            return cls(offers, taken_at=float(data["taken_at"]), source=str(data.get("source", "")),
                       pause=SearchPause.from_json(data.get("search_pause")), packed=packed)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"offer snapshot file is damaged: {exc}") from None


class SnapshotFile:
    """A snapshot published as one JSON file, replaced atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def publish(self, snapshot: OfferSnapshot) -> None:
        write_json_atomically(self.path, snapshot.to_json(), prefix=".snapshot-")

    def load(self, *, packed: bool = False) -> OfferSnapshot:
        """The snapshot published last (``packed``: as :class:`OfferTable` says)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read the offer snapshot: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.path}: the offer snapshot is not JSON: {exc}") from None
        return OfferSnapshot.from_json(data, packed=packed)

    def stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino)


class SnapshotFollower:
    """Keeps :attr:`current` equal to the newest snapshot in a :class:`SnapshotFile`, its offers
    packed (:class:`OfferTable`): a follower's process holds them long and reads few of them."""

    def __init__(self, source: SnapshotFile, *, interval: float = 1.0, freeze_heap: bool = True) -> None:
        self.source = source
        self.interval = interval
        self.freeze_heap = freeze_heap
        self.current: OfferSnapshot | None = None
        self._stamp: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Reload if the file changed; True when a new snapshot was installed."""
        stamp = self.source.stamp()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            snapshot = self.source.load(packed=True)
        except KubeVastError as exc:
            log.warning("offer snapshot not reloaded: %s", exc)
            return False
        self._stamp = stamp
        self.current = snapshot
        if self.freeze_heap:
            # The snapshot is hundreds of thousands of long-lived, acyclic objects: keep the cyclic
            # garbage collector from rescanning them on every full collection (a ~15 ms pause on
            # the request path). Reference counting still frees the previous snapshot.
            gc.collect()
            gc.freeze()
        return True

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="snapshot-follower", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


Search = Callable[[], Sequence[Offer]]


class SnapshotPoller:
    """Runs ``search`` every ``interval`` seconds and hands each snapshot to ``publish``."""

    def __init__(self, search: Search, publish: Callable[[OfferSnapshot], None], *,
                 interval: float = 30.0, clock: Clock = time.time, source: str = "") -> None:
        if interval <= 0:
            raise ConfigError(f"offer poll interval must be positive, got {interval}")
        self._search = search
        self._publish = publish
        self.interval = interval
        self._clock = clock
        self.source = source
        self.latest: OfferSnapshot | None = None
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> OfferSnapshot | None:
        """One search; returns the new snapshot, or ``None`` (and keeps the old one) on failure."""
        try:
            offers = self._search()
        except VastError as exc:
            self.failures += 1
            log.warning("offer search failed, keeping the previous snapshot: %s", exc)
            return None
        snapshot = OfferSnapshot(offers, taken_at=self._clock(), source=self.source)
        self._publish(snapshot)
        self.latest = snapshot
        self.failures = 0
        log.info("offer snapshot published: offers=%d", len(snapshot))
        return snapshot

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="offer-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.poll_once()
        while not self._stop.wait(self.interval):
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
