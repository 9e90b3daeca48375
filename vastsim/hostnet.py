"""Vast hosts on their own network: a network namespace with one veth pair per simulated *site*
(a host's uplink), so that the instances' ports are reached over a real link and a partition
between this machine and a host is made by taking that host's link down.

Layout of one :class:`HostNetwork` (block ``b``, a /27 of the documentation ranges
198.51.100.0/24 and 203.0.113.0/24, so that several runs on one machine never collide)::

    root namespace (the controller, the tests)        namespace kube-vast-b<b>
    kvb<b>r<k>  <base + 8k + 1>/29   <--- veth --->   kvb<b>h<k>  <base + 8k + 2>/29

Site ``k``'s host address is ``base + 8k + 2``; the instances placed on that site listen there
(sockets are created inside the namespace by a short-lived thread that enters it with
``setns(2)``, then served by the simulator's port thread like any other socket). A catch-all
``unreachable`` route for the block (metric 4000) keeps test traffic on this machine whatever
happens to the links.

A partition (:meth:`HostNetwork.partition`) sets the host end of the site's veth down: packets
from this machine are silently dropped (a connect times out, or finds no route to the host once
the neighbour entry expires), exactly as when a host's uplink fails. The Vast API is not on that
path: it still answers for the host. :meth:`heal` sets the link up again.

Needs root (``CAP_NET_ADMIN`` and ``CAP_SYS_ADMIN``) and iproute2's ``ip``; :func:`unavailable`
says why a network cannot be made. Blocks are taken under a file lock; a block whose owner
process is gone (killed before it could clean up) is reclaimed by the next :func:`create`.
Standard library only.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RANGES = ("198.51.100.0/24", "203.0.113.0/24")  # RFC 5737 documentation ranges
BLOCK_PREFIX = 27
SITE_PREFIX = 29
MAX_SITES = 2 ** (SITE_PREFIX - BLOCK_PREFIX)  # sites per block
STATE_DIR = Path(os.environ.get("KUBE_VAST_HOSTNET_STATE", "/run/kube-vast-hostnet"))
_CLONE_NEWNET = 0x40000000
_IP_TIMEOUT = 30.0


class HostNetworkError(RuntimeError):
    """A host network could not be made, changed or removed; the message says which command failed."""


@dataclass(frozen=True, slots=True)
class Site:
    """One host's uplink: the root end (this machine's side) and the host end of a veth pair."""

    index: int
    address: str       # where the site's instances listen (the host end)
    gateway: str       # this machine's end of the link
    root_link: str
    host_link: str


def unavailable() -> str | None:
    """Why no host network can be made here (None: it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); this process is not root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is missing (Debian: apt-get install iproute2)"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces (/proc/self/ns/net is missing)"
    return None


def _blocks() -> list[ipaddress.IPv4Network]:
    return [b for r in RANGES for b in ipaddress.IPv4Network(r).subnets(new_prefix=BLOCK_PREFIX)]


