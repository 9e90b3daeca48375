"""Benchmark: 100 pods launched at once under Vast's published rate limits.

Run: ``make bench-controller`` (after the 1- and 20-pod runs of ``bench/controller.py``), or
``.venv/bin/python bench/launch_scale.py [--pods 100] [--boot-median 40]``. Needs the
control-plane binaries (``make control-plane``).

Real etcd + kube-apiserver, the simulator bound to this machine's address in its published
rate-limit mode (every endpoint answers 429 to calls closer than Vast's minimum interval: create
4.5 s, get one instance 2 s, list 1 s, search 6 s, …), instance boot times drawn per rental from a
log-normal distribution (median ``--boot-median`` s, σ 0.5, cut to 10–180 s: image pulls of
realistic sizes), and ``kube-vast controller`` with its production intervals and
``KUBE_VAST_VAST_PACING=published``. ``--pods`` pods bound to the virtual node are created at
once; t0 = a pod's create call, t1 = a watch sees its EndpointSlice endpoint ready.

The baseline of the same run: the same launch with ``KUBE_VAST_VAST_PACING=off`` (every call as
soon as it is wanted, the client's 429 retries; what the controller did before pacing), in a fresh
stack (``--no-baseline`` skips it).

Reported, for each: bind → ready endpoints p50/p99/max; the pacing bound (the k-th pod rented cannot rent
before k create intervals) and each pod's time beyond its bound and its own boot; the rent order
against the pods' age; Vast calls per launch by endpoint and the 429s; the most pods the
``kube_vast_pods_waiting_for_create_slot`` metric showed; the controller's CPU time and peak RSS.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client, watch  # noqa: E402

from bench.common import (bound_pod, machine_lines, pct, production_intervals, ready_pod_uid,  # noqa: E402
                          service_namespace, wait_for_file)
from controller.endpoints import MANAGED_BY  # noqa: E402
from controller.fleet import instance_label  # noqa: E402
from devcluster import ControlPlane  # noqa: E402
from devcluster.controller_stack import ControllerProcess, host_ip  # noqa: E402
from vastmarket.pacing import DEFAULT_MARGIN, PUBLISHED_INTERVALS  # noqa: E402
from vastsim import SimulatorServer  # noqa: E402

NODE = "vast-gpu-node-1"
CLUSTER = "scale"
GATHER = 1.0  # vastmarket.pacing.CreateQueue: a first slot waits for the line to gather


def pod(name: str) -> dict[str, Any]:
    return bound_pod(name, node=NODE, app="scale")


def boot_draw(median: float, seed: int) -> Any:
    rng = random.Random(seed)
    lock = threading.Lock()

    def draw() -> tuple[float, float]:
        with lock:
            total = min(180.0, max(10.0, rng.lognormvariate(math.log(median), 0.5)))
        return (0.3 * total, total)  # provisioning (the pull), then loading

    return draw


class ProcStats:
    """CPU seconds and peak RSS of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.ticks

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


