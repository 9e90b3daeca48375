import copy
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.endpoints import (
    MANAGED_BY, MANAGED_BY_LABEL, POD_UID_LABEL, SERVICE_NAME_LABEL, desired_slice, mappings,
    plan_slices, selects, slice_name,
)
from vastmarket.explain import endpoint_lines

from .objects import NODE, POD_UID, june_pod, june_service, stt_service, tts_service

IP = "203.0.113.7"
HOST_PORTS = {8000: 42351, 8001: 42352, 22: 40022}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def desired(service: dict[str, Any], pod: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any] | None:
    args: dict[str, Any] = {"public_ip": IP, "host_ports": HOST_PORTS, "ready": True, "node_name": NODE}
    return desired_slice(service, june_pod() if pod is None else pod, **{**args, **kwargs})


def plan(services: list[dict[str, Any]], existing: list[dict[str, Any]], pod: dict[str, Any] | None = None,
         **kwargs: Any) -> tuple[list[dict[str, Any]], list[str]]:
    args: dict[str, Any] = {"public_ip": IP, "host_ports": HOST_PORTS, "ready": True, "node_name": NODE}
    return plan_slices(services, june_pod() if pod is None else pod, existing, **{**args, **kwargs})


def as_stored(slice_: dict[str, Any], **labels: str) -> dict[str, Any]:
    """The slice as the API server returns it: server metadata added, maybe labels from others."""
    out = copy.deepcopy(slice_)
    out["metadata"].update(uid="0a1b2c3d-0000-4000-8000-000000000001", resourceVersion="777",
                           generation=1, creationTimestamp="2025-03-01T10:06:00Z",
                           managedFields=[{"manager": "kube-vast", "operation": "Update"}])
    out["metadata"]["labels"].update(labels)
    return out


def port(host_port: int, name: str = "http", **extra: Any) -> dict[str, Any]:
    return {"name": name, "port": host_port, "protocol": "TCP", **extra}


# --- selects ----------------------------------------------------------------------------------------

def other_namespace() -> dict[str, Any]:
    service = tts_service()
    service["metadata"]["namespace"] = "default"
    return service


@pytest.mark.parametrize("service, expected", [
    (tts_service(), True),
    (june_service("june-gpu", 8000, "tts", selector={"app": "june", "tier": "gpu"}), True),
    (june_service("june-cpu", 8000, "tts", selector={"app": "june", "tier": "cpu"}), False),
    (june_service("other", 8000, "tts", selector={"app": "other"}), False),
    (june_service("headless-manual", 8000, "tts", selector={}), False),
    (june_service("no-selector", 8000, "tts", selector=None), False),
    (june_service("external", 8000, "tts", type="ExternalName", externalName="example.com"), False),
    (other_namespace(), False),
], ids=["matching", "all labels match", "one label differs", "other app", "empty selector",
        "no selector", "ExternalName", "other namespace"])
def test_a_service_selects_a_pod_like_the_endpoint_controller(service, expected):
    assert selects(service, june_pod()) is expected


def test_a_pod_without_labels_is_never_selected():
    pod = june_pod()
    del pod["metadata"]["labels"]
    assert not selects(tts_service(), pod)


# --- slice names --------------------------------------------------------------------------------------

def test_slice_names_are_stable_and_distinct():
    name = slice_name("june-tts", POD_UID)
    assert name == slice_name("june-tts", POD_UID)
    assert name.startswith("june-tts-vast-") and DNS_LABEL.match(name)
    assert name != slice_name("june-stt", POD_UID)
    assert name != slice_name("june-tts", "6a1d7c8f-0000-4000-8000-000000000000")


def test_a_long_service_name_is_shortened_to_a_valid_name():
    name = slice_name("a" * 40 + "-" + "b" * 22, POD_UID)
    assert len(name) <= 63 and DNS_LABEL.match(name)


@given(st.from_regex(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True), st.uuids())
def test_every_slice_name_is_a_dns_label_of_at_most_63_characters(service, uid):
    name = slice_name(service, str(uid))
    assert len(name) <= 63 and DNS_LABEL.match(name)
    assert name == slice_name(service, str(uid))


# --- desired slices -------------------------------------------------------------------------------------