def _ip(*args: str, namespace: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    argv = ["ip", *(["-n", namespace] if namespace else []), *args]
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostNetworkError(f"`{' '.join(argv)}` failed: {exc}") from None
    if check and done.returncode != 0:
        raise HostNetworkError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HostNetwork:
    """A namespace with ``sites`` host links (see the module docstring). Make one with
    :func:`create`; :meth:`close` removes it (idempotent)."""

    def __init__(self, block: int, network: ipaddress.IPv4Network, sites: int) -> None:
        self.block = block
        self.network = network
        self.namespace = f"kube-vast-b{block}"
        base = int(network.network_address)
        self.sites = [Site(k, str(ipaddress.IPv4Address(base + 8 * k + 2)), str(ipaddress.IPv4Address(base + 8 * k + 1)),
                           f"kvb{block}r{k}", f"kvb{block}h{k}") for k in range(sites)]
        self._lock = threading.Lock()
        self._down: set[int] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"HostNetwork({self.namespace}, {self.network}, sites {', '.join(s.address for s in self.sites)})"

    # --- making it ---------------------------------------------------------------------------------

    def _build(self) -> None:
        ns = self.namespace
        _ip("netns", "add", ns)
        root = []
        for s in self.sites:
            root += [f"link add {s.root_link} type veth peer name {s.host_link} netns {ns}",
                     f"addr add {s.gateway}/{SITE_PREFIX} dev {s.root_link}",
                     f"link set {s.root_link} up"]
        root.append(f"route replace unreachable {self.network} metric 4000")
        _ip("-batch", "-", stdin="\n".join(root) + "\n")
        inside = ["link set lo up"]
        for s in self.sites:
            inside += [f"addr add {s.address}/{SITE_PREFIX} dev {s.host_link}", f"link set {s.host_link} up"]
        _ip("-batch", "-", namespace=ns, stdin="\n".join(inside) + "\n")

    def close(self) -> None:
        """Remove the namespace (its veth pairs go with it) and the block's route; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _remove_block(self.block, self.network)

    # --- using it ----------------------------------------------------------------------------------

    def site(self, index: int) -> Site:
        return self.sites[index % len(self.sites)]

    def site_of(self, address: str) -> Site:
        for s in self.sites:
            if s.address == address:
                return s
        raise KeyError(f"{address} is not a host address of {self.namespace}")

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A new IPv4 socket inside the namespace (bind it to a site's address)."""
        made: list[socket.socket] = []
        failed: list[BaseException] = []

        def enter_and_make() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{self.namespace}", os.O_RDONLY)
                try:
                    if libc.setns(fd, _CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns into {self.namespace}: {os.strerror(err)}")
                finally:
                    os.close(fd)
                made.append(socket.socket(socket.AF_INET, kind))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                failed.append(exc)

        # The thread ends in the namespace: a thread of its own, never one of the caller's.
        thread = threading.Thread(target=enter_and_make, name=f"netns-{self.namespace}", daemon=True)
        thread.start()
        thread.join()
        if failed:
            raise failed[0]
        return made[0]

    def partition(self, address: str) -> None:
        """Cut the host at ``address`` off from this machine: its link goes down."""
        site = self.site_of(address)
        _ip("link", "set", site.host_link, "down", namespace=self.namespace)
        with self._lock:
            self._down.add(site.index)

    def heal(self, address: str | None = None) -> None:
        """Bring the host at ``address`` (every host: None) back on the network."""
        sites = self.sites if address is None else [self.site_of(address)]
        for site in sites:
            _ip("link", "set", site.host_link, "up", namespace=self.namespace)
            with self._lock:
                self._down.discard(site.index)

    def partitioned(self) -> list[str]:
        """The host addresses cut off now."""
        with self._lock:
            return [self.sites[i].address for i in sorted(self._down)]


def _lock_file() -> int:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(STATE_DIR / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _remove_block(block: int, network: ipaddress.IPv4Network) -> None:
    # The links first: a namespace is only destroyed (asynchronously) once no socket holds it.
    links = "".join(f"link delete kvb{block}r{k}\n" for k in range(MAX_SITES))
    _ip("-force", "-batch", "-", stdin=links, check=False)
    _ip("netns", "delete", f"kube-vast-b{block}", check=False)
    _ip("route", "delete", "unreachable", str(network), "metric", "4000", check=False)
    try:
        (STATE_DIR / f"b{block}.pid").unlink()
    except OSError:
        pass


def create(sites: int = 4) -> HostNetwork:
    """Make a host network of ``sites`` hosts on a free block; raises HostNetworkError (with
    :func:`unavailable`'s reason when it cannot be made at all)."""
    reason = unavailable()
    if reason:
        raise HostNetworkError(reason)
    if not 1 <= sites <= MAX_SITES:
        raise ValueError(f"sites must be 1 to {MAX_SITES}, got {sites!r}")
    lock = _lock_file()
    try:
        namespaces = {line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()}
        for index, network in enumerate(_blocks()):
            pid_file = STATE_DIR / f"b{index}.pid"
            try:
                owner = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                owner = None
            if owner is not None and _alive(owner):
                continue
            if owner is not None or f"kube-vast-b{index}" in namespaces:
                log.info("reclaiming host network block %d (%s) of a process that is gone", index, network)
                _remove_block(index, network)
            pid_file.write_text(str(os.getpid()))
            net = HostNetwork(index, network, sites)
            try:
                net._build()
            except HostNetworkError:
                net.close()
                raise
            log.info("host network %r", net)
            return net
        raise HostNetworkError(f"every host network block of {', '.join(RANGES)} is in use by a live process")
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
