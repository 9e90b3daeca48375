"""Faults to inject into the simulated API: a thread-safe registry the routes and the market consult.

Per endpoint (`ENDPOINTS`): failures for the next N calls (429 or 5xx), a minimum interval between
calls (429 when broken), added latency before a call is handled (or a hold until released), a
slow answer (the call is
handled at once, its answer held back), and commit then fail: the next N calls that take effect
(a rental made, an instance destroyed) lose their answer — a 5xx, a dropped connection, or the
real answer after the client has given up. The listing lag hides a new instance from the v1
list for N seconds, as an eventually consistent backend would. Per rental, for the next N rentals: the offer vanishes
(404/410 `no_such_ask`), the instance meets a fate (stuck loading, exited, offline, …), its ports
answer a given status or refuse connections, it is billed at another price. Faults aimed at one
existing instance or offer live on the market (`Market.set_fate`, `set_health`, `vanish_offer`).

Every setter validates its arguments and raises ValueError with a message.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from vastmarket import pacing

ENDPOINTS: tuple[str, ...] = pacing.ENDPOINTS
# Published minimum intervals (seconds) per endpoint: the domain's own table, so that the limits
# the simulator enforces are the ones kube-vast paces itself by; they appear in 429 messages.
THRESHOLDS: Mapping[str, float] = pacing.PUBLISHED_INTERVALS
FAIL_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)
# text: "API requests too frequent …" as text/plain; detail: {"detail": …}; error:
# {"error": "rate_limit_exceeded"}; html: an nginx error page; json: {"success": false, …}.
BODY_FORMS: tuple[str, ...] = ("text", "detail", "error", "html", "json")
FATE_STATUSES: tuple[str, ...] = ("loading", "created", "exited", "unknown", "offline", "stopped")
HEALTH_MODES: tuple[str, ...] = ("answer", "refuse", "hang")
VANISH_STATUSES: tuple[int, ...] = (404, 410)
# Commit then fail: what becomes of the answer to a call that took effect.
ANSWER_MODES: tuple[str, ...] = ("status", "drop", "late")
COMMIT_ENDPOINTS: tuple[str, ...] = ("create", "destroy", "update")
COMMIT_STATUSES: tuple[int, ...] = (500, 502, 503, 504)


@dataclass(frozen=True)
class Failure:
    status: int
    body: str


@dataclass(frozen=True)
class LostAnswer:
    """The answer to a call whose action took effect: `status` (a 5xx in a `body` form) instead of
    the real one, `drop` (the connection closes unanswered), or `late` (the real answer after
    `seconds`, when the client has given up)."""

    answer: str
    status: int = 503
    body: str = "json"
    seconds: float = 0.0


@dataclass(frozen=True)
class RateLimit:
    interval: float
    body: str


@dataclass(frozen=True)
class Fate:
    """What becomes of an instance instead of running on.

    `running_seconds=None`: it never runs; it turns `status` when it would have reached running
    (for `loading`: it stays loading). A number: it runs that long, then turns `status`.
    """

    status: str
    running_seconds: float | None = None
    status_msg: str | None = None
    exit_code: int | None = None  # for `exited`: the container's code (1 when None)


@dataclass(frozen=True)
class Health:
    """How an instance's ports behave: answer `status`, refuse connections, or accept and hang."""

    status: int = 200
    mode: str = "answer"


@dataclass(frozen=True)
class PriceDrift:
    """Bill at `dph_total` (absolute) or at the offer's price times `factor`."""

    factor: float | None = None
    dph_total: float | None = None

    def apply(self, price: float) -> float:
        if self.dph_total is not None:
            return self.dph_total
        return round(price * (self.factor if self.factor is not None else 1.0), 6)


@dataclass(frozen=True)
class RentFaults:
    """The faults taken by one successful rental."""

    fate: Fate | None = None
    health: Health | None = None
    price: PriceDrift | None = None


def default_body(status: int) -> str:
    if status == 429:
        return "text"
    return "html" if status in (502, 504) else "json"


def check_endpoint(endpoint: str) -> str:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; use one of {', '.join(ENDPOINTS)}")
    return endpoint


def check_fate(status: str, seconds: float | None, name: str, status_msg: str | None = None,
               exit_code: int | None = None) -> None:
    if status not in FATE_STATUSES:
        raise ValueError(f"status must be one of {', '.join(FATE_STATUSES)}, got {status!r}")
    if exit_code is not None and (status != "exited" or isinstance(exit_code, bool)
                                  or not isinstance(exit_code, int) or not 0 <= exit_code <= 255):
        raise ValueError(f"exit_code must be 0-255 and goes with status exited, got {exit_code!r}")
    if seconds is not None:
        _non_negative(seconds, name)
    if status_msg is not None and not isinstance(status_msg, str):
        raise ValueError(f"status_msg must be a string, got {status_msg!r}")


