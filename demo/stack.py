"""Everything the demo runs, started in order and always stopped.

The local control plane (etcd, kube-apiserver, kube-controller-manager, and kube-scheduler
configured from the repository's ``scheduler-config.yaml`` with the extender's URL) comes from the
local cluster package, ``devcluster.ControlPlane``, and the extender and webhook processes and the
webhook registration from ``devcluster.components`` — the same code the end-to-end tests run, not a
copy. The Vast marketplace simulator runs in this process, bound to this machine's non-loopback
IPv4 address (the API server refuses loopback addresses in EndpointSlices); its instances listen
on hosts of their own network (``devcluster.hostnet``: a namespace with a veth link per host)
where this machine allows one (root), else on that same address, which the demo says. The
controller, the extender and the webhook are real ``kube-vast`` processes, each logging to
``<work>/logs/``; like a kubelet, the demo restarts one that crashes, after a back-off
(:mod:`demo.supervisor`).

Every child process is started from the main thread in its own session (Ctrl-C in the terminal
reaches only the demo, which then cleans up in order) and dies with the demo even if the demo is
killed (``PR_SET_PDEATHSIG``, see ``devcluster.processes``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from controller.kube import KubeGateway
from controller.main import derive_cluster_id
from devcluster.components import KUBE_VAST, Extender, Webhook, register_manifest
from devcluster.controller_stack import host_ip, kubelet_api_env
from devcluster.hostnet import describe as describe_hosts, simulator_hosts
from devcluster import (
    ControlPlane, ManagedProcess, create_namespace, find_binaries, stop_all, webhook_serving_cert,
)
from devcluster.binaries import CONTROL_PLANE_BINARIES
from vastsim import SimulatorServer

from .console import Console, LogFollower
from .supervisor import Supervisor

RELEASE_NAMESPACE = "kube-vast"   # the controller's Lease; never touched by the webhook
VIRTUAL_NODE = "vast-gpu-node-1"


class MissingBinaries(RuntimeError):
    pass


class Stack:
    """Start with the methods in order; :meth:`stop` stops whatever was started, newest first."""

    def __init__(self, work: Path, console: Console, *, seed: int, offers: int) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.console = console
        self.seed = seed
        self.offers = offers
        self.snapshot = work / "offers.json"
        self.control_plane: ControlPlane | None = None
        self.sim: SimulatorServer | None = None
        self.controller: ManagedProcess | None = None
        self.extender: Extender | None = None
        self.webhook: Webhook | None = None
        self.followers: list[LogFollower] = []
        self.cluster_id = ""
        self.ip = ""
        self.hosts = ""  # where the instances listen, said on the console
        # Shorter than the kubelet's CrashLoopBackOff (10 s doubling to 5 min, reset after 10 min).
        self.supervisor = Supervisor(console, base=1.0, cap=8.0, stable=10.0)

    # --- start ------------------------------------------------------------------------------------

    def check_binaries(self) -> None:
        missing = find_binaries().missing(CONTROL_PLANE_BINARIES)
        if missing:
            raise MissingBinaries("control-plane binaries missing: " + "; ".join(missing)
                                  + ". Build them with tools/build-control-plane.sh (make demo does).")

    def start_control_plane(self) -> ControlPlane:
        self.control_plane = ControlPlane(workdir=self.work / "control-plane")
        self.control_plane.start()
        self.control_plane.start_controller_manager()
        return self.control_plane

    def api(self) -> Any:
        """A Kubernetes client for the admin user (for writes)."""
        assert self.control_plane is not None
        return self.control_plane.api_client()

    def kube(self) -> KubeGateway:
        """The controller's gateway for the admin user: reads as plain dicts."""
        return KubeGateway(self.api())

    def start_simulator(self) -> SimulatorServer:
        self.ip = host_ip()
        self.sim = SimulatorServer(seed=self.seed, offers=self.offers, boot_seconds=(1.0, 3.0),
                                   **simulator_hosts()).start()
        self.hosts = describe_hosts()
        return self.sim

    def start_controller(self) -> ManagedProcess:
        assert self.control_plane is not None and self.sim is not None
        api = self.api()
        create_namespace(api, RELEASE_NAMESPACE)
        self.cluster_id = derive_cluster_id(self.kube())
        # kubectl logs of the demo's pods: the virtual node's kubelet API on this machine's address.
        env = {**os.environ, "VAST_API_URL": self.sim.url, **kubelet_api_env(self.control_plane.ca_file)}
        env.pop("VAST_API_KEY", None)
        env.pop("VAST_API_KEY_FILE", None)
        argv = [*KUBE_VAST, "controller", "--kubeconfig", str(self.control_plane.kubeconfig_path),
                "--namespace", RELEASE_NAMESPACE, "--virtual-node", VIRTUAL_NODE, "--snapshot", str(self.snapshot),
                # Quicker than production (offers every 30 s, reaper grace 5 min) so the demo is brisk.
                "--poll-interval", "5", "--fleet-interval", "1", "--resync", "2", "--reaper-interval", "10",
                "--reaper-grace", "60", "--boot-timeout", "120",
                # One identity across restarts: a restarted controller takes its lease back at once.
                "--identity", "demo-controller"]

        def start() -> ManagedProcess:
            self.controller = ManagedProcess("controller", argv, self.logs / "controller.log", env=env).start()
            return self.controller

        self.supervisor.add("controller", start(), start)
        assert self.controller is not None
        self.follow("controller", self.controller.log_path)
        return self.controller

    def start_extender(self) -> Extender:
        ext = self.extender = Extender(self.logs, self.snapshot, extra=("--virtual-node", VIRTUAL_NODE)).start()
        self.supervisor.add("extender", ext.process, lambda: self._again(ext, "extender"))
        self.follow("extender", ext.process.log_path)
        return ext

    def start_scheduler(self) -> None:
        assert self.control_plane is not None and self.extender is not None
        self.control_plane.start_scheduler(self.extender.url)

    def start_webhook(self) -> Webhook:
        cert = webhook_serving_cert(self.work / "webhook-tls")
        hook = self.webhook = Webhook(self.logs, self.snapshot, cert,
                                      extra=("--release-namespace", RELEASE_NAMESPACE)).start()
        self.supervisor.add("webhook", hook.process, lambda: self._again(hook, "webhook"))
        self.follow("webhook", self.webhook.process.log_path)
        register_manifest(self.api(), url=f"{self.webhook.url}/mutate", ca_pem=cert.ca_pem,
                          release_namespace=RELEASE_NAMESPACE)
        return self.webhook

    @staticmethod
    def _again(component: Extender | Webhook, name: str) -> ManagedProcess:
        """A new process for a component that died: the same command, port and log file."""
        old = component.process
        component.process = ManagedProcess(name, old.argv, old.log_path, env=old.env).start()
        return component.process

    def follow(self, component: str, path: Path) -> None:
        self.followers.append(LogFollower(self.console, component, path).start())

    def catch_up(self) -> None:
        """Print every component line logged so far."""
        for follower in self.followers:
            follower.catch_up()

    # --- health and teardown ----------------------------------------------------------------------

    def processes(self) -> list[ManagedProcess]:
        procs = [self.controller] if self.controller is not None else []
        procs += [c.process for c in (self.extender, self.webhook) if c is not None]
        if self.control_plane is not None:
            procs += self.control_plane.processes()
        return procs

    def check_alive(self) -> None:
        """Restart a kube-vast component that crashed (after its back-off); raise ``ProcessDied``
        (with its log tail) when a process of the control plane died."""
        self.supervisor.tick()
        supervised = set(map(id, self.supervisor.processes()))
        for p in self.processes():
            if not p.stopped and id(p) not in supervised:
                p.check_alive()

    def live_instances(self) -> list[dict[str, Any]]:
        """The simulator ledger's instances of this cluster that are not destroyed."""
        if self.sim is None:
            return []
        prefix = f"kv:{self.cluster_id}:" if self.cluster_id else "kv:"
        return [i for i in self.sim.state()["instances"] if not i["destroyed"] and (i["label"] or "").startswith(prefix)]

    def stop(self) -> None:
        """Stop the components (together: each may take its graceful-shutdown time), then the
        control plane, then the simulator; idempotent."""
        components = [p for p in self.processes() if p.name in ("controller", "extender", "webhook")]
        stoppers = [threading.Thread(target=p.stop, name=f"stop-{p.name}") for p in components]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        if self.control_plane is not None:
            self.control_plane.stop()
        # Anything else the harness started for us, e.g. a kube-apiserver interrupted while it
        # was starting, before the control plane recorded it.
        stop_all()
        for follower in self.followers:
            follower.stop()
        if self.sim is not None:
            self.sim.stop()


def processes_mentioning(text: str) -> list[str]:
    """``pid command`` of every process (but this one) whose command line contains ``text``:
    every process the demo starts carries its work directory in its arguments."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if text in argv:
            found.append(f"{entry.name} {argv[:120]}")
    return found
