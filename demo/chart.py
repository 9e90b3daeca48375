"""``make demo DEMO_FLAGS=--chart``: the same flow as the demo, with kube-vast installed the way an
operator installs it, ``helm install charts/kube-vast`` (simulator mode), onto a local control plane
with one real node (containerd, kubelet, kube-proxy; ``devcluster.node``) that runs the release's
pods from the image ``make image`` built. Then demo/june.yaml goes through the chart's webhook,
vast-scheduler and controller to an instance; the uninstall is the operator guide's.

Needs root and what ``make image`` and ``tools/build-node.sh`` build (the Makefile builds them
first); says what is missing otherwise.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from devcluster.binaries import REPO_ROOT
from devcluster.chart_stack import NAMESPACE, RELEASE, VIRTUAL_NODE, ChartStack, ChartStackError, chart_stack, missing
from demo.console import Console
from demo.stack import processes_mentioning


class DemoFailed(RuntimeError):
    pass


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _wait(what: str, timeout: float, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except (OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.5)


def _flow(stack: ChartStack, say: Callable[[str], None], timeout: float, keep: bool) -> int:
    node = stack.node
    info: Any = stack.core.read_node(node.name).status
    say(f"node {node.name}: Ready, {info.node_info.container_runtime_version}, kubelet {info.node_info.kubelet_version}, "
        f"InternalIP {node.network.node_ip}, pods on {node.network.pod_cidr}, "
        f"network namespace {node.network.netns}")
    for p in stack.pods(NAMESPACE):
        images = ", ".join(sorted({c.image for c in p.status.container_statuses}))
        say(f"release pod {p.metadata.name}: Ready on {p.spec.node_name}, {p.status.pod_ip}, image {images}")
    applied = stack.kubectl("apply", "-f", str(REPO_ROOT / "demo" / "june.yaml")).strip().replace("\n", ", ")
    say(f"applied demo/june.yaml: {applied}")

    def ready_pod() -> Any:
        pods = stack.pods("default", "app=june")
        return pods[0] if len(pods) == 1 and _ready(pods[0]) else None

    pod = _wait("june's pod Ready", timeout * 3, ready_pod)
    a = pod.metadata.annotations
    say(f"pod {pod.metadata.name}: webhook chose offer {a['vast.ai/offer-id']} ({a.get('vast.ai/offer-gpu')}, "
        f"${float(a['vast.ai/offer-price']):.3f}/h, {a.get('vast.ai/offer-location')}), schedulerName "
        f"{pod.spec.scheduler_name}; bound to {pod.spec.node_name}; instance {a['vast.ai/instance-id']} at "
        f"{a.get('vast.ai/public-ip')}; Ready")
    for service in ("june-tts", "june-stt"):
        def endpoint(service: str = service) -> tuple[str, int] | None:
            slices = stack.discovery.list_namespaced_endpoint_slice(
                "default", label_selector=f"kubernetes.io/service-name={service}").items
            found = [(a, p.port) for s in slices for e in s.endpoints or [] for a in e.addresses
                     for p in s.ports or [] if p.port]
            return found[0] if found else None

        # The pod turns Ready and its EndpointSlices are written by two steps of the controller:
        # wait for the slice, then the instance must answer there (else the demo fails).
        address, port = _wait(f"the EndpointSlice of {service}", timeout, endpoint)
        url = f"http://{address}:{port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read().decode()
            if r.status != 200:
                raise DemoFailed(f"GET {url} ({service}): HTTP {r.status} {body[:80]}")
            say(f"GET {url} ({service}) → HTTP {r.status} {body[:80]}")
    if keep:
        say(f"export KUBECONFIG={stack.cp.kubeconfig_path}")
        say("the cluster stays up until Ctrl-C")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    # The operator guide's uninstall: the workloads first, then the release, then the virtual node.
    stack.kubectl("delete", "deployment", "june", "--wait=false")
    say("deleted deployment june; waiting for the controller to destroy the instance")
    _wait("the instance destroyed", timeout * 2, lambda: all(i.get("destroyed") for i in stack.ledger()))
    destroyed = ", ".join(str(i["id"]) for i in stack.ledger())
    say(f"simulator ledger: instance(s) {destroyed} destroyed; 0 live")
    # The controller lifts the pod's finalizer after the destroy: uninstalling it before then
    # would leave the pod Terminating (the operator guide's warning).
    _wait("june's pod gone", timeout * 2, lambda: not stack.pods("default", "app=june"))
    stack.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")
    stack.kubectl("delete", "node", VIRTUAL_NODE)
    _wait("the release's pods gone", timeout * 2, lambda: not stack.pods(NAMESPACE))
    say(f"helm uninstall {RELEASE}; node {VIRTUAL_NODE} deleted; no pod of the release left")
    return 0


def main(*, keep: bool = False, timeout: float = 60.0, keep_logs: bool = False) -> int:
    console = Console()

    def say(text: str) -> None:
        console.say("demo", text)

    reason = missing()
    if reason is not None:
        say(f"the chart demo cannot run here: {reason}")
        return 1

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="kube-vast-demo-chart-"))
    started = time.monotonic()
    result, code, leftovers = "failed", 1, ["not started"]
    try:
        say(f"starting a control plane and a real node, installing charts/kube-vast (logs in {workdir})")
        with chart_stack(workdir) as stack:
            say(f"helm install {RELEASE} charts/kube-vast -n {NAMESPACE} --set simulator.enabled=true …: "
                f"deployed in {time.monotonic() - started:.0f}s")
            try:
                code = _flow(stack, say, timeout, keep)
                result = "ok"
            finally:
                stack.node.stop()
                leftovers = stack.node.leftovers()
    except KeyboardInterrupt:
        result, code = "interrupted", 130
    except (ChartStackError, DemoFailed, OSError) as e:
        say(f"FAILED: {e}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    # What the run left on this machine: the node (its processes, mounts, interfaces, routes,
    # cgroups) and any process of the control plane or the node (each names the work directory).
    node_leftovers = len(leftovers) if result == "ok" else "n/a"
    processes = processes_mentioning(str(workdir))
    if result == "ok" and (leftovers or processes):
        say(f"left behind: {leftovers + processes}")
        result, code = "failed", 1
    say(f"summary: result={result} node_leftovers={node_leftovers} processes_left={len(processes)} "
        f"elapsed={time.monotonic() - started:.0f}s")
    if code == 0 and not keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        say(f"logs kept in {workdir}")
    return code

