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
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client, watch  # noqa: E402

from controller.endpoints import MANAGED_BY  # noqa: E402
from devcluster.controller_stack import ControllerProcess, host_ip  # noqa: E402
from devcluster import ControlPlane, create_namespace  # noqa: E402
from vastsim import SimulatorServer  # noqa: E402

NODE = "vast-gpu-node-1"


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "ghcr.io/example/speech:1.0",
                                     "ports": [{"name": "http", "containerPort": 8000}],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                     "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}]}}


def launch(api, ns: str, count: int) -> tuple[list[float], float]:
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
            s = event["object"]
            uid = (s.metadata.labels or {}).get("vast.ai/pod-uid")
            if any(e.conditions and e.conditions.ready for e in s.endpoints or []) and uid in uid_to_name:
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
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        create_namespace(api, ns)
        create_namespace(api, "kube-vast")
        client.CoreV1Api(api).create_namespaced_service(ns, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench"},
            "spec": {"selector": {"app": "bench"}, "ports": [{"port": 80, "targetPort": "http"}]}})
        ctl = ControllerProcess(work, kubeconfig=cp.kubeconfig_for("admin", ["system:masters"]), sim_url=sim.url,
                                snapshot=work / "offers.json", node=NODE, namespace="kube-vast", cluster_id="bench",
                                env={"VAST_MAX_INSTANCES": "100", "VAST_MAX_TOTAL_PRICE_PER_HOUR": "500"})
        # production intervals instead of the tests' fast ones
        ctl.argv = [a for a in ctl.argv]
        for flag, value in (("--poll-interval", "30"), ("--fleet-interval", "5"), ("--resync", "5"),
                            ("--boot-timeout", "600")):
            ctl.argv[ctl.argv.index(flag) + 1] = value
        ctl.start()
        try:
            deadline = time.monotonic() + 60
            while not (work / "offers.json").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            single, _ = launch(api, ns, 1)
            many, wall = launch(api, ns, args.pods)
        finally:
            ctl.stop()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    over = [t - args.boot for t in many]
    print(f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}")
    print(f"simulator boot (rental → running): {args.boot:.1f} s\n")
    print("| run | pods | p50 bind→endpoints s | max s | controller overhead p50 s | overhead max s | wall for all s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| alone | 1 | {single[0]:.2f} | {single[0]:.2f} | {single[0] - args.boot:.2f} | {single[0] - args.boot:.2f} | {single[0]:.2f} |")
    print(f"| together | {args.pods} | {statistics.median(many):.2f} | {max(many):.2f} | {statistics.median(over):.2f} | "
          f"{max(over):.2f} | {wall:.2f} |")
    print(f"\nconcurrency: {args.pods} pods took {wall:.1f} s in all, {wall / single[0]:.1f}x one pod alone "
          f"(serialised launches would take about {args.pods}x)")
    print(f"target ≤ 2 s controller overhead per pod: {'met' if max(over) <= 2 else 'NOT met'} (max {max(over):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
