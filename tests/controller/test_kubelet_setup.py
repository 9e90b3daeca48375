"""The kubelet API's settings and how the controller puts it together: addresses are IPs, never
names; without a client CA nothing is served; the node advertises what is served."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import pytest

from controller.kubelet_setup import client_ca, kubelet_api, outgoing_address
from controller.node import KubeletEndpoint, node_addresses
from controller.settings import ControllerSettings, settings_from
from devcluster import CertificateAuthority, free_port
from vastmarket.errors import ConfigError

from .kubelet_fakes import VastLogs


class NoKube:
    """The Kubernetes gateway's part the kubelet API uses; never called here."""

    def get_pod(self, namespace: str, name: str) -> None:
        raise AssertionError("no pod is looked up")

    def review_access(self, **question: Any) -> bool:
        raise AssertionError("no access is reviewed")


def test_the_kubelet_api_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = settings_from({"KUBE_VAST_KUBELET_PORT": "10443", "KUBE_VAST_NODE_IP": "10.1.2.3",
                              "KUBE_VAST_KUBELET_BIND_ADDRESS": "10.1.2.3",
                              "KUBE_VAST_KUBELET_CLIENT_CA": str(tmp_path / "ca.crt"),
                              "KUBE_VAST_KUBELET_TLS_CERT": "/tls/tls.crt", "KUBE_VAST_KUBELET_TLS_KEY": "/tls/tls.key",
                              "KUBE_VAST_KUBELET_AUTHORIZATION": "certificate",
                              "KUBE_VAST_LOG_FOLLOW_INTERVAL": "5"})
    assert (settings.kubelet_port, settings.node_ip, settings.kubelet_bind_address) == (10443, "10.1.2.3", "10.1.2.3")
    assert settings.kubelet_client_ca == tmp_path / "ca.crt"
    assert (settings.kubelet_tls_cert, settings.kubelet_tls_key) == (Path("/tls/tls.crt"), Path("/tls/tls.key"))
    assert (settings.kubelet_authorization, settings.log_follow_interval) == ("certificate", 5.0)


def test_the_defaults_serve_on_the_kubelet_port_with_subject_access_reviews() -> None:
    settings = ControllerSettings()
    assert (settings.kubelet_port, settings.kubelet_bind_address, settings.kubelet_authorization) == (
        10250, "0.0.0.0", "webhook")


@pytest.mark.parametrize(("environ", "words"), [
    ({"KUBE_VAST_NODE_IP": "vast"}, "KUBE_VAST_NODE_IP='vast': expected an IP address (never a name"),
    ({"KUBE_VAST_NODE_IP": "node-1.example.com"}, "expected an IP address"),
    ({"KUBE_VAST_KUBELET_BIND_ADDRESS": "localhost"}, "KUBE_VAST_KUBELET_BIND_ADDRESS='localhost'"),
    ({"KUBE_VAST_KUBELET_PORT": "70000"}, "KUBE_VAST_KUBELET_PORT=70000"),
    ({"KUBE_VAST_KUBELET_PORT": "https"}, "KUBE_VAST_KUBELET_PORT='https': expected a int"),
    ({"KUBE_VAST_KUBELET_TLS_CERT": "/tls/tls.crt"}, "go together"),
    ({"KUBE_VAST_KUBELET_AUTHORIZATION": "AlwaysAllow"}, "expected webhook"),
    ({"KUBE_VAST_LOG_FOLLOW_INTERVAL": "0"}, "log_follow_interval=0.0: expected a positive number"),
])
def test_a_wrong_kubelet_api_setting_stops_the_controller_with_the_reason(environ: dict[str, str],
                                                                          words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings_from(environ)
    assert words in str(refused.value)


def test_the_client_ca_is_the_setting_else_the_service_accounts_else_none(tmp_path: Path) -> None:
    mounted = tmp_path / "serviceaccount-ca.crt"
    assert client_ca(ControllerSettings(kubelet_client_ca=tmp_path / "ca.crt"), service_account_ca=mounted) == (
        tmp_path / "ca.crt")
    assert client_ca(ControllerSettings(), service_account_ca=mounted) is None
    mounted.write_text("PEM")
    assert client_ca(ControllerSettings(), service_account_ca=mounted) == mounted


def test_the_outgoing_address_is_an_ip_found_without_a_name() -> None:
    ipaddress.ip_address(outgoing_address())


def test_turned_off_or_without_a_ca_nothing_is_served_and_the_node_advertises_no_address(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    off = kubelet_api(ControllerSettings(kubelet_port=0), kube=NoKube(), logs=VastLogs())  # type: ignore[arg-type]
    assert (off.server, off.endpoint) == (None, None)
    caplog.set_level(logging.WARNING)
    setup = kubelet_api(ControllerSettings(), kube=NoKube(), logs=VastLogs(),  # type: ignore[arg-type]
                        service_account_ca=tmp_path / "absent.crt")
    assert (setup.server, setup.endpoint) == (None, None)
    assert "set KUBE_VAST_KUBELET_CLIENT_CA" in caplog.text
    assert node_addresses(None) == {"addresses": [{"$patch": "replace"}],
                                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}}


def test_with_a_ca_the_node_advertises_the_served_address_and_port(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(CertificateAuthority.create("clients").cert_pem)
    port = free_port()
    settings = ControllerSettings(kubelet_port=port, kubelet_bind_address="127.0.0.1", node_ip="127.0.0.1",
                                  kubelet_client_ca=ca)
    caplog.set_level(logging.WARNING)
    setup = kubelet_api(settings, kube=NoKube(), logs=VastLogs())  # type: ignore[arg-type]
    try:
        assert setup.endpoint == KubeletEndpoint("127.0.0.1", port) and setup.server is not None
        assert setup.server.port == port
        assert "advertises the loopback address 127.0.0.1" in caplog.text
        assert node_addresses(setup.endpoint) == {
            "addresses": [{"$patch": "replace"}, {"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}
    finally:
        if setup.server is not None:
            setup.server.stop()


def test_a_client_ca_that_is_not_a_pem_bundle_stops_the_controller(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a readable PEM CA bundle"):
        kubelet_api(ControllerSettings(kubelet_client_ca=ca, node_ip="127.0.0.1"), kube=NoKube(),  # type: ignore[arg-type]
                    logs=VastLogs())
