"""A loop on a daemon thread of its own, started and stopped from the caller's thread: what the
long runs' watchers share (the soak's pod watcher, the demo's log followers and its chaos killer)."""

from __future__ import annotations

import threading
from typing import Self


class BackgroundLoop:
    """Runs :meth:`_run` on a daemon thread named ``name``; :meth:`_run` returns once ``_stop``
    is set (it waits on it between turns). :meth:`stop` sets it and joins the thread for at most
    ``join_timeout`` seconds."""

    join_timeout: float = 10.0

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.join_timeout)
