"""Benchmark: extender filter and prioritize latency through gunicorn on loopback, at 1, 100 and
5,000 node names, against a bare Flask endpoint (same gunicorn settings, reply of the same size)
measured in the same run.

Run: ``make bench-extender`` (or ``.venv/bin/python bench/extender.py [--requests N]``).

The extender runs as ``kube-vast extender`` with a snapshot of 10,000 simulator offers; the pod
asks for an RTX 3060 under $0.50/h, so the virtual node passes (the selection is answered from
the snapshot's cache after the first request, as it is for a pod the scheduler retries). The
client keeps one HTTP/1.1 connection open, as kube-scheduler's Go client does.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vastmarket.offers import parse_offers  # noqa: E402
from vastsim.offerset import generate_offers  # noqa: E402
from vastmarket.snapshot import OfferSnapshot, SnapshotFile  # noqa: E402

POD = json.loads((ROOT / "tests/extender/captured/filter-nodenames.json").read_text())["Pod"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server on {port} not ready")


def measure(port: int, verb: str, body: bytes, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    for _ in range(20):  # warm up the connection, the caches and the JIT-less interpreter
        conn.request("POST", f"/{verb}", body, headers)
        conn.getresponse().read()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("POST", f"/{verb}", body, headers)
        reply = conn.getresponse()
        reply.read()
        out.append((time.perf_counter() - start) * 1000)
        assert reply.status == 200
    conn.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kv-bench-"))
    snapshot = work / "offers.json"
    SnapshotFile(snapshot).publish(OfferSnapshot(parse_offers(generate_offers(seed=7, count=10_000)).offers,
                                                 taken_at=time.time()))
    ext_port, bare_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "kube_vast.cli", "--log-level", "WARNING", "extender",
                          "--host", "127.0.0.1", "--port", str(ext_port), "--snapshot", str(snapshot),
                          "--max-snapshot-age", "86400"], env=env, cwd=ROOT),
        subprocess.Popen([sys.executable, str(ROOT / "bench/bare_app.py"), "--port", str(bare_port)], env=env, cwd=ROOT),
    ]
    try:
        wait_ready(ext_port, procs[0])
        wait_ready(bare_port, procs[1])
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())
        print(f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}")
        print(f"requests per case: {args.requests}, one keep-alive connection\n")
        print("| verb | node names | extender p50 ms | extender p99 ms | bare p50 ms | bare p99 ms | p99 ratio |")
        print("|---|---|---|---|---|---|---|")
        for size in (1, 100, 5000):
            names = ["vast-gpu-node-1"] + [f"node-{i:05d}" for i in range(size - 1)]
            body = json.dumps({"Pod": POD, "Nodes": None, "NodeNames": names}).encode()
            for verb in ("filter", "prioritize"):
                # interleave the two servers in rounds so that machine noise hits both alike
                ext: list[float] = []
                bare: list[float] = []
                for _ in range(4):
                    ext += measure(ext_port, verb, body, args.requests // 4)
                    bare += measure(bare_port, verb, body, args.requests // 4)
                print(f"| {verb} | {size} | {statistics.median(ext):.2f} | {pct(ext, 0.99):.2f} | "
                      f"{statistics.median(bare):.2f} | {pct(bare, 0.99):.2f} | {pct(ext, 0.99) / pct(bare, 0.99):.2f} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
