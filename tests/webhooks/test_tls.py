"""Certificate reload without restart, at the SSLContext level (real TLS handshakes over a
socket pair)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest

from devcluster import webhook_serving_cert
from vastmarket.errors import ConfigError
from webhooks.tls import ReloadingCertificate


def der(cert_file: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert_file.read_text())


def served_certificate(server_context: ssl.SSLContext, ca_pem: bytes) -> bytes:
    """The certificate a client sees in a handshake against ``server_context``."""
    client_side, server_side = socket.socketpair()
    client_context = ssl.create_default_context(cadata=ca_pem.decode())
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_context.wrap_socket(server_side, server_side=True):
                pass
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)
    thread = threading.Thread(target=serve)
    thread.start()
    with client_context.wrap_socket(client_side, server_hostname="127.0.0.1") as tls:
        seen = tls.getpeercert(binary_form=True)
    thread.join(5)
    assert seen is not None and not errors
    return seen


def replace(src: Path, dst: Path) -> None:
    """Atomically, like a Secret volume or cert-manager does."""
    tmp = dst.with_suffix(".tmp")
    shutil.copy(src, tmp)
    os.replace(tmp, dst)


@pytest.fixture
def pairs(tmp_path):
    live, old, new = tmp_path / "live", tmp_path / "old", tmp_path / "new"
    first, second = webhook_serving_cert(old), webhook_serving_cert(new)
    live.mkdir()
    shutil.copy(first.cert_file, live / "tls.crt")
    shutil.copy(first.key_file, live / "tls.key")
    return live / "tls.crt", live / "tls.key", first, second


def test_the_context_is_reused_while_the_files_do_not_change(pairs):
    crt, key, first, _ = pairs
    tls = ReloadingCertificate(crt, key)
    assert tls.context() is tls.context()
    assert served_certificate(tls.context(), first.ca_pem) == der(first.cert_file)


def test_a_renewed_pair_is_served_from_the_next_handshake(pairs):
    crt, key, first, second = pairs
    tls = ReloadingCertificate(crt, key)
    before = tls.context()
    replace(second.key_file, key)
    replace(second.cert_file, crt)
    after = tls.context()
    assert after is not before and tls.reloads == 1
    assert served_certificate(after, second.ca_pem) == der(second.cert_file)
    assert served_certificate(before, first.ca_pem) == der(first.cert_file), "open connections keep theirs"


def test_a_half_renewed_pair_keeps_the_old_certificate_until_the_key_follows(pairs, caplog):
    crt, key, first, second = pairs
    tls = ReloadingCertificate(crt, key)
    before = tls.context()
    replace(second.cert_file, crt)  # the new certificate beside the old key
    with caplog.at_level(logging.WARNING, logger="kube_vast.webhook.tls"):
        assert tls.context() is before and tls.context() is before
    assert caplog.text.count("TLS certificate not reloaded") == 1, "warned once per change, not per handshake"
    replace(second.key_file, key)
    assert served_certificate(tls.context(), second.ca_pem) == der(second.cert_file)


def test_a_briefly_missing_file_keeps_the_old_certificate(pairs):
    crt, key, first, _ = pairs
    tls = ReloadingCertificate(crt, key)
    before = tls.context()
    key.unlink()
    assert tls.context() is before


def test_the_gunicorn_hook_ignores_the_default_factory(pairs):
    crt, key, _, _ = pairs
    tls = ReloadingCertificate(crt, key)
    hook = tls.gunicorn_hook()
    assert hook(object(), lambda: pytest.fail("the default factory reloads from disk every connection")) is tls.context()


def test_a_missing_or_mismatched_pair_refuses_to_start(pairs, tmp_path):
    crt, key, _, second = pairs
    with pytest.raises(ConfigError, match="cannot read .*nope.key"):
        ReloadingCertificate(crt, tmp_path / "nope.key")
    with pytest.raises(ConfigError, match="not a usable certificate and key"):
        ReloadingCertificate(crt, second.key_file)
