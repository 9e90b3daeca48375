"""The virtual node(s): registered like a virtual-kubelet node and kept alive.

:func:`node_manifest` is pure. :class:`VirtualNodeKeeper` creates or updates the Node, renews
its Lease in ``kube-node-lease`` every ``lease_renew`` seconds and writes its status (Ready and
the pressure conditions) every ``status_every`` seconds or when readiness changes, so the node
lifecycle controller never evicts healthy pods. Readiness follows Vast: when Vast has been
unreachable for longer than ``unreachable_after`` seconds, the node turns NotReady. The condition
``OfferSearchPaused`` says whether the offers the cluster places pods on are fresh: ``True`` (reason
``SearchQuotaExceeded``) while Vast's search quota stops the market watcher, with when searching
resumes; it is written at once when that changes. Its only
address is the ``InternalIP`` of the kubelet API (``kubectl logs``, :mod:`controller.kubelet_api`)
with that API's port in ``daemonEndpoints``; without one, no address and port 0, so the API
server never looks a name up.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .kube import micro_time, KubeError, KubeGateway

log = logging.getLogger(__name__)

TAINT_KEY = "virtual-kubelet.io/provider"
TAINT_VALUE = "vast"
VIRTUAL_NODE_LABEL = "vast.ai/virtual-node"
NODE_LEASE_NAMESPACE = "kube-node-lease"


@dataclass(frozen=True, slots=True)
class NodeShape:
    """What a virtual node advertises: capacity = allocatable. ``ephemeral_storage`` is there so
    that pods requesting ``ephemeral-storage`` schedule (each instance has its own disk)."""

    gpus: int = 8
    cpu: str = "256"
    memory: str = "2Ti"
    pods: int = 110
    ephemeral_storage: str = "100Ti"
    labels: Mapping[str, str] = field(default_factory=dict)


def _stamp(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")




def node_manifest(name: str, shape: NodeShape, *, version: str) -> dict[str, Any]:
    labels = {
        "type": "virtual-kubelet",
        "kubernetes.io/role": "agent",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        # The deprecated spellings, still in many charts' nodeSelectors (kubelets still set them).
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/exclude-from-external-load-balancers": "true",
        VIRTUAL_NODE_LABEL: "true",
        **shape.labels,
    }
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": TAINT_KEY, "value": TAINT_VALUE, "effect": "NoSchedule"}],
                 "providerID": f"vast://{name}"},
    }


@dataclass(frozen=True, slots=True)
class KubeletEndpoint:
    """Where the API server reaches the node's kubelet API (``kubectl logs``): an IP address,
    never a name (a name would be resolved through the API server's DNS), and a port."""

    address: str
    port: int


def node_addresses(endpoint: KubeletEndpoint | None) -> dict[str, Any]:
    """``addresses`` and ``daemonEndpoints`` of the node status: only an ``InternalIP`` (the list
    is replaced, so an older ``Hostname`` entry goes), or none and port 0 without an endpoint."""
    addresses: list[dict[str, str]] = [{"$patch": "replace"}]
    if endpoint is not None:
        addresses.append({"type": "InternalIP", "address": endpoint.address})
    return {"addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": endpoint.port if endpoint else 0}}}


@dataclass(frozen=True, slots=True)
class MarketCondition:
    """The ``OfferSearchPaused`` condition: ``paused`` with a ``reason`` and a ``message``."""

    paused: bool
    reason: str
    message: str


MARKET_CONDITION = "OfferSearchPaused"


def node_status(shape: NodeShape, *, ready: bool, reason: str, message: str, now: float,
                previous: Mapping[str, Any] | None, version: str,
                endpoint: KubeletEndpoint | None = None, market: MarketCondition | None = None) -> dict[str, Any]:
    capacity = {"cpu": shape.cpu, "memory": shape.memory, "pods": str(shape.pods),
                "ephemeral-storage": shape.ephemeral_storage, "nvidia.com/gpu": str(shape.gpus)}
    old = {c.get("type"): c for c in ((previous or {}).get("conditions") or [])}

    def condition(kind: str, status: str, why: str, text: str) -> dict[str, Any]:
        before = old.get(kind) or {}
        since = before.get("lastTransitionTime") if before.get("status") == status else None
        return {"type": kind, "status": status, "reason": why, "message": text,
                "lastHeartbeatTime": _stamp(now), "lastTransitionTime": since or _stamp(now)}

    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("Ready", "True" if ready else "False", reason, message),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "virtual node"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "virtual node"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "virtual node"),
            condition("NetworkUnavailable", "False", "RouteCreated", "virtual node"),
        ] + ([condition(MARKET_CONDITION, "True" if market.paused else "False", market.reason, market.message)]
             if market is not None else []),
        "nodeInfo": {"kubeletVersion": version, "kubeProxyVersion": version, "operatingSystem": "linux",
                     "architecture": "amd64", "containerRuntimeVersion": "vast://1",
                     "osImage": "Vast.ai", "kernelVersion": "", "machineID": "", "systemUUID": "",
                     "bootID": ""},
        **node_addresses(endpoint),
    }


