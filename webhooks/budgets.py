"""Team budgets at admission: the budget state the controller publishes beside the offer snapshot
(:class:`vastmarket.budgets.BudgetStateFile`), read from the file only — never from the
Kubernetes API on a request.

:class:`BudgetTracker` (the shell's part) reloads the file when it changes and tallies the pods
this process admitted, so that pods admitted one after another within one publish interval count
against the budget too: a pod counts until a state whose pods were listed after it was admitted
(plus :data:`PERSIST_MARGIN`) counts it itself, as a pod waiting for an instance. :func:`judge` (pure) says
whether a pod whose chosen offer costs ``price`` fits its namespace's budgets: room, ``deny``
or ``queue`` (admitted, held Pending by the controller until room frees), with the message
naming the budget, the limit, what is committed and what the pod would add.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from vastmarket.budgets import DENY, QUEUE, BudgetState, BudgetStateFile, InvalidBudget, Usage, refusals, verdict

log = logging.getLogger("kube_vast.webhook")

QUEUED_ANNOTATION = "vast.ai/budget-queued"
# A pod admitted this long before the controller listed the pods may not have been stored yet then:
# it keeps counting here (counted twice for one publish interval rather than not at all).
PERSIST_MARGIN = 0.25


@dataclass(frozen=True, slots=True)
class BudgetView:
    """The published state and what this process admitted since (namespace → ($/h, pods))."""

    state: BudgetState | None
    admitted: Mapping[str, tuple[float, int]]


@dataclass(frozen=True, slots=True)
class BudgetOutcome:
    action: str  # DENY or QUEUE
    message: str


def judge(view: BudgetView | None, namespace: str, price: float, *, now: float) -> BudgetOutcome | None:
    """None when the pod fits every budget of its namespace (or none is known)."""
    if view is None or view.state is None:
        return None
    ns = view.state.of(namespace)
    if not ns.budgets:
        return None
    extra, pods = view.admitted.get(namespace, (0.0, 0))
    usage = replace(ns.usage, waiting=ns.usage.waiting + extra, waiting_pods=ns.usage.waiting_pods + pods)
    found = refusals(ns.budgets, usage, price, now=now, counting_waiting=True)
    action = verdict(found)
    if action is None:
        return None
    lead = "denied" if action == DENY else "queued: admitted and held Pending until room frees"
    return BudgetOutcome(action, f"over budget ({lead}): " + "; ".join(r.message for r in found))


class BudgetTracker:
    """Follows the state file (checked at most every ``interval`` seconds, on the request path:
    a ``stat``) and keeps this process's tally."""

    def __init__(self, source: BudgetStateFile, *, clock: Callable[[], float], interval: float = 0.5) -> None:
        self.source = source
        self.clock = clock
        self.interval = interval
        self._lock = threading.Lock()
        self._state: BudgetState | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self._admitted: deque[tuple[float, str, float]] = deque()  # (when, namespace, $/h), oldest first
        self._tally: dict[str, tuple[float, int]] = {}  # namespace → the sum of its entries in _admitted

    def view(self) -> BudgetView:
        now = self.clock()
        with self._lock:
            if now - self._checked >= self.interval:
                self._checked = now
                self._reload()
            return BudgetView(self._state, dict(self._tally))

    def _reload(self) -> None:
        stamp = self.source.stamp()
        if stamp is None or stamp == self._stamp:
            return
        try:
            state = self.source.load()
        except InvalidBudget as exc:
            log.warning("budget state not reloaded: %s", exc)
            return
        self._stamp = stamp
        if state is not None and (self._state is None or state.published_at != self._state.published_at):
            self._state = state
            counted = state.counts_pods_until - PERSIST_MARGIN
            while self._admitted and self._admitted[0][0] <= counted:
                _, ns, price = self._admitted.popleft()
                usd, pods = self._tally[ns]
                if pods <= 1:
                    del self._tally[ns]
                else:
                    self._tally[ns] = (usd - price, pods - 1)

    def charge(self, namespace: str, price: float) -> None:
        """A pod was admitted (not a dry run) with an offer at ``price``: it counts until the next
        state is published. Only namespaces with a budget are tallied (the cost of a view stays
        that of the namespaces, however many pods were admitted)."""
        with self._lock:
            if self._state is None or not self._state.of(namespace).budgets:
                return
            self._admitted.append((self.clock(), namespace, price))
            usd, pods = self._tally.get(namespace, (0.0, 0))
            self._tally[namespace] = (usd + price, pods + 1)


__all__ = ["DENY", "QUEUE", "QUEUED_ANNOTATION", "BudgetOutcome", "BudgetTracker", "BudgetView", "Usage", "judge"]
