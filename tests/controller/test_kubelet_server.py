"""The kubelet API over real HTTPS on 127.0.0.1: the serving certificate (self-signed for the node
IP, or from files), client certificates (none → 401, another CA → no handshake), the log as a
body, follow as a chunked stream that ends when the client goes or the server stops, and logs
that never show a query."""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from controller.kubelet_api import KubeletApi
from controller.kubelet_auth import CertificateAuthorizer
from controller.kubelet_server import KubeletServer
from controller.kubelet_tls import server_context
from devcluster import CertificateAuthority, wait_for
from devcluster.pki import write_pair

from .kubelet_fakes import LOGS, NODE, Pods, VastLogs

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("kube-vast-test-kubelet-client-ca")


@pytest.fixture(scope="module")
def certs(ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("kubelet-certs")
    (d / "ca.crt").write_bytes(ca.cert_pem)
    write_pair(d, "apiserver", *ca.issue("kube-apiserver-kubelet-client"))
    write_pair(d, "serving-only", *ca.issue("a-server", server_hosts=[HOST], client=False))
    other = CertificateAuthority.create("someone-else")
    write_pair(d, "stranger", *other.issue("kube-apiserver-kubelet-client"))
    write_pair(d, "node", *ca.issue("vast-gpu-node-1", server_hosts=[HOST], client=False))
    return {p.stem if p.suffix == ".crt" else p.stem + ".key": p for p in d.iterdir()}


@pytest.fixture
def vast() -> VastLogs:
    return VastLogs()


@pytest.fixture
def api(vast: VastLogs) -> KubeletApi:
    return KubeletApi(pods=Pods(), logs=vast, authorizer=CertificateAuthorizer(), default_node=NODE,
                      follow_interval=0.05, max_streams=1)


def serve(api: KubeletApi, certs: dict[str, Path], *, files: bool = False) -> KubeletServer:
    context = server_context(client_ca=certs["ca"], cert=certs["node"] if files else None,
                             key=certs["node.key"] if files else None, address=HOST, common_name=NODE)
    return KubeletServer(api, context, host=HOST, port=0).start()


@pytest.fixture
def server(api: KubeletApi, certs: dict[str, Path]) -> Iterator[KubeletServer]:
    s = serve(api, certs)
    yield s
    s.stop()


def client(certs: dict[str, Path], who: str | None = "apiserver", *, verify: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs["ca"])) if verify else ssl._create_unverified_context()
    if who is not None:
        context.load_cert_chain(str(certs[who]), str(certs[who + ".key"]))
    return context


def get(server: KubeletServer, context: ssl.SSLContext, path: str = LOGS,
        method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPSConnection(HOST, server.port, context=context, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def test_the_generated_serving_certificate_names_the_node_ip_only(server: KubeletServer,
                                                                 certs: dict[str, Path]) -> None:
    with socket.create_connection((HOST, server.port), timeout=10) as raw:
        with client(certs).wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [HOST]
    assert san.get_values_for_type(x509.DNSName) == []


def test_a_serving_pair_from_files_verifies_against_its_ca_and_the_node_ip(api: KubeletApi,
                                                                          certs: dict[str, Path]) -> None:
    s = serve(api, certs, files=True)
    try:
        status, body = get(s, client(certs, verify=True))
    finally:
        s.stop()
    assert status == 200 and body.startswith("[vastsim] instance 20000001 started")


def test_the_api_servers_certificate_reads_the_log(server: KubeletServer, certs: dict[str, Path],
                                                   vast: VastLogs) -> None:
    assert get(server, client(certs)) == (200, "".join(f"{line}\n" for line in vast.lines))


def test_a_caller_without_a_certificate_is_answered_401(server: KubeletServer, certs: dict[str, Path],
                                                        vast: VastLogs) -> None:
    status, body = get(server, client(certs, None))
    assert status == 401 and "needs a client certificate" in body
    assert vast.calls == []


@pytest.mark.parametrize("who", ["stranger", "serving-only"])
def test_a_certificate_not_signed_for_clients_by_the_ca_gets_no_connection(server: KubeletServer,
                                                                          certs: dict[str, Path], vast: VastLogs,
                                                                          who: str) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(server, client(certs, who))
    assert vast.calls == []


def test_exec_is_refused_with_the_reason_and_its_command_never_logged(server: KubeletServer, certs: dict[str, Path],
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "kube_vast.controller.kubelet")
    status, body = get(server, client(certs), "/exec/speech/june/speech?command=mysql&command=-pS3CRET&output=1",
                       method="POST", headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                               "X-Stream-Protocol-Version": "v5.channel.k8s.io"})
    assert status == 400 and body.startswith("exec is not supported on Vast instances (pod speech/june)")
    assert "POST /exec/speech/june/speech -> 400" in caplog.text
    assert "S3CRET" not in caplog.text and "command=" not in caplog.text


class Stream:
    """A follow request held open, read line by line."""

    def __init__(self, server: KubeletServer, context: ssl.SSLContext) -> None:
        self.conn = http.client.HTTPSConnection(HOST, server.port, context=context, timeout=10)
        self.conn.request("GET", LOGS + "?follow=true")
        self.reply = self.conn.getresponse()

    def lines(self, n: int) -> list[str]:
        return [self.reply.readline().decode() for _ in range(n)]

    def following(self) -> bool:
        return self.reply.getheader("Transfer-Encoding") == "chunked"

    def close(self) -> None:
        self.reply.close()  # the socket closes with the last reference to it
        self.conn.close()


def follow_once_free(server: KubeletServer, context: ssl.SSLContext) -> Stream | None:
    stream = Stream(server, context)
    if stream.following():
        return stream
    stream.close()
    return None


def test_follow_streams_new_lines_and_stops_reading_vast_when_the_client_goes(
        server: KubeletServer, api: KubeletApi, certs: dict[str, Path], vast: VastLogs) -> None:
    stream = Stream(server, client(certs))
    assert stream.reply.status == 200 and stream.following()
    assert stream.lines(3) == [f"{line}\n" for line in vast.lines]
    vast.lines.append("GET /healthz 200")
    assert stream.lines(1) == ["GET /healthz 200\n"]
    stream.close()
    # The stream's place is freed (max_streams=1) once the server noticed: a new follow is served.
    second = wait_for(lambda: follow_once_free(server, client(certs)), timeout=10,
                      description="a second follow once the first client went away")
    reads = len(vast.calls)
    second.close()
    wait_for(lambda: api._streams.acquire(blocking=False), timeout=10, description="the second stream ended")
    assert len(vast.calls) <= reads + 1  # at most the poll under way when the client went


def test_follow_ends_with_the_last_chunk_when_the_server_stops(api: KubeletApi, certs: dict[str, Path]) -> None:
    server = serve(api, certs)
    stream = Stream(server, client(certs))
    stream.lines(3)
    server.stop()
    assert stream.reply.read() == b""  # the terminating chunk came: the body ends cleanly
    stream.close()