def check_health(health: Health) -> Health:
    if health.mode not in HEALTH_MODES:
        raise ValueError(f"mode must be one of {', '.join(HEALTH_MODES)}, got {health.mode!r}")
    if isinstance(health.status, bool) or not isinstance(health.status, int) or not 100 <= health.status <= 599:
        raise ValueError(f"status must be an HTTP status code, got {health.status!r}")
    return health


def _count(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    return count


def _non_negative(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


class Faults:
    """The pending faults. Thread-safe; each `take_*` consumes what it returns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, deque[Failure]] = {}
        self._limits: dict[str, RateLimit] = {}
        self._last_call: dict[tuple[str, str], float] = {}
        self._latency: dict[str, float] = {}
        self._slow: dict[str, float] = {}
        self._holds: dict[str, threading.Event] = {}
        self._lost: dict[str, deque[LostAnswer]] = {}
        self._listing_lag = 0.0
        self._vanish: deque[int] = deque()
        self._fates: deque[Fate] = deque()
        self._health: deque[Health] = deque()
        self._prices: deque[PriceDrift] = deque()

    # --- per endpoint -------------------------------------------------------------------------
    def fail_next(self, endpoint: str, *, status: int = 503, count: int = 1, body: str | None = None) -> None:
        """The next `count` calls of `endpoint` answer `status` (429 or 5xx) with a `body` form."""
        check_endpoint(endpoint)
        if status not in FAIL_STATUSES:
            raise ValueError(f"status must be one of {FAIL_STATUSES}, got {status!r}")
        form = body or default_body(status)
        if form not in BODY_FORMS:
            raise ValueError(f"body must be one of {', '.join(BODY_FORMS)}, got {body!r}")
        with self._lock:
            self._failures.setdefault(endpoint, deque()).extend([Failure(status, form)] * _count(count))

    def rate_limit(self, endpoint: str, interval: float, *, body: str = "text") -> None:
        """Calls of `endpoint` closer than `interval` seconds (per key and client) answer 429; 0 lifts it."""
        check_endpoint(endpoint)
        _non_negative(interval, "interval")
        if body not in ("text", "detail", "error"):
            raise ValueError(f"body must be text, detail or error, got {body!r}")
        with self._lock:
            if interval == 0:
                self._limits.pop(endpoint, None)
            else:
                self._limits[endpoint] = RateLimit(float(interval), body)

    def set_latency(self, endpoint: str, seconds: float) -> None:
        """Every call of `endpoint` waits `seconds` before it is handled; 0 lifts it."""
        check_endpoint(endpoint)
        _non_negative(seconds, "seconds")
        with self._lock:
            if seconds == 0:
                self._latency.pop(endpoint, None)
            else:
                self._latency[endpoint] = float(seconds)

    def latency(self, endpoint: str) -> float:
        with self._lock:
            return self._latency.get(endpoint, 0.0)

    def hold(self, endpoint: str) -> None:
        """Calls of `endpoint` arriving from now on wait, before they are handled, until
        `release(endpoint)` (or the simulator stops): a request in flight for as long as a test
        needs, made only when released, even if its client has gone."""
        check_endpoint(endpoint)
        with self._lock:
            self._holds.setdefault(endpoint, threading.Event())

    def release(self, endpoint: str) -> None:
        """Let the held calls of `endpoint` go on (and the next ones through); no hold: nothing."""
        check_endpoint(endpoint)
        with self._lock:
            gate = self._holds.pop(endpoint, None)
        if gate is not None:
            gate.set()

    def held(self, endpoint: str) -> threading.Event | None:
        """The gate a call of `endpoint` waits on (set when released), or None."""
        with self._lock:
            return self._holds.get(endpoint)

    def set_slow_answer(self, endpoint: str, seconds: float) -> None:
        """Every call of `endpoint` is handled at once and its answer held back `seconds` (past a
        client's read timeout, the action is done but the client does not know); 0 lifts it."""
        check_endpoint(endpoint)
        _non_negative(seconds, "seconds")
        with self._lock:
            if seconds == 0:
                self._slow.pop(endpoint, None)
            else:
                self._slow[endpoint] = float(seconds)

    def slow_answer(self, endpoint: str) -> float:
        with self._lock:
            return self._slow.get(endpoint, 0.0)

    def commit_then_fail(self, endpoint: str, *, answer: str = "status", status: int = 503, body: str | None = None,
                         seconds: float | None = None, count: int = 1) -> None:
        """The next `count` calls of `endpoint` that take effect (a 2xx: the rental is made, the
        instance destroyed) lose their answer: `status` answers a 5xx instead, `drop` closes the
        connection unanswered, `late` sends the real answer after `seconds`. Calls that fail on
        their own (404, 400) pass through and do not use the fault up."""
        if endpoint not in COMMIT_ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(COMMIT_ENDPOINTS)}, got {endpoint!r}")
        if answer not in ANSWER_MODES:
            raise ValueError(f"answer must be one of {', '.join(ANSWER_MODES)}, got {answer!r}")
        if status not in COMMIT_STATUSES:
            raise ValueError(f"status must be one of {COMMIT_STATUSES}, got {status!r}")
        form = body or default_body(status)
        if form not in BODY_FORMS:
            raise ValueError(f"body must be one of {', '.join(BODY_FORMS)}, got {body!r}")
        if answer == "late":
            if seconds is None or _non_negative(seconds, "seconds") == 0:
                raise ValueError("answer late needs seconds > 0: how long the real answer is held back")
        elif seconds is not None:
            raise ValueError(f"seconds goes with answer late, not {answer}")
        lost = LostAnswer(answer, status, form, float(seconds or 0.0))
        with self._lock:
            self._lost.setdefault(endpoint, deque()).extend([lost] * _count(count))

    def take_lost_answer(self, endpoint: str) -> LostAnswer | None:
        with self._lock:
            queue = self._lost.get(endpoint)
            return queue.popleft() if queue else None

    def set_listing_lag(self, seconds: float) -> None:
        """A new instance is missing from the v1 list (label filters included) for `seconds` after
        its rental; a get by id sees it at once. 0 lifts it."""
        with self._lock:
            self._listing_lag = _non_negative(seconds, "seconds")

    def listing_lag(self) -> float:
        with self._lock:
            return self._listing_lag

    def take_failure(self, endpoint: str) -> Failure | None:
        with self._lock:
            queue = self._failures.get(endpoint)
            return queue.popleft() if queue else None

    def check_rate(self, endpoint: str, identity: str, now: float) -> RateLimit | None:
        """The limit a call breaks, or None (and the call is recorded as accepted)."""
        with self._lock:
            limit = self._limits.get(endpoint)
            if limit is None:
                return None
            last = self._last_call.get((endpoint, identity))
            if last is not None and now - last < limit.interval:
                return limit
            self._last_call[(endpoint, identity)] = now
            return None

    # --- per rental ---------------------------------------------------------------------------
    def vanish_next_rent(self, *, count: int = 1, status: int = 404) -> None:
        """The offers the next `count` rentals ask for vanish just before: 404 or 410 `no_such_ask`."""
        if status not in VANISH_STATUSES:
            raise ValueError(f"status must be 404 or 410, got {status!r}")
        with self._lock:
            self._vanish.extend([status] * _count(count))

    def fate_next(
        self,
        status: str,
        *,
        count: int = 1,
        running_seconds: float | None = None,
        status_msg: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        """The next `count` rented instances meet `status` (see `Fate`)."""
        check_fate(status, running_seconds, "running_seconds", status_msg, exit_code)
        with self._lock:
            fate = Fate(status, None if running_seconds is None else float(running_seconds), status_msg, exit_code)
            self._fates.extend([fate] * _count(count))

    def health_next(self, *, count: int = 1, status: int = 200, mode: str = "answer") -> None:
        """The ports of the next `count` rented instances behave as `Health(status, mode)`."""
        health = check_health(Health(status, mode))
        with self._lock:
            self._health.extend([health] * _count(count))

    def drift_next_price(self, *, count: int = 1, factor: float | None = None, dph_total: float | None = None) -> None:
        """The next `count` rented instances are billed at another dph_total than their offer's."""
        if (factor is None) == (dph_total is None):
            raise ValueError("give exactly one of factor or dph_total")
        drift = PriceDrift(
            factor=None if factor is None else _non_negative(factor, "factor"),
            dph_total=None if dph_total is None else _non_negative(dph_total, "dph_total"),
        )
        with self._lock:
            self._prices.extend([drift] * _count(count))

    def take_vanish(self) -> int | None:
        with self._lock:
            return self._vanish.popleft() if self._vanish else None

    def take_rent_faults(self) -> RentFaults:
        with self._lock:
            return RentFaults(
                fate=self._fates.popleft() if self._fates else None,
                health=self._health.popleft() if self._health else None,
                price=self._prices.popleft() if self._prices else None,
            )

    # --- whole ---------------------------------------------------------------------------------
    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._limits.clear()
            self._last_call.clear()
            self._latency.clear()
            self._slow.clear()
            for gate in self._holds.values():
                gate.set()
            self._holds.clear()
            self._lost.clear()
            self._listing_lag = 0.0
            self._vanish.clear()
            self._fates.clear()
            self._health.clear()
            self._prices.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "failures": {e: [asdict(f) for f in q] for e, q in self._failures.items() if q},
                "rate_limits": {e: asdict(limit) for e, limit in self._limits.items()},
                "latency": dict(self._latency),
                "slow_answer": dict(self._slow),
                "held": sorted(self._holds),
                "commit_then_fail": {e: [asdict(a) for a in q] for e, q in self._lost.items() if q},
                "listing_lag": self._listing_lag,
                "vanish_next": list(self._vanish),
                "fates_next": [asdict(f) for f in self._fates],
                "health_next": [asdict(h) for h in self._health],
                "prices_next": [asdict(p) for p in self._prices],
            }
