"""TLS for the virtual node's kubelet API: the serving certificate and client-certificate checks.

The serving certificate comes from files (``KUBE_VAST_KUBELET_TLS_CERT``/``_KEY``: needed when
the API server verifies kubelet certificates, ``--kubelet-certificate-authority``) or is made
at start: self-signed, ECDSA P-256, valid a year, for the node's IP address (its only SAN) —
the API server does not verify kubelet serving certificates unless that flag is set.

Clients authenticate with a certificate signed by the configured client CA (the API server
presents its ``--kubelet-client-certificate``). The handshake asks for one and verifies any
given (``CERT_OPTIONAL``, as the kubelet does); a connection without a certificate is answered
401 by the server, so a caller learns why. The user is the certificate's CommonName, the groups
its Organizations, as for the API server itself.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vastmarket.errors import ConfigError

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who called, from the verified client certificate."""

    user: str
    groups: tuple[str, ...] = ()


def self_signed(address: str, common_name: str) -> tuple[bytes, bytes]:
    """A serving certificate for the IP ``address`` and its key, as PEM."""
    ip = ipaddress.ip_address(address)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(*, client_ca: Path, cert: Path | None = None, key: Path | None = None,
                   address: str, common_name: str) -> ssl.SSLContext:
    """The serving context: TLS 1.2 or newer, the given pair or a self-signed one for ``address``,
    client certificates verified against ``client_ca`` when presented."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(client_ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"kubelet API client CA {client_ca}: not a readable PEM CA bundle ({exc})") from None
    context.verify_mode = ssl.CERT_OPTIONAL
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(certfile=str(cert), keyfile=str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"kubelet API TLS: {cert} and {key} are not a usable certificate and key: "
                              f"{exc}") from None
        return context
    cert_pem, key_pem = self_signed(address, common_name)
    with tempfile.TemporaryDirectory(prefix="kube-vast-kubelet-") as workdir:  # 0700
        cert_file, key_file = Path(workdir) / "tls.crt", Path(workdir) / "tls.key"
        cert_file.write_bytes(cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key_pem)
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    return context


def identity_of(peer: Mapping[str, Any] | None) -> Identity | None:
    """The identity in a verified peer certificate (``SSLSocket.getpeercert()``), or None."""
    if not peer:
        return None
    user = ""
    groups: list[str] = []
    for rdn in peer.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName":
                user = str(value)
            elif attribute == "organizationName":
                groups.append(str(value))
    return Identity(user, tuple(groups)) if user else None
