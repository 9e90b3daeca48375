"""Cluster DNS for the test bed's real node: ``<service>.<namespace>.svc.cluster.local`` answered
with the Service's ClusterIP, read from the API server at each question. Every other name gets
NXDOMAIN: nothing is forwarded, so a pod resolves only the cluster's own Services and no name
ever leaves this machine.

A small UDP server (A and AAAA questions, RFC 1035 wire format), standard library plus the
kubernetes client; listens where the node's pods reach it (the host end of the node's link) and
is named to the kubelet as ``clusterDNS``.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any, Callable

CLUSTER_DOMAIN = "cluster.local"
_A, _AAAA = 1, 28
_NOERROR, _FORMERR, _NXDOMAIN = 0, 1, 3


def parse_question(packet: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, name, qtype, end of the question) of a query; ValueError when malformed."""
    if len(packet) < 12:
        raise ValueError("short header")
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        raise ValueError("one question expected")
    labels, i = [], 12
    while True:
        if i >= len(packet):
            raise ValueError("name runs past the packet")
        n = packet[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0 or i + n > len(packet):
            raise ValueError("bad label")
        labels.append(packet[i:i + n].decode("ascii", "replace").lower())
        i += n
    if i + 4 > len(packet):
        raise ValueError("short question")
    qtype, _qclass = struct.unpack("!HH", packet[i:i + 4])
    return ident, flags, ".".join(labels), qtype, i + 4


def answer(packet: bytes, lookup: Callable[[str, str], str | None]) -> bytes:
    """The response to ``packet``; ``lookup(service, namespace)`` gives a ClusterIP or None."""
    try:
        ident, flags, name, qtype, end = parse_question(packet)
    except ValueError:
        return struct.pack("!HHHHHH", packet[0] << 8 | packet[1] if len(packet) > 1 else 0,
                           0x8000 | _FORMERR, 0, 0, 0, 0)
    question = packet[12:end]
    rd = flags & 0x0100
    ip = None
    parts = name.split(".")
    suffix = ["svc", *CLUSTER_DOMAIN.split(".")]
    if len(parts) == 2 + len(suffix) and parts[2:] == suffix:
        ip = lookup(parts[0], parts[1])
    if ip is None:
        return struct.pack("!HHHHHH", ident, 0x8400 | rd | _NXDOMAIN, 1, 0, 0, 0) + question
    records = b""
    count = 0
    if qtype == _A:
        records = b"\xc0\x0c" + struct.pack("!HHIH", _A, 1, 5, 4) + socket.inet_aton(ip)
        count = 1
    return struct.pack("!HHHHHH", ident, 0x8400 | rd | _NOERROR, 1, count, 0, 0) + question + records


class ClusterDNS:
    """Serves :func:`answer` on ``(host, port)`` over UDP until :meth:`close`."""

    def __init__(self, host: str, api_client: Any, port: int = 53) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(api_client)
        self._api_exception = client.ApiException
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="cluster-dns", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def lookup(self, service: str, namespace: str) -> str | None:
        try:
            svc = self._core.read_namespaced_service(service, namespace)
        except (self._api_exception, ValueError):
            return None
        ip = svc.spec.cluster_ip if svc.spec is not None else None
        return ip if ip and ip != "None" else None

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                packet, peer = self._sock.recvfrom(1500)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self._sock.sendto(answer(packet, self.lookup), peer)
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
