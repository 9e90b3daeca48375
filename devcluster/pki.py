"""Certificates for the test control plane and for test webhooks, made with ``cryptography``.

All keys are ECDSA P-256 (instant to generate; accepted by kube-apiserver for serving, client
and service-account keys). Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = _dt.timedelta(days=7)
_BACKDATE = _dt.timedelta(hours=1)

# Names the apiserver serving certificate is valid for (service IP 10.96.0.1 = first IP of the
# default --service-cluster-ip-range).
APISERVER_HOSTS = (
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
)


KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    """A certificate of ``subject`` by ``issuer`` with a random serial, valid from ``_BACKDATE``
    ago for ``_VALIDITY``: what every certificate here starts from."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
    )


def _san(hosts: tuple[str, ...] | list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


@dataclass
class CertificateAuthority:
    """A self-signed CA that issues serving and client certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str = "kube-vast-test-ca") -> "CertificateAuthority":
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            _builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key=key, cert=cert)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def issue(
        self,
        common_name: str,
        organizations: tuple[str, ...] | list[str] = (),
        *,
        server_hosts: tuple[str, ...] | list[str] | None = None,
        client: bool = True,
    ) -> tuple[bytes, bytes]:
        """Issue a certificate; returns ``(cert_pem, key_pem)``.

        ``common_name``/``organizations`` are the Kubernetes user name and groups of a client
        certificate. ``server_hosts`` (IPs or DNS names) makes it a serving certificate too.
        """
        key = _new_key()
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if server_hosts:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            _builder(x509.Name(attrs), self.cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=True,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if server_hosts:
            builder = builder.add_extension(_san(server_hosts), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def write_pair(directory: Path, basename: str, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    """Write ``<basename>.crt`` and ``<basename>.key`` (0600); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{basename}.crt", directory / f"{basename}.key"
    crt.write_bytes(cert_pem)
    key.touch(mode=0o600)
    key.write_bytes(key_pem)
    return crt, key


class CertFiles(NamedTuple):
    cert_file: Path
    key_file: Path


class WebhookCert(NamedTuple):
    """A serving certificate for a test webhook: unpack as ``cert_file, key_file, ca_pem``."""

    cert_file: Path
    key_file: Path
    ca_pem: bytes


def webhook_serving_cert(
    directory: Path | str,
    hosts: tuple[str, ...] | list[str] = ("127.0.0.1", "localhost"),
    *,
    basename: str = "webhook",
) -> WebhookCert:
    """A fresh CA plus a serving certificate for ``hosts``, written to ``directory``.

    Use ``cert_file``/``key_file`` for the HTTPS server (``ssl.SSLContext.load_cert_chain``) and
    ``ca_pem`` as the ``caBundle`` of the webhook configuration (or an extender's ``caData``).
    """
    d = Path(directory)
    ca = CertificateAuthority.create(f"{basename}-ca")
    cert_pem, key_pem = ca.issue(hosts[0], server_hosts=tuple(hosts), client=False)
    crt, key = write_pair(d, basename, cert_pem, key_pem)
    (d / f"{basename}-ca.crt").write_bytes(ca.cert_pem)
    return WebhookCert(crt, key, ca.cert_pem)


@dataclass
class ClusterPKI:
    """Every credential the test control plane needs, as files in ``directory``."""

    directory: Path
    ca: CertificateAuthority
    ca_file: Path
    ca_key_file: Path
    apiserver: CertFiles
    admin: CertFiles
    scheduler: CertFiles
    controller_manager: CertFiles
    service_account_key_file: Path  # private key (--service-account-signing-key-file, KCM)
    service_account_pub_file: Path  # public key (--service-account-key-file)
    front_proxy_ca_file: Path  # --requestheader-client-ca-file (aggregation layer)
    front_proxy_client: CertFiles  # --proxy-client-cert-file/--proxy-client-key-file
    kubelet_client: CertFiles  # --kubelet-client-certificate/--kubelet-client-key (logs, exec)
    _clients: dict[tuple[str, tuple[str, ...]], CertFiles] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem

    @classmethod
    def create(cls, directory: Path | str) -> "ClusterPKI":
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority.create("kube-vast-test-ca")
        ca_file, ca_key_file = write_pair(d, "ca", ca.cert_pem, ca.key_pem)
        apiserver = CertFiles(*write_pair(d, "apiserver", *ca.issue("kube-apiserver", server_hosts=APISERVER_HOSTS, client=False)))
        admin = CertFiles(*write_pair(d, "admin", *ca.issue("kube-vast-admin", ["system:masters"])))
        scheduler = CertFiles(*write_pair(d, "kube-scheduler", *ca.issue("system:kube-scheduler")))
        cm = CertFiles(*write_pair(d, "kube-controller-manager", *ca.issue("system:kube-controller-manager")))
        sa_key = _new_key()
        sa_priv = d / "sa.key"
        sa_priv.touch(mode=0o600)
        sa_priv.write_bytes(_key_pem(sa_key))
        sa_pub = d / "sa.pub"
        sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        # A separate CA for the aggregation layer's front proxy: with it the apiserver publishes a
        # complete extension-apiserver-authentication ConfigMap, which the scheduler and
        # controller manager read (without it they log "missing content for CA bundle" forever).
        fp_ca = CertificateAuthority.create("kube-vast-test-front-proxy-ca")
        fp_ca_file, _ = write_pair(d, "front-proxy-ca", fp_ca.cert_pem, fp_ca.key_pem)
        fp_client = CertFiles(*write_pair(d, "front-proxy-client", *fp_ca.issue("front-proxy-client")))
        # What the apiserver presents to kubelets (here: the virtual node's kubelet API), named as
        # kubeadm names it; authorized by a binding to system:kubelet-api-admin (ControlPlane).
        kubelet_client = CertFiles(*write_pair(d, "apiserver-kubelet-client", *ca.issue(KUBELET_CLIENT_USER)))
        return cls(d, ca, ca_file, ca_key_file, apiserver, admin, scheduler, cm, sa_priv, sa_pub,
                   fp_ca_file, fp_client, kubelet_client)

    def client_cert(self, user: str, groups: tuple[str, ...] | list[str] = ()) -> CertFiles:
        """A client certificate for Kubernetes user ``user`` in ``groups`` (cached per identity)."""
        ident = (user, tuple(groups))
        with self._lock:
            if ident not in self._clients:
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
                base = f"user-{safe}-{len(self._clients)}"
                self._clients[ident] = CertFiles(*write_pair(self.directory, base, *self.ca.issue(user, list(groups))))
            return self._clients[ident]
