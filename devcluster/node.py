"""A real node for the test bed: containerd, runc and a kubelet built from the pinned module
(``tools/build-node.sh``), in a network namespace of their own, registered with a
:class:`~devcluster.cluster.ControlPlane`, running pods from images imported from archives (the
kube-vast image of ``make image``) with no registry.

Layout of one :class:`Node` (``n``: a block picked free on this machine)::

    root namespace                                    namespace kube-vast-node-<id>
    kvh<id>  198.19.<n>.1/30   <---- veth ---->       eth0  198.19.<n>.2/30 (the node's InternalIP)
    route 198.18.<n>.0/24 via 198.19.<n>.2            kvbr0 198.18.<n>.1/24: the CNI bridge, one
    API server forwarder on 198.19.<n>.1                veth per pod, host-local addresses

- **Processes.** containerd starts in the node's network namespace and in a private mount
  namespace (``unshare --mount --propagation private``) with tmpfs on ``/run`` and
  ``/var/lib/cni``; the kubelet joins both namespaces (``nsenter``). Every mount they make (pod
  network namespaces, the kubelet's volumes and root directory, container root filesystems)
  lives in that mount namespace and disappears with its last process. containerd's root, state,
  socket, CNI configuration and IPAM data are in the node's work directory.
- **Traffic.** Pods reach the API server through a forwarder on the host end of the veth
  (the API server listens on 127.0.0.1 only); this machine reaches pods through the route to the
  pod subnet. Nothing is NATed and nothing leaves the machine.
- **cgroups.** The kubelet's ``cgroupRoot`` is ``/kube-vast-node-<id>`` in every hierarchy
  (cgroupfs driver; cgroup v1 allowed with ``failCgroupV1: false``).
- **This machine's limits**, worked around: no ``CAP_SYS_RESOURCE``, so no process may lower its
  ``oom_score_adj`` below 0 and runc refuses the kubelet's -998 for the pod sandbox; runc is
  called through a wrapper that raises negative ``oomScoreAdj`` values to 0 (the only change).
  ``ip netns exec`` remounts /sys and hides the cgroup mounts: ``nsenter`` is used instead.
- **Teardown** (:meth:`Node.stop`): the kubelet and containerd are stopped, every process left in
  the node's mount namespace (shims, pause and application processes) is killed, the cgroup tree
  is removed, then the route, the veth pair and the network namespace. :meth:`Node.leftovers`
  lists whatever of it is still there (the tests assert it is empty). Each node is recorded under
  ``/run/kube-vast-node`` while it runs; the next node's start removes whatever one whose owner
  was SIGKILLed (no teardown ran) left: its processes, cgroups and network
  (:func:`reclaim_abandoned`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .binaries import cache_root, read_versions
from .cluster import ControlPlane
from .clusterdns import CLUSTER_DOMAIN, ClusterDNS
from .processes import ManagedProcess

PAUSE_IMAGE = "kube-vast.local/pause:3.10"
BUILD_SCRIPT = "tools/build-node.sh"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter", "unshare", "ip")
POD_RANGE = ipaddress.ip_network("198.18.0.0/16")   # RFC 2544 benchmarking range: pods
LINK_RANGE = ipaddress.ip_network("198.19.0.0/16")  # and the node links


class NodeError(RuntimeError):
    """The node could not be made, started or removed; the message says which step failed."""


def node_dir() -> Path:
    version = read_versions()["KUBERNETES_VERSION"]
    return cache_root() / f"node-{version}"


def unavailable() -> str | None:
    """Why no node can run here, or None."""
    if os.geteuid() != 0:
        return "not root (containerd, runc and the kubelet need root)"
    missing = [t for t in HOST_TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install containerd runc iproute2 util-linux; .ci/run does)"
    if _cni_bin_dir() is None:
        return "no CNI plugins (apt-get install containernetworking-plugins)"
    d = node_dir()
    for f in (d / "bin" / "kubelet", d / "pause.tar"):
        if not f.is_file():
            return f"{f} is missing: run {BUILD_SCRIPT}"
    return None


def _cni_bin_dir() -> str | None:
    for d in CNI_BIN_DIRS:
        if Path(d, "bridge").is_file() and Path(d, "host-local").is_file():
            return d
    return None


def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NodeError(f"{' '.join(argv)}: {e}") from e
    if check and done.returncode != 0:
        raise NodeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done


# --- the API server forwarder ---------------------------------------------------------------------

class Forwarder:
    """TCP from ``listen`` (the host end of the node's link) to ``target`` (127.0.0.1:port)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self._server = socket.create_server(listen, reuse_port=False)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        t = threading.Thread(target=self._accept, name="node-apiserver-forwarder", daemon=True)
        t.start()
        self._threads.append(t)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    def _accept(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self._server], [], [], 0.2)
            if not r:
                continue
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                continue
            with self._lock:
                self._conns |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            a.settimeout(None)
            b.settimeout(None)
            while not self._stop.is_set():
                r, _, _ = select.select([a, b], [], [], 0.5)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                with self._lock:
                    self._conns.discard(s)
                s.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)


