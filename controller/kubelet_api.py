"""The virtual node's kubelet API: what each request is answered — no sockets here.

:meth:`KubeletApi.answer` takes the caller's identity (from its client certificate), the method,
path and query, and returns an :class:`Answer`: a status and a plain-text body, and for
``follow=true`` a :class:`LogFollow` that the HTTP shell (:mod:`controller.kubelet_server`)
polls every ``follow_interval`` seconds for the lines printed since. In order:

1. no identity → 401;
2. the pod is looked up (only pods bound to this controller's virtual nodes exist here), and the
   caller authorized for ``nodes/proxy`` on the pod's node, or the first virtual node for other
   paths (:mod:`controller.kubelet_auth`) → 403;
3. a path no route matches → 404, a bad parameter → 400 (:mod:`controller.kubelet_requests`);
   ``exec``, ``attach``, ``portForward`` and ``run`` → 400 "not supported on Vast instances";
4. ``containerLogs`` → the instance's log, read from Vast (:meth:`LogReader.instance_logs`), its
   lines timed by the :class:`~controller.pod_logs.LogHistory` and rendered with the request's
   ``sinceSeconds``/``sinceTime``, ``tailLines``, ``timestamps`` and ``limitBytes``. ``previous``
   is 400 (a Vast instance keeps one log); a pod without an instance yet is 400 "waiting to start".

A follow ends when the pod is gone or has finished, when its instance changes, when
``limitBytes`` is reached, or after ``MAX_READ_FAILURES`` reads in a row failed; the shell also
ends it when the client goes away. At most ``max_streams`` follow at once (503 beyond).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vastmarket.errors import KubeVastError, VastError, VastRejected

from .kubelet_auth import AuthorizationUnavailable, Authorizer, attributes_for
from .kubelet_requests import (
    KubeletRequest, KubeletRequestError, LogOptions, LogRequest, PodRef, Unsupported, parse_request,
)
from .kubelet_tls import Identity
from .pod_logs import LogHistory, LogLine, Observation, format_lines, render, split_lines
from .reconciler import A_INSTANCE
from .shapes import items, mapping, text

log = logging.getLogger("kube_vast.controller.kubelet")

TEXT = "text/plain; charset=utf-8"
MAX_READ_LINES = 10_000  # a read without tailLines asks Vast for this many
FOLLOW_READ_LINES = 1_000  # each follow poll asks for this many
MAX_READ_FAILURES = 5
DEFAULT_FOLLOW_INTERVAL = 2.0
DEFAULT_MAX_STREAMS = 64
HINTS = {
    "exec": "read its output with kubectl logs; for a shell, SSH to the instance (kube-vast explain shows it)",
    "attach": "read its output with kubectl logs, or follow it with kubectl logs -f",
    "port-forward": "reach its ports through the pod's Services, which point at the instance's public address",
    "run": "read its output with kubectl logs",
}


@dataclass(frozen=True, slots=True)
class PodTarget:
    """What the kubelet API needs to know of a pod bound to a virtual node."""

    node: str
    containers: tuple[str, ...]
    instance_id: int | None
    finished: bool  # Succeeded or Failed


class PodDirectory(Protocol):
    def find(self, namespace: str, name: str) -> PodTarget | None: ...


class LogReader(Protocol):
    """The Vast logs call (:meth:`vastmarket.client.VastClient.instance_logs`)."""

    def instance_logs(self, instance_id: int, *, tail: int | None = None) -> str: ...


def pod_target(pod: Mapping[str, Any] | None, nodes: Sequence[str]) -> PodTarget | None:
    """The pod as the kubelet API sees it; None unless it is bound to one of ``nodes``."""
    if not pod:
        return None
    spec = mapping(pod.get("spec"))
    node = text(spec.get("nodeName"))
    if node not in nodes:
        return None
    containers = tuple(text(mapping(c).get("name")) for c in items(spec.get("containers")))
    raw = text(mapping(mapping(pod.get("metadata")).get("annotations")).get(A_INSTANCE))
    phase = text(mapping(pod.get("status")).get("phase"))
    return PodTarget(node, containers, int(raw) if raw.isdigit() else None, phase in ("Succeeded", "Failed"))


class KubePods:
    """The :class:`PodDirectory` over the API server (one GET per lookup)."""

    def __init__(self, get_pod: Callable[[str, str], Mapping[str, Any] | None], nodes: Sequence[str]) -> None:
        self.get_pod = get_pod
        self.nodes = tuple(nodes)

    def find(self, namespace: str, name: str) -> PodTarget | None:
        return pod_target(self.get_pod(namespace, name), self.nodes)


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    follow: LogFollow | None = None

    @classmethod
    def error(cls, status: int, message: str) -> Answer:
        return cls(status, (message.rstrip("\n") + "\n").encode("utf-8"))


class LogFollow:
    """The rest of a ``follow=true`` answer: :meth:`poll` returns the lines printed since the last
    poll, and whether the stream is over. :meth:`close` must be called once it is."""

    def __init__(self, api: KubeletApi, ref: PodRef, instance_id: int, options: LogOptions, *,
                 budget: int | None, release: Callable[[], None], sent: Sequence[LogLine]) -> None:
        self.api = api
        self.last_seq = max((line.seq for line in sent), default=0)  # the lines read before the follow
        self.ref = ref
        self.instance_id = instance_id
        self.options = options
        self.budget = budget  # bytes left under limitBytes
        self.interval = api.follow_interval
        self._release = release
        self._failures = 0
        self._closed = False

    def poll(self) -> tuple[bytes, bool]:
        target = self.api.pods.find(self.ref.namespace, self.ref.pod)
        ended = target is None or target.finished or target.instance_id != self.instance_id
        try:
            observed = self.api.read(self.instance_id, FOLLOW_READ_LINES)
        except VastError as exc:
            self._failures += 1
            log.info("following %s: reading the log of instance %d failed (%d in a row): %s", self.ref,
                     self.instance_id, self._failures, exc)
            return b"", ended or self._failures >= MAX_READ_FAILURES
        self._failures = 0
        fresh = [line for line in observed.window if line.seq > self.last_seq]
        self.last_seq = max((line.seq for line in fresh), default=self.last_seq)
        data = format_lines(fresh, timestamps=self.options.timestamps)
        if self.budget is not None:
            data, self.budget = data[: self.budget], self.budget - min(len(data), self.budget)
            ended = ended or self.budget == 0
        return data, ended

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()


class KubeletApi:
    def __init__(self, *, pods: PodDirectory, logs: LogReader, authorizer: Authorizer, default_node: str,
                 history: LogHistory | None = None, clock: Callable[[], float] = time.time,
                 follow_interval: float = DEFAULT_FOLLOW_INTERVAL, max_streams: int = DEFAULT_MAX_STREAMS) -> None:
        self.pods = pods
        self.logs = logs
        self.authorizer = authorizer
        self.default_node = default_node
        self.history = history or LogHistory()
        self.clock = clock
        self.follow_interval = follow_interval
        self._streams = threading.BoundedSemaphore(max_streams)
        self._lock = threading.Lock()
        self.active_streams = 0  # follows being served (a metric)
        # instance → (when, lines asked, whole log, what was read): the last read, shared briefly
        self._recent: dict[int, tuple[float, int, bool, Observation]] = {}

    def answer(self, identity: Identity | None, method: str, path: str,
               query: Mapping[str, Sequence[str]]) -> Answer:
        if identity is None:
            return Answer.error(401, "Unauthorized: the kubelet API of a Vast virtual node needs a client "
                                     "certificate signed by its client CA")
        try:
            request: KubeletRequest | KubeletRequestError = parse_request(method, path, query)
        except KubeletRequestError as exc:
            request = exc  # answered once the caller is known to be allowed
        try:
            ref = request.ref if not isinstance(request, KubeletRequestError) else None
            target = self.pods.find(ref.namespace, ref.pod) if ref is not None else None
            attributes = attributes_for(method, target.node if target else self.default_node)
            try:
                allowed = self.authorizer.allowed(identity, attributes)
            except AuthorizationUnavailable as exc:
                log.warning("kubelet api: authorization of user=%s failed: %s", identity.user, exc)
                return Answer.error(500, f"Internal Server Error: authorization check failed: {exc}")
            if not allowed:
                return Answer.error(403, f"Forbidden (user={identity.user}, {attributes})")
            if isinstance(request, KubeletRequestError):
                return Answer.error(request.status, request.message)
            if isinstance(request, Unsupported):
                return self._unsupported(request)
            return self._logs(request, target)
        except KubeVastError as exc:  # the API server could not be asked for the pod
            log.warning("kubelet api: %s %s: %s", method, path, exc)
            return Answer.error(503, f"Service Unavailable: {exc}")

    def _unsupported(self, request: Unsupported) -> Answer:
        where = f" (pod {request.ref.namespace}/{request.ref.pod})" if request.ref else ""
        return Answer.error(400, f"{request.kind} is not supported on Vast instances{where}: the container runs "
                                 f"on a rented Vast.ai machine that kube-vast has no channel into; "
                                 f"{HINTS[request.kind]}")

    def _logs(self, request: LogRequest, target: PodTarget | None) -> Answer:
        ref, options = request.ref, request.options
        if target is None:
            return Answer.error(404, f'pod "{ref.pod}" does not exist')
        if ref.container not in target.containers:
            return Answer.error(404, f'container "{ref.container}" not found in pod "{ref.pod}"')
        if options.previous:
            return Answer.error(400, f'previous terminated container "{ref.container}" in pod "{ref.pod}" not '
                                     "found: a Vast instance keeps one log, shown without --previous")
        if target.instance_id is None:
            return Answer.error(400, f'container "{ref.container}" in pod "{ref.pod}" is waiting to start: '
                                     "no Vast instance yet")
        exact = options.tail_lines is not None and options.tail_lines > 0 and options.since(0.0) is None
        wanted = options.tail_lines if exact and options.tail_lines is not None else MAX_READ_LINES
        try:
            observed = self.read(target.instance_id, wanted)
        except VastRejected as exc:
            return Answer.error(404, f'the log of container "{ref.container}" in pod "{ref.pod}" (Vast instance '
                                     f"{target.instance_id}) is not available: {exc}")
        except VastError as exc:
            log.warning("kubelet api: log of %s (instance %d) not read: %s", ref, target.instance_id, exc)
            return Answer.error(503, f"Service Unavailable: Vast did not deliver the log of instance "
                                     f"{target.instance_id}: {exc}")
        body = render(observed.window, options, self.clock())
        if not options.follow or target.finished:
            return Answer(200, body)
        budget = None if options.limit_bytes is None else options.limit_bytes - len(body)
        if budget == 0:
            return Answer(200, body)
        if not self._streams.acquire(blocking=False):
            return Answer.error(503, "Service Unavailable: too many kubectl logs -f streams at once; try again")
        with self._lock:
            self.active_streams += 1
        follow = LogFollow(self, ref, target.instance_id, options, budget=budget, release=self._release_stream,
                           sent=observed.window)
        return Answer(200, body, follow=follow)

    def _release_stream(self) -> None:
        with self._lock:
            self.active_streams -= 1
        self._streams.release()

    def read(self, instance_id: int, lines: int) -> Observation:
        """The last ``lines`` of the instance's log from Vast, merged into the history. Reads of
        one instance less than half a follow interval apart share one call to Vast (several
        ``kubectl logs -f`` of one pod cost one read per interval, not one each)."""
        now = self.clock()
        with self._lock:
            recent = self._recent.get(instance_id)
        if recent is not None and now - recent[0] < self.follow_interval / 2 and (recent[1] >= lines or recent[2]):
            return recent[3]
        read = split_lines(self.logs.instance_logs(instance_id, tail=lines))
        observed = self.history.observe(instance_id, read, complete=len(read) < lines, now=now)
        with self._lock:
            self._recent = {k: v for k, v in self._recent.items() if now - v[0] < self.follow_interval}
            self._recent[instance_id] = (now, lines, len(read) < lines, observed)
        return observed
