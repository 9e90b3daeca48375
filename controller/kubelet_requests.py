"""What a request to the virtual node's kubelet API asks for — pure parsing, no I/O.

:func:`parse_request` turns a method, a path and a query into a :class:`LogRequest`
(``GET /containerLogs/{namespace}/{pod}/{container}``, what the API server sends for ``kubectl
logs``), an :class:`Unsupported` (``exec``, ``attach``, ``portForward``, ``run``: Vast has no
such channel into a container) or raises :class:`KubeletRequestError` with the HTTP status and
the message to answer (400 for a bad parameter, 404 for a path no kubelet route matches, 405).

The query follows the kubelet's ``PodLogOptions``: ``follow``, ``previous``, ``timestamps``,
``tailLines`` (≥ 0; the legacy ``tail``, ``all`` meaning every line), ``sinceSeconds`` (≥ 1) or
``sinceTime`` (RFC 3339, not both), ``limitBytes`` (≥ 1) and ``stream`` (``All``; Vast keeps
stdout and stderr in one log).
Booleans read as the kubelet reads them: absent, ``0`` or ``false`` is false, anything else true.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vastmarket.errors import KubeVastError

LOGS = "containerLogs"
# The kubelet's streaming routes, by their first path segment, and what `kubectl` calls them.
STREAMING = {"exec": "exec", "attach": "attach", "portForward": "port-forward", "run": "run"}
# Other kubelet routes: answered 404 with a message, never served.
OTHER_KUBELET = ("pods", "runningpods", "stats", "metrics", "logs", "spec", "healthz", "configz",
                 "debug", "checkpoint", "cri")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")  # DNS-1123 subdomain or label
MAX_NAME = 253


class KubeletRequestError(KubeVastError):
    """A request that is answered with ``status`` and ``message`` (plain text), never served."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: float | None = None  # epoch seconds
    limit_bytes: int | None = None

    def since(self, now: float) -> float | None:
        """The earliest time a line may have to be shown, if the request sets one."""
        if self.since_seconds is not None:
            return now - self.since_seconds
        return self.since_time


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    pod: str
    container: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}/{self.container}"


@dataclass(frozen=True, slots=True)
class LogRequest:
    ref: PodRef
    options: LogOptions


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A streaming request (``kind`` as kubectl names it) that Vast cannot serve."""

    kind: str
    ref: PodRef | None


KubeletRequest = LogRequest | Unsupported


def parse_request(method: str, path: str, query: Mapping[str, Sequence[str]]) -> KubeletRequest:
    """What the request asks for; raises :class:`KubeletRequestError` when it is answered with
    an error instead."""
    segments = [s for s in path.split("/") if s]
    head = segments[0] if segments else ""
    if head in STREAMING:
        rest = segments[1:] + ([""] if head == "portForward" else [])  # /portForward/{ns}/{pod}
        return Unsupported(STREAMING[head], _pod_ref(rest, strict=False))
    if head != LOGS:
        known = " (a kubelet route kube-vast does not serve)" if head in OTHER_KUBELET else ""
        raise KubeletRequestError(404, f"404 page not found: {path}{known}; the virtual node serves "
                                       f"only GET /{LOGS}/{{namespace}}/{{pod}}/{{container}}")
    if method not in ("GET", "HEAD"):
        raise KubeletRequestError(405, f"{method} is not allowed on /{LOGS}/: use GET")
    ref = _pod_ref(segments[1:], strict=True)
    assert ref is not None
    return LogRequest(ref, parse_log_options(query))


def parse_log_options(query: Mapping[str, Sequence[str]]) -> LogOptions:
    """The ``PodLogOptions`` in a query string (the first value of each parameter counts)."""
    values = {key: items[0] for key, items in query.items() if items}
    tail_text = values.get("tailLines")
    legacy = values.get("tail")
    if legacy:
        tail_text = None if legacy == "all" else legacy
    stream = values.get("stream", "All")
    if stream != "All":
        raise KubeletRequestError(400, f"stream={stream!r}: a Vast instance keeps stdout and stderr in one log; "
                                       "only stream=All is served")
    options = LogOptions(
        follow=_bool(values, "follow"),
        previous=_bool(values, "previous"),
        timestamps=_bool(values, "timestamps"),
        tail_lines=_int(tail_text, "tailLines", minimum=0),
        since_seconds=_int(values.get("sinceSeconds"), "sinceSeconds", minimum=1),
        since_time=_time(values.get("sinceTime")),
        limit_bytes=_int(values.get("limitBytes"), "limitBytes", minimum=1),
    )
    if options.since_seconds is not None and options.since_time is not None:
        raise KubeletRequestError(400, "at most one of sinceSeconds or sinceTime may be specified")
    return options


def _pod_ref(segments: list[str], *, strict: bool) -> PodRef | None:
    if len(segments) != 3 or not all(_valid_name(s) for s in segments[:2]) \
            or not (_valid_name(segments[2]) or (not strict and segments[2] == "")):
        if strict:
            raise KubeletRequestError(400, f"expected /{LOGS}/{{namespace}}/{{pod}}/{{container}} with "
                                           "valid Kubernetes names")
        return None
    return PodRef(*segments)


def _valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME and _NAME.fullmatch(name) is not None


def _bool(values: Mapping[str, str], name: str) -> bool:
    """As the kubelet decodes it: absent, ``0`` or ``false`` (any case) is false; anything else true."""
    text = values.get(name)
    return not (text is None or text == "0" or text.lower() == "false")


def _int(text: str | None, name: str, *, minimum: int) -> int | None:
    if text is None:
        return None
    try:
        value = int(text, 10)
    except ValueError:
        raise KubeletRequestError(400, f"{name}={text!r}: expected a whole number") from None
    if value < minimum:
        raise KubeletRequestError(400, f"{name}={text!r}: must be {minimum} or more")
    return value


def _time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise KubeletRequestError(400, f"sinceTime={text!r}: expected an RFC 3339 time such as "
                                       "2026-01-02T15:04:05Z") from None
    if moment.tzinfo is None:
        raise KubeletRequestError(400, f"sinceTime={text!r}: the time needs a zone (Z or ±hh:mm)")
    return moment.timestamp()
