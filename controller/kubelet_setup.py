"""Putting the virtual node's kubelet API together from the settings (the impure edges: files,
the node's address, the listening socket).

- The address the node advertises (``InternalIP``) is ``KUBE_VAST_NODE_IP`` (in the chart: the
  pod's IP, from the downward API), else the address this machine sends from — found by
  connecting a UDP socket to a documentation address, which sends nothing and resolves no name.
- The client CA is ``KUBE_VAST_KUBELET_CLIENT_CA``, else, in a pod, the service account's
  ``ca.crt`` (the cluster CA, which signs the API server's kubelet client certificate on kubeadm
  clusters). Without one the API is not served (never to anonymous callers): a warning says so,
  and the node advertises no address. ``KUBE_VAST_KUBELET_PORT=0`` turns it off on purpose.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from .kube import KubeGateway
from .kubelet_api import KubeletApi, KubePods, LogReader
from .kubelet_auth import authorizer_for
from .kubelet_server import KubeletServer
from .kubelet_tls import server_context
from .node import KubeletEndpoint
from .settings import ControllerSettings

log = logging.getLogger("kube_vast.controller")

SERVICE_ACCOUNT_CA = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")


@dataclass(frozen=True, slots=True)
class KubeletApiSetup:
    server: KubeletServer | None
    endpoint: KubeletEndpoint | None


def outgoing_address() -> str:
    """The IPv4 address this machine sends from (no packet is sent, no name is resolved)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def client_ca(settings: ControllerSettings, *, service_account_ca: Path = SERVICE_ACCOUNT_CA) -> Path | None:
    """The CA client certificates must be signed by: the setting, else the service account's."""
    if settings.kubelet_client_ca is not None:
        return settings.kubelet_client_ca
    return service_account_ca if service_account_ca.is_file() else None


def kubelet_api(settings: ControllerSettings, kube: KubeGateway, logs: LogReader, *,
                service_account_ca: Path = SERVICE_ACCOUNT_CA) -> KubeletApiSetup:
    """The server (bound, not started) and the endpoint the virtual nodes advertise."""
    if settings.kubelet_port == 0:
        log.info("kubelet api: off (KUBE_VAST_KUBELET_PORT=0); kubectl logs of Vast pods will fail")
        return KubeletApiSetup(None, None)
    ca = client_ca(settings, service_account_ca=service_account_ca)
    if ca is None:
        log.warning("kubelet api: off: no client CA to authenticate the API server with (set "
                    "KUBE_VAST_KUBELET_CLIENT_CA to the CA of its --kubelet-client-certificate); kubectl logs "
                    "of Vast pods will fail")
        return KubeletApiSetup(None, None)
    address = settings.node_ip or outgoing_address()
    if address.startswith("127.") or address == "::1":
        log.warning("kubelet api: the virtual node advertises the loopback address %s; only an API server on "
                    "this machine reaches it (set KUBE_VAST_NODE_IP)", address)
    context = server_context(client_ca=ca, cert=settings.kubelet_tls_cert,
                             key=settings.kubelet_tls_key, address=address, common_name=settings.virtual_nodes[0])
    nodes = settings.virtual_nodes
    api = KubeletApi(pods=KubePods(kube.get_pod, nodes), logs=logs,
                     authorizer=authorizer_for(settings.kubelet_authorization, kube), default_node=nodes[0],
                     follow_interval=settings.log_follow_interval)
    server = KubeletServer(api, context, host=settings.kubelet_bind_address, port=settings.kubelet_port)
    log.info("kubelet api: %s:%d advertised as InternalIP %s, authorization %s, serving certificate %s", 
             settings.kubelet_bind_address, server.port, address, settings.kubelet_authorization,
             settings.kubelet_tls_cert or "self-signed")
    return KubeletApiSetup(server, KubeletEndpoint(address, server.port))
