"""The chart's kubelet API (kubectl logs through the virtual node): the controller's port, the pod
IP from the downward API as the node's address, the client CA and serving certificate mounts,
and RBAC for SubjectAccessReviews only when they are asked."""

from __future__ import annotations

from typing import Any

from controller.kubelet_setup import SERVICE_ACCOUNT_CA
from controller.settings import settings_from as controller_settings

from .conftest import EXISTING_SECRET
from .test_render import containers, env_of, mounted_volume, volume


def controller(rendered: Any) -> dict[str, Any]:
    return containers(rendered)["controller"]


def reviews_granted(rendered: Any) -> bool:
    role = rendered.one("ClusterRole", "kube-vast-controller")
    return any(rule["apiGroups"] == ["authorization.k8s.io"] and rule["resources"] == ["subjectaccessreviews"]
               for rule in role["rules"])


def test_by_default_the_controller_serves_it_on_10250_for_the_pod_ip_with_the_cluster_ca(render):
    rendered = render("existing-secret")
    c = controller(rendered)
    assert {"name": "kubelet-api", "containerPort": 10250, "protocol": "TCP"} in c["ports"]
    node_ip = next(e for e in c["env"] if e["name"] == "KUBE_VAST_NODE_IP")
    assert node_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    settings = controller_settings(env_of(c))
    assert (settings.kubelet_port, settings.kubelet_authorization, settings.log_follow_interval) == (
        10250, "webhook", 2.0)
    # No CA given: the service account's ca.crt, which the controller's token volume holds.
    assert settings.kubelet_client_ca is None and settings.kubelet_tls_cert is None
    sources = volume(rendered, mounted_volume(c, str(SERVICE_ACCOUNT_CA)))["projected"]["sources"]
    assert {"key": "ca.crt", "path": "ca.crt"} in next(s["configMap"]["items"] for s in sources if "configMap" in s)
    assert reviews_granted(rendered)


def test_a_client_ca_and_a_serving_certificate_are_mounted_from_what_the_values_name(render):
    rendered = render({**EXISTING_SECRET, "controller": {"kubeletApi": {
        "port": 10443, "clientCA": {"configMap": "apiserver-kubelet-client-ca", "key": "client-ca.crt"},
        "tlsSecret": "vast-node-kubelet-tls", "followInterval": 5}}})
    c = controller(rendered)
    settings = controller_settings(env_of(c))
    assert (settings.kubelet_port, settings.log_follow_interval) == (10443, 5.0)
    assert {"name": "kubelet-api", "containerPort": 10443, "protocol": "TCP"} in c["ports"]
    ca = volume(rendered, mounted_volume(c, str(settings.kubelet_client_ca)))
    assert ca["configMap"] == {"name": "apiserver-kubelet-client-ca",
                               "items": [{"key": "client-ca.crt", "path": "client-ca.crt"}]}
    assert settings.kubelet_client_ca is not None and settings.kubelet_client_ca.name == "client-ca.crt"
    for path in (settings.kubelet_tls_cert, settings.kubelet_tls_key):
        assert volume(rendered, mounted_volume(c, str(path)))["secret"] == {"secretName": "vast-node-kubelet-tls"}


def test_turned_off_nothing_is_served_exposed_or_granted(render):
    rendered = render({**EXISTING_SECRET, "controller": {"kubeletApi": {"enabled": False}}})
    c = controller(rendered)
    assert controller_settings(env_of(c)).kubelet_port == 0
    assert [p["name"] for p in c["ports"]] == ["metrics"]
    assert "KUBE_VAST_NODE_IP" not in {e["name"] for e in c["env"]}
    assert not reviews_granted(rendered)


def test_certificate_authorization_needs_no_subject_access_reviews(render):
    rendered = render({**EXISTING_SECRET, "controller": {"kubeletApi": {"authorization": "certificate"}}})
    assert controller_settings(env_of(controller(rendered))).kubelet_authorization == "certificate"
    assert not reviews_granted(rendered)
