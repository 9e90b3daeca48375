"""What the demo prints: one line per event, prefixed by who speaks (``demo``, ``controller``,
``webhook``, ``extender``, ``status``…), written whole under a lock so that lines from the log
followers and the demo's own narration never interleave mid-line.

:class:`LogFollower` tails a component's log file in a thread and passes each complete line
through :func:`component_line`, which keeps what a newcomer should see (the selection log, the
endpoint mapping lines, Kubernetes Events, warnings) in the seed's words and drops the rest
(timestamps, dry-run probes, the extender's copy of the selection table).
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import TextIO

from devcluster.background import BackgroundLoop

WIDTH = 10

# "2025-01-02 03:04:05,678 INFO kube_vast.controller message" (kube_vast.cli's logging format)
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<logger>\S+) (?P<text>.*)$")
ONCE = ("offer snapshot published",)  # repeated every poll interval: shown while it changes
_POD_PREFIX = re.compile(r"^pod=\S+ (?=\[VAST\]|  - )")


class Console:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def say(self, who: str, text: str = "") -> None:
        with self._lock:
            for line in text.splitlines() or [""]:
                self.stream.write(f"{who:>{WIDTH}} | {line}\n")
            self.stream.flush()


def component_line(component: str, raw: str) -> str | None:
    """The part of one log line worth showing, or ``None``."""
    found = _RECORD.match(raw.rstrip("\n"))
    if found is None:
        return None  # gunicorn banners, tracebacks' continuation lines (they stay in the log file)
    level, logger, text = found["level"], found["logger"], found["text"]
    if level == "DEBUG" or "dry_run=true" in text.lower():
        return None  # the demo's own dry-run probe of the webhook
    if level in ("WARNING", "ERROR", "CRITICAL"):
        return f"{level}: {text}"
    if component == "extender" and not text.startswith("pod="):
        return None  # its copy of the selection table: the controller prints the one it acts on
    if logger.startswith("vastmarket.client"):
        return None
    return _POD_PREFIX.sub("", text)


class LogFollower(BackgroundLoop):
    """Prints the interesting lines of one log file as they are written; :meth:`stop` stops after
    printing what the file holds then."""

    join_timeout = 5.0

    def __init__(self, console: Console, component: str, path: Path, *, interval: float = 0.1) -> None:
        super().__init__(f"follow-{component}")
        self.console = console
        self.component = component
        self.path = path
        self.interval = interval
        self._offset = 0
        self._partial = ""
        self._shown: set[str] = set()
        self._reading = threading.Lock()

    def catch_up(self) -> None:
        """Print what the file holds now (the demo calls this before narrating, so that what a
        component logged before the demo saw its effect is printed first)."""
        with self._reading:
            self._read()

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            self.catch_up()
            if stopping:
                return
            self._stop.wait(self.interval)

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                f.seek(self._offset)
                chunk = f.read()
                self._offset = f.tell()
        except OSError:
            return
        if not chunk:
            return
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            shown = component_line(self.component, line)
            if shown is None or (shown.startswith(ONCE) and shown in self._shown):
                continue
            self._shown.add(shown)
            self.console.say(self.component, shown)