# --- the network ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeNetwork:
    ident: str
    block: int

    @property
    def netns(self) -> str:
        return f"kube-vast-node-{self.ident}"

    @property
    def host_if(self) -> str:
        return f"kvh{self.ident}"

    @property
    def host_ip(self) -> str:
        return f"198.19.{self.block}.1"

    @property
    def node_ip(self) -> str:
        return f"198.19.{self.block}.2"

    @property
    def pod_cidr(self) -> str:
        return f"198.18.{self.block}.0/24"

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    @classmethod
    def pick(cls) -> NodeNetwork:
        routes = _run("ip", "-4", "route", "show").stdout
        taken = {line.split()[0] for line in routes.splitlines() if line}
        for _ in range(200):
            block = random.randint(1, 254)
            if f"198.18.{block}.0/24" not in taken and f"198.19.{block}.0/30" not in taken:
                return cls(ident=os.urandom(3).hex(), block=block)
        raise NodeError("no free block in 198.18.0.0/16 for a node's pods")

    def create(self) -> None:
        ns, n = self.netns, ["ip", "-n", self.netns]
        _run("ip", "netns", "add", ns)
        try:
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            _run(*n, "link", "set", "lo", "up")
            _run(*n, "addr", "add", f"{self.node_ip}/30", "dev", "eth0")
            _run(*n, "link", "set", "eth0", "up")
            _run(*n, "route", "add", "default", "via", self.host_ip)
            _run("ip", "route", "add", self.pod_cidr, "via", self.node_ip)
            # The node routes between its pods' bridge and its link (a per-namespace setting).
            _run("nsenter", f"--net={self.netns_path}", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            # A pod reaching a Service whose endpoint is on the same bridge goes through kube-proxy's
            # rules only if bridged traffic passes iptables.
            _run("nsenter", f"--net={self.netns_path}", "sysctl", "-q", "-w",
                 "net.bridge.bridge-nf-call-iptables=1", check=False)
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        _run("ip", "route", "del", self.pod_cidr, check=False)
        _run("ip", "link", "del", self.host_if, check=False)
        _run("ip", "netns", "del", self.netns, check=False)

    def leftovers(self) -> list[str]:
        out = []
        if self.netns in _run("ip", "netns", "list").stdout.split():
            out.append(f"network namespace {self.netns}")
        if _run("ip", "link", "show", self.host_if, check=False).returncode == 0:
            out.append(f"interface {self.host_if}")
        if _run("ip", "route", "show", self.pod_cidr).stdout.strip():
            out.append(f"route to {self.pod_cidr}")
        return out


# --- the node -------------------------------------------------------------------------------------

def _cgroup_hierarchies() -> list[Path]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2"):
            out.append(Path(fields[1]))
    return out


def _mnt_ns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def _node_pids(cgroup_root: str, mnt_ns: int | None) -> list[int]:
    """A node's processes: those in its mount namespace (containerd, the kubelet, the shims) and
    those in its cgroup tree (every container: each has a mount namespace of its own)."""
    out: set[int] = set()
    if mnt_ns is not None:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and _mnt_ns(int(entry)) == mnt_ns:
                out.add(int(entry))
    for h in _cgroup_hierarchies():
        top = h / cgroup_root.lstrip("/")
        for procs in top.rglob("cgroup.procs") if top.is_dir() else ():
            try:
                out.update(int(p) for p in procs.read_text().split())
            except OSError:
                continue
    return sorted(out)


def _kill_node_processes(cgroup_root: str, mnt_ns: int | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while pids := _node_pids(cgroup_root, mnt_ns):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)


def _remove_cgroup_tree(cgroup_root: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    for h in _cgroup_hierarchies():
        top = h / cgroup_root.lstrip("/")
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*dirs, top]:
            while d.is_dir():
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.1)


