"""What the benchmarks share: the machine and date lines every report starts with, a free
loopback port, a server process waited for until it answers ready, percentiles (nearest rank:
:func:`bench.load.pct`), the offer snapshot they publish, and the controller benchmarks' bound
pods, namespace and production intervals.

Each benchmark stays a script (``.venv/bin/python bench/NAME.py``): it puts the repository on
``sys.path`` and then imports this module as ``bench.common``.
"""

from __future__ import annotations

import http.client
import os
import platform
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.load import pct

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "Server", "bound_pod", "cpu_model", "free_port", "machine_lines", "met", "pct", "percentiles",
           "production_intervals", "publish_offers", "ready_pod_uid", "service_namespace", "wait_for_file",
           "wait_ready"]


# --- the report -----------------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    """The ``machine:`` and ``date:`` lines a benchmark's report starts with (docs/benchmarks.md
    records both with every result)."""
    return [f"machine: {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
            f"Python {platform.python_version()}, {platform.platform()}",
            f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"]


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> dict[float, float]:
    """``{q: the q-th percentile}`` of ``values``, nearest rank (:func:`bench.load.pct`)."""
    return {q: pct(values, q) for q in qs}


def met(ok: bool) -> str:
    """How a report says whether a target was met."""
    return "met" if ok else "NOT met"


# --- servers --------------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port free on the loopback address now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[Any], *, path: str = "/readyz", tls: ssl.SSLContext | None = None,
               name: str = "server", timeout: float = 30.0) -> None:
    """Until ``GET path`` on ``127.0.0.1:port`` answers 200 (HTTPS with ``tls``); fails at once
    if ``proc`` exited, and after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=2) if tls is not None
            else http.client.HTTPConnection("127.0.0.1", port, timeout=2))
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} on port {port} not ready within {timeout:.0f} s")
        time.sleep(0.1)


class Server:
    """A server process of its own session (its log in ``log``), stopped with its process group."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path) -> None:
        self.name, self.port = name, port
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=ROOT)

    def wait_ready(self, tls: ssl.SSLContext | None = None, *, path: str = "/healthz", timeout: float = 30.0) -> None:
        wait_ready(self.port, self.proc, path=path, tls=tls, name=self.name, timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


# --- inputs ---------------------------------------------------------------------------------------

def publish_offers(path: Path, *, count: int = 10_000, seed: int = 7) -> list[Any]:
    """Publish a snapshot of ``count`` simulator offers (``seed``) to ``path``; returns the offers."""
    from vastmarket.offers import parse_offers
    from vastmarket.snapshot import OfferSnapshot, SnapshotFile
    from vastsim.offerset import generate_offers

    offers = parse_offers(generate_offers(seed=seed, count=count)).offers
    SnapshotFile(path).publish(OfferSnapshot(offers, taken_at=time.time()))
    return list(offers)


def wait_for_file(path: Path, timeout: float) -> bool:
    """Whether ``path`` exists within ``timeout`` seconds (the controller's first offer snapshot)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


# --- the controller benchmarks --------------------------------------------------------------------

def bound_pod(name: str, *, node: str, app: str) -> dict[str, Any]:
    """A one-GPU pod already bound to the virtual node ``node`` (``spec.nodeName``), labelled
    ``app``, with an ``http`` port that a TCP readiness probe checks."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "ghcr.io/example/speech:1.0",
                                     "ports": [{"name": "http", "containerPort": 8000}],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                     "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}]}}


def service_namespace(api: Any, prefix: str, *, app: str, release_namespace: str = "kube-vast") -> str:
    """A fresh namespace ``PREFIX-xxxxxx`` holding a Service ``app`` for the pods labelled ``app``
    (so that the controller writes their EndpointSlices), and the controller's own namespace."""
    from kubernetes import client

    from devcluster import create_namespace

    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    create_namespace(api, ns)
    create_namespace(api, release_namespace)
    client.CoreV1Api(api).create_namespaced_service(ns, {  # type: ignore[arg-type]  # a dict body, sent as is
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": app},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": "http"}]}})
    return ns


def production_intervals(argv: list[str], intervals: Mapping[str, str]) -> None:
    """Set each ``--flag value`` of ``intervals`` in a controller's ``argv`` (the harness starts it
    with the tests' fast intervals)."""
    for flag, value in intervals.items():
        argv[argv.index(flag) + 1] = value


def ready_pod_uid(endpoint_slice: Any) -> str | None:
    """The ``vast.ai/pod-uid`` of an EndpointSlice the controller wrote once an endpoint of it is
    ready, else None."""
    uid = (endpoint_slice.metadata.labels or {}).get("vast.ai/pod-uid")
    ready = any(e.conditions and e.conditions.ready for e in endpoint_slice.endpoints or [])
    return str(uid) if uid and ready else None
