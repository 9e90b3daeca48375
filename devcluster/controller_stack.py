"""The whole kube-vast stack for the local cluster (the demo, the benchmarks and the end-to-end
tests): the simulator, the controller (which publishes the offer snapshot and registers the
virtual node), the extender reading that snapshot, and the real kube-scheduler pointed at the
extender. Components run as real processes through the
``kube-vast`` command line."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devcluster.components import KUBE_VAST, Extender, wait_until
from devcluster.processes import ManagedProcess, free_port
from vastsim import SimulatorServer


class ControllerProcess:
    def __init__(self, workdir: Path, *, kubeconfig: Path, sim_url: str, snapshot: Path, node: str,
                 namespace: str, cluster_id: str, identity: str = "ctl-a", extra: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, kubelet_client_ca: Path | None = None) -> None:
        self.metrics_port = free_port()
        self.argv = [*KUBE_VAST, "controller", "--kubeconfig", str(kubeconfig), "--namespace", namespace,
                     "--cluster-id", cluster_id, "--virtual-node", node, "--snapshot", str(snapshot),
                     "--identity", identity, "--metrics-port", str(self.metrics_port),
                     "--poll-interval", "2", "--refresh-interval", "2", "--demand-interval", "0.5",
                     "--fleet-interval", "0.5", "--resync", "0.5",
                     "--reaper-interval", "1", "--reaper-grace", "3", "--lease-seconds", "4", "--renew-every", "1",
                     "--boot-timeout", "20", *extra]
        self.env = {**os.environ, "VAST_API_URL": sim_url, **kubelet_api_env(kubelet_client_ca), **(env or {})}
        self.env.pop("VAST_API_KEY", None)
        self.workdir = workdir
        self.identity = identity
        self.process: ManagedProcess | None = None
        self.starts = 0

    def start(self) -> "ControllerProcess":
        self.starts += 1
        self.process = ManagedProcess(f"controller-{self.identity}", self.argv,
                                      self.workdir / f"controller-{self.identity}-{self.starts}.log", env=self.env)
        self.process.start()
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crashed or evicted pod."""
        import signal

        assert self.process is not None and self.process.proc is not None
        os.killpg(self.process.proc.pid, signal.SIGKILL)
        self.process.proc.wait(timeout=10)
        self.process.stopped = True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def metrics(self) -> str:
        """The Prometheus text, or "" while the endpoint is not up yet."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as reply:
                return str(reply.read().decode())
        except OSError:
            return ""

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob(f"controller-{self.identity}-*.log")))


@contextmanager
def controller_on_simulator(control_plane: Any, work: Path, *, release_namespace: str, node: str, cluster_id: str,
                            seed: int, offers: int, boot_seconds: tuple[float, float] = (0.2, 0.5),
                            env: dict[str, str] | None = None, extra: tuple[str, ...] = (),
                            wait_snapshot: bool = False) -> Iterator[tuple[Any, SimulatorServer, ControllerProcess]]:
    """The controller's release namespace, a simulator of ``offers`` offers on this machine's
    address and the controller (as cluster admin) against both; ``(api client, simulator,
    controller)`` until the block ends, then the controller stopped. With ``wait_snapshot``, once
    the controller published its first offer snapshot."""
    from devcluster.helpers import create_namespace

    api = control_plane.api_client()
    create_namespace(api, release_namespace)
    ip = host_ip()
    with SimulatorServer(seed=seed, offers=offers, boot_seconds=boot_seconds, host=ip, public_ip=ip) as sim:
        ctl = ControllerProcess(work, kubeconfig=control_plane.kubeconfig_for("admin", ["system:masters"]),
                                sim_url=sim.url, snapshot=work / "offers.json", node=node,
                                namespace=release_namespace, cluster_id=cluster_id, extra=extra, env=env).start()
        try:
            if wait_snapshot:
                assert ctl.process is not None
                ctl.process.wait_until(lambda: (work / "offers.json").exists(), timeout=30, what="publish offers")
            yield api, sim, ctl
        finally:
            ctl.stop()


_SWEPT = re.compile(r"checkpoint reaper-swept orphans=(\d+)")


def reaper_sweeps(log: str) -> list[int]:
    """The orphans each orphan-reaper pass in a controller's ``log`` found (checkpoint
    ``reaper-swept``), in order."""
    return [int(n) for n in _SWEPT.findall(log)]


def delete_pods(api: Any, namespace: str, *, timeout: float = 60.0) -> None:
    """Delete every pod of ``namespace`` and wait until they are gone (the controller released
    their finalizers)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    core.delete_collection_namespaced_pod(namespace)
    wait_until(lambda: not core.list_namespaced_pod(namespace).items, timeout=timeout)


def kubelet_api_env(client_ca: Path | None) -> dict[str, str]:
    """The controller's settings for the virtual node's kubelet API (``kubectl logs``): served on
    this machine's own address and a free port, for clients the cluster CA signed
    (``ControlPlane.ca_file``); off without ``client_ca``."""
    if client_ca is None:
        return {"KUBE_VAST_KUBELET_PORT": "0"}
    ip = host_ip()
    return {"KUBE_VAST_KUBELET_CLIENT_CA": str(client_ca), "KUBE_VAST_NODE_IP": ip,
            "KUBE_VAST_KUBELET_BIND_ADDRESS": ip, "KUBE_VAST_KUBELET_PORT": str(free_port()),
            "KUBE_VAST_LOG_FOLLOW_INTERVAL": "0.5"}


def host_ip() -> str:
    """This machine's own non-loopback IPv4 address. Instances must advertise one: the API server
    refuses loopback addresses in EndpointSlices."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.254", 9))  # no packet is sent; this only picks the outgoing interface
        address = str(s.getsockname()[0])
    if address.startswith("127."):
        raise RuntimeError("this machine has no non-loopback IPv4 address for the simulator's instances")
    return address


def sim_state(sim: SimulatorServer) -> dict[str, Any]:
    return sim.state()


def live_instances(sim: SimulatorServer, label_prefix: str = "kv:") -> list[dict[str, Any]]:
    return [i for i in sim.state()["instances"] if not i["destroyed"] and (i["label"] or "").startswith(label_prefix)]


def http_get(host: str, port: int, path: str = "/") -> int:
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=3) as reply:
        return int(reply.status)


__all__ = ["ControllerProcess", "Extender", "controller_on_simulator", "delete_pods", "free_port", "host_ip",
           "reaper_sweeps", "http_get", "json", "kubelet_api_env",
           "live_instances", "sim_state", "time", "wait_until"]