class VirtualNodeKeeper:
    def __init__(self, kube: KubeGateway, names: tuple[str, ...], shape: NodeShape, *,
                 vast_healthy: Callable[[], tuple[bool, str]], version: str = "v1.37.0-kube-vast",
                 lease_renew: float = 10.0, lease_seconds: int = 40, status_every: float = 60.0,
                 clock: Callable[[], float] = time.time, endpoint: KubeletEndpoint | None = None,
                 market: Callable[[], MarketCondition] | None = None) -> None:
        self.kube = kube
        self.market = market
        self.endpoint = endpoint
        self.names = names
        self.shape = shape
        self.vast_healthy = vast_healthy
        self.version = version
        self.lease_renew = lease_renew
        self.lease_seconds = lease_seconds
        self.status_every = status_every
        self.clock = clock
        self._last_status: dict[str, tuple[float, bool, bool | None]] = {}

    def ensure_nodes(self) -> None:
        for name in self.names:
            manifest = node_manifest(name, self.shape, version=self.version)
            current = self.kube.get_node(name)
            if current is None:
                try:
                    self.kube.create_node(manifest)
                    log.info("registered virtual node %s", name)
                except KubeError as exc:
                    if exc.status != 409:
                        raise
            # Exactly our taint: admission puts node.kubernetes.io/not-ready on every new Node, and
            # the node lifecycle controller (which would lift it once Ready) may not run everywhere.
            # Only done when (re)registering, so it never fights that controller afterwards.
            self.kube.patch_node(name, {"metadata": {"labels": manifest["metadata"]["labels"]},
                                        "spec": manifest["spec"]})
            self._last_status.pop(name, None)

    def _renew_lease(self, name: str, now: float) -> None:
        body: dict[str, Any] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": self.lease_seconds,
                         "renewTime": micro_time(now)}}
        lease = self.kube.get_lease(NODE_LEASE_NAMESPACE, name)
        if lease is None:
            node = self.kube.get_node(name)
            if node is not None:
                body["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name,
                                                        "uid": node["metadata"]["uid"]}]
            self.kube.create_lease(NODE_LEASE_NAMESPACE, body)
        else:
            lease["spec"] = {**(lease.get("spec") or {}), **body["spec"]}
            self.kube.replace_lease(NODE_LEASE_NAMESPACE, lease)

    def heartbeat(self) -> None:
        """Renew every node's lease, and write its status when due or when readiness changed."""
        now = self.clock()
        ready, message = self.vast_healthy()
        market = self.market() if self.market is not None else None
        paused = market.paused if market is not None else None
        for name in self.names:
            try:
                self._renew_lease(name, now)
                last = self._last_status.get(name)
                if last is None or last[1] != ready or last[2] != paused or now - last[0] >= self.status_every:
                    node = self.kube.get_node(name)
                    if node is None:
                        self.ensure_nodes()
                        node = self.kube.get_node(name)
                    status = node_status(self.shape, ready=ready, now=now, version=self.version,
                                         reason="KubeletReady" if ready else "VastUnreachable",
                                         message=message, previous=(node or {}).get("status"),
                                         endpoint=self.endpoint, market=market)
                    self.kube.patch_node_status(name, status)
                    self._last_status[name] = (now, ready, paused)
            except KubeError as exc:
                log.warning("virtual node %s heartbeat failed: %s", name, exc)

    def run(self, stop: threading.Event, leading: threading.Event) -> None:
        registered = False
        while not stop.is_set():
            if not leading.wait(1.0):
                registered = False
                continue
            try:
                if not registered:
                    self.ensure_nodes()
                    registered = True
                self.heartbeat()
            except KubeError as exc:
                log.warning("virtual node upkeep failed: %s", exc)
            stop.wait(self.lease_renew)
