"""The webhook as it runs: ``kube-vast webhook`` under gunicorn, HTTPS only, a renewed certificate
picked up without a restart."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from devcluster.components import KUBE_VAST, Webhook
from devcluster import free_port, webhook_serving_cert
from devcluster.pki import WebhookCert
from tests.webhooks.conftest import captured, market
from vastmarket.snapshot import OfferSnapshot, SnapshotFile


def der(cert_file: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert_file.read_text())


def peer_certificate(port: int, ca_pem: bytes) -> bytes:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            cert = tls.getpeercert(binary_form=True)
    assert cert is not None
    return cert


def post(conn: http.client.HTTPSConnection, body: object) -> tuple[int, dict]:
    conn.request("POST", "/mutate?timeout=3s", body=json.dumps(body), headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    return reply.status, json.loads(reply.read())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("webhook-serving")
    snapshot = work / "offers.json"
    SnapshotFile(snapshot).publish(OfferSnapshot(market().offers, taken_at=time.time()))
    live = work / "tls"
    first = webhook_serving_cert(work / "first")
    live.mkdir()
    shutil.copy(first.cert_file, live / "tls.crt")
    shutil.copy(first.key_file, live / "tls.key")
    hook = Webhook(work, snapshot, WebhookCert(live / "tls.crt", live / "tls.key", first.ca_pem)).start()
    try:
        yield hook, work, first
    finally:
        hook.stop()


def test_mutate_answers_over_https(served):
    hook, _, first = served
    conn = http.client.HTTPSConnection("127.0.0.1", hook.port, context=hook.tls, timeout=5)
    status, reply = post(conn, captured("pod-create-generatename"))
    assert status == 200 and reply["response"]["allowed"] is True and reply["response"]["patchType"] == "JSONPatch"
    status, reply = post(conn, {"not": "a review"})
    assert status == 400 and "AdmissionReview" in reply["error"]
    conn.close()


def test_plain_http_is_not_served(served):
    hook, _, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", hook.port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", "/healthz")
        conn.getresponse().read()


def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(served):
    hook, work, first = served
    pid = hook.process.pid
    assert peer_certificate(hook.port, first.ca_pem) == der(first.cert_file)
    kept = http.client.HTTPSConnection("127.0.0.1", hook.port, context=hook.tls, timeout=5)
    assert post(kept, captured("pod-update"))[0] == 200  # a keep-alive connection opened before

    second = webhook_serving_cert(work / "second")
    for src, name in ((second.key_file, "tls.key"), (second.cert_file, "tls.crt")):
        tmp = work / "tls" / f".{name}.tmp"
        shutil.copy(src, tmp)
        os.replace(tmp, work / "tls" / name)

    assert peer_certificate(hook.port, second.ca_pem) == der(second.cert_file)
    assert hook.process.pid == pid and hook.process.running(), "no restart"
    assert post(kept, captured("pod-update"))[0] == 200, "connections already open keep working"
    kept.close()
    assert "TLS certificate reloaded" in hook.log()


@pytest.mark.parametrize("args, message", [
    ((), "the webhook serves HTTPS only: give --tls-cert FILE and --tls-key FILE"),
    (("--tls-cert", "/nonexistent/tls.crt", "--tls-key", "/nonexistent/tls.key"), "TLS: cannot read /nonexistent/tls.crt"),
])
def test_the_webhook_refuses_to_start_without_a_usable_certificate(args, message):
    done = subprocess.run([*KUBE_VAST, "webhook", "--port", str(free_port()), *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
