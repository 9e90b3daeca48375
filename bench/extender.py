"""Benchmark: extender filter and prioritize through gunicorn on loopback, at 100 and 5,000 node
names, one client and 8 concurrent clients, against a bare Flask endpoint (same gunicorn
settings, a reply of the same size encoded per request) measured in the same run.

Run: ``make bench-extender`` (or ``.venv/bin/python bench/extender.py [--requests N] [--clients C] [--rounds R]
[--baseline-holds-snapshot] [--log-level LEVEL]``).

The extender runs as ``kube-vast extender`` with a snapshot of 10,000 simulator offers. Every
request is distinct, as when each pod belongs to another Deployment: its own price cap and GPU
memory floor (a requirement the snapshot ranks cold) and its own node list (so no encoded reply
is reused); the captured pod asks for an RTX 3060, so the virtual node passes. The distinct
pods come two ways: *as admitted*, each naming the offer the webhook chose for it (what a pod
brings to kube-scheduler: the extender then scores that offer alone), and *offer gone*, each
naming an offer the snapshot does not have (every passing offer is scored to find the best: the
most work a new pod can cost). Only the last two cases repeat one request (one pod, one node
list: the extender reuses the pod's placement). Each client keeps one HTTP/1.1 connection open,
as kube-scheduler's Go client does. Prints p50, p99 and throughput per server
and the ratios against the bare endpoint. The extender logs at WARNING unless ``--log-level``
says otherwise (the chart's default is INFO: one line per new pod's decision), then into a file
beside the snapshot, as a container's log goes to a file.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import load  # noqa: E402
from bench.common import free_port, machine_lines, met, publish_offers, wait_ready  # noqa: E402
from kube_vast.cli import load_selection_config  # noqa: E402
from vastmarket.offers import Offer  # noqa: E402
from vastmarket.placement import place  # noqa: E402
from vastmarket.selection import ScoringPolicy  # noqa: E402
from vastmarket.snapshot import OfferSnapshot  # noqa: E402
from webhooks.mutation import offer_annotations  # noqa: E402

ADMITTED = "distinct, as admitted"  # each pod names the offer the webhook chose for it
GONE = "distinct, offer gone"  # each pod names an offer the snapshot does not have
POD = json.loads((ROOT / "tests/extender/captured/filter-nodenames.json").read_text())["Pod"]


Admit = Callable[[dict[str, Any]], None]


def admitted_by_webhook(offers: Sequence[Offer]) -> Admit:
    """What the webhook does to a pod at its creation: the offer its placement chooses, written
    into the pod's annotations (:func:`webhooks.mutation.offer_annotations`), from the same offers
    the extender serves."""
    snapshot = OfferSnapshot(offers, taken_at=time.time())
    config = load_selection_config(None, {})
    policy = ScoringPolicy.from_config(config)

    def admit(pod: dict[str, Any]) -> None:
        annotations = pod["metadata"]["annotations"]
        for key in [k for k in annotations if k.startswith("vast.ai/offer-") or k.startswith("vast.ai/selected")]:
            del annotations[key]
        placement = place(pod, snapshot=snapshot, now=time.time(), config=config, policy=policy, max_age=86400)
        assert placement.chosen is not None and placement.ranking is not None, placement.reason
        annotations.update(offer_annotations(placement.chosen, placement.ranking, now=time.time()))
    return admit


def distinct_bodies(count: int, size: int, seed: int, admit: Admit | None = None) -> list[bytes]:
    """``count`` ExtenderArgs, each for a pod of another Deployment (its own price cap, GPU memory
    floor and owner: a requirement the snapshot has not ranked yet) and its own node list
    (``size`` names drawn from a pool a quarter larger, the virtual node at a random place).
    The pods name the captured pod's offer 1, which the snapshot does not have (so every passing
    offer is scored to find the best), unless ``admit`` writes the webhook's choice into them."""
    rng = random.Random(seed)
    pool = [f"node-{i:05d}" for i in range(max(1, size + size // 4))]
    out = []
    for k in range(count):
        pod = copy.deepcopy(POD)
        meta = pod["metadata"]
        meta["name"], meta["uid"] = f"job{seed}-{k}-x7k2p", f"uid-{seed}-{k}"
        meta["ownerReferences"][0]["name"] = f"job{seed}-{k}"
        meta["annotations"]["vast.ai/price-max"] = f"{0.40 + (k % 2000) * 0.0001:.4f}"
        meta["annotations"]["vast.ai/min-gpu-memory"] = rng.choice(["8GB", "10GB", "12GB"])
        if admit is not None:
            admit(pod)
        names = rng.sample(pool, size - 1)
        names.insert(rng.randrange(size), "vast-gpu-node-1")
        out.append(json.dumps({"Pod": pod, "Nodes": None, "NodeNames": names}).encode())
    return out


def same_bodies(count: int, size: int) -> list[bytes]:
    """The captured pod and one node list, repeated: every placement after the first is reused."""
    names = ["vast-gpu-node-1"] + [f"node-{i:05d}" for i in range(size - 1)]
    return [json.dumps({"Pod": POD, "Nodes": None, "NodeNames": names}).encode()] * count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per case and server")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the concurrent cases")
    parser.add_argument("--rounds", type=int, default=10,
                        help="alternating blocks per case (more: machine noise hits both servers alike)")
    parser.add_argument("--baseline-holds-snapshot", action="store_true",
                        help="the bare endpoint also holds the offer snapshot (never read): the cost of "
                             "holding the offers apart from deciding with them")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING"),
                        help="the extender's log level (the chart runs INFO)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kv-bench-"))
    snapshot = work / "offers.json"
    admit = admitted_by_webhook(publish_offers(snapshot))
    ext_port, bare_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = None if args.log_level == "WARNING" else (work / "extender.log").open("wb")
    procs = [
        subprocess.Popen([sys.executable, "-m", "kube_vast.cli", "--log-level", args.log_level, "extender",
                          "--host", "127.0.0.1", "--port", str(ext_port), "--snapshot", str(snapshot),
                          "--max-snapshot-age", "86400"], env=env, cwd=ROOT, stderr=log),
        subprocess.Popen([sys.executable, str(ROOT / "bench/bare_app.py"), "--port", str(bare_port)]
                         + (["--hold-snapshot", str(snapshot)] if args.baseline_holds_snapshot else []),
                         env=env, cwd=ROOT),
    ]
    try:
        wait_ready(ext_port, procs[0])
        wait_ready(bare_port, procs[1])
        print("\n".join(machine_lines()))
        print(f"requests per case: {args.requests} in {args.rounds} alternating blocks, each client on its own "
              "keep-alive connection"
              + ("; the bare endpoint holds the same offer snapshot" if args.baseline_holds_snapshot else "")
              + f"; the extender logs at {args.log_level}" + (f" into {log.name}" if log else "") + "\n")
        print("| verb | names | requests | clients | extender p50 ms | p99 ms | req/s | bare p50 ms | p99 ms "
              "| req/s | p99 ratio | throughput ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        cases = [(verb, size, clients, kind) for kind in (ADMITTED, GONE) for size in (100, 5000)
                 for verb in ("filter", "prioritize") for clients in (1, args.clients)]
        cases += [(verb, 5000, 1, "same (repeated)") for verb in ("filter", "prioritize")]
        worst = {ADMITTED: 0.0, GONE: 0.0}
        for n, (verb, size, clients, kind) in enumerate(cases):
            bodies = (distinct_bodies(args.requests, size, seed=n, admit=admit if kind == ADMITTED else None)
                      if kind in worst else same_bodies(args.requests, size))
            load.run(ext_port, f"/{verb}", bodies[:10], clients=1)  # warm the connection path
            load.run(bare_port, f"/{verb}", bodies[:10], clients=1)
            ext, bare = load.interleaved([ext_port, bare_port], f"/{verb}", bodies, clients=clients,
                                         rounds=args.rounds)
            ratio = ext.pct(99) / bare.pct(99)
            if kind in worst:
                worst[kind] = max(worst[kind], ratio)
            print(f"| {verb} | {size} {kind} | {len(ext.latencies)} | {clients} | {ext.pct(50):.2f} | "
                  f"{ext.pct(99):.2f} | {ext.throughput:.0f} | {bare.pct(50):.2f} | {bare.pct(99):.2f} | "
                  f"{bare.throughput:.0f} | {ratio:.2f} | {ext.throughput / bare.throughput:.2f} |")
        print()
        for kind, ratio in worst.items():
            print(f"worst p99 ratio, {kind}: {ratio:.2f} (target ≤ 1.5: {met(ratio <= 1.5)})")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=15)
        if log is not None:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
