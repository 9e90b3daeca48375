"""Keeps the demo's kube-vast components running, as a kubelet keeps a pod's containers: a
component that exits without being asked to is started again after a back-off, said on the
console, instead of ending the demo.

The back-off doubles from ``base`` up to ``cap`` seconds (the kubelet's CrashLoopBackOff goes
10 s … 5 min; the demo's are shorter) and starts over once a component has run ``stable`` seconds.
:meth:`Supervisor.tick` does the work; call it from the main thread (a child process dies with the
thread that started it: ``PR_SET_PDEATHSIG``), e.g. from every poll of a wait.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from devcluster.processes import ManagedProcess

from .console import Console

Restart = Callable[[], ManagedProcess]


def _how(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Component:
    name: str
    process: ManagedProcess
    restart: Restart
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None  # when the pending restart is due
    failures: int = 0  # crashes since it last ran for `stable` seconds


class Supervisor:
    def __init__(self, console: Console, *, base: float = 1.0, cap: float = 30.0, stable: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.base = base
        self.cap = cap
        self.stable = stable
        self.clock = clock
        self.components: dict[str, Component] = {}

    def add(self, name: str, process: ManagedProcess, restart: Restart) -> None:
        """Watch ``process``; ``restart()`` starts a new one (and returns it) when it dies."""
        self.components[name] = Component(name, process, restart, started_at=self.clock())

    def process(self, name: str) -> ManagedProcess | None:
        component = self.components.get(name)
        return component.process if component is not None else None

    def processes(self) -> list[ManagedProcess]:
        return [c.process for c in self.components.values()]

    def settled(self) -> bool:
        """No component is down or waiting out its back-off."""
        return all(c.restart_at is None and not c.process.died_unexpectedly for c in self.components.values())

    def backoff(self, failures: int) -> float:
        """The wait before the restart after the ``failures``-th crash in a row (1, 2, 3...)."""
        return float(min(self.cap, self.base * 2 ** max(0, failures - 1)))

    def tick(self) -> None:
        """Notice crashed components, and restart those whose back-off is over."""
        now = self.clock()
        for c in self.components.values():
            if c.restart_at is None and c.process.died_unexpectedly:
                code = c.process.proc.poll() if c.process.proc is not None else None
                c.failures = 1 if now - c.started_at >= self.stable else c.failures + 1
                delay = self.backoff(c.failures)
                c.restart_at = now + delay
                self.console.say("demo", f"{c.name} {_how(code)}; restarting it in {delay:g}s (back-off, "
                                         f"restart {c.restarts + 1})")
            if c.restart_at is not None and now >= c.restart_at:
                c.process.stop()  # reaped already; forgets it
                c.process = c.restart()
                c.restarts += 1
                c.started_at = self.clock()
                c.restart_at = None
                self.console.say("demo", f"{c.name} started again (pid {c.process.pid}, restart {c.restarts})")
