"""A Vast instance's log, as ``kubectl logs`` shows it: lines with times, filtered and rendered.

Vast answers the last N lines of a container's output as plain text, without timestamps.
:class:`LogHistory` remembers, per instance, the lines it has read and when it first read each
one (bounded: ``max_lines`` per instance, ``max_instances`` instances, least recently used
dropped). Every read is merged into it (:meth:`LogHistory.observe`): the read's lines that
continue the known ones are new, and get the time of that read and the next numbers of the
history's reading order (``seq``). These times are what ``sinceSeconds``, ``sinceTime`` and
``timestamps`` use — a line read for the first time counts as printed now — and each ``follow``
streams the lines of a later ``seq`` than it has sent, so that several readers of one log never
take lines from each other.

:func:`render` applies the kubelet's order: the ``since`` filter, then ``tailLines``, then
``limitBytes``. Pure apart from the history's lock.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .kubelet_requests import LogOptions

MAX_LINES = 10_000
MAX_INSTANCES = 256


@dataclass(frozen=True, slots=True)
class LogLine:
    at: float  # epoch seconds: when kube-vast first read the line
    text: str
    seq: int = 0  # order of first reading, per history (0: older than every line read so far)


def split_lines(text: str) -> list[str]:
    """The lines of a log text (a last line without its newline counts; ``\\r\\n`` ends a line)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def overlap(known: Sequence[str], read: Sequence[str]) -> int:
    """How many of the first lines of ``read`` the known lines cover: the largest ``p`` such that
    the known lines end where ``read[:p]`` ends — ``read`` starting inside them, or holding them
    whole after older lines. 0 when they are not there (the log was cut, or much was printed)."""
    if not known:
        return 0
    last = known[-1]
    for end in range(len(read), 0, -1):
        if read[end - 1] != last:
            continue
        size = min(len(known), end)
        if list(read[end - size:end]) == list(known[len(known) - size:]):
            return end
    return 0


@dataclass
class _Seen:
    lines: deque[LogLine]
    total: int = 0  # lines of the log from its first line, when `whole`
    whole: bool = False  # the history starts at the log's first line


@dataclass(frozen=True, slots=True)
class Observation:
    window: list[LogLine]  # the read's lines, oldest first, with their times
    new: list[LogLine] = field(default_factory=list)  # those not read before


class LogHistory:
    """What was read of each instance's log, and when. Thread-safe."""

    def __init__(self, *, max_lines: int = MAX_LINES, max_instances: int = MAX_INSTANCES) -> None:
        self._max_lines = max_lines
        self._max_instances = max_instances
        self._lock = threading.Lock()
        self._seen: OrderedDict[int, _Seen] = OrderedDict()
        self._seq = itertools.count(1)

    def observe(self, instance_id: int, read: Sequence[str], *, complete: bool, now: float) -> Observation:
        """Merge a read of the log's last lines (``complete``: the read holds the whole log). An
        empty read tells nothing (Vast may answer one before the log is uploaded) and changes nothing."""
        if not read:
            return Observation([], [])
        with self._lock:
            seen = self._seen.get(instance_id)
            if seen is None:
                seen = self._seen[instance_id] = _Seen(deque(maxlen=self._max_lines))
                while len(self._seen) > self._max_instances:
                    self._seen.popitem(last=False)
            self._seen.move_to_end(instance_id)
            known = [line.text for line in seen.lines]
            start = seen.total - len(known)  # index in `read` of the first known line
            if complete and seen.whole and 0 <= start and seen.total <= len(read) \
                    and list(read[start:seen.total]) == known:
                matched = seen.total
            else:
                matched = overlap(known, read)
                if matched == 0 and known:  # the log was cut or started again: all of it is new
                    seen.lines.clear()
                    seen.whole = False
            # The read's lines: those the known lines cover keep their time and order, older ones
            # (never read, or dropped from the bounded history) count as older than all of them.
            covered = list(seen.lines)[len(seen.lines) - min(len(seen.lines), matched):] if matched else []
            older = covered[0].at if covered else now
            new = [LogLine(now, text, next(self._seq)) for text in read[matched:]]
            window = ([LogLine(older, text) for text in read[: matched - len(covered)]]
                      + [LogLine(line.at, line.text, line.seq) for line in covered] + new)
            seen.lines = deque(window, maxlen=self._max_lines)
            if complete:
                seen.whole, seen.total = True, len(read)
            elif seen.whole:
                seen.total += len(new)
            return Observation(window, new)

    def forget(self, instance_id: int) -> None:
        with self._lock:
            self._seen.pop(instance_id, None)


def stamp(at: float) -> str:
    """RFC 3339 with fractional seconds, in UTC, as the kubelet prefixes lines with ``timestamps``."""
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_lines(lines: Sequence[LogLine], *, timestamps: bool) -> bytes:
    return "".join(f"{stamp(line.at)} {line.text}\n" if timestamps else f"{line.text}\n"
                   for line in lines).encode("utf-8")


def select(lines: Sequence[LogLine], options: LogOptions, now: float) -> list[LogLine]:
    """The lines to show: those since ``sinceSeconds``/``sinceTime``, then the last ``tailLines``."""
    since = options.since(now)
    chosen = [line for line in lines if since is None or line.at >= since]
    if options.tail_lines is not None:
        chosen = chosen[len(chosen) - options.tail_lines:] if options.tail_lines else []
    return chosen


def render(lines: Sequence[LogLine], options: LogOptions, now: float) -> bytes:
    """The body of a ``containerLogs`` answer, cut at ``limitBytes``."""
    data = format_lines(select(lines, options, now), timestamps=options.timestamps)
    return data if options.limit_bytes is None else data[: options.limit_bytes]
