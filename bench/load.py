"""Load generation for the HTTP benchmarks: distinct request bodies sent by 1 or N concurrent
clients, each over its own keep-alive connection (as kube-scheduler and kube-apiserver keep
theirs), with latency percentiles and throughput.

The clients are processes, not threads, so that the client's own JSON and socket work is not
serialised by one interpreter lock; the bodies are built before the processes fork. The processes
and their connections (one per server) are kept for a whole comparison, so that the servers can
alternate in small blocks without a block paying for starting clients or connecting.

Throughput is counted only while every client is busy: a block ends for the count when its first
client runs out of requests (the others finishing alone would send a lighter load, and more so
the smaller the block).
"""

from __future__ import annotations

import http.client
import multiprocessing
import ssl
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

_BODIES: Sequence[bytes] = ()
_CADATA: str | None = None
_CONNECTIONS: dict[int, http.client.HTTPConnection] = {}  # per client process: port → its connection


@dataclass(frozen=True)
class Run:
    """Latencies (ms) of every request; ``counted`` requests finished in ``busy_s`` seconds while
    every client was sending (the throughput's numerator and denominator)."""

    latencies: list[float]
    counted: int
    busy_s: float

    @property
    def throughput(self) -> float:
        return self.counted / self.busy_s if self.busy_s > 0 else 0.0

    def pct(self, q: float) -> float:
        return pct(self.latencies, q)

    @staticmethod
    def merge(runs: Sequence[Run]) -> Run:
        return Run([ms for r in runs for ms in r.latencies], sum(r.counted for r in runs),
                   sum(r.busy_s for r in runs))

    @staticmethod
    def of_clients(spans: Sequence[Sequence[tuple[float, float]]]) -> Run:
        """One block from each client's (start, end) per request, in seconds of one monotonic
        clock (``time.perf_counter`` is the system's monotonic clock on Linux, shared by processes)."""
        spans = [s for s in spans if s]
        if not spans:
            return Run([], 0, 0.0)
        first = min(s[0][0] for s in spans)
        until = min(s[-1][1] for s in spans)  # the first client to finish ends the busy window
        counted = sum(1 for s in spans for _, end in s if end <= until)
        return Run([(end - start) * 1000.0 for s in spans for start, end in s], counted, until - first)


def pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _connection(port: int) -> http.client.HTTPConnection:
    conn = _CONNECTIONS.get(port)
    if conn is None:
        if _CADATA is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30,
                                               context=ssl.create_default_context(cadata=_CADATA))
        _CONNECTIONS[port] = conn
    return conn


def _client(share: tuple[int, str, int, int, int, int]) -> list[tuple[float, float]]:
    """One client's part of a block: bodies ``lo + first``, ``lo + first + step``, … below ``hi``,
    on this process's connection to ``port``."""
    port, path, first, step, lo, hi = share
    conn = _connection(port)
    headers = {"Content-Type": "application/json"}
    out = []
    for body in _BODIES[lo + first:hi:step]:
        start = time.perf_counter()
        conn.request("POST", path, body, headers)
        reply = conn.getresponse()
        data = reply.read()
        out.append((start, time.perf_counter()))
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status} from {path}: {data[:200]!r}")
    return out


def _close_all() -> None:
    for conn in _CONNECTIONS.values():
        conn.close()
    _CONNECTIONS.clear()


def _client_process(first: int, step: int, jobs: Connection) -> None:
    """A kept client: sends its share of each block it is given, answers the spans (or the error)."""
    while (job := jobs.recv()) is not None:
        port, path, lo, hi = job
        try:
            jobs.send(_client((port, path, first, step, lo, hi)))
        except Exception as exc:  # reported by the parent, which stops the benchmark
            jobs.send(f"{type(exc).__name__}: {exc}")
    _close_all()


class Clients:
    """``count`` clients over ``bodies``, kept until closed (one process each when concurrent);
    :meth:`block` sends a slice of the bodies to one server, spread over every client."""

    def __init__(self, bodies: Sequence[bytes], count: int, cadata: str | None) -> None:
        global _BODIES, _CADATA
        _BODIES, _CADATA = bodies, cadata
        self.count = count
        self._pipes: list[Connection] = []
        self._processes: list[BaseProcess] = []
        fork = multiprocessing.get_context("fork")
        for k in range(count if count > 1 else 0):
            mine, theirs = fork.Pipe()
            process = fork.Process(target=_client_process, args=(k, count, theirs), daemon=True)
            process.start()
            self._pipes.append(mine)
            self._processes.append(process)

    def block(self, port: int, path: str, lo: int, hi: int) -> Run:
        if not self._pipes:
            return Run.of_clients([_client((port, path, 0, 1, lo, hi))])
        for pipe in self._pipes:
            pipe.send((port, path, lo, hi))
        spans = [pipe.recv() for pipe in self._pipes]
        failed = [s for s in spans if isinstance(s, str)]
        if failed:
            raise RuntimeError(failed[0])
        return Run.of_clients(spans)

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.send(None)
        for process in self._processes:
            process.join(timeout=30)
        _close_all()


@contextmanager
def kept_clients(bodies: Sequence[bytes], count: int, cadata: str | None = None) -> Iterator[Clients]:
    kept = Clients(bodies, count, cadata)
    try:
        yield kept
    finally:
        kept.close()


def run(port: int, path: str, bodies: Sequence[bytes], *, clients: int, cadata: str | None = None) -> Run:
    """Send every body once, spread over ``clients`` concurrent connections."""
    return interleaved([port], path, bodies, clients=clients, rounds=1, cadata=cadata)[0]


def interleaved(ports: Sequence[int], path: str, bodies: Sequence[bytes], *, clients: int,
                rounds: int = 4, cadata: str | None = None) -> list[Run]:
    """The same bodies sent to each server in ``rounds`` alternating blocks (machine noise hits
    every server alike), by the same kept clients; one merged :class:`Run` per server."""
    block = max(1, len(bodies) // rounds)
    runs: list[list[Run]] = [[] for _ in ports]
    with kept_clients(bodies, clients, cadata) as kept:
        for lo in range(0, block * min(rounds, len(bodies)), block):
            for k, port in enumerate(ports):
                runs[k].append(kept.block(port, path, lo, lo + block))
    return [Run.merge(rs) for rs in runs]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
