"""Instance logs: what the fake container prints, and the uploads that `request_logs` answers with.

An instance's container log is derived from its record and the clock (`container_lines`: once it
first runs, a start line, the command line it was run with — never its environment — and the
ports it listens on) merged with lines recorded as they happen (`LogStore.append`: every request
its ports answer, in the common log format, and lines a test adds through `/_sim/logs`), and a
line for each exit of its container.
`daemon_lines` are the host daemon's lines (`daemon_logs: "true"`). `select_lines` applies a
request's `filter` and `tail`.

Like the service, `PUT /api/v0/instances/request_logs/{id}/` does not answer the text: it
uploads it and answers a `result_url`, which serves 404 (S3's `NoSuchKey`) until
`upload_seconds` have passed, then the text. Lines carry no timestamps (as `docker logs`
without `-t`). Thread-safe; bounded (`max_lines` per instance, `max_uploads` kept).
"""

from __future__ import annotations

import secrets
import shlex
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Iterable

from vastsim.instance import InstanceRecord

RESULTS_PATH = "/_sim/logs/results/"  # + token + ".log": where uploaded logs are fetched
MAX_LINES = 10_000
MAX_UPLOADS = 256
MAX_APPEND = 1000  # lines in one /_sim/logs call
DEFAULT_UPLOAD_SECONDS = 0.2


@dataclass(frozen=True)
class LogLine:
    at: float  # epoch seconds on the simulator's clock
    text: str


def command_line(record: InstanceRecord) -> str:
    """What the container was run with, shell-quoted: the entrypoint (`onstart` in `args` mode,
    else the image's) and its arguments. No environment value ever appears."""
    request = record.request
    if "args" in request.runtype.split():
        entry = request.onstart if request.onstart else "<image entrypoint>"
        args = list(request.args or ()) or ([request.args_str] if request.args_str else [])
        return " ".join([entry, *(shlex.quote(a) for a in args)]) if args else entry
    if request.onstart:
        return f"<image entrypoint>; onstart: {request.onstart}"
    return "<image entrypoint>"


def container_lines(record: InstanceRecord) -> list[LogLine]:
    """The lines the fake container prints when it starts (none before it first runs)."""
    started = record.running_at
    if started is None:
        return []
    ports = ", ".join(f"{m.container_port}/{m.proto}" for m in record.request.ports) or "no ports"
    return [
        LogLine(started, f"[vastsim] instance {record.id} started {record.request.image}"),
        LogLine(started, f"[vastsim] command: {command_line(record)}"),
        LogLine(started, f"[vastsim] listening on {ports}"),
    ] + [LogLine(float(e["at"]), f"[vastsim] run {e['run']} exited with code {e['exit_code']}")
         for e in record.exits]


def daemon_lines(record: InstanceRecord, now: float) -> list[LogLine]:
    """The host daemon's lines about the instance, up to `now`."""
    timeline = record.timeline
    out = [LogLine(record.created_at, f"creating instance {record.id} on machine {record.offer['machine_id']}")]
    if now >= timeline.loading_at:
        out.append(LogLine(timeline.loading_at, f"pulling image {record.request.image}"))
    if record.running_at is not None:
        out.append(LogLine(record.running_at, f"started container for instance {record.id}"))
    return out


def access_line(client: str, method: str, path: str, status: int, at: float) -> str:
    """One request as a web server logs it (common log format)."""
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(at))
    return f'{client} - - [{stamp}] "{method} {path} HTTP/1.1" {status} -'


def select_lines(lines: Iterable[LogLine], *, tail: int | None, grep: str | None) -> list[str]:
    """The texts, oldest first, of the lines that contain `grep`, the last `tail` of them."""
    texts = [line.text for line in sorted(lines, key=lambda line: line.at) if not grep or grep in line.text]
    if tail is not None:
        texts = texts[-tail:] if tail else []
    return texts


class LogStore:
    """Recorded log lines per instance, and the uploaded logs waiting to be fetched."""

    def __init__(self, clock: Callable[[], float], *, upload_seconds: float = DEFAULT_UPLOAD_SECONDS,
                 max_lines: int = MAX_LINES, max_uploads: int = MAX_UPLOADS) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._lines: dict[int, deque[LogLine]] = {}
        self._uploads: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._max_lines = max_lines
        self._max_uploads = max_uploads
        self.upload_seconds = upload_seconds
        self.downloads = 0
        self.downloads_with_credentials = 0

    def append(self, instance_id: int, text: str) -> None:
        """Record `text` (one or more lines) as printed now by the instance's container."""
        now = self._clock()
        with self._lock:
            log = self._lines.setdefault(instance_id, deque(maxlen=self._max_lines))
            log.extend(LogLine(now, line) for line in text.splitlines())

    def recorded(self, instance_id: int) -> list[LogLine]:
        with self._lock:
            return list(self._lines.get(instance_id, ()))

    def set_upload_seconds(self, seconds: float) -> None:
        """How long an upload takes before its `result_url` answers."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 600:
            raise ValueError(f"seconds must be a number from 0 to 600, got {seconds!r}")
        self.upload_seconds = float(seconds)

    def upload(self, text: str) -> str:
        """Keep `text` for download; returns its token."""
        token = secrets.token_hex(16)
        with self._lock:
            self._uploads[token] = (self._clock() + self.upload_seconds, text)
            while len(self._uploads) > self._max_uploads:
                self._uploads.popitem(last=False)
        return token

    def download(self, token: str, *, with_credentials: bool = False) -> str | None:
        """The uploaded text, or None while it is not there (unknown, not yet uploaded, dropped).
        `with_credentials`: the request carried an API key, which a storage host should never see."""
        with self._lock:
            self.downloads += 1
            self.downloads_with_credentials += int(with_credentials)
            found = self._uploads.get(token)
        if found is None or self._clock() < found[0]:
            return None
        return found[1]
