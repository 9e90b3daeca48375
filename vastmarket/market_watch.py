"""Demand-driven market watching: search Vast for what the cluster can use, within its quota.

:class:`MarketWatcher` replaces one broad search of the whole market every 30 s with the few
searches of :func:`vastmarket.demand.plan`, for the :class:`Demand` the controller reads from
the cluster: the requirements of the selection config (for the pods still to come) and of every
opted-in GPU pod, pending or running. When it searches is demand-driven too:

- a **refresh** searches for the whole demand every ``refresh_interval`` seconds (the snapshot
  readers serve from stays younger than their age limit);
- pods **waiting** for an offer (pending, and no offer in the snapshot meets their requirements)
  are searched for every ``interval`` seconds, so that an offer appearing for them is seen as
  soon as before (a pending pod that has an offer waits for the scheduler, not for the market);
- a requirement no search has covered yet (a new pod asking for another GPU model, region or a
  higher price) is searched for at once.

A refresh publishes its answers as a new :class:`~vastmarket.snapshot.OfferSnapshot`, in the
format readers already use; the other rounds add (and update) their offers in the last one,
which keeps the refresh's ``taken_at`` (its age is the age of its oldest offers). Each search is
complete: an answer Vast says is truncated is continued from its highest price
(:func:`~vastmarket.demand.narrow`; the searches ask for the cheapest first) or split by GPU model
(:func:`~vastmarket.demand.split`). Ranking the snapshot therefore gives every pod the offer a
search of the whole market would.

Vast's search quota (:class:`~vastmarket.errors.SearchQuotaExceeded`) is never retried: the
watcher sends no search before the answer's ``Retry-After`` (or, without one, the next UTC
midnight, when Vast resets it) and publishes the last offers again with a
:class:`~vastmarket.snapshot.SearchPause`, so that every reader keeps serving them and says why
they are old. Any other failure keeps the last snapshot too (its age then grows).

:class:`SearchStats` counts searches and rows, and extrapolates rows per day and searches per
hour from the last hour (the controller exports them as metrics).

The only I/O is through the injected callables (``search``, ``publish``, ``demand``,
``gpu_names``); time comes from ``clock``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .demand import MarketQuery, Want, covers, describe_plan, narrow, plan, split, want_of
from .errors import SearchQuotaExceeded, VastError
from .offers import Offer, ParsedOffers
from .requirements import Requirements
from .selection import OfferTable
from .snapshot import OfferSnapshot, SearchPause

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# search(filters, order, limit) -> the parsed answer
Search = Callable[[dict[str, object], list[tuple[str, str]], int], ParsedOffers]
DAY = 86_400.0
HOUR = 3_600.0
CHEAPEST_FIRST = [("dph_total", "asc")]


def next_utc_midnight(now: float) -> float:
    return (math.floor(now / DAY) + 1) * DAY


@dataclass(frozen=True, slots=True)
class Demand:
    """``requirements``: everything to watch; ``waiting``: those of pods waiting for an offer."""

    requirements: tuple[Requirements, ...]
    waiting: tuple[Requirements, ...] = field(default=())


class SearchStats:
    """Searches and offer rows received, over all time and over the last hour. Thread-safe."""

    def __init__(self, clock: Clock, *, window: float = HOUR) -> None:
        self._clock = clock
        self._window = window
        self._started = clock()
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self.searches = 0
        self.rows = 0
        self.truncated = 0  # answers that came back truncated
        self.incomplete = 0  # queries whose answer could not be completed
        self.unusable = 0  # offers left out of a snapshot: values its table cannot hold

    def record(self, rows: int, *, truncated: bool = False) -> None:
        with self._lock:
            now = self._clock()
            self.searches += 1
            self.rows += rows
            self.truncated += int(truncated)
            self._recent.append((now, rows))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self._window:
            self._recent.popleft()

    def _rate(self, pick: Callable[[tuple[float, int]], float], per: float) -> float:
        with self._lock:
            now = self._clock()
            self._trim(now)
            span = min(self._window, max(now - self._started, 1.0))
            return sum(pick(e) for e in self._recent) * per / span

    def rows_per_day(self) -> float:
        """Rows received over the last hour (or since the start, if sooner), extrapolated to a day."""
        return self._rate(lambda e: float(e[1]), DAY)

    def searches_per_hour(self) -> float:
        return self._rate(lambda e: 1.0, HOUR)


@dataclass(frozen=True, slots=True)
class Fetched:
    """The offers of one plan, and whether every query's answer was complete."""

    offers: tuple[Offer, ...]
    complete: bool
    searches: int


def _tabulates(offer: Offer) -> bool:
    """Whether an offer table can hold ``offer`` (checked one offer at a time, after a table of
    many could not be built)."""
    try:
        OfferTable([offer])
    except Exception:
        return False
    return True


