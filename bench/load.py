"""Load generation for the HTTP benchmarks: distinct request bodies sent by 1 or N concurrent
clients, each over its own keep-alive connection (as kube-scheduler and kube-apiserver keep
theirs), with latency percentiles and throughput.

The clients are processes, not threads, so that the client's own JSON and socket work is not
serialised by one interpreter lock; the bodies are built before the processes fork.
"""

from __future__ import annotations

import http.client
import multiprocessing
import ssl
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

_BODIES: Sequence[bytes] = ()
_TARGET: tuple[int, str, str | None] = (0, "/", None)


@dataclass(frozen=True)
class Run:
    """Latencies (ms) of every request and the wall time of the whole run (s)."""

    latencies: list[float]
    wall_s: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s > 0 else 0.0

    def pct(self, q: float) -> float:
        return pct(self.latencies, q)

    @staticmethod
    def merge(runs: Sequence[Run]) -> Run:
        return Run([ms for r in runs for ms in r.latencies], sum(r.wall_s for r in runs))


def pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _connection(port: int, cadata: str | None) -> http.client.HTTPConnection:
    if cadata is None:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=30,
                                       context=ssl.create_default_context(cadata=cadata))


def _client(share: tuple[int, int]) -> list[float]:
    """One client: its own connection, every ``step``-th body from ``first``."""
    first, step = share
    port, path, cadata = _TARGET
    conn = _connection(port, cadata)
    headers = {"Content-Type": "application/json"}
    out = []
    for body in _BODIES[first::step]:
        start = time.perf_counter()
        conn.request("POST", path, body, headers)
        reply = conn.getresponse()
        data = reply.read()
        out.append((time.perf_counter() - start) * 1000.0)
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status} from {path}: {data[:200]!r}")
    conn.close()
    return out


def run(port: int, path: str, bodies: Sequence[bytes], *, clients: int, cadata: str | None = None) -> Run:
    """Send every body once, spread over ``clients`` concurrent connections."""
    global _BODIES, _TARGET
    _BODIES, _TARGET = bodies, (port, path, cadata)
    shares = [(k, clients) for k in range(clients)]
    if clients == 1:
        start = time.perf_counter()
        latencies = _client(shares[0])
        return Run(latencies, time.perf_counter() - start)
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        pool.map(_noop, range(clients))  # the processes are up before the clock starts
        start = time.perf_counter()
        results = pool.map(_client, shares, chunksize=1)
        wall = time.perf_counter() - start
    return Run([ms for r in results for ms in r], wall)


def _noop(_: int) -> None:
    return None


def interleaved(ports: Sequence[int], path: str, bodies: Sequence[bytes], *, clients: int,
                rounds: int = 4, cadata: str | None = None) -> list[Run]:
    """The same bodies sent to each server in ``rounds`` alternating blocks (machine noise hits
    every server alike); one merged :class:`Run` per server."""
    block = max(1, len(bodies) // rounds)
    runs: list[list[Run]] = [[] for _ in ports]
    for r in range(rounds):
        part = bodies[r * block:(r + 1) * block]
        for k, port in enumerate(ports):
            runs[k].append(run(port, path, part, clients=clients, cadata=cadata))
    return [Run.merge(rs) for rs in runs]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
