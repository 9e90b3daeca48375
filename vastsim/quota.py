"""How much one search may answer, and how many rows a key may search per period.

`SearchLimits` holds the two limits the service documents for `POST /api/v0/bundles/` beside the
per-endpoint minimum interval (vast-api.md §9):

- a **row cap**: a search that matches more offers than it may answer is cut to the cap (or to
  its own `limit`, whichever is lower) and says so with `"truncated": true`;
- a **search row quota**: each key (or client address, without a key) may receive `rows` offer
  rows per `period` seconds (a day by default, reset at UTC midnight). Once a key has used its
  rows, every search answers 429 `{"success": false, "error": "search_quota_exceeded", ...}` with
  `Retry-After` (seconds until the reset) and `X-RateLimit-Reset` (its epoch second) until the
  period ends. A search that starts under the quota is answered whole, so the last one may go
  over it.

Thread-safe. Every setter validates its arguments and raises ValueError with a message.
"""

from __future__ import annotations

import enum
import math
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

DAY = 86_400.0


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # a setting not given to `configure`: it stays as it is


@dataclass(frozen=True)
class QuotaRefusal:
    """A search refused by the quota: wait `retry_after` seconds (until `reset_at`, epoch)."""

    retry_after: float
    reset_at: float
    rows: int
    period: float


class SearchLimits:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._row_cap: int | None = None
        self._quota: int | None = None
        self._period = DAY
        self._origin = 0.0  # periods start at origin + k * period (UTC midnight for a day)
        self._used: Counter[tuple[str, int]] = Counter()
        self._exhausted: set[tuple[str, int]] = set()
        self._rows_served = 0
        self._searches = 0
        self._refused = 0

    # --- settings ------------------------------------------------------------------------------
    def configure(self, *, row_cap: int | None | _Keep = KEEP, quota_rows: int | None | _Keep = KEEP,
                  quota_period: float | None | _Keep = KEEP) -> None:
        """Set the row cap and the quota; what is not given stays, `None` lifts it (0 rows refuses
        every search). Without a `quota_period`, periods are days from UTC midnight; with one,
        the first starts now. The rows used so far are forgotten."""
        for name, value in (("row_cap", row_cap), ("quota_rows", quota_rows)):
            if value is not KEEP and value is not None and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or null, got {value!r}")
        if row_cap == 0:
            raise ValueError("row_cap must be at least 1 (null: no cap)")
        if not isinstance(quota_period, _Keep) and quota_period is not None and (
                isinstance(quota_period, bool) or not isinstance(quota_period, (int, float))
                or not math.isfinite(quota_period) or quota_period <= 0):
            raise ValueError(f"quota_period must be a positive number of seconds, got {quota_period!r}")
        with self._lock:
            if not isinstance(row_cap, _Keep):
                self._row_cap = row_cap
            if not isinstance(quota_rows, _Keep):
                self._quota = quota_rows
            if not isinstance(quota_period, _Keep):
                self._period = float(quota_period) if quota_period is not None else DAY
                self._origin = self._clock() if quota_period is not None else 0.0
            self._used.clear()
            self._exhausted.clear()

    def exhaust(self, identity: str | None = None) -> None:
        """Use up the quota of the current period now (for `identity`, or for every caller)."""
        with self._lock:
            if self._quota is None:
                raise ValueError("no search quota is set: configure quota_rows first")
            window = self._window(self._clock())
            self._exhausted.add((identity or "*", window))

    def row_cap(self) -> int | None:
        with self._lock:
            return self._row_cap

    # --- per search ----------------------------------------------------------------------------
    def check(self, identity: str) -> QuotaRefusal | None:
        """The refusal a search by `identity` gets now, or None when it may search."""
        with self._lock:
            if self._quota is None:
                return None
            now = self._clock()
            window = self._window(now)
            if (self._used[(identity, window)] < self._quota and (identity, window) not in self._exhausted
                    and ("*", window) not in self._exhausted):
                return None
            self._refused += 1
            reset_at = self._origin + (window + 1) * self._period
            return QuotaRefusal(retry_after=max(0.0, reset_at - now), reset_at=reset_at, rows=self._quota,
                                period=self._period)

    def record(self, identity: str, rows: int) -> None:
        """`identity` received `rows` offer rows."""
        with self._lock:
            self._searches += 1
            self._rows_served += rows
            if self._quota is not None:
                self._used[(identity, self._window(self._clock()))] += rows

    def _window(self, now: float) -> int:
        return math.floor((now - self._origin) / self._period)

    # --- inspection ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            window = self._window(now)
            return {
                "row_cap": self._row_cap,
                "quota_rows": self._quota,
                "quota_period": self._period,
                "period_ends_at": self._origin + (window + 1) * self._period,
                "used": {who: n for (who, w), n in self._used.items() if w == window},
                "exhausted": sorted(who for who, w in self._exhausted if w == window),
                "searches": self._searches,
                "rows_served": self._rows_served,
                "refused": self._refused,
            }

    def clear(self) -> None:
        """No cap, no quota, counters at zero."""
        with self._lock:
            self._row_cap = None
            self._quota = None
            self._period = DAY
            self._origin = 0.0
            self._used.clear()
            self._exhausted.clear()
            self._rows_served = self._searches = self._refused = 0
