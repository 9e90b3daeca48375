"""EndpointSlices that point a Service at a pod's Vast instance (public IP, random host ports).

Contract
--------
- Pure: Services, pods and EndpointSlices are plain Kubernetes JSON dicts; nothing here talks to
  the API server. The reconciler applies ``to_apply`` and deletes ``to_delete`` from
  :func:`plan_slices`.
- One ``discovery.k8s.io/v1`` EndpointSlice per (Service, pod), named by :func:`slice_name`
  (deterministic, so a restarted controller finds and updates its own slices), labelled
  ``kubernetes.io/service-name`` (kube-proxy and CoreDNS merge it with the Service's other slices),
  ``endpointslice.kubernetes.io/managed-by: MANAGED_BY`` (the built-in EndpointSlice controller
  leaves it alone) and ``vast.ai/pod-uid``, and owned by the Service (garbage-collected with it).
- A Service selects a pod (:func:`selects`) when they share a namespace, the Service has a
  non-empty ``spec.selector`` all of whose labels the pod carries, and the Service is not of type
  ExternalName. Like the built-in controller, pods in a terminal phase are never published.
- Ports: every TCP Service port whose ``targetPort`` (a number, a container port NAME, or absent =
  ``port``) resolves to a container port that Vast mapped to a host port is published as
  ``{name, port: host_port, protocol, appProtocol?}``. Nothing resolves → no slice (``None``).
  :func:`unserved_ports` says which ports of the selecting Services are not published, and why.
- The endpoint: ``addresses: [public IP]`` (``addressType`` IPv4 or IPv6 after the address),
  ``conditions`` as the built-in controller computes them: ``serving`` = the health check,
  ``terminating`` = the pod has a ``deletionTimestamp``, ``ready`` = serving and not terminating,
  or always with the Service's ``publishNotReadyAddresses``; ``targetRef`` to the pod and
  ``nodeName`` the virtual node (omitted when empty).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .shapes import mapping as _mapping, items as _list, text as _text

MANAGED_BY = "kube-vast-controller.vast.ai"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
POD_UID_LABEL = "vast.ai/pod-uid"
_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
_HASH_LENGTH = 12
_NAME_LIMIT = 63


@dataclass(frozen=True, slots=True)
class PortMapping:
    """One Service port resolved to the instance: ``service_port`` → ``container_port`` →
    ``host_port`` (on the instance's public IP)."""

    name: str
    service_port: int
    container_port: int
    host_port: int
    protocol: str = "TCP"
    app_protocol: str | None = None


def selects(service: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Does ``service`` select ``pod``? Services without a selector never do."""
    spec = _mapping(service.get("spec"))
    selector = _mapping(spec.get("selector"))
    if not selector or spec.get("type") == "ExternalName":
        return False
    if _namespace(service) != _namespace(pod):
        return False
    labels = _mapping(_mapping(pod.get("metadata")).get("labels"))
    return all(labels.get(key) == value for key, value in selector.items())


def slice_name(service_name: str, pod_uid: str) -> str:
    """``<service>-vast-<12 hex of sha256(service, uid)>``: a DNS label of at most 63 characters,
    the same for the same pair on every run (the service part is shortened when needed)."""
    digest = hashlib.sha256(f"{service_name}\0{pod_uid}".encode()).hexdigest()[:_HASH_LENGTH]
    suffix = f"-vast-{digest}"
    prefix = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in service_name.lower())
    prefix = prefix[:_NAME_LIMIT - len(suffix)].strip("-")
    return (prefix + suffix) if prefix else suffix[1:]


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of a Service, its ``targetPort`` resolved against the pod's container ports:
    ``container_port`` is ``None`` when a named ``targetPort`` matches no container port."""

    service: str
    name: str
    port: int
    target: int | str
    container_port: int | None
    protocol: str = "TCP"
    app_protocol: str | None = None

    def describe(self) -> str:
        """``Service june-tts port 8000 (http)``"""
        return f"Service {self.service} port {self.port}" + (f" ({self.name})" if self.name else "")


def service_ports(service: Mapping[str, Any], pod: Mapping[str, Any]) -> list[ServicePort]:
    """Every port of ``service`` (in its order) with the container port it targets on ``pod``:
    a number, a container port NAME, or absent = ``port``. Selection is not checked here."""
    container_ports = _container_ports(pod)
    service_name = _text(_mapping(service.get("metadata")).get("name"))
    out = []
    for raw in _list(_mapping(service.get("spec")).get("ports")):
        port = _mapping(raw)
        number = _port_number(port.get("port"))
        if number is None:
            continue
        target = port.get("targetPort")
        if target in (None, "", 0):
            target = number
        container_port = _port_number(target)
        if container_port is None and isinstance(target, str):
            container_port = container_ports.get(target)
        app = port.get("appProtocol")
        out.append(ServicePort(service_name, _text(port.get("name")), number,
                               target if isinstance(target, (int, str)) else str(target), container_port,
                               _text(port.get("protocol")) or "TCP", app if isinstance(app, str) and app else None))
    return out


def resolve_ports(service: Mapping[str, Any], pod: Mapping[str, Any],
                  host_ports: Mapping[int, int]) -> list[PortMapping]:
    """The Service's TCP ports that reach the instance, in the Service's order."""
    out = []
    for port in service_ports(service, pod):
        host_port = host_ports.get(port.container_port) if port.container_port is not None else None
        if port.protocol != "TCP" or port.container_port is None or host_port is None:
            continue
        out.append(PortMapping(port.name, port.port, port.container_port, host_port,
                               port.protocol, port.app_protocol))
    return out


def unserved_ports(services: Iterable[Mapping[str, Any]], pod: Mapping[str, Any],
                   host_ports: Mapping[int, int]) -> list[tuple[ServicePort, str]]:
    """The ports of the Services selecting ``pod`` that its instance does not serve, each with
    why: a named ``targetPort`` that matches no container port, a protocol other than TCP, or a
    container port the instance was rented without (Vast cannot add a port to a running
    instance: the Service was created or changed after the rental)."""
    out = []
    for service in services:
        if not selects(service, pod):
            continue
        for port in service_ports(service, pod):
            if port.protocol != "TCP":
                out.append((port, f"{port.protocol} ports are not published (only TCP)"))
            elif port.container_port is None:
                out.append((port, f"targetPort {port.target!r} names no container port of the pod"))
            elif port.container_port not in host_ports:
                out.append((port, f"container port {port.container_port} is not mapped by the Vast instance "
                                  "(the Service was created or changed after the rental, and Vast cannot add "
                                  "a port to a running instance: deleting the pod rents a new one with it)"))
    return out


def desired_slice(
    service: Mapping[str, Any],
    pod: Mapping[str, Any],
    *,
    public_ip: str | None,
    host_ports: Mapping[int, int],
    ready: bool,
    node_name: str,
) -> dict[str, Any] | None:
    """The EndpointSlice publishing ``pod``'s instance for ``service``; ``None`` when there is
    nothing to publish (no selection, no public IP, no pod UID, a terminal pod, no port resolves)."""
    meta = _mapping(pod.get("metadata"))
    uid = _text(meta.get("uid"))
    address_type = _address_type(public_ip)
    if (not uid or address_type is None or not selects(service, pod)
            or _mapping(pod.get("status")).get("phase") in _TERMINAL_PHASES):
        return None
    ports = resolve_ports(service, pod, host_ports)
    if not ports:
        return None

    service_meta = _mapping(service.get("metadata"))
    service_name = _text(service_meta.get("name"))
    namespace = _namespace(pod)
    terminating = bool(meta.get("deletionTimestamp"))
    publish_not_ready = _mapping(service.get("spec")).get("publishNotReadyAddresses") is True
    metadata: dict[str, Any] = {
        "name": slice_name(service_name, uid),
        "namespace": namespace,
        "labels": {
            SERVICE_NAME_LABEL: service_name,
            MANAGED_BY_LABEL: MANAGED_BY,
            POD_UID_LABEL: uid,
        },
    }
    service_uid = _text(service_meta.get("uid"))
    if service_uid:
        metadata["ownerReferences"] = [{
            "apiVersion": "v1", "kind": "Service", "name": service_name, "uid": service_uid,
            "controller": True, "blockOwnerDeletion": True,
        }]
    endpoint: dict[str, Any] = {
        "addresses": [public_ip],
        "conditions": {
            "ready": publish_not_ready or (ready and not terminating),
            "serving": ready,
            "terminating": terminating,
        },
        "targetRef": {"kind": "Pod", "namespace": namespace, "name": _text(meta.get("name")), "uid": uid},
    }
    if node_name:  # the API server refuses an empty nodeName
        endpoint["nodeName"] = node_name
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": address_type,
        "endpoints": [endpoint],
        "ports": [_slice_port(p) for p in ports],
    }


def mappings(
    service: Mapping[str, Any],
    pod: Mapping[str, Any],
    *,
    public_ip: str,
    host_ports: Mapping[int, int],
    cluster_domain: str = "cluster.local",
) -> list[tuple[str, int, str, int]]:
    """``(name.namespace.svc.cluster.local, service port, public ip, host port)`` for each
    published port — the input of :func:`vastmarket.explain.endpoint_lines`."""
    if not selects(service, pod):
        return []
    host = f"{_text(_mapping(service.get('metadata')).get('name'))}.{_namespace(service)}.svc.{cluster_domain}"
    return [(host, p.service_port, public_ip, p.host_port) for p in resolve_ports(service, pod, host_ports)]


def plan_slices(
    services: Iterable[Mapping[str, Any]],
    pod: Mapping[str, Any],
    existing_slices: Iterable[Mapping[str, Any]],
    *,
    public_ip: str | None,
    host_ports: Mapping[int, int],
    ready: bool,
    node_name: str,
) -> tuple[list[dict[str, Any]], list[str]]:
    """``(to_apply, to_delete)``: the desired slices whose content differs from the existing ones
    (or that do not exist yet), and the names of this pod's existing slices (label
    ``vast.ai/pod-uid``, managed by kube-vast, in the pod's namespace) that are no longer desired.
    Server-set metadata (resourceVersion, uid, managedFields...) and labels added by others are
    ignored in the comparison. Both lists are sorted by name."""
    desired: dict[str, dict[str, Any]] = {}
    for service in services:
        wanted = desired_slice(service, pod, public_ip=public_ip, host_ports=host_ports,
                               ready=ready, node_name=node_name)
        if wanted is not None:
            desired[wanted["metadata"]["name"]] = wanted
    mine = {_text(_mapping(s.get("metadata")).get("name")): s for s in existing_slices if _owned_by(s, pod)}
    to_apply = [desired[name] for name in sorted(desired)
                if name not in mine or not _same(desired[name], mine[name])]
    to_delete = sorted(name for name in mine if name not in desired)
    return to_apply, to_delete


# --- helpers -----------------------------------------------------------------------------------




def _namespace(obj: Mapping[str, Any]) -> str:
    return _text(_mapping(obj.get("metadata")).get("namespace")) or "default"


def _port_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and 0 < value < 65536 else None


def _container_ports(pod: Mapping[str, Any]) -> dict[str, int]:
    """Named TCP container ports of every container: ``{name: containerPort}``."""
    named: dict[str, int] = {}
    for container in _list(_mapping(pod.get("spec")).get("containers")):
        for port in _list(_mapping(container).get("ports")):
            port = _mapping(port)
            number, name = _port_number(port.get("containerPort")), _text(port.get("name"))
            if name and number is not None and (_text(port.get("protocol")) or "TCP") == "TCP":
                named.setdefault(name, number)
    return named


def _address_type(ip: str | None) -> str | None:
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return None
    return "IPv4" if address.version == 4 else "IPv6"


def _slice_port(port: PortMapping) -> dict[str, Any]:
    out: dict[str, Any] = {"name": port.name, "port": port.host_port, "protocol": port.protocol}
    if port.app_protocol:
        out["appProtocol"] = port.app_protocol
    return out


def _owned_by(slice_: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    meta = _mapping(slice_.get("metadata"))
    labels = _mapping(meta.get("labels"))
    uid = _text(_mapping(pod.get("metadata")).get("uid"))
    return (bool(uid) and labels.get(POD_UID_LABEL) == uid and labels.get(MANAGED_BY_LABEL) == MANAGED_BY
            and _namespace(slice_) == _namespace(pod) and bool(_text(meta.get("name"))))


_ENDPOINT_KEYS = ("addresses", "conditions", "nodeName", "targetRef")  # what kube-vast sets
_PORT_KEYS = ("name", "port", "protocol", "appProtocol")


def _content(slice_: Mapping[str, Any]) -> tuple[Any, ...]:
    """What kube-vast decides in a slice, in a comparable form."""
    meta = _mapping(slice_.get("metadata"))
    endpoints = [{k: _mapping(e).get(k) for k in _ENDPOINT_KEYS} for e in _list(slice_.get("endpoints"))]
    ports = sorted(({k: _mapping(p).get(k) for k in _PORT_KEYS} for p in _list(slice_.get("ports"))),
                   key=lambda p: (str(p["name"] or ""), str(p["port"])))
    owners = [{k: _mapping(o).get(k) for k in ("apiVersion", "kind", "name", "uid", "controller",
                                              "blockOwnerDeletion")}
              for o in _list(meta.get("ownerReferences"))]
    return slice_.get("addressType"), endpoints, ports, owners


def _same(desired: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    labels = _mapping(_mapping(existing.get("metadata")).get("labels"))
    wanted = desired["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in wanted.items()) and _content(desired) == _content(existing)
