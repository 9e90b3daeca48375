"""``make demo DEMO_FLAGS=--chaos``: the controller is SIGKILLed at random moments of the example
(1.5 to 5 s apart, from a seeded random source) while three replicas of june launch, serve (until
the controller was killed :data:`MIN_KILLS` times) and are scaled away; the demo's supervisor
starts it again each time (:mod:`demo.supervisor`).
Meanwhile the simulator's ledger is sampled continuously (:class:`devcluster.ledger.LedgerSampler`),
and at the end the demo shows from it one rental per pod, at most one live instance per pod at
every sample, and nothing left live.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from devcluster.background import BackgroundLoop
from devcluster.ledger import rental_audit
from devcluster.processes import ManagedProcess

from .console import Console

REPLICAS = 3
MIN_KILLS = 4  # the example serves until the controller was killed this often, then is torn down


class Killer(BackgroundLoop):
    """SIGKILLs the controller's process group at random moments, from a thread of its own, until
    stopped (the restarts are the supervisor's, on the main thread)."""

    def __init__(self, console: Console, controller: Callable[[], ManagedProcess | None], *, seed: int,
                 low: float = 1.5, high: float = 5.0) -> None:
        super().__init__("chaos-killer")
        self.console = console
        self.controller = controller
        self.rng = random.Random(seed)
        self.low, self.high = low, high
        self.kills = 0
        self.phase = "launch"

    def _run(self) -> None:
        while not self._stop.wait(self.rng.uniform(self.low, self.high)):
            process = self.controller()
            if process is None or process.proc is None or process.proc.poll() is not None:
                continue  # down already: the supervisor is restarting it
            try:
                os.killpg(process.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            self.kills += 1
            self.console.say("chaos", f"SIGKILL controller (pid {process.proc.pid}) during the {self.phase}: "
                                      f"kill {self.kills}")


@dataclass(frozen=True)
class LedgerReport:
    pods: int
    rentals: int
    duplicates: int
    live: int
    max_live_per_pod: int
    samples: int
    per_pod: tuple[tuple[str, tuple[int, ...]], ...]  # (pod name or uid, instance ids)

    @property
    def clean(self) -> bool:
        return self.duplicates == 0 and self.live == 0 and self.max_live_per_pod <= 1 and self.rentals == self.pods

    def lines(self) -> list[str]:
        per_pod = "; ".join(f"{name}: {', '.join(map(str, ids))}" for name, ids in self.per_pod)
        verdict = "one rental per pod" if self.rentals == self.pods and not self.duplicates else \
            f"{self.duplicates} DUPLICATE rental(s)"
        return [f"simulator ledger: {self.pods} pods, {self.rentals} rentals: {verdict} ({per_pod})",
                f"simulator ledger: at most {self.max_live_per_pod} live instance per pod in {self.samples} samples; "
                f"{self.live} live now"]


def ledger_report(rows: list[Mapping[str, Any]], prefix: str, names: Mapping[str, str], *, max_live: int,
                  samples: int) -> LedgerReport:
    """What the ledger says of this cluster's pods (``names``: pod uid → pod name)."""
    audit = rental_audit(rows, prefix, justified=lambda i: i.get("fate") is not None)
    ids: dict[str, list[int]] = {}
    for row in rows:
        label = str(row.get("label") or "")
        if label.startswith(prefix):
            ids.setdefault(label, []).append(int(row["id"]))
    per_pod = tuple((names.get(label[len(prefix):], label[len(prefix):]), tuple(sorted(found)))
                    for label, found in sorted(ids.items()))
    live = sum(1 for r in rows if not r.get("destroyed") and str(r.get("label") or "").startswith(prefix))
    return LedgerReport(pods=len(audit), rentals=sum(a.rentals for a in audit),
                        duplicates=sum(a.duplicates for a in audit), live=live, max_live_per_pod=max_live,
                        samples=samples, per_pod=per_pod)
