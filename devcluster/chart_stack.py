"""The chart installed for real on the test bed: a control plane (with the default scheduler for
the release's own pods and kube-controller-manager), one real node (:mod:`devcluster.node`, with
Services: kube-proxy and the cluster DNS) holding the kube-vast image of ``make image`` and
vast-scheduler's image, and ``helm install charts/kube-vast`` in simulator mode. Used by
``tests/cluster/test_chart_install.py`` and ``make demo DEMO_FLAGS=--chart``.

:func:`chart_stack` is a context manager: everything it started is stopped on the way out (the
release is not uninstalled: the node and the control plane go, with all of it).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .binaries import REPO_ROOT, find_binaries
from .cluster import ControlPlane
from .image import archive_path, version
from .node import Node, NodeError, node_dir, unavailable

NAMESPACE = "kube-vast"
RELEASE = "kube-vast"
CHART = REPO_ROOT / "charts" / "kube-vast"
VIRTUAL_NODE = "vast-gpu-node-1"


class ChartStackError(RuntimeError):
    """The stack could not be set up (what is missing, or which command failed and what it said)."""


def image() -> str:
    return f"kube-vast:{version()}"


def scheduler_image() -> str:
    return f"kube-vast.local/kube-scheduler:{find_binaries().kubernetes_version}"


def install_values() -> list[str]:
    return [
        "simulator.enabled=true",
        "image.repository=kube-vast", f"image.tag={version()}", "image.pullPolicy=Never",
        "scheduler.image.repository=kube-vast.local/kube-scheduler",
        f"scheduler.image.tag={find_binaries().kubernetes_version}", "scheduler.image.pullPolicy=Never",
        # One node: one replica of each (a second would only wait for the first's anti-affinity
        # and PodDisruptionBudget).
        "deployment.replicaCount=1", "scheduler.replicaCount=1",
    ]


def missing() -> str | None:
    """Why the stack cannot run here, or None."""
    reason = unavailable()
    if reason is not None:
        return reason
    binaries = find_binaries()
    gone = binaries.missing(["etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl", "helm"])
    if gone:
        return f"missing {'; '.join(gone)}: run tools/build-control-plane.sh"
    if not (node_dir() / "kube-scheduler.tar").is_file():
        return f"{node_dir() / 'kube-scheduler.tar'} is missing: run tools/build-node.sh"
    if not archive_path().is_file():
        return f"no image archive at {archive_path()}: make image"
    return None


class ChartStack:
    def __init__(self, cp: ControlPlane, node: Node) -> None:
        from kubernetes import client

        self.cp, self.node = cp, node
        self.core = client.CoreV1Api(cp.api_client())
        self.apps = client.AppsV1Api(cp.api_client())
        self.discovery = client.DiscoveryV1Api(cp.api_client())

    def run(self, *argv: str, timeout: float = 300) -> str:
        try:
            done = subprocess.run([*argv], capture_output=True, text=True, timeout=timeout,
                                  env={"KUBECONFIG": str(self.cp.kubeconfig_path), "HOME": str(self.cp.workdir),
                                       "PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ChartStackError(f"{' '.join(argv)}: {e}") from e
        if done.returncode != 0:
            raise ChartStackError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def helm(self, *args: str, timeout: float = 300) -> str:
        return self.run(str(find_binaries().helm), *args, timeout=timeout)

    def kubectl(self, *args: str) -> str:
        return self.run(str(find_binaries().kubectl), *args)

    def install(self, timeout: str = "4m") -> None:
        try:
            self.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
                      *[a for v in install_values() for a in ("--set", v)], "--wait", "--timeout", timeout,
                      timeout=600)
        except ChartStackError as e:
            raise ChartStackError(f"{e}\n{self.describe()}") from None

    def pods(self, namespace: str, selector: str = "") -> list[Any]:
        return list(self.core.list_namespaced_pod(namespace, label_selector=selector).items)

    def describe(self) -> str:
        lines = []
        for ns in (NAMESPACE, "default"):
            for p in self.pods(ns):
                states = [(c.name, c.ready, c.restart_count, str(c.state).replace("\n", " "))
                          for c in p.status.container_statuses or []]
                lines.append(f"{ns}/{p.metadata.name} {p.status.phase} node={p.spec.node_name} {states}")
        lines.append("kubelet (last lines):\n" + (self.node.kubelet.log_tail(20) if self.node.kubelet else ""))
        return "\n".join(lines)

    def simulator_url(self) -> str:
        sims = [p for p in self.pods(NAMESPACE, "app.kubernetes.io/component=simulator") if p.status.pod_ip]
        if len(sims) != 1:
            raise ChartStackError(f"expected one simulator pod with an address, found {len(sims)}")
        return f"http://{sims[0].status.pod_ip}:8181"

    def ledger(self) -> list[dict[str, Any]]:
        """Every instance the release's simulator ever rented (``/_sim/state``)."""
        with urllib.request.urlopen(self.simulator_url() + "/_sim/state", timeout=10) as r:
            return list(json.loads(r.read())["instances"])


@contextmanager
def chart_stack(workdir: Path) -> Iterator[ChartStack]:
    """The control plane, the node and the installed release; all stopped on the way out."""
    reason = missing()
    if reason is not None:
        raise ChartStackError(reason)
    cp = ControlPlane(workdir=workdir / "control-plane", extra_apiserver_args=[
        # The API server calls the webhook at its Service's endpoints (pod addresses this machine
        # routes to), and kubelets at their InternalIP (there is no DNS for node names here).
        "--enable-aggregator-routing=true", "--kubelet-preferred-address-types=InternalIP"])
    node: Node | None = None
    try:
        cp.start()
        cfg = cp.render_scheduler_config(customize=lambda c: c.update(
            profiles=[{"schedulerName": "default-scheduler"}], extenders=[]))
        cfg["leaderElection"] = {"leaderElect": False}
        cp.start_scheduler(config=cfg)  # places the release's own pods on the node
        cp.start_controller_manager()
        node = Node(cp, workdir / "node", services=True, images=(archive_path(), node_dir() / "kube-scheduler.tar"))
        try:
            node.start()
        except NodeError as e:
            raise ChartStackError(str(e)) from e
        stack = ChartStack(cp, node)
        stack.install()
        yield stack
    finally:
        if node is not None:
            node.stop()
        cp.stop()
