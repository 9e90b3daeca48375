"""The health check of a Vast instance: the pod's readiness probe, run against the instance's
public IP and the host port Vast mapped to the probe's container port.

Contract
--------
- :func:`probe_for` (pure) reads the one container's ``readinessProbe``: ``httpGet`` and
  ``tcpSocket`` are kept as written (``port`` a number or a container port NAME); ``exec`` and
  ``grpc`` cannot run from outside the machine and fall back to a TCP connect on the first TCP
  container port, with :attr:`Probe.note` saying so. Without a readiness probe: TCP on the first
  TCP container port with the Kubernetes default timings (period 10 s, timeout 1 s, failure 3,
  success 1). Without any TCP container port: ``kind="none"`` — nothing to check, the instance is
  healthy when it runs. A named port that the container does not declare gives a probe whose
  ``container_port`` is ``None``; :func:`check` always fails it (as the kubelet's would).
- :func:`check` is the only I/O: one probe with the standard library (``socket``, ``http.client``,
  ``ssl`` without certificate verification, like the kubelet); the connect and each read wait at
  most ``timeout_seconds`` (fractions allowed). HTTP succeeds on 200–399 (redirects are not
  followed; a 3xx counts as success). It never raises: every failure is a :class:`ProbeResult`
  with ``ok=False`` and a message, and ``reachable=False`` when no TCP connection could be made
  for want of a network path (the connect timed out, no route to the host or its network): the
  host, not the container, is the problem. A refused connect, an HTTP error or a read that times
  out on an open connection came from the host: it is reachable.
- :class:`HealthState` (pure) is the kubelet's readiness worker as a state machine fed with results
  and times in seconds (any clock, as long as it is the same one): not ready at first; results
  before ``initial_delay_seconds`` (counted from the ``now`` it was created with) are ignored;
  ready after ``success_threshold`` consecutive successes, not ready after ``failure_threshold``
  consecutive failures, unchanged in between. :meth:`HealthState.due` paces probes by
  ``period_seconds``. ``unreachable_since`` is when the current run of unreachable results began
  (None after any result from the host): the reconciler replaces an instance whose host stays
  unreachable (:mod:`controller.replacement`).
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .shapes import items as _list

ProbeKind = Literal["http", "tcp", "none"]

DEFAULT_PERIOD_SECONDS = 10
DEFAULT_TIMEOUT_SECONDS = 1
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_SUCCESS_THRESHOLD = 1
USER_AGENT = "kube-probe/kube-vast"
_BODY_LIMIT = 1024
# A connect that fails with one of these never reached the host (no network path to it).
_NO_PATH = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN})


@dataclass(frozen=True, slots=True)
class Probe:
    """How to check one instance. ``container_port`` is mapped to a host port by the caller;
    ``None`` means the probe cannot be checked (see ``note``) unless ``kind`` is ``"none"``."""

    kind: ProbeKind
    container_port: int | None = None
    path: str = "/"
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    period_seconds: float = DEFAULT_PERIOD_SECONDS
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD
    initial_delay_seconds: float = 0
    note: str | None = None

    def describe(self) -> str:
        """``http-get HTTP :8000/healthz`` / ``tcp-socket :8000`` / ``none``, for logs and Events."""
        if self.kind == "none":
            return "none"
        port = "?" if self.container_port is None else str(self.container_port)
        if self.kind == "http":
            return f"http-get {self.scheme} :{port}{self.path}"
        return f"tcp-socket :{port}"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    message: str
    reachable: bool = True  # False: no TCP connection for want of a network path to the host


class _Unreachable(Exception):
    """The connect never reached the host."""


def probe_for(pod: Mapping[str, Any]) -> Probe:
    """The health check of ``pod`` (its first container's readiness probe, or a fallback)."""
    container = _first_container(pod)
    ports = _tcp_ports(container)
    first_port = ports[0][1] if ports else None
    raw = container.get("readinessProbe")
    if not isinstance(raw, Mapping):
        if first_port is None:
            return Probe("none", note="no readiness probe and no TCP container port: "
                                      "ready as soon as the instance runs")
        return Probe("tcp", first_port, note="no readiness probe: TCP connect to the first container port")

    timings = _timings(raw)
    http_get, tcp = raw.get("httpGet"), raw.get("tcpSocket")
    if isinstance(http_get, Mapping):
        port, note = _resolve_port(http_get.get("port"), ports)
        scheme = str(http_get.get("scheme") or "HTTP").upper()
        path = str(http_get.get("path") or "/")
        headers = tuple((str(h.get("name", "")), str(h.get("value", "")))
                        for h in _list(http_get.get("httpHeaders")) if isinstance(h, Mapping))
        if http_get.get("host"):
            note = _join(note, "httpGet.host is ignored: the probe goes to the instance's public IP")
        return Probe("http", port, path=path if path.startswith("/") else "/" + path,
                     scheme="HTTPS" if scheme == "HTTPS" else "HTTP", headers=headers,
                     note=note, **timings)
    if isinstance(tcp, Mapping):
        port, note = _resolve_port(tcp.get("port"), ports)
        return Probe("tcp", port, note=note, **timings)

    kind = next((k for k in ("exec", "grpc") if k in raw), "unknown")
    if first_port is None:
        return Probe("none", note=f"{kind} readiness probes cannot run on Vast and the container "
                                  "has no TCP port: ready as soon as the instance runs")
    return Probe("tcp", first_port, note=f"{kind} readiness probes cannot run on Vast: "
                                         f"TCP connect to container port {first_port} instead", **timings)


def check(probe: Probe, ip: str, host_port: int) -> ProbeResult:
    """Run ``probe`` once against ``ip:host_port``; never raises."""
    if probe.kind == "none":
        return ProbeResult(True, probe.note or "nothing to check")
    if probe.container_port is None:
        return ProbeResult(False, probe.note or "the probe has no port")
    timeout = max(float(probe.timeout_seconds), 0.001)
    try:
        if probe.kind == "tcp":
            _connect(ip, host_port, timeout).close()
            return ProbeResult(True, f"TCP connect to {ip}:{host_port} succeeded")
        return _http(probe, ip, host_port, timeout)
    except _Unreachable as exc:
        return ProbeResult(False, f"{_target(probe, ip, host_port)}: {exc} (host unreachable)", reachable=False)
    except TimeoutError:
        return ProbeResult(False, f"{_target(probe, ip, host_port)}: timed out after {timeout:g}s")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return ProbeResult(False, f"{_target(probe, ip, host_port)}: {_error(exc)}")
    except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
        return ProbeResult(False, f"{_target(probe, ip, host_port)}: unexpected {_error(exc)}")


class HealthState:
    """Readiness of one instance from its probe results (see the module docstring)."""

    def __init__(self, probe: Probe, *, now: float) -> None:
        """``now``: when the container started running (the initial delay counts from it)."""
        self.probe = probe
        self.started_at = now
        self.ready = False
        self.consecutive_successes = 0
        self.consecutive_failures = 0
        self.last_message = ""
        self.last_probe_at: float | None = None
        self.unreachable_since: float | None = None

    def due(self, now: float) -> bool:
        """Is a probe due at ``now``: past the initial delay and one period after the last one."""
        if now < self.started_at + self.probe.initial_delay_seconds:
            return False
        return self.last_probe_at is None or now - self.last_probe_at >= self.probe.period_seconds

    def observe(self, ok: bool, now: float, message: str = "", *, reachable: bool = True) -> bool:
        """Feed one result taken at ``now`` (``reachable=False``: the host could not be reached at
        all); returns whether the instance is ready."""
        if now < self.started_at + self.probe.initial_delay_seconds:
            return self.ready
        self.last_probe_at = now
        self.last_message = message
        if ok or reachable:
            self.unreachable_since = None
        elif self.unreachable_since is None:
            self.unreachable_since = now
        if ok:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if self.consecutive_successes >= self.probe.success_threshold:
                self.ready = True
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            if self.consecutive_failures >= self.probe.failure_threshold:
                self.ready = False
        return self.ready

    def __repr__(self) -> str:
        return (f"HealthState(ready={self.ready}, successes={self.consecutive_successes}, "
                f"failures={self.consecutive_failures}, unreachable_since={self.unreachable_since}, "
                f"last_message={self.last_message!r})")


# --- helpers -----------------------------------------------------------------------------------


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _first_container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = pod.get("spec")
    containers = _list(spec.get("containers")) if isinstance(spec, Mapping) else []
    return next((c for c in containers if isinstance(c, Mapping)), {})


def _valid_port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and 0 < value < 65536 else None


def _tcp_ports(container: Mapping[str, Any]) -> list[tuple[str, int]]:
    """``(name, containerPort)`` of the TCP ports, in order."""
    out = []
    for port in _list(container.get("ports")):
        if not isinstance(port, Mapping) or str(port.get("protocol") or "TCP").upper() != "TCP":
            continue
        number = _valid_port(port.get("containerPort"))
        if number is not None:
            out.append((str(port.get("name") or ""), number))
    return out


def _resolve_port(value: Any, ports: list[tuple[str, int]]) -> tuple[int | None, str | None]:
    number = _valid_port(value)
    if number is not None:
        return number, None
    if isinstance(value, str) and value:
        for name, port in ports:
            if name == value:
                return port, None
        return None, f"readiness probe port {value!r} is not a named TCP port of the container"
    return None, f"readiness probe port {value!r} is not a valid port"


def _number(raw: Mapping[str, Any], key: str, default: int, *, zero_ok: bool = False) -> Any:
    """``raw[key]`` when it is a number > 0 (>= 0 with ``zero_ok``), else ``default`` (the API
    server's defaulting: 0 and unset mean the default)."""
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return value if value > 0 or (zero_ok and value == 0) else default


def _timings(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "period_seconds": _number(raw, "periodSeconds", DEFAULT_PERIOD_SECONDS),
        "timeout_seconds": _number(raw, "timeoutSeconds", DEFAULT_TIMEOUT_SECONDS),
        "failure_threshold": max(1, int(_number(raw, "failureThreshold", DEFAULT_FAILURE_THRESHOLD))),
        "success_threshold": max(1, int(_number(raw, "successThreshold", DEFAULT_SUCCESS_THRESHOLD))),
        "initial_delay_seconds": _number(raw, "initialDelaySeconds", 0, zero_ok=True),
    }


def _target(probe: Probe, ip: str, host_port: int) -> str:
    if probe.kind == "tcp":
        return f"TCP connect to {ip}:{host_port}"
    return f"GET {probe.scheme.lower()}://{_host(ip)}:{host_port}{probe.path}"


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


def _connect(ip: str, host_port: int, timeout: float) -> socket.socket:
    """A TCP connection to the host; raises :class:`_Unreachable` when no network path reaches it
    (a connect that times out, no route), other OSErrors (refused...) as they come."""
    try:
        return socket.create_connection((ip, host_port), timeout=timeout)
    except TimeoutError:
        raise _Unreachable(f"connect timed out after {timeout:g}s") from None
    except OSError as exc:
        if exc.errno in _NO_PATH:
            raise _Unreachable(_error(exc)) from None
        raise


def _http(probe: Probe, ip: str, host_port: int, timeout: float) -> ProbeResult:
    # The connect is made first, on its own, so that a host out of reach is told apart from one
    # that answers badly; the connection is then handed to http.client.
    sock = _connect(ip, host_port, timeout)
    conn = http.client.HTTPConnection(ip, host_port, timeout=timeout)
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    headers.update(dict(probe.headers))
    try:
        if probe.scheme == "HTTPS":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        conn.sock = sock
        conn.request("GET", probe.path, headers=headers)
        response = conn.getresponse()
        body = response.read(_BODY_LIMIT).decode("utf-8", "replace").strip()
    finally:
        conn.close()
        sock.close()
    target = _target(probe, ip, host_port)
    if 200 <= response.status < 400:
        return ProbeResult(True, f"{target}: {response.status} {response.reason}")
    detail = f": {body}" if body else ""
    return ProbeResult(False, f"{target}: HTTP probe failed with statuscode: {response.status}{detail}")