class MarketWatcher:
    def __init__(self, search: Search, publish: Callable[[OfferSnapshot], None], demand: Callable[[], Demand],
                 gpu_names: Callable[[], Sequence[str]], *, interval: float = 30.0, refresh_interval: float = 240.0,
                 demand_interval: float = 5.0, clock: Clock = time.time, source: str = "",
                 include_external: bool = False, max_queries: int = 3, page_limit: int = 10_000,
                 max_searches_per_query: int = 40, names_refresh: float = HOUR) -> None:
        if min(interval, refresh_interval, demand_interval) <= 0:
            raise ValueError("the market watch intervals must be positive")
        self._search = search
        self._publish = publish
        self._demand = demand
        self._gpu_names = gpu_names
        self.interval = interval
        self.refresh_interval = refresh_interval
        self.demand_interval = demand_interval
        self._clock = clock
        self.source = source
        self.include_external = include_external
        self.max_queries = max_queries
        self.page_limit = page_limit
        self.max_searches_per_query = max_searches_per_query
        self.names_refresh = names_refresh
        self.stats = SearchStats(clock)
        self.latest: OfferSnapshot | None = None
        self.pause: SearchPause | None = None
        self.failures = 0
        self.last_error: str | None = None
        self.queries: list[MarketQuery] = []  # the searches of the last round
        self._covered: list[Want] = []  # what the searches since the last refresh covered
        self._refreshed: float | None = None  # the last refresh (or failed attempt)
        self._waiting_searched: float | None = None
        self._names: tuple[str, ...] = ()
        self._names_at: float | None = None
        self._demand_cache = Demand(())
        self._lock = threading.Lock()  # one round at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listeners: list[Callable[[], None]] = []  # told when the pause starts or ends
        self.on_publish: list[Callable[[OfferSnapshot], None]] = []  # told of every new snapshot

    # --- what to search --------------------------------------------------------------------------
    def gpu_names(self) -> tuple[str, ...]:
        """The market's GPU names, read again every ``names_refresh`` seconds; the last known on failure."""
        now = self._clock()
        if self._names_at is None or now - self._names_at >= self.names_refresh:
            try:
                self._names = tuple(self._gpu_names())
                self._names_at = now
            except VastError as exc:
                log.warning("reading Vast's GPU names failed (GPU models are then not filtered by Vast): %s", exc)
                self._names_at = now - self.names_refresh + min(self.names_refresh, 300.0)
        return self._names

    def demand(self) -> Demand:
        try:
            self._demand_cache = self._demand()
        except Exception as exc:  # the demand comes from the cluster; keep watching what was wanted
            log.warning("reading the demand failed, searching for the last one: %s", exc)
        return self._demand_cache

    def _wants(self, requirements: Sequence[Requirements]) -> list[Want]:
        names = self.gpu_names()
        return list(dict.fromkeys(want_of(r, names) for r in requirements))

    def _unplaceable(self, req: Requirements) -> bool:
        """No offer in the latest snapshot meets ``req`` (the scoring does not matter here)."""
        return self.latest is None or self.latest.rank(req).best is None

    def paused_until(self, now: float) -> float | None:
        return self.pause.until if self.pause is not None and now < self.pause.until else None

    def _uncovered(self, wants: Sequence[Want]) -> list[Want]:
        return [w for w in wants if not any(covers(old, w) for old in self._covered)]

    # --- rounds ----------------------------------------------------------------------------------
    def poll_once(self) -> OfferSnapshot | None:
        """A refresh: search for the whole demand and publish; ``None`` (the last snapshot stays)
        when searches are paused or a search failed."""
        return self._round(self._wants(self.demand().requirements), refresh=True)

    def step(self) -> OfferSnapshot | None:
        """Whatever round is due now (see the module's docstring), or nothing."""
        now = self._clock()
        if self.paused_until(now) is not None:
            return None
        demand = self.demand()
        if self._refreshed is None or now - self._refreshed >= self.refresh_interval:
            return self._round(self._wants(demand.requirements), refresh=True)
        waiting = self._wants([r for r in demand.waiting if self._unplaceable(r)])
        if waiting and (self._waiting_searched is None or now - self._waiting_searched >= self.interval):
            self._waiting_searched = now
            return self._round(waiting, refresh=False, max_queries=1)  # one search: they are cheap wants
        new = self._uncovered(self._wants(demand.requirements))
        return self._round(new, refresh=False) if new else None

    def _round(self, wants: list[Want], *, refresh: bool, max_queries: int | None = None) -> OfferSnapshot | None:
        with self._lock:
            now = self._clock()
            if self.paused_until(now) is not None:
                log.debug("offer search skipped: paused until %s", self.pause and self.pause.until)
                return None
            if refresh:
                self._refreshed = now
            queries = plan(wants, max_queries=max_queries or self.max_queries, include_external=self.include_external)
            if not queries and not refresh:
                return None  # wants no search can serve (GPU models the market does not have)
            try:
                fetched = self._fetch(queries)
            except SearchQuotaExceeded as exc:
                self._begin_pause(exc)
                return None
            except VastError as exc:
                self.failures += 1
                self.last_error = str(exc)
                if refresh:  # try again after `interval`, not after a whole refresh interval
                    self._refreshed = now - self.refresh_interval + self.interval
                log.warning("offer search failed, keeping the previous snapshot: %s", exc)
                return None
            resumed = self.pause is not None
            self.pause = None
            if refresh or self.latest is None:
                snapshot = self._snapshot(fetched.offers, taken_at=self._clock())
                self._covered = list(wants)
            else:
                merged = {o.id: o for o in self.latest.offers}
                merged.update((o.id, o) for o in fetched.offers)
                snapshot = self._snapshot([merged[i] for i in sorted(merged)], taken_at=self.latest.taken_at)
                self._covered += wants
            self._publish(snapshot)
            self.latest, self.queries = snapshot, queries
            self.failures, self.last_error = 0, None
            log.info("offer snapshot published (%s): offers=%d searches=%d%s; %s", "refresh" if refresh else "update",
                     len(snapshot), fetched.searches, "" if fetched.complete else " INCOMPLETE", describe_plan(queries))
        for listener in self.on_publish:
            try:
                listener(snapshot)
            except Exception:
                log.exception("market watch listener failed")
        if resumed:
            log.info("offer searches resumed")
            self._tell()
        return snapshot

    def _snapshot(self, offers: Sequence[Offer], *, taken_at: float) -> OfferSnapshot:
        """The snapshot of ``offers``; an offer its table cannot hold (a value the offer schema
        let through that the table's columns cannot take) is left out and counted, so that one
        odd offer does not cost every pod a fresh snapshot for as long as Vast lists it."""
        try:
            return OfferSnapshot(offers, taken_at=taken_at, source=self.source)
        except Exception:
            usable = [_tabulates(o) for o in offers]
            if all(usable):
                raise  # not one offer's fault: the round fails, the last snapshot stays
        left_out = [o.id for o, ok in zip(offers, usable) if not ok]
        self.stats.unusable += len(left_out)
        log.warning("left out %d offer(s) whose values the offer table cannot hold (ids %s)", len(left_out),
                    ", ".join(map(str, left_out[:5])) + (", …" if len(left_out) > 5 else ""))
        return OfferSnapshot([o for o, ok in zip(offers, usable) if ok], taken_at=taken_at, source=self.source)

    def _fetch(self, queries: Sequence[MarketQuery]) -> Fetched:
        found: dict[int, Offer] = {}
        complete, searches = True, 0
        for query in queries:
            pending, spent = [query], 0
            while pending:
                part = pending.pop()
                spent += 1
                searches += 1
                answer = self._search(part.filters(), CHEAPEST_FIRST, self.page_limit)
                truncated = answer.truncated or len(answer.offers) + answer.dropped >= self.page_limit
                self.stats.record(len(answer.offers) + answer.dropped, truncated=truncated)
                found.update((o.id, o) for o in answer.offers)
                if not truncated:
                    continue
                narrowed = narrow(part, answer.offers)
                halves = split(part) if narrowed is None else None
                if spent >= self.max_searches_per_query or (narrowed is None and halves is None):
                    log.warning("offer search for %s stays truncated after %d searches; using what it answered",
                                query.describe(), spent)
                    self.stats.incomplete += 1
                    complete = False
                elif narrowed is not None:
                    pending.append(narrowed[1])
                elif halves is not None:
                    pending.extend(halves)
        return Fetched(tuple(found[i] for i in sorted(found)), complete, searches)

    def _begin_pause(self, exc: SearchQuotaExceeded) -> None:
        now = self._clock()
        until = now + exc.retry_after if exc.retry_after is not None else next_utc_midnight(now)
        self.pause = SearchPause("search_quota_exceeded", "Vast's search quota is used up", since=now, until=until)
        self._refreshed = None  # refresh as soon as the pause ends
        self.failures += 1
        self.last_error = str(exc)
        log.warning("offer searches paused until %s: %s; serving the last offers", until, exc)
        if self.latest is not None:
            again = self.latest.paused(self.pause)
            self._publish(again)
            self.latest = again
        self._tell()

    def _tell(self) -> None:
        for listener in self.listeners:
            try:
                listener()
            except Exception:
                log.exception("market watch listener failed")

    # --- the loop --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="market-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("market watch round failed")
            self._stop.wait(self._next_wait())

    def _next_wait(self) -> float:
        now = self._clock()
        until = self.paused_until(now)
        if until is not None:
            return max(0.05, min(until - now, 60.0))
        return min(self.demand_interval, self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