def launch(api: Any, ns: str, count: int, ctl: ControllerProcess, timeout: float) -> dict[str, Any]:
    """Create ``count`` bound pods at once; each pod's uid, t0 and t1, and the largest number of
    pods the waiting metric showed."""
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    created: dict[str, float] = {}
    done: dict[str, float] = {}
    uids: dict[str, str] = {}
    stamps: dict[str, Any] = {}  # creationTimestamp (whole seconds): the age the controller orders by
    finished = threading.Event()
    waiting_seen = [0.0]

    def watcher() -> None:
        while not finished.is_set():
            w = watch.Watch()
            for event in w.stream(discovery.list_namespaced_endpoint_slice, ns,
                                  label_selector=f"endpointslice.kubernetes.io/managed-by={MANAGED_BY}",
                                  timeout_seconds=60):
                uid = ready_pod_uid(event["object"])
                if uid in uids:
                    done.setdefault(uid, time.monotonic())
                if len(done) >= count:
                    finished.set()
                    w.stop()

    def sampler() -> None:
        while not finished.wait(2.0):
            found = re.search(r"^kube_vast_pods_waiting_for_create_slot (\S+)$", ctl.metrics(), re.M)
            if found:
                waiting_seen[0] = max(waiting_seen[0], float(found.group(1)))

    threads = [threading.Thread(target=watcher, daemon=True), threading.Thread(target=sampler, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the watch is established
    start = time.monotonic()
    for i in range(count):
        name = f"s{i:03d}"
        t0 = time.monotonic()
        made = core.create_namespaced_pod(ns, pod(name))
        uids[made.metadata.uid] = name
        created[made.metadata.uid] = t0
        stamps[made.metadata.uid] = made.metadata.creation_timestamp
    if not finished.wait(timeout):  # reported as pods not ready
        finished.set()
    return {"created": created, "done": done, "names": uids, "stamps": stamps, "start": start,
            "waiting_max": waiting_seen[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--boot-median", type=float, default=40.0, help="median instance boot, seconds")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without pacing")
    args = parser.parse_args()
    interval = PUBLISHED_INTERVALS["create"] + DEFAULT_MARGIN
    for pacing in ("published",) if args.no_baseline else ("published", "off"):
        print(f"\n### KUBE_VAST_VAST_PACING={pacing}"
              + (" (the baseline: every call at once, 429s retried)" if pacing == "off" else ""), flush=True)
        report(args, *run_once(args, pacing), interval)
    return 0


def run_once(args: argparse.Namespace, pacing: str) -> tuple[Any, ...]:
    """One stack (control plane, rate-limited simulator, controller with ``pacing``), the launch."""
    work = Path(tempfile.mkdtemp(prefix="kv-bench-scale-"))
    ip = host_ip()
    interval = PUBLISHED_INTERVALS["create"] + DEFAULT_MARGIN
    with ControlPlane() as cp, SimulatorServer(seed=3, offers=4000, boot_seconds=(1.0, 2.0), host=ip, public_ip=ip,
                                               rate_limits=dict(PUBLISHED_INTERVALS)) as sim:
        sim.market.boot_draw = boot_draw(args.boot_median, seed=15)
        api = cp.api_client()
        ns = service_namespace(api, "scale", app="scale")
        ctl = ControllerProcess(work, kubeconfig=cp.kubeconfig_for("admin", ["system:masters"]), sim_url=sim.url,
                                snapshot=work / "offers.json", node=NODE, namespace="kube-vast", cluster_id=CLUSTER,
                                env={"VAST_MAX_INSTANCES": str(args.pods + 50), "VAST_MAX_TOTAL_PRICE_PER_HOUR": "2000",
                                     "KUBE_VAST_VAST_PACING": pacing})
        production_intervals(ctl.argv, {"--poll-interval": "30", "--refresh-interval": "240", "--demand-interval": "5",
                                        "--fleet-interval": "5", "--resync": "5", "--boot-timeout": "900"})
        ctl.start()
        try:
            wait_for_file(work / "offers.json", timeout=120)
            assert ctl.process is not None and ctl.process.proc is not None
            stats = ProcStats(ctl.process.proc.pid)
            cpu0 = stats.cpu_seconds()
            counters0 = sim.state()["counters"]
            timeout = args.pods * interval + 400
            run = launch(api, ns, args.pods, ctl, timeout)
            cpu = stats.cpu_seconds() - cpu0
            rss = stats.peak_rss_mb()
            state = sim.state()
        finally:
            ctl.stop()
    return run, state, counters0, cpu, rss


def report(args: argparse.Namespace, run: dict[str, Any], state: dict[str, Any], counters0: dict[str, Any],
           cpu: float, rss: float, interval: float) -> None:
    created, done, names = run["created"], run["done"], run["names"]
    by_label = {i["label"]: i for i in state["instances"] if i.get("label")}
    rows = []
    not_ready = [names[uid] for uid in created if uid not in done]
    for uid, t0 in created.items():
        inst = by_label.get(instance_label(CLUSTER, uid))
        if uid not in done or inst is None:
            continue
        boot = (inst["running_at"] or inst["created_at"]) - inst["created_at"]
        rows.append({"name": names[uid], "uid": uid, "ready": done[uid] - t0, "rented_at": inst["created_at"],
                     "boot": boot})
    rows.sort(key=lambda r: r["rented_at"])
    for k, r in enumerate(rows):
        r["bound"] = GATHER + k * interval + r["boot"]  # the k-th rent cannot go sooner
        r["beyond"] = r["ready"] - r["bound"]
    stamps = run["stamps"]  # a pod rented before one created in an earlier second is out of order
    inversions = sum(1 for i, a in enumerate(rows) for b in rows[i + 1:] if stamps[a["uid"]] > stamps[b["uid"]])
    ready = [r["ready"] for r in rows]
    calls0, calls = counters0.get("calls", {}), state["counters"]["calls"]
    answers = state["counters"]["answers"]
    made = {e: calls.get(e, 0) - calls0.get(e, 0) for e in sorted(set(calls) | set(calls0))}
    refused = {e: by.get("429", 0) - counters0.get("answers", {}).get(e, {}).get("429", 0) for e, by in answers.items()}
    total, refused_total = sum(made.values()), sum(refused.values())
    print("\n".join(machine_lines()))
    boots = [r["boot"] for r in rows]
    print(f"pods: {args.pods}; boot (rental → running) p50 {statistics.median(boots):.1f} s, max {max(boots):.1f} s; "
          f"create interval paced {interval:.1f} s (Vast's 4.5 + margin)\n")
    print("| pods | bind→ready p50 s | p99 s | max s | wall s | max beyond pacing bound + boot s "
          "| rent pairs out of age order | most pods waiting (metric) |")
    print("|---|---|---|---|---|---|---|---|")
    wall = max(done.values()) - run["start"]
    print(f"| {args.pods} | {statistics.median(ready):.1f} | {pct(ready, 99):.1f} | {max(ready):.1f} | {wall:.1f} | "
          f"{max(r['beyond'] for r in rows):.1f} | {inversions} | {run['waiting_max']:.0f} |")
    print("\n| endpoint | calls | per launch | 429s |")
    print("|---|---|---|---|")
    for e, n in made.items():
        if n:
            print(f"| {e} | {n} | {n / args.pods:.2f} | {refused.get(e, 0)} |")
    print(f"\n429s: {refused_total} of {total} Vast calls ({100 * refused_total / max(total, 1):.2f} %; target ≤ 1 %)")
    print(f"controller: {cpu:.1f} s CPU over the run ({cpu / wall * 100:.1f} % of one core), peak RSS {rss:.0f} MB")
    bound = GATHER + (args.pods - 1) * interval + max(boots)
    if not_ready:
        print(f"NOT READY in {max(done.values(), default=run['start']) - run['start']:.0f} s: {len(not_ready)} pods "
              f"({', '.join(sorted(not_ready)[:10])}{', …' if len(not_ready) > 10 else ''})")
    print(f"pacing bound for the last pod: {GATHER:.0f} + {args.pods - 1} × {interval:.1f} s + its boot; "
          f"max bind→ready {max(ready):.1f} s ≤ {bound:.1f} s + overhead")


if __name__ == "__main__":
    sys.exit(main())