# Each running node is recorded here (owner pid, network, cgroup root, mount namespace), so that
# the next node removes what one whose owner was killed (SIGKILL: no teardown ran) left behind.
STATE_DIR = Path(os.environ.get("KUBE_VAST_NODE_STATE", "/run/kube-vast-node"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reclaim_abandoned() -> list[str]:
    """Remove the nodes whose owner process is gone; the idents removed."""
    removed = []
    for f in sorted(STATE_DIR.glob("*.json")) if STATE_DIR.is_dir() else ():
        try:
            state = json.loads(f.read_text())
            owner, ident, block = int(state["owner"]), str(state["ident"]), int(state["block"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(owner):
            continue
        cgroup_root = f"/kube-vast-node-{ident}"
        _kill_node_processes(cgroup_root, state.get("mnt_ns"))
        _remove_cgroup_tree(cgroup_root)
        NodeNetwork(ident=ident, block=block).delete()
        f.unlink(missing_ok=True)
        removed.append(ident)
    return removed


class Node:
    """One real node: ``Node(control_plane, workdir).start()`` … ``stop()``."""

    def __init__(self, control_plane: ControlPlane, workdir: Path, *, name: str = "kube-vast-node-1",
                 images: tuple[Path, ...] = (), services: bool = False) -> None:
        reason = unavailable()
        if reason is not None:
            raise NodeError(f"no node can run here: {reason}")
        self.cp = control_plane
        self.name = name
        self.workdir = Path(workdir)
        self.images = tuple(images)
        self.network = NodeNetwork.pick()
        self.cgroup_root = f"/kube-vast-node-{self.network.ident}"
        self.containerd: ManagedProcess | None = None
        self.kubelet: ManagedProcess | None = None
        self.forwarder: Forwarder | None = None
        # Services for the pods (services=True): kube-proxy in the node's namespaces, the cluster
        # DNS on the node's link, and the 'kubernetes' Service's endpoint (the forwarder).
        self.services = services
        self.kube_proxy: ManagedProcess | None = None
        self.dns: ClusterDNS | None = None
        self._mnt_ns: int | None = None

    # paths
    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def start(self, timeout: float = 120) -> Node:
        reclaim_abandoned()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._record()
            self.network.create()
            self.forwarder = Forwarder((self.network.host_ip, 0), ("127.0.0.1", self._apiserver_port()))
            if self.services:
                self.dns = ClusterDNS(self.network.host_ip, self.cp.api_client())
                self._publish_apiserver_endpoint()
            for h in _cgroup_hierarchies():
                (h / self.cgroup_root.lstrip("/")).mkdir(exist_ok=True)
            self._write_configs()
            self._start_containerd(timeout)
            for image in (node_dir() / "pause.tar", *self.images):
                self.ctr("images", "import", "--snapshotter", "native", str(image), timeout=300)
            self._start_kubelet(timeout)
            if self.services:
                self._start_kube_proxy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _apiserver_port(self) -> int:
        return int(self.cp.url.rsplit(":", 1)[1])

    def ctr(self, *args: str, timeout: float = 60) -> str:
        """``ctr`` against this node's containerd, namespace k8s.io (the kubelet's)."""
        return _run("ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args, timeout=timeout).stdout

    def _write_configs(self) -> None:
        w, net = self.workdir, self.network
        for d in ("containerd", "cni", "cni-ipam", "bin", "kubelet", "kubelet-pki", "pod-logs", "logs"):
            (w / d).mkdir(parents=True, exist_ok=True)
        runc = w / "bin" / "runc"
        runc.write_text(_RUNC_WRAPPER.format(runc=shutil.which("runc")))
        runc.chmod(0o755)
        (w / "containerd.toml").write_text(_CONTAINERD_CONFIG.format(
            root=w / "containerd" / "root", state=w / "containerd" / "state", socket=self.socket,
            pause=PAUSE_IMAGE, node_ip=net.node_ip, runc=runc, cni_bin=_cni_bin_dir(), cni_conf=w / "cni"))
        (w / "cni" / "10-kube-vast-node.conflist").write_text(_CNI_CONFIG.format(
            subnet=net.pod_cidr, ipam=w / "cni-ipam"))
        (w / "resolv.conf").write_text("")  # no DNS: pods resolve nothing outside the cluster
        cfg = yaml.safe_load(self.cp.kubeconfig_for(f"system:node:{self.name}", ["system:nodes"]).read_text())
        for c in cfg["clusters"]:
            host, port = self.forwarder.address if self.forwarder else ("", 0)
            c["cluster"]["server"] = f"https://{host}:{port}"
            c["cluster"]["tls-server-name"] = "localhost"  # a name in the API server's certificate
        (w / "kubelet.kubeconfig").write_text(yaml.safe_dump(cfg))
        (w / "kubelet.yaml").write_text(yaml.safe_dump(self._kubelet_config()))

    def _publish_apiserver_endpoint(self) -> None:
        """The 'kubernetes' Service's EndpointSlice: the forwarder (the control plane runs with
        no endpoint reconciler, its API server listening on 127.0.0.1 only)."""
        from kubernetes import client

        assert self.forwarder is not None
        host, port = self.forwarder.address
        body: Any = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "kubernetes",
                                        "endpointslice.kubernetes.io/managed-by": "kube-vast-node"}},
                "addressType": "IPv4", "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
        api = client.DiscoveryV1Api(self.cp.api_client())
        try:
            api.create_namespaced_endpoint_slice("default", body)
        except client.ApiException as e:
            if e.status != 409:
                raise
            api.replace_namespaced_endpoint_slice("kubernetes", "default", body)

    def _start_kube_proxy(self, timeout: float) -> None:
        assert self.containerd is not None and self.containerd.pid is not None
        w = self.workdir
        cfg = yaml.safe_load(self.cp.kubeconfig_for("system:kube-proxy").read_text())
        assert self.forwarder is not None
        host, port = self.forwarder.address
        for c in cfg["clusters"]:
            c["cluster"]["server"] = f"https://{host}:{port}"
            c["cluster"]["tls-server-name"] = "localhost"
        (w / "kube-proxy.kubeconfig").write_text(yaml.safe_dump(cfg))
        (w / "kube-proxy.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(w / "kube-proxy.kubeconfig")},
            "mode": "iptables", "clusterCIDR": self.network.pod_cidr, "hostnameOverride": self.name,
            "bindAddress": self.network.node_ip,
            "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
            # No conntrack sysctls: this machine's kernel settings are not the node's to change.
            "conntrack": {"maxPerCore": 0, "min": 0},
        }))
        argv = ["nsenter", f"--target={self.containerd.pid}", "--mount", "--net", "--",
                str(node_dir() / "bin" / "kube-proxy"), f"--config={w / 'kube-proxy.yaml'}", "--v=1"]
        self.kube_proxy = ManagedProcess("kube-proxy", argv, self.logs / "kube-proxy.log").start()

        def healthy() -> bool:
            out = _run("nsenter", f"--net={self.network.netns_path}", "iptables-save", "-t", "nat", check=False)
            return "KUBE-SERVICES" in out.stdout and "default/kubernetes:https" in out.stdout

        self.kube_proxy.wait_until(healthy, timeout=timeout, what="program the Services")

    def _kubelet_config(self) -> dict[str, Any]:
        w = self.workdir
        dns: dict[str, Any] = {}
        if self.services:
            dns = {"clusterDNS": [self.network.host_ip], "clusterDomain": CLUSTER_DOMAIN}
        return dns | {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.network.node_ip,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.cp.ca_file)}},
            "authorization": {"mode": "AlwaysAllow"},
            "failSwapOn": False,
            "resolvConf": str(w / "resolv.conf"),
            "podLogsDir": str(w / "pod-logs"),
            # Thresholds this shared machine never crosses by itself: no eviction, no image GC.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "registerNode": True,
            "staticPodPath": "",
            "syncFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
        }

    def _start_containerd(self, timeout: float) -> None:
        w = self.workdir
        # Private mounts: tmpfs on /run (pod network namespaces, shim sockets, runc state) and on
        # /var/lib/cni (the CNI result cache), both gone with the namespace.
        script = ("mount -t tmpfs -o mode=755 kube-vast-node /run && mkdir -p /var/lib/cni && "
                  "mount -t tmpfs kube-vast-node /var/lib/cni && exec containerd --config \"$0\"")
        argv = ["nsenter", f"--net={self.network.netns_path}", "unshare", "--mount", "--propagation", "private",
                "sh", "-c", script, str(w / "containerd.toml")]
        self.containerd = ManagedProcess("containerd", argv, self.logs / "containerd.log").start()
        self.containerd.wait_until(self.socket.exists, timeout=timeout, what="open its socket")
        self.containerd.wait_until(lambda: bool(self.ctr("version")), timeout=timeout, what="answer")
        assert self.containerd.pid is not None
        self._mnt_ns = _mnt_ns(self.containerd.pid)
        self._record()

    def _start_kubelet(self, timeout: float) -> None:
        assert self.containerd is not None and self.containerd.pid is not None
        binary = node_dir() / "bin" / "kubelet"
        w = self.workdir
        argv = ["nsenter", f"--target={self.containerd.pid}", "--mount", "--net", "--",
                str(binary), f"--config={w / 'kubelet.yaml'}", f"--kubeconfig={w / 'kubelet.kubeconfig'}",
                f"--root-dir={w / 'kubelet'}", f"--cert-dir={w / 'kubelet-pki'}",
                f"--hostname-override={self.name}", f"--node-ip={self.network.node_ip}", "--v=1"]
        self.kubelet = ManagedProcess("kubelet", argv, self.logs / "kubelet.log").start()
        self.kubelet.wait_until(self.ready, timeout=timeout, what=f"register node {self.name} Ready")
        self._untaint_not_ready()

    def _untaint_not_ready(self) -> None:
        """The test control plane runs no node lifecycle controller (the virtual nodes of other
        tests have no kubelet): take off the not-ready taint the kubelet registered with, as that
        controller does once the node is Ready."""
        from kubernetes import client

        core = client.CoreV1Api(self.cp.api_client())
        node = core.read_node(self.name)
        current = (node.spec.taints if node.spec is not None else None) or []
        taints = [{"key": t.key, "value": t.value, "effect": t.effect} for t in current
                  if t.key != "node.kubernetes.io/not-ready"]
        if len(taints) != len(current):
            core.patch_node(self.name, {"spec": {"taints": taints or None}})

    def ready(self) -> bool:
        from kubernetes import client

        try:
            node = client.CoreV1Api(self.cp.api_client()).read_node(self.name)
        except client.ApiException:
            return False
        conditions = (node.status.conditions if node.status is not None else None) or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    # --- teardown ---------------------------------------------------------------------------------

    def _own_pids(self) -> list[int]:
        return _node_pids(self.cgroup_root, self._mnt_ns)

    @property
    def _state_file(self) -> Path:
        return STATE_DIR / f"{self.network.ident}.json"

    def _record(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self._state_file.write_text(json.dumps({"owner": os.getpid(), "ident": self.network.ident,
                                                "block": self.network.block, "mnt_ns": self._mnt_ns}))

    def stop(self) -> None:
        """Stop everything of the node; idempotent. :meth:`leftovers` says what, if anything, stayed."""
        if self.kube_proxy is not None:
            self.kube_proxy.stop()
        if self.kubelet is not None:
            self.kubelet.stop()
        if self.containerd is not None:
            self.containerd.stop()
        _kill_node_processes(self.cgroup_root, self._mnt_ns)
        if self.forwarder is not None:
            self.forwarder.close()
            self.forwarder = None
        if self.dns is not None:
            self.dns.close()
            self.dns = None
        _remove_cgroup_tree(self.cgroup_root)
        self.network.delete()
        self._state_file.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """What of the node is still there: processes, mounts, interfaces, routes, cgroups."""
        out = [f"process {pid}" for pid in self._own_pids()]
        prefix = str(self.workdir.resolve())
        for line in Path("/proc/self/mounts").read_text().splitlines():
            point = line.split()[1]
            if point.startswith(prefix) or self.network.netns in point:
                out.append(f"mount {point}")
        out += self.network.leftovers()
        out += [f"cgroup {h / self.cgroup_root.lstrip('/')}" for h in _cgroup_hierarchies()
                if (h / self.cgroup_root.lstrip("/")).exists()]
        return out

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_RUNC_WRAPPER = """#!/bin/sh
# runc for the test bed's node: this machine lacks CAP_SYS_RESOURCE, so a negative oom_score_adj
# (the kubelet's -998 for pod sandboxes) is refused; raise it to 0. Nothing else changes.
prev=""
for a in "$@"; do
  case "$prev" in
    --bundle|-b) [ -f "$a/config.json" ] && sed -i -E 's/"oomScoreAdj":-[0-9]+/"oomScoreAdj":0/' "$a/config.json" ;;
    --process|-p) [ -f "$a" ] && sed -i -E 's/"oomScoreAdj":-[0-9]+/"oomScoreAdj":0/' "$a" ;;
  esac
  prev="$a"
done
exec {runc} "$@"
"""

_CONTAINERD_CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.overlayfs", "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "{node_ip}"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"""

_CNI_CONFIG = """{{"cniVersion": "0.4.0", "name": "kube-vast-node", "plugins": [
  {{"type": "bridge", "bridge": "kvbr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{subnet}"}}]],
              "routes": [{{"dst": "0.0.0.0/0"}}], "dataDir": "{ipam}"}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}]}}
"""