def test_the_tts_service_gets_a_slice_to_the_public_ip_and_host_port():
    assert desired(tts_service()) == {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name("june-tts", POD_UID),
            "namespace": "speech",
            "labels": {SERVICE_NAME_LABEL: "june-tts", MANAGED_BY_LABEL: MANAGED_BY, POD_UID_LABEL: POD_UID},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "june-tts", "uid": "uid-june-tts",
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [IP],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": NODE,
            "targetRef": {"kind": "Pod", "namespace": "speech", "name": "june-7d9f8b6c5-x2x7q", "uid": POD_UID},
        }],
        "ports": [port(42351)],
    }


def test_every_label_value_is_valid():
    labels = desired(tts_service())["metadata"]["labels"]  # type: ignore[index]
    assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values())


@pytest.mark.parametrize("service, ports", [
    (tts_service(), [port(42351)]),
    (stt_service(), [port(42352)]),
    (june_service("june-default", 8001, None), [port(42352)]),
    (june_service("june-string-number", 8000, "8000"), [port(42351)]),
    (june_service("june-grpc", 8001, "stt", ports=[{"name": "grpc", "port": 9000, "targetPort": "stt",
                                                     "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]),
     [port(42352, "grpc", appProtocol="kubernetes.io/h2c")]),
    (june_service("june-both", 0, None, ports=[
        {"name": "tts", "port": 80, "targetPort": "tts", "protocol": "TCP"},
        {"name": "stt", "port": 81, "targetPort": 8001, "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
        {"name": "rtp", "port": 5004, "targetPort": 8000, "protocol": "UDP"},
    ]), [port(42351, "tts"), port(42352, "stt")]),
    (june_service("june-unnamed", 0, None, ports=[{"port": 8000, "targetPort": "tts", "protocol": "TCP"}]),
     [port(42351, "")]),
], ids=["named target", "numeric target", "target defaults to port", "numeric string", "appProtocol",
        "only ports that resolve", "unnamed port"])
def test_service_ports_resolve_through_container_ports_to_host_ports(service, ports):
    assert desired(service)["ports"] == ports  # type: ignore[index]


@pytest.mark.parametrize("service, kwargs", [
    (june_service("june-missing-name", 8000, "metrics"), {}),
    (june_service("june-unmapped", 9000, 9000), {}),
    (june_service("june-udp", 8000, "tts", ports=[{"name": "rtp", "port": 8000, "targetPort": "tts",
                                                   "protocol": "UDP"}]), {}),
    (june_service("june-no-ports", 8000, "tts", ports=[]), {}),
    (tts_service(), {"host_ports": {}}),
    (tts_service(), {"public_ip": None}),
    (tts_service(), {"public_ip": ""}),
    (tts_service(), {"public_ip": "not-an-ip"}),
    (june_service("other", 8000, "tts", selector={"app": "other"}), {}),
], ids=["named port that does not exist", "port Vast did not map", "udp", "no ports", "no host ports yet",
        "no public ip", "empty public ip", "bad public ip", "not selected"])
def test_nothing_is_published_when_nothing_resolves(service, kwargs):
    assert desired(service, **kwargs) is None


def test_a_named_udp_container_port_is_not_a_target():
    pod = june_pod(ports=[{"name": "tts", "containerPort": 8000, "protocol": "UDP"}])
    assert desired(tts_service(), pod) is None


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_pod_in_a_terminal_phase_is_never_published(phase):
    pod = june_pod()
    pod["status"]["phase"] = phase
    assert desired(tts_service(), pod) is None


def test_a_pod_without_a_uid_is_not_published():
    pod = june_pod()
    del pod["metadata"]["uid"]
    assert desired(tts_service(), pod) is None


def test_an_empty_node_name_is_left_out():
    assert "nodeName" not in desired(tts_service(), node_name="")["endpoints"][0]  # type: ignore[index]


def test_an_ipv6_address_gives_an_ipv6_slice():
    assert desired(tts_service(), public_ip="2001:db8::7")["addressType"] == "IPv6"  # type: ignore[index]


def test_a_service_without_a_uid_gets_no_owner_reference():
    service = tts_service()
    del service["metadata"]["uid"]
    assert "ownerReferences" not in desired(service)["metadata"]  # type: ignore[index]


def deleting_pod() -> dict[str, Any]:
    pod = june_pod()
    pod["metadata"]["deletionTimestamp"] = "2025-03-01T11:00:00Z"
    return pod


@pytest.mark.parametrize("pod, service, ready, conditions", [
    (june_pod(), tts_service(), True, {"ready": True, "serving": True, "terminating": False}),
    (june_pod(), tts_service(), False, {"ready": False, "serving": False, "terminating": False}),
    (deleting_pod(), tts_service(), True, {"ready": False, "serving": True, "terminating": True}),
    (deleting_pod(), tts_service(), False, {"ready": False, "serving": False, "terminating": True}),
    (june_pod(), june_service("june-early", 8000, "tts", publishNotReadyAddresses=True), False,
     {"ready": True, "serving": False, "terminating": False}),
], ids=["healthy", "unhealthy", "terminating", "terminating unhealthy", "publishNotReadyAddresses"])
def test_endpoint_conditions_follow_the_endpoint_slice_controller(pod, service, ready, conditions):
    assert desired(service, pod, ready=ready)["endpoints"][0]["conditions"] == conditions  # type: ignore[index]


# --- mappings ---------------------------------------------------------------------------------------------

def test_mappings_feed_the_seed_endpoint_lines():
    pod = june_pod()
    lines = [m for svc in (tts_service(), stt_service())
             for m in mappings(svc, pod, public_ip=IP, host_ports=HOST_PORTS)]
    assert lines == [("june-tts.speech.svc.cluster.local", 8000, IP, 42351),
                     ("june-stt.speech.svc.cluster.local", 8001, IP, 42352)]
    assert endpoint_lines(lines) == [
        "[VAST] Instance ready, updating service endpoints:",
        f"  - june-tts.speech.svc.cluster.local:8000 → {IP}:42351",
        f"  - june-stt.speech.svc.cluster.local:8001 → {IP}:42352",
    ]


def test_mappings_of_a_service_that_does_not_select_the_pod_are_empty():
    service = june_service("other", 8000, "tts", selector={"app": "other"})
    assert mappings(service, june_pod(), public_ip=IP, host_ports=HOST_PORTS) == []


def test_mappings_honour_the_cluster_domain():
    [(host, *_)] = mappings(tts_service(), june_pod(), public_ip=IP, host_ports=HOST_PORTS,
                            cluster_domain="corp.example")
    assert host == "june-tts.speech.svc.corp.example"


# --- plan_slices -------------------------------------------------------------------------------------------

def june_slices(**kwargs: Any) -> list[dict[str, Any]]:
    return [s for s in (desired(tts_service(), **kwargs), desired(stt_service(), **kwargs)) if s is not None]


def test_a_new_instance_gets_a_slice_per_selecting_service():
    to_apply, to_delete = plan([tts_service(), stt_service()], [])
    assert [s["metadata"]["name"] for s in to_apply] == sorted([slice_name("june-tts", POD_UID),
                                                               slice_name("june-stt", POD_UID)])
    assert to_delete == []


def test_unchanged_slices_as_stored_by_the_server_are_left_alone():
    existing = [as_stored(s, **{"example.com/team": "speech"}) for s in june_slices()]
    assert plan([tts_service(), stt_service()], existing) == ([], [])


def test_the_port_order_of_a_stored_slice_does_not_matter():
    service = june_service("june-both", 0, None, ports=[
        {"name": "tts", "port": 80, "targetPort": "tts", "protocol": "TCP"},
        {"name": "stt", "port": 81, "targetPort": 8001, "protocol": "TCP"}])
    stored = as_stored(desired(service))  # type: ignore[arg-type]
    stored["ports"].reverse()
    assert plan([service], [stored]) == ([], [])


@pytest.mark.parametrize("change", [
    {"ready": False},
    {"host_ports": {8000: 50000, 8001: 42352}},
    {"public_ip": "198.51.100.9"},
    {"node_name": "vast-rtx4090-eu"},
], ids=["readiness", "host port", "public ip", "node"])
def test_a_changed_instance_reapplies_only_the_slices_that_differ(change):
    existing = [as_stored(s) for s in june_slices()]
    to_apply, to_delete = plan([tts_service(), stt_service()], existing, **change)
    expected = {s["metadata"]["name"] for s in june_slices(**change)} - {
        s["metadata"]["name"] for s in june_slices() if s in june_slices(**change)}
    assert {s["metadata"]["name"] for s in to_apply} == expected and to_apply
    assert to_delete == []


def test_a_slice_missing_one_of_our_labels_is_reapplied():
    stored = as_stored(desired(tts_service()))  # type: ignore[arg-type]
    del stored["metadata"]["labels"][SERVICE_NAME_LABEL]
    stored["metadata"]["labels"][POD_UID_LABEL] = POD_UID
    to_apply, _ = plan([tts_service()], [stored])
    assert [s["metadata"]["name"] for s in to_apply] == [stored["metadata"]["name"]]


def test_slices_of_services_that_no_longer_select_the_pod_are_deleted():
    existing = [as_stored(s) for s in june_slices()]
    moved = june_service("june-stt", 8001, 8001, selector={"app": "june-v2"})
    assert plan([tts_service(), moved], existing) == ([], [slice_name("june-stt", POD_UID)])


def test_slices_of_deleted_services_and_unresolvable_ports_are_deleted():
    existing = [as_stored(s) for s in june_slices()]
    renamed_port = june_service("june-tts", 8000, "speech")
    assert plan([renamed_port], existing) == ([], sorted([slice_name("june-tts", POD_UID),
                                                          slice_name("june-stt", POD_UID)]))


@pytest.mark.parametrize("change", [{"public_ip": None}, {"host_ports": {}}])
def test_without_an_address_every_slice_of_the_pod_is_deleted(change):
    existing = [as_stored(s) for s in june_slices()]
    to_apply, to_delete = plan([tts_service(), stt_service()], existing, **change)
    assert to_apply == [] and len(to_delete) == 2


def test_a_terminal_pod_loses_its_slices():
    pod = june_pod()
    pod["status"]["phase"] = "Failed"
    existing = [as_stored(s) for s in june_slices()]
    assert len(plan([tts_service(), stt_service()], existing, pod)[1]) == 2


def test_slices_that_are_not_this_pods_or_not_kube_vasts_are_never_touched():
    foreign = as_stored(desired(tts_service()))  # type: ignore[arg-type]
    foreign["metadata"]["name"] = "june-tts-abcde"
    foreign["metadata"]["labels"][MANAGED_BY_LABEL] = "endpointslice-controller.k8s.io"
    other_pod = as_stored(desired(stt_service()))  # type: ignore[arg-type]
    other_pod["metadata"]["name"] = "june-stt-vast-000000000000"
    other_pod["metadata"]["labels"][POD_UID_LABEL] = "another-uid"
    elsewhere = as_stored(desired(tts_service()))  # type: ignore[arg-type]
    elsewhere["metadata"]["namespace"] = "default"
    to_apply, to_delete = plan([], [foreign, other_pod, elsewhere])
    assert (to_apply, to_delete) == ([], [])


# --- properties ----------------------------------------------------------------------------------------------

services_pool = [
    tts_service(), stt_service(),
    june_service("june-default", 8001, None),
    june_service("june-metrics", 9090, "metrics"),
    june_service("june-other", 8000, "tts", selector={"app": "other"}),
]
instances = st.fixed_dictionaries({
    "public_ip": st.sampled_from([None, IP, "198.51.100.9"]),
    "host_ports": st.dictionaries(st.sampled_from([8000, 8001, 9090]), st.integers(30000, 60000)),
    "ready": st.booleans(),
    "node_name": st.sampled_from([NODE, "vast-rtx4090-eu"]),
})


@given(st.lists(st.sampled_from(range(len(services_pool))), unique=True),
       st.lists(st.sampled_from(range(len(services_pool))), unique=True), instances, instances)
def test_executing_a_plan_leaves_nothing_to_do(before_services, after_services, before, after):
    pod = june_pod()
    existing: dict[str, dict[str, Any]] = {}
    to_apply, _ = plan_slices([services_pool[i] for i in before_services], pod, [], **before)
    for s in to_apply:
        existing[s["metadata"]["name"]] = as_stored(s)

    services = [services_pool[i] for i in after_services]
    to_apply, to_delete = plan_slices(services, pod, list(existing.values()), **after)
    assert not {s["metadata"]["name"] for s in to_apply} & set(to_delete)
    for s in to_apply:
        existing[s["metadata"]["name"]] = as_stored(s)
    for name in to_delete:
        del existing[name]
    assert plan_slices(services, pod, list(existing.values()), **after) == ([], [])
    assert set(existing) == {slice_name(s["metadata"]["name"], POD_UID) for s in services
                             if desired_slice(s, pod, **after) is not None}
