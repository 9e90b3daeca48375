"""Named points in the controller's work where a crash test aims its SIGKILL: a test-only hook,
inert unless its environment variables are set (production sets neither; nothing is logged, no
thread ever waits).

``KUBE_VAST_CHECKPOINTS=1``
    Log one line at each point reached: ``checkpoint NAME key=value ...`` (logger
    ``kube_vast.checkpoint``, level INFO).
``KUBE_VAST_PAUSE_AT=NAME[,NAME...]``
    The first thread to reach each named point logs ``checkpoint NAME paused key=value ...`` and
    then waits for good, so that the test's SIGKILL lands exactly there. Implies the logging.
``KUBE_VAST_PAUSE_FILE=PATH``
    The same, aimed anew at every point reached: the file (read each time; missing means empty)
    holds lines ``NAME [key=value ...]``, and a point pauses when its name and every given
    ``key=value`` of its context match a line (``destroy-sent pod=ns/web-0``). Each line pauses
    one thread per process. Implies the logging.

The points, in the order a pod meets them (:data:`POINTS`):

=======================  ==================================================================
``intent-recorded``      the finalizer and the ``vast.ai/launch`` intent are on the pod; nothing rented
``rent-sending``         the uncertain-rent marker is written; the rent request goes out next
``rent-answered``        Vast answered the rent with an instance id; the pod is not annotated yet
``endpointslice-write``  one EndpointSlice of the pod's written (``written=N of=M``), maybe more to come
``destroy-sent``         a deleted pod's instance was destroyed; its finalizer is still on
``reaper-swept``         one orphan-reaper pass is over
=======================  ==================================================================
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from vastmarket.errors import ConfigError

log = logging.getLogger("kube_vast.checkpoint")

POINTS: tuple[str, ...] = ("intent-recorded", "rent-sending", "rent-answered", "endpointslice-write",
                           "destroy-sent", "reaper-swept")


class Checkpoints:
    """Call as ``checkpoint("rent-answered", pod="ns/name", instance=20000001)``."""

    def __init__(self, *, log_points: bool = False, pause_at: frozenset[str] = frozenset(),
                 pause_file: Path | None = None, hold: Callable[[], object] | None = None) -> None:
        unknown = sorted(pause_at - set(POINTS))
        if unknown:
            raise ConfigError(f"KUBE_VAST_PAUSE_AT: unknown checkpoint(s) {', '.join(unknown)}; "
                              f"known: {', '.join(POINTS)}")
        self.log_points = log_points or bool(pause_at) or pause_file is not None
        self.pause_at = pause_at
        self.pause_file = pause_file
        self._paused: set[str] = set()
        self._lock = threading.Lock()
        self._hold = hold or threading.Event().wait  # for good: until the SIGKILL

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Checkpoints:
        pause = frozenset(p.strip() for p in environ.get("KUBE_VAST_PAUSE_AT", "").split(",") if p.strip())
        enabled = environ.get("KUBE_VAST_CHECKPOINTS", "").strip().lower() in ("1", "true", "yes")
        path = environ.get("KUBE_VAST_PAUSE_FILE", "").strip()
        return cls(log_points=enabled, pause_at=pause, pause_file=Path(path) if path else None)

    def _aimed(self, name: str, context: Mapping[str, object]) -> str | None:
        """The pause line (or name) that aims at this point, if any."""
        if name in self.pause_at:
            return name
        if self.pause_file is None:
            return None
        try:
            lines = self.pause_file.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        for line in lines:
            words = line.split()
            if not words or words[0] != name:
                continue
            wanted = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            if all(str(context.get(k)) == v for k, v in wanted.items()):
                return line.strip()
        return None

    def __call__(self, name: str, **context: object) -> None:
        if not self.log_points:
            return
        details = " ".join(f"{k}={v}" for k, v in context.items())
        aimed = self._aimed(name, context)
        with self._lock:
            pause = aimed is not None and aimed not in self._paused
            if pause and aimed is not None:
                self._paused.add(aimed)
        if not pause:
            log.info("checkpoint %s %s", name, details)
            return
        log.warning("checkpoint %s paused %s", name, details)
        for handler in logging.getLogger().handlers:  # the line must be out before the kill
            handler.flush()
        self._hold()


INERT = Checkpoints()
