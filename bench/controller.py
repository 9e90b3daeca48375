"""Benchmark: from pod binding to its endpoints being published, 1 pod alone and then 20 pods
at once, against the real control plane and the simulator, with the controller's production
intervals (offers every 30 s, instance listing every 5 s, resync 5 s).

Run: ``make bench-controller`` (or ``.venv/bin/python bench/controller.py [--pods 20]``).
Needs the control-plane binaries (``make control-plane``); uses the test harness to start them.

For each pod: t0 = the create call of a pod already bound to the virtual node (``spec.nodeName``),
t1 = the moment a watch sees a ready EndpointSlice endpoint for it. The simulator's instances take
``--boot`` seconds from rental to running; controller overhead = (t1 − t0) − boot. The 1-pod run
is the baseline measured in the same run: if launches were serialised, the 20-pod run would take
about 20 × the single launch; concurrent launches take about one.
"""

from __future__ import annotations

import argparse
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

from bench.common import (bound_pod, machine_lines, met, production_intervals, ready_pod_uid,  # noqa: E402
                          service_namespace, wait_for_file)
from controller.endpoints import MANAGED_BY  # noqa: E402
from devcluster.controller_stack import ControllerProcess, host_ip  # noqa: E402
from devcluster import ControlPlane  # noqa: E402
from vastsim import SimulatorServer  # noqa: E402

NODE = "vast-gpu-node-1"


def pod(name: str) -> dict[str, Any]:
    return bound_pod(name, node=NODE, app="bench")


def launch(api: Any, ns: str, count: int) -> tuple[list[float], float]:
    """Create ``count`` bound pods at once; returns each pod's seconds to a ready endpoint, and the
    wall time until the last one."""
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    created: dict[str, float] = {}
    done: dict[str, float] = {}
    uid_to_name: dict[str, str] = {}
    finished = threading.Event()

    def watcher() -> None:
        w = watch.Watch()
        for event in w.stream(discovery.list_namespaced_endpoint_slice, ns,
                              label_selector=f"endpointslice.kubernetes.io/managed-by={MANAGED_BY}",
                              timeout_seconds=300):
            uid = ready_pod_uid(event["object"])
            if uid in uid_to_name:
                done.setdefault(uid_to_name[uid], time.monotonic())
            if len(done) >= count:
                finished.set()
                w.stop()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    time.sleep(0.5)  # the watch is established
    start = time.monotonic()
    for i in range(count):
        name = f"b{count}-{i:02d}"
        created[name] = time.monotonic()
        p = core.create_namespaced_pod(ns, pod(name))
        uid_to_name[p.metadata.uid] = name
    if not finished.wait(300):
        raise TimeoutError(f"only {len(done)} of {count} pods got endpoints")
    return [done[n] - created[n] for n in created], max(done.values()) - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--boot", type=float, default=3.0, help="simulator seconds from rental to running")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kv-bench-ctl-"))
    ip = host_ip()
    with ControlPlane() as cp, SimulatorServer(seed=3, offers=2000, boot_seconds=(args.boot / 3, args.boot),
                                               host=ip, public_ip=ip) as sim:
        api = cp.api_client()
        ns = service_namespace(api, "bench", app="bench")
        ctl = ControllerProcess(work, kubeconfig=cp.kubeconfig_for("admin", ["system:masters"]), sim_url=sim.url,
                                snapshot=work / "offers.json", node=NODE, namespace="kube-vast", cluster_id="bench",
                                env={"VAST_MAX_INSTANCES": "100", "VAST_MAX_TOTAL_PRICE_PER_HOUR": "500"})
        # production intervals instead of the tests' fast ones
        production_intervals(ctl.argv, {"--poll-interval": "30", "--fleet-interval": "5", "--resync": "5",
                                        "--boot-timeout": "600"})
        ctl.start()
        try:
            wait_for_file(work / "offers.json", timeout=60)
            single, _ = launch(api, ns, 1)
            many, wall = launch(api, ns, args.pods)
        finally:
            ctl.stop()
    over = [t - args.boot for t in many]
    print("\n".join(machine_lines()))
    print(f"simulator boot (rental → running): {args.boot:.1f} s\n")
    print("| run | pods | p50 bind→endpoints s | max s | controller overhead p50 s | overhead max s | wall for all s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| alone | 1 | {single[0]:.2f} | {single[0]:.2f} | {single[0] - args.boot:.2f} | {single[0] - args.boot:.2f} | {single[0]:.2f} |")
    print(f"| together | {args.pods} | {statistics.median(many):.2f} | {max(many):.2f} | {statistics.median(over):.2f} | "
          f"{max(over):.2f} | {wall:.2f} |")
    print(f"\nconcurrency: {args.pods} pods took {wall:.1f} s in all, {wall / single[0]:.1f}x one pod alone "
          f"(serialised launches would take about {args.pods}x)")
    print(f"target ≤ 2 s controller overhead per pod: {met(max(over) <= 2)} (max {max(over):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
