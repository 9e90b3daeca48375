"""The money invariants, checked on the simulator's ledger (``/_sim/state``'s ``instances``: every
instance ever rented, destroyed ones included) — continuously while a crash test, the soak or the
demo runs, not only at the end.

- :class:`LedgerSampler` reads the ledger in a background thread every ``interval`` seconds and
  records, per pod label, the most instances seen live at once; any sample with two live
  instances for one label is a violation (a pod billed twice at that moment).
- :func:`rental_audit` compares, per pod label, the rentals the ledger counts (destroyed ones
  included: a duplicate rented and removed again still cost money) with one plus the replacements
  the injected faults justify (by default: instances that met an injected fate, such as a host
  going offline).
- :func:`live` lists what is still live: after teardown and one reaper cycle it must be empty.

``rows`` is any callable that returns the ledger's instances: ``lambda: sim.state()["instances"]``
in process, or a GET of ``/_sim/state`` for a simulator in another process.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Rows = Callable[[], list[dict[str, Any]]]
Justified = Callable[[Mapping[str, Any]], bool]


def met_a_fate(instance: Mapping[str, Any]) -> bool:
    """The default justification of a replacement: the instance met an injected fate (stuck,
    offline, OCI failure...), so its pod needed another."""
    return instance.get("fate") is not None


def live(rows: Iterable[Mapping[str, Any]], label_prefix: str) -> list[Mapping[str, Any]]:
    return [i for i in rows if not i.get("destroyed") and (i.get("label") or "").startswith(label_prefix)]


@dataclass(frozen=True)
class Violation:
    at: float  # time.time() of the sample
    label: str
    live: tuple[int, ...]


@dataclass(frozen=True)
class RentalCount:
    label: str
    rentals: int
    justified: int

    @property
    def duplicates(self) -> int:
        """Rentals beyond one plus the justified replacements."""
        return max(0, self.rentals - 1 - self.justified)


def rental_audit(rows: Iterable[Mapping[str, Any]], label_prefix: str, *,
                 justified: Justified = met_a_fate) -> list[RentalCount]:
    """Per pod label under ``label_prefix``: the rentals the ledger counts and the replacements
    justified (``duplicates`` is what neither explains)."""
    mine: dict[str, list[Mapping[str, Any]]] = {}
    for instance in rows:
        label = instance.get("label") or ""
        if label.startswith(label_prefix):
            mine.setdefault(label, []).append(instance)
    return [RentalCount(label, len(found), sum(1 for i in found if justified(i)))
            for label, found in sorted(mine.items())]


@dataclass
class LedgerSampler:
    rows: Rows
    label_prefix: str
    interval: float = 0.02
    samples: int = 0
    errors: int = 0
    max_live: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    violating_samples: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sample_once(self) -> None:
        try:
            rows = self.rows()
        except Exception:  # a sample that could not be read proves nothing either way
            with self._lock:
                self.errors += 1
            return
        at = time.time()
        per_label = Counter(str(i["label"]) for i in live(rows, self.label_prefix))
        with self._lock:
            self.samples += 1
            bad = False
            for label, n in per_label.items():
                if n > self.max_live.get(label, 0):
                    self.max_live[label] = n
                if n > 1:
                    bad = True
                    if len(self.violations) < 100:
                        ids = tuple(int(i["id"]) for i in live(rows, self.label_prefix) if i["label"] == label)
                        self.violations.append(Violation(at, label, ids))
            self.violating_samples += int(bad)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample_once()

    def start(self) -> LedgerSampler:
        self.sample_once()
        self._thread = threading.Thread(target=self._run, name="ledger-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.sample_once()

    def __enter__(self) -> LedgerSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def worst(self) -> int:
        """The most instances seen live at once for one pod (0 when none ever was)."""
        with self._lock:
            return max(self.max_live.values(), default=0)
