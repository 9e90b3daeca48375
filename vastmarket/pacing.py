"""Pacing calls to Vast under its per-endpoint rate limits.

Vast limits each endpoint, per API key and address, as a minimum interval between two calls
(``PUBLISHED_INTERVALS``, from its ``x-rate-limit`` thresholds: create 4.5 s, get one instance
2 s, …) and answers a call that comes sooner with 429, without ``Retry-After``. Instead of
firing and retrying, kube-vast waits its turn:

* :class:`Pacer` — every call of one client: before a call, the caller books the endpoint's next
  free moment (at least ``interval + margin`` after the previous booking) and sleeps until then.
  Bookings are taken in the order callers ask, so waits stay short and nobody is overtaken.
* :class:`CreateQueue` — creates are slow (one per 4.5 s, so 100 pods take 7.5 minutes) and
  each one is a pod waiting: the controller asks the queue before anything else of a launch, and
  the queue grants the create slots oldest pod first, at most one per interval; a pod that is not
  granted is told how long to wait (its place in the line × the interval) instead of blocking a
  worker. A pod back after its turn without renting (no offer, no budget) goes after the pods
  that have not had one, so that pods which cannot rent never hold up those which can. Pods that stop asking (deleted, or launched another way) leave the line after a grace.

Both take the time from an injected clock (and the :class:`Pacer` sleeps with an injected
function), so tests drive them with a fake clock. :func:`endpoint_of` names the endpoint of a
request as Vast (and the simulator) counts it. No I/O.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

from .errors import ConfigError

# Minimum seconds between two calls of an endpoint (Vast's published x-rate-limit thresholds;
# search: 10 a minute per address).
PUBLISHED_INTERVALS: Mapping[str, float] = {
    "search": 6.0,
    "create": 4.5,
    "get_instance": 2.0,
    "list_instances": 1.0,
    "destroy": 3.0,
    "update": 1.0,
    "request_logs": 1.0,
}
ENDPOINTS = tuple(PUBLISHED_INTERVALS)
_REMEMBERED_TURNS = 10_000  # pods whose turns the create queue remembers
DEFAULT_MARGIN = 0.2  # seconds added to every interval: the request's own travel time varies


def endpoint_of(method: str, path: str) -> str | None:
    """The rate-limited endpoint a request goes to, or ``None`` (not limited): ``PUT
    /api/v0/asks/123/`` → ``create``."""
    p = path if path.startswith("/api/") else "/api/v0" + path
    if p.startswith("/api/v0/bundles") or p.startswith("/api/v0/search/asks"):
        return "search"
    if p.startswith("/api/v0/asks/") and method == "PUT":
        return "create"
    if p.startswith("/api/v1/instances"):
        return "list_instances"
    if p.startswith("/api/v0/instances/request_logs/"):
        return "request_logs"
    if p.startswith("/api/v0/instances/bid_price/"):
        return "update"
    if p.startswith("/api/v0/instances/") and p.rstrip("/") != "/api/v0/instances":
        return {"GET": "get_instance", "PUT": "update", "DELETE": "destroy"}.get(method)
    return None


def parse_pacing(text: str) -> dict[str, float]:
    """The intervals a setting asks for: ``published`` (Vast's), ``off`` (none), or
    ``endpoint=seconds`` pairs separated by commas, each replacing the published interval of
    that endpoint (``create=6,search=10``; ``0`` lifts one endpoint's pacing)."""
    value = text.strip().lower()
    if value == "off":
        return {}
    intervals = dict(PUBLISHED_INTERVALS)
    if value == "published":
        return intervals
    for part in value.split(","):
        name, sep, seconds = part.partition("=")
        name = name.strip()
        if not sep or name not in PUBLISHED_INTERVALS:
            raise ConfigError(f"Vast pacing {text!r}: expected published, off or endpoint=seconds pairs "
                              f"(endpoints: {', '.join(ENDPOINTS)})")
        try:
            interval = float(seconds)
        except ValueError:
            interval = math.nan
        if not math.isfinite(interval) or interval < 0 or interval > 3600:
            raise ConfigError(f"Vast pacing {text!r}: {name}={seconds.strip()!r} is not a number of seconds "
                              "from 0 to 3600")
        intervals[name] = interval
    return intervals


class Pacer:
    """At most one call per endpoint per ``interval + margin``, for every thread of one client."""

    def __init__(self, intervals: Mapping[str, float], *, margin: float = DEFAULT_MARGIN,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.intervals = {e: float(s) for e, s in intervals.items() if s > 0}
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}  # the next free booking, per endpoint
        self._sent: dict[str, float] = {}  # when the last call went, per endpoint
        self.waits: dict[str, float] = {}  # seconds spent waiting, per endpoint
        self.calls: dict[str, int] = {}  # calls let through, per endpoint

    def interval(self, endpoint: str) -> float:
        """The minimum spacing this pacer keeps for ``endpoint`` (0: not paced)."""
        found = self.intervals.get(endpoint)
        return found + self.margin if found else 0.0

    def book(self, endpoint: str | None) -> float:
        """Book the endpoint's next free moment for one call; the seconds until it."""
        if endpoint is None:
            return 0.0
        spacing = self.interval(endpoint)
        with self._lock:
            self.calls[endpoint] = self.calls.get(endpoint, 0) + 1
            if not spacing:
                return 0.0
            now = self._clock()
            slot = max(now, self._next.get(endpoint, -math.inf))
            self._next[endpoint] = slot + spacing
            delay = slot - now
            self.waits[endpoint] = self.waits.get(endpoint, 0.0) + delay
            return delay

    def wait_turn(self, endpoint: str | None) -> float:
        """Wait until this call of ``endpoint`` may go out; returns the seconds waited. A caller
        that wakes late (a loaded machine) pushes the next ones back, so that the calls as sent,
        not only as booked, keep their spacing."""
        waited = delay = self.book(endpoint)
        while True:
            if delay > 0:
                self._sleep(delay)
            delay = self._went(endpoint)
            if delay <= 0:
                return waited
            waited += delay

    def _went(self, endpoint: str | None) -> float:
        """Record that a call of ``endpoint`` goes now, or how long it must still wait because
        the previous one went late."""
        if endpoint is None or not self.interval(endpoint):
            return 0.0
        spacing = self.interval(endpoint)
        with self._lock:
            now = self._clock()
            last = self._sent.get(endpoint, -math.inf)
            if now < last + spacing:
                return last + spacing - now
            self._sent[endpoint] = now
            self._next[endpoint] = max(self._next.get(endpoint, -math.inf), now + spacing)
            return 0.0

    def free_in(self, endpoint: str) -> float:
        """Seconds until a booking of ``endpoint`` made now would go out."""
        with self._lock:
            return max(0.0, self._next.get(endpoint, -math.inf) - self._clock())


@dataclass(frozen=True, slots=True)
class Turn:
    """The answer to a pod asking for a create slot. ``wait`` 0: rent now (the slot is taken);
    otherwise ask again in ``wait`` seconds. ``ahead``: pods older than this one still waiting;
    ``eta``: seconds until its turn, if they all take theirs; ``announce``: the first answer to
    this pod that asks it to wait longer than the gathering of a first slot (say so, once)."""

    wait: float
    ahead: int
    announce: bool
    eta: float = 0.0

    @property
    def granted(self) -> bool:
        return self.wait == 0.0


@dataclass(slots=True)
class _Waiter:
    # (earlier turns it let go by, creationTimestamp, order first seen): a pod that had a turn and
    # is back without an instance (no offer, no budget) goes after the pods that had none; then
    # oldest first, then first come
    age: tuple[int, str, int]
    expected: float  # when it was told to come back
    joined: float
    announced: bool = False


class CreateQueue:
    """Create slots granted oldest pod first, one per ``interval`` seconds.

    With ``free_in`` (the client's :meth:`Pacer.free_in` for ``create``), a slot is used up only
    by a create that really goes out: after a grant the next one waits ``hold`` seconds (time for
    the granted pod to reach its rent) and then until the create endpoint is free in ``lead``
    seconds (the next pod's own calls before its rent overlap the wait; the client's pacer holds
    its rent the rest). A granted pod that does not rent (no offer, a budget) so costs the line
    ``hold`` seconds, not an interval."""

    def __init__(self, interval: float, *, gather: float = 1.0, grace: float = 30.0, max_wait: float = 30.0,
                 hold: float = 2.0, lead: float = 2.0, free_in: Callable[[], float] | None = None) -> None:
        self.interval = interval
        self.hold = min(hold, interval)
        self.lead = lead
        self._free_in = free_in
        # A first slot waits until the line is this old, so that pods created together (a
        # Deployment scaled up) are all in it and the oldest goes first, not the first looked at.
        self.gather = gather
        self.grace = grace  # a pod not back this long after its time has left the line
        self.max_wait = max_wait  # never told to wait longer than this before asking again
        self._lock = threading.Lock()
        self._waiting: dict[Hashable, _Waiter] = {}
        self._seq = 0
        self._granted: dict[Hashable, _Waiter] = {}
        self._had_turns: OrderedDict[Hashable, int] = OrderedDict()  # pods granted a turn, most recent last
        self._next_grant = -math.inf
        self.granted = 0

    def ask(self, key: Hashable, created: str, now: float) -> Turn:
        """Pod ``key`` (created at ``created``, an RFC 3339 time) asks to rent at ``now``."""
        if self.interval <= 0:
            return Turn(0.0, 0, False)
        with self._lock:
            self._expire(now)
            waiter = self._waiting.get(key)
            if waiter is None:
                self._seq += 1
                waiter = self._waiting[key] = _Waiter((self._had_turns.get(key, 0), created, self._seq), now, now)
            ahead = sum(1 for w in self._waiting.values() if w.age < waiter.age)
            opens = max(self._next_grant, min(w.joined for w in self._waiting.values()) + self.gather,
                        now + self._free_in() - self.lead if self._free_in is not None else -math.inf)
            if ahead == 0 and now >= opens:
                del self._waiting[key]
                self._granted = {key: waiter}  # the last grant, which its pod may give back
                self._next_grant = now + (self.hold if self._free_in is not None else self.interval)
                self._had_turns[key] = self._had_turns.pop(key, 0) + 1
                while len(self._had_turns) > _REMEMBERED_TURNS:
                    self._had_turns.popitem(last=False)
                self.granted += 1
                return Turn(0.0, 0, False)
            eta = max(opens - now, 0.0) + ahead * self.interval
            wait = min(max(eta, 0.05), self.max_wait)
            waiter.expected = now + wait
            announce = not waiter.announced and eta > self.gather
            waiter.announced = waiter.announced or announce
            return Turn(wait, ahead, announce, eta)

    def give_back(self, key: Hashable, now: float) -> None:
        """Pod ``key`` did not use the turn it was just granted, for a reason not its own (the
        controller was not ready): it is back in line in its old place, and may go again at once."""
        with self._lock:
            waiter = self._granted.pop(key, None)
            if waiter is None:
                return
            turns = self._had_turns.pop(key, 0) - 1
            if turns > 0:
                self._had_turns[key] = turns
            waiter.expected = now
            self._waiting[key] = waiter
            self._next_grant = -math.inf

    def forget(self, key: Hashable) -> None:
        """The pod no longer waits (deleted, or its instance found)."""
        with self._lock:
            self._waiting.pop(key, None)

    def waiting(self, now: float) -> int:
        """Pods waiting for a create slot (the metric)."""
        with self._lock:
            self._expire(now)
            return len(self._waiting)

    def _expire(self, now: float) -> None:
        for key in [k for k, w in self._waiting.items() if now > w.expected + self.grace]:
            del self._waiting[key]


def create_slot_message(turn: Turn, interval: float) -> str:
    """The WaitingForCreateSlot Event's text."""
    head = f"waiting for a turn to rent: Vast allows one create every {interval:g}s"
    if turn.ahead == 0:
        return f"{head}; this pod is next, in about {turn.eta:.0f}s"
    ahead = "1 pod created earlier goes" if turn.ahead == 1 else f"{turn.ahead} pods created earlier go"
    return f"{head}; {ahead} first; about {turn.eta:.0f}s"
