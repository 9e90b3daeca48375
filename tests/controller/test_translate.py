import base64
import copy
import json
import os
import stat
import string
import subprocess
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.translate import (
    CONFIG_ERROR, IGNORED_FIELD, INVALID_ENV_NAMES, PULL_SECRET_MISSING, UNRESOLVED_SERVICE_PORT, UNSUPPORTED,
    VOLUME_APPROXIMATED, LaunchError, LaunchSpec, expand, launch_spec,
)
from vastmarket.errors import KubeVastError

from .objects import NODE, POD_UID, DictLookup, june_lookup, june_pod, june_service, with_env


def spec_of(pod: dict[str, Any], lookup: DictLookup | None = None, **kwargs: Any) -> LaunchSpec:
    return launch_spec(pod, lookup=lookup or june_lookup(), **kwargs)


def env_of(env: list[dict[str, Any]], env_from: list[dict[str, Any]] | None = None,
           lookup: DictLookup | None = None, **kwargs: Any) -> dict[str, str]:
    return dict(spec_of(with_env(june_pod(), env, env_from), lookup, **kwargs).env)


def launch_error(pod: dict[str, Any], lookup: DictLookup | None = None, **kwargs: Any) -> LaunchError:
    with pytest.raises(LaunchError) as info:
        spec_of(pod, lookup, **kwargs)
    return info.value


# --- the whole pod -------------------------------------------------------------------------------

def test_the_june_pod_becomes_a_complete_launch_spec():
    spec = spec_of(june_pod())
    assert spec.image == "ghcr.io/june-ai/speech:2.3.1"
    assert spec.onstart == "python"
    assert spec.args == ("-m", "june.serve", "--tts-port=8000", "--stt-port=8001", "--model=whisper-large-v3")
    assert dict(spec.env) == {"MODEL_NAME": "whisper-large-v3", "HF_TOKEN": "hf_abc123",
                              "LOG_LEVEL": "info", "POD_NAME": "june-7d9f8b6c5-x2x7q"}
    assert spec.ports == (8000, 8001)
    assert spec.num_gpus == 1
    assert spec.disk_gb == 40.0
    assert spec.warnings == ()


def test_the_rent_request_carries_the_spec_and_maps_every_port():
    request = spec_of(june_pod()).rent_request("kube-vast:c1:" + POD_UID)
    body = request.body()
    assert body["image"] == "ghcr.io/june-ai/speech:2.3.1"
    assert body["label"] == "kube-vast:c1:" + POD_UID
    assert body["disk"] == 40.0
    assert body["runtype"] == "args"
    assert body["onstart"] == "python"
    assert body["args"][:2] == ["-m", "june.serve"]
    assert body["env"]["HF_TOKEN"] == "hf_abc123"
    assert body["env"]["-p 8000:8000"] == "1" and body["env"]["-p 8001:8001"] == "1"


def test_the_spec_is_immutable():
    spec = spec_of(june_pod())
    with pytest.raises(TypeError):
        spec.env["X"] = "1"  # type: ignore[index]


def test_the_translation_does_not_modify_the_pod():
    pod = june_pod()
    before = copy.deepcopy(pod)
    spec_of(pod)
    assert pod == before


def test_a_launch_error_is_a_kube_vast_error_with_reason_and_message():
    error = LaunchError(CONFIG_ERROR, 'configmap "x" not found')
    assert isinstance(error, KubeVastError)
    assert (error.reason, error.message) == (CONFIG_ERROR, 'configmap "x" not found')
    assert str(error) == 'configmap "x" not found'


# --- what Vast cannot run ------------------------------------------------------------------------

def two_containers() -> dict[str, Any]:
    pod = june_pod()
    pod["spec"]["containers"].append({"name": "sidecar", "image": "envoyproxy/envoy:v1.30"})
    return pod


def init_container() -> dict[str, Any]:
    pod = june_pod()
    pod["spec"]["initContainers"] = [{"name": "download-model", "image": "busybox:1.36"}]
    return pod


def no_containers() -> dict[str, Any]:
    pod = june_pod()
    pod["spec"]["containers"] = []
    return pod


@pytest.mark.parametrize("pod, fragment", [
    (two_containers(), "exactly one container; the pod has 2 (june, sidecar)"),
    (no_containers(), "the pod has 0 (none)"),
    ({"metadata": {"name": "x"}}, "the pod has 0"),
    (init_container(), "init containers cannot run on a Vast instance: download-model"),
    (june_pod(image=None), "container 'june' has no image"),
    (june_pod(image="  "), "has no image"),
    (june_pod(args=["x" * 4100]), "at most 4096 characters"),
], ids=["two containers", "no containers", "no spec", "init container", "no image", "blank image",
        "args too long"])
def test_pods_vast_cannot_run_are_unsupported(pod, fragment):
    error = launch_error(pod)
    assert error.reason == UNSUPPORTED
    assert fragment in error.message


@pytest.mark.parametrize("annotation, fragment", [
    ({"vast.ai/disk": "lots"}, "vast.ai/disk"),
    ({"vast.ai/disk": "5"}, "vast.ai/disk: invalid value '5': expected a disk size of at least 8 GB (Vast's minimum)"),
    ({"vast.ai/image": "has spaces in it"}, "vast.ai/image"),
    ({"vast.ai/disk-size": "40"}, "vast.ai/disk-size"),
])
def test_a_bad_vast_annotation_is_unsupported_and_named(annotation, fragment):
    pod = june_pod()
    pod["metadata"]["annotations"] = annotation
    error = launch_error(pod)
    assert error.reason == UNSUPPORTED and fragment in error.message


def test_a_bad_gpu_quantity_is_unsupported():
    pod = june_pod(resources={"limits": {"nvidia.com/gpu": "half"}})
    assert launch_error(pod).reason == UNSUPPORTED


@pytest.mark.parametrize("name", ["-p 9000:9000", "-h", "1ST", "MY VAR", "", "a=b"])
def test_an_invalid_environment_variable_name_is_unsupported(name):
    error = launch_error(with_env(june_pod(), [{"name": name, "value": "1"}]))
    assert error.reason == UNSUPPORTED
    assert repr(name) in error.message


@pytest.mark.parametrize("name", ["A", "_private", ".dotted", "with-dash", "MiXeD.9"])
def test_valid_environment_variable_names_pass(name):
    assert env_of([{"name": name, "value": "1"}]) == {name: "1"}


def test_a_label_vast_would_refuse_is_a_launch_error():
    with pytest.raises(LaunchError, match="label must be at most 256"):
        spec_of(june_pod()).rent_request("x" * 300)


# --- image, disk, GPUs, ports ---------------------------------------------------------------------

def test_the_image_annotation_replaces_the_container_image():
    pod = june_pod()
    pod["metadata"]["annotations"]["vast.ai/image"] = "docker.io/june/speech-cuda12:2.3.1"
    assert spec_of(pod).image == "docker.io/june/speech-cuda12:2.3.1"


@pytest.mark.parametrize("annotations, default, disk", [
    ({"vast.ai/disk": "40"}, 10.0, 40.0),
    ({"vast.ai/disk": "100GB"}, 10.0, 100.0),
    ({"vast.ai/disk": "16Gi"}, 10.0, pytest.approx(17.179869184)),
    ({}, 10.0, 10.0),
    ({}, 32.0, 32.0),
])
def test_the_disk_comes_from_the_annotation_else_the_default(annotations, default, disk):
    pod = june_pod()
    pod["metadata"]["annotations"] = annotations
    assert spec_of(pod, default_disk_gb=default).disk_gb == disk


@pytest.mark.parametrize("resources, gpus", [
    ({"limits": {"nvidia.com/gpu": "2"}}, 2),
    ({"requests": {"nvidia.com/gpu": 4}, "limits": {"nvidia.com/gpu": 4}}, 4),
    ({"limits": {"nvidia.com/gpu": "1"}}, 1),
])
def test_the_gpu_count_comes_from_nvidia_gpu(resources, gpus):
    assert spec_of(june_pod(resources=resources)).num_gpus == gpus


@pytest.mark.parametrize("ports, probe, expected", [
    ([{"containerPort": 8000}, {"containerPort": 8001}], None, (8000, 8001)),
    ([{"containerPort": 8000}, {"containerPort": 8000, "name": "again"}], None, (8000,)),
    ([{"containerPort": 8000}, {"containerPort": 5353, "protocol": "UDP"}], None, (8000,)),
    ([{"containerPort": 9000, "protocol": "SCTP"}], None, ()),
    ([], None, ()),
    ([{"containerPort": 8000}], {"tcpSocket": {"port": 9090}}, (8000, 9090)),
    ([{"containerPort": 8000}], {"httpGet": {"port": 8000, "path": "/"}}, (8000,)),
    ([{"containerPort": 8000}], {"httpGet": {"port": "metrics", "path": "/"}}, (8000,)),
], ids=["two tcp", "duplicate", "udp skipped", "sctp skipped", "none", "undeclared probe port added",
        "declared probe port", "unknown named probe port"])
def test_tcp_container_ports_and_the_probe_port_are_mapped_once(ports, probe, expected):
    pod = june_pod(ports=ports, readinessProbe=probe)
    assert spec_of(pod).ports == expected


# --- command and args ----------------------------------------------------------------------------

@pytest.mark.parametrize("command, args, onstart, expected", [
    (None, None, None, None),
    ([], [], None, None),
    (None, ["--port", "8000"], None, ("--port", "8000")),
    (["vllm"], None, "vllm", ()),
    (["/bin/sh", "-c"], None, "/bin/sh", ("-c",)),
    (["/bin/sh", "-c"], ["exec serve --model $(MODEL_NAME)"], "/bin/sh", ("-c", "exec serve --model whisper-large-v3")),
    (["echo", "$(UNDEFINED)", "$$(MODEL_NAME)"], None, "echo", ("$(UNDEFINED)", "$(MODEL_NAME)")),
    (["$(POD_NAME)"], ["$(POD_NAME)"], "june-7d9f8b6c5-x2x7q", ("june-7d9f8b6c5-x2x7q",)),
], ids=["image entrypoint and cmd", "empty lists", "args replace cmd", "command alone",
        "command words after the first are args", "command then args", "unknown and escaped", "valueFrom variable"])
def test_command_replaces_the_entrypoint_and_args_replace_cmd(command, args, onstart, expected):
    spec = spec_of(june_pod(command=command, args=args))
    assert (spec.onstart, spec.args) == (onstart, expected)
    body = spec.rent_request("l").body()
    assert body.get("onstart") == onstart and body.get("args") == (None if expected is None else list(expected))


# --- env: literal values and $(VAR) --------------------------------------------------------------

@pytest.mark.parametrize("env, expected", [
    ([{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y"}], {"A": "x", "B": "x-y"}),
    ([{"name": "B", "value": "$(A)-y"}, {"name": "A", "value": "x"}], {"B": "$(A)-y", "A": "x"}),
    ([{"name": "A", "value": "x"}, {"name": "A", "value": "$(A)$(A)"}], {"A": "xx"}),
    ([{"name": "A", "value": "$$(A)"}], {"A": "$(A)"}),
    ([{"name": "A", "value": "cost $5 $"}], {"A": "cost $5 $"}),
    ([{"name": "A", "value": "$(UNSET) $(open"}], {"A": "$(UNSET) $(open"}),
    ([{"name": "A"}], {"A": ""}),
    ([{"name": "A", "value": ""}], {"A": ""}),
    ([{"name": "S", "valueFrom": {"configMapKeyRef": {"name": "raw", "key": "k"}}},
      {"name": "T", "value": "<$(S)>"}], {"S": "$(NOT_EXPANDED)", "T": "<$(NOT_EXPANDED)>"}),
], ids=["refers to earlier", "forward reference stays literal", "redefined from itself", "escaped",
        "lone dollars", "unknown and unterminated", "no value", "empty value",
        "valueFrom values are not expanded"])
def test_env_values_are_expanded_like_the_kubelet(env, expected):
    lookup = DictLookup(configmaps={("speech", "raw"): {"k": "$(NOT_EXPANDED)"}})
    assert env_of(env, lookup=lookup) == expected


@pytest.mark.parametrize("text, expected", [
    ("", ""),
    ("plain", "plain"),
    ("$(A)", "1"),
    ("$(A)$(B)", "12"),
    ("$$(A)", "$(A)"),
    ("$$$(A)", "$1"),
    ("$$$$", "$$"),
    ("$", "$"),
    ("a$", "a$"),
    ("$x", "$x"),
    ("$(", "$("),
    ("$(A", "$(A"),
    ("$()", "$()"),
    ("$(NOPE)", "$(NOPE)"),
    ("$(A)$(", "1$("),
    ("($(A))", "(1)"),
    ("$(A)é$(B)", "1é2"),
])
def test_expand_follows_kubernetes_expansion_rules(text, expected):
    assert expand(text, {"A": "1", "B": "2"}.get) == expected


@given(st.text(alphabet=string.printable + "é€"))
def test_escaping_every_dollar_gives_back_the_text(text):
    assert expand(text.replace("$", "$$"), lambda name: "REPLACED") == text


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_text_without_a_dollar_is_never_changed(text):
    assert expand(text, lambda name: "REPLACED") == text


# --- env: ConfigMaps and Secrets -----------------------------------------------------------------

def cm_ref(name: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"name": "V", "valueFrom": {"configMapKeyRef": {"name": name, "key": key, **extra}}}


def secret_ref(name: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"name": "V", "valueFrom": {"secretKeyRef": {"name": name, "key": key, **extra}}}


@pytest.mark.parametrize("var, message", [
    (cm_ref("absent", "k"), 'configmap "absent" not found'),
    (cm_ref("june-config", "absent"), "couldn't find key absent in ConfigMap speech/june-config"),
    (secret_ref("absent", "k"), 'secret "absent" not found'),
    (secret_ref("june-secrets", "absent"), "couldn't find key absent in Secret speech/june-secrets"),
    (cm_ref("absent", "k", optional=False), 'configmap "absent" not found'),
], ids=["configmap", "configmap key", "secret", "secret key", "explicitly required"])
def test_a_missing_required_reference_is_a_create_container_config_error(var, message):
    error = launch_error(with_env(june_pod(), [var]))
    assert (error.reason, error.message) == (CONFIG_ERROR, message)


@pytest.mark.parametrize("var", [
    cm_ref("absent", "k", optional=True),
    cm_ref("june-config", "absent", optional=True),
    secret_ref("absent", "k", optional=True),
    secret_ref("june-secrets", "absent", optional=True),
], ids=["configmap", "configmap key", "secret", "secret key"])
def test_a_missing_optional_reference_leaves_the_variable_unset(var):
    assert env_of([{"name": "BEFORE", "value": "1"}, var]) == {"BEFORE": "1"}


def test_references_are_looked_up_in_the_pod_namespace():
    lookup = DictLookup(configmaps={("other", "june-config"): {"log-level": "debug"}})
    error = launch_error(with_env(june_pod(), [cm_ref("june-config", "log-level")]), lookup)
    assert error.message == 'configmap "june-config" not found'


def test_present_references_give_their_values():
    assert env_of([cm_ref("june-config", "log-level"), {**secret_ref("june-secrets", "hf-token"), "name": "T"}]) \
        == {"V": "info", "T": "hf_abc123"}


# --- env: envFrom ---------------------------------------------------------------------------------

def test_env_from_imports_every_key_with_the_prefix_and_env_overrides_it():
    lookup = DictLookup(configmaps={("speech", "settings"): {"WORKERS": "2", "LOG_LEVEL": "info"}},
                        secrets={("speech", "tokens"): {"HF_TOKEN": "hf_abc"}})
    env = env_of([{"name": "JUNE_WORKERS", "value": "4"}, {"name": "SUMMARY", "value": "$(JUNE_LOG_LEVEL)"}],
                 [{"configMapRef": {"name": "settings"}, "prefix": "JUNE_"}, {"secretRef": {"name": "tokens"}}],
                 lookup)
    assert env == {"JUNE_LOG_LEVEL": "info", "JUNE_WORKERS": "4", "HF_TOKEN": "hf_abc", "SUMMARY": "info"}


def test_a_later_env_from_source_overrides_an_earlier_one():
    lookup = DictLookup(configmaps={("speech", "a"): {"X": "from-a"}, ("speech", "b"): {"X": "from-b"}})
    assert env_of([], [{"configMapRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}], lookup) == {"X": "from-b"}


@pytest.mark.parametrize("source, outcome", [
    ({"configMapRef": {"name": "absent"}}, 'configmap "absent" not found'),
    ({"secretRef": {"name": "absent"}}, 'secret "absent" not found'),
    ({"configMapRef": {"name": "absent", "optional": True}}, {}),
    ({"secretRef": {"name": "absent", "optional": True}}, {}),
])
def test_a_missing_env_from_source_fails_unless_optional(source, outcome):
    pod = with_env(june_pod(), [], [source])
    if isinstance(outcome, str):
        error = launch_error(pod, DictLookup())
        assert (error.reason, error.message) == (CONFIG_ERROR, outcome)
    else:
        assert dict(spec_of(pod, DictLookup()).env) == outcome


def test_env_from_keys_that_are_not_variable_names_are_skipped_with_a_warning():
    lookup = DictLookup(configmaps={("speech", "settings"): {"GOOD": "1", "-p 22:22": "1", "bad key": "2",
                                                             "9LIVES": "3"}})
    spec = spec_of(with_env(june_pod(), [], [{"configMapRef": {"name": "settings"}}]), lookup)
    assert dict(spec.env) == {"GOOD": "1"}
    assert [w.reason for w in spec.warnings] == [INVALID_ENV_NAMES]
    assert spec.warnings[0].message == ("Keys [-p 22:22, 9LIVES, bad key] from the EnvFrom configMap "
                                        "speech/settings were skipped since they are considered invalid "
                                        "environment variable names.")


def test_a_prefix_can_make_keys_valid():
    lookup = DictLookup(configmaps={("speech", "settings"): {"9LIVES": "3"}})
    env = env_of([], [{"configMapRef": {"name": "settings"}, "prefix": "CAT_"}], lookup)
    assert env == {"CAT_9LIVES": "3"}


# --- env: the downward API ------------------------------------------------------------------------

@pytest.mark.parametrize("path, value", [
    ("metadata.name", "june-7d9f8b6c5-x2x7q"),
    ("metadata.namespace", "speech"),
    ("metadata.uid", POD_UID),
    ("metadata.labels['app']", "june"),
    ("metadata.labels['pod-template-hash']", "7d9f8b6c5"),
    ("metadata.labels['absent']", ""),
    ("metadata.annotations['vast.ai/disk']", "40"),
    ("spec.nodeName", NODE),
    ("spec.serviceAccountName", "default"),
    ("status.podIP", ""),
    ("status.podIPs", ""),
    ("status.hostIP", ""),
    ("status.hostIPs", ""),
])
def test_field_refs_resolve_like_the_downward_api(path, value):
    env = env_of([{"name": "F", "valueFrom": {"fieldRef": {"fieldPath": path}}}])
    assert env == {"F": value}


@pytest.mark.parametrize("path", ["metadata.labels", "metadata.generation", "spec.containers", ""])
def test_an_unsupported_field_ref_is_a_config_error(path):
    error = launch_error(with_env(june_pod(), [{"name": "F", "valueFrom": {"fieldRef": {"fieldPath": path}}}]))
    assert error.reason == CONFIG_ERROR and "unsupported fieldPath" in error.message


def test_a_value_from_without_a_known_source_is_a_config_error():
    error = launch_error(with_env(june_pod(), [{"name": "F", "valueFrom": {"fileKeyRef": {"path": "x"}}}]))
    assert error.reason == CONFIG_ERROR


def resource_env(resource: str, divisor: str | None = None, **extra: Any) -> list[dict[str, Any]]:
    ref: dict[str, Any] = {"resource": resource, **extra}
    if divisor is not None:
        ref["divisor"] = divisor
    return [{"name": "R", "valueFrom": {"resourceFieldRef": ref}}]


@pytest.mark.parametrize("resource, divisor, value", [
    ("requests.cpu", None, "4"),
    ("requests.cpu", "1m", "4000"),
    ("requests.memory", None, "17179869184"),
    ("requests.memory", "1Mi", "16384"),
    ("requests.memory", "1G", "18"),
    ("limits.memory", "1Gi", "16"),
    ("limits.nvidia.com/gpu", None, "1"),
    ("requests.ephemeral-storage", None, "0"),
], ids=["cpu", "millicores", "memory bytes", "memory Mi", "memory G rounded up", "limit",
        "extended resource", "unset request is 0"])
def test_resource_field_refs_divide_and_round_up_like_the_kubelet(resource, divisor, value):
    assert env_of(resource_env(resource, divisor)) == {"R": value}


@pytest.mark.parametrize("resources, resource, divisor, value", [
    ({"requests": {"cpu": "250m"}}, "requests.cpu", None, "1"),
    ({"requests": {"cpu": "250m"}}, "requests.cpu", "1m", "250"),
    ({"limits": {"cpu": "2"}}, "requests.cpu", None, "2"),
    ({"limits": {"memory": "1500Mi"}}, "limits.memory", "1Gi", "2"),
], ids=["fraction rounds up", "millicores", "request defaults to limit", "memory rounds up"])
def test_resource_field_refs_round_up_fractions(resources, resource, divisor, value):
    pod = with_env(june_pod(resources=resources), resource_env(resource, divisor))
    assert dict(spec_of(pod).env) == {"R": value}


def test_an_unset_limit_is_the_machine_allocatable():
    pod = with_env(june_pod(), resource_env("limits.cpu"))
    assert dict(spec_of(pod, allocatable={"cpu": "16", "memory": "64Gi"}).env) == {"R": "16"}


@pytest.mark.parametrize("env, fragment", [
    (resource_env("limits.cpu"), "limits.cpu is not set and the machine's allocatable cpu is unknown"),
    (resource_env("requests.cpu", containerName="sidecar"), "names container 'sidecar'"),
    (resource_env("cpu"), "unsupported container resource : cpu"),
    (resource_env("requests.cpu", "0"), "the divisor must be positive"),
    (resource_env("requests.cpu", "lots"), "invalid quantity"),
])
def test_resource_field_refs_that_cannot_be_resolved_are_config_errors(env, fragment):
    error = launch_error(with_env(june_pod(), env))
    assert error.reason == CONFIG_ERROR and fragment in error.message


def test_a_resource_field_ref_may_name_the_container():
    assert env_of(resource_env("requests.cpu", containerName="june")) == {"R": "4"}


# --- ignored fields -------------------------------------------------------------------------------

def test_fields_without_a_vast_equivalent_are_reported_not_refused():
    pod = june_pod(command=None, workingDir="/srv", volumeMounts=[
        {"name": "models", "mountPath": "/models"},
        {"name": "host", "mountPath": "/host"},
        {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
    ])
    pod["spec"]["volumes"] += [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
                               {"name": "host", "hostPath": {"path": "/data"}}]
    warnings = spec_of(pod).warnings
    assert {w.reason for w in warnings} == {IGNORED_FIELD}
    assert [w.message.split(": ", 1)[1] for w in warnings] == [
        "volumeMounts (/models: persistentVolumeClaim, /host: hostPath)",
        "workingDir (kube-vast can change to it only when the container sets command)"]


def test_the_service_account_token_mount_is_not_worth_a_warning():
    assert spec_of(june_pod()).warnings == ()


# --- properties -----------------------------------------------------------------------------------

values = st.text(alphabet=st.characters(blacklist_characters="$\x00", blacklist_categories=("Cs",)), max_size=30)
names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)


@given(st.dictionaries(names, values, max_size=8))
def test_literal_values_without_references_reach_vast_unchanged(env):
    spec = spec_of(with_env(june_pod(), [{"name": k, "value": v} for k, v in env.items()]))
    assert dict(spec.env) == env
    spec.rent_request("label").validate()


# --- ports the Services need ---------------------------------------------------------------------

def localai_pod(**changes: Any) -> dict[str, Any]:
    """LocalAI/TGI style: the server listens on $PORT, the container declares no port or probe."""
    return june_pod(ports=None, readinessProbe=None, command=["local-ai"], args=None,
                    env=[{"name": "PORT", "value": "8080"}], **changes)


@pytest.mark.parametrize("service_ports, expected", [
    ([{"port": 80, "targetPort": 8080}], (8080,)),
    ([{"port": 8080}], (8080,)),
    ([{"port": 80, "targetPort": "8080"}], (8080,)),
    ([{"port": 80, "targetPort": 8080}, {"port": 81, "targetPort": 8080}], (8080,)),
    ([{"port": 80, "targetPort": 8080}, {"port": 9000, "targetPort": 9000, "protocol": "UDP"}], (8080,)),
    ([{"port": 80, "targetPort": 8080}, {"port": 9090, "targetPort": 9090}], (8080, 9090)),
], ids=["numeric targetPort", "no targetPort: the port", "numeric text", "duplicates once", "udp skipped",
        "every port"])
def test_the_ports_of_a_selecting_service_are_mapped(service_ports, expected):
    service = june_service("localai", 80, None)
    service["spec"]["ports"] = service_ports
    spec = spec_of(localai_pod(), services=[service])
    assert spec.ports == expected
    assert all(f"-p {p}:{p}" in spec.rent_request("l").body()["env"] for p in expected)


def test_a_service_that_does_not_select_the_pod_adds_nothing():
    other = june_service("other", 80, 7000, selector={"app": "someone-else"})
    elsewhere = june_service("elsewhere", 80, 7001)
    elsewhere["metadata"]["namespace"] = "another"
    assert spec_of(localai_pod(), services=[other, elsewhere]).ports == ()


def test_a_named_target_port_resolves_against_the_container_and_an_unknown_one_is_reported():
    pod = june_pod(ports=[{"name": "http", "containerPort": 5000}], readinessProbe=None)
    known = june_service("web", 80, "http")
    unknown = june_service("metrics", 9100, "metrics")
    spec = spec_of(pod, services=[known, unknown])
    assert spec.ports == (5000,)
    assert [(w.reason, w.message) for w in spec.warnings] == [(UNRESOLVED_SERVICE_PORT, (
        "Service metrics port 9100 (http): targetPort 'metrics' names no port of container 'june'; it is not "
        "mapped and the Service gets no endpoint for it"))]


def test_container_ports_come_first_then_probes_then_services():
    pod = june_pod(ports=[{"name": "tts", "containerPort": 8000}],
                   readinessProbe={"httpGet": {"port": 8002, "path": "/ready"}},
                   livenessProbe={"tcpSocket": {"port": "tts"}},
                   startupProbe={"httpGet": {"port": 8003, "path": "/started"}})
    assert spec_of(pod, services=[june_service("s", 80, 8004)]).ports == (8000, 8002, 8003, 8004)


def test_a_liveness_probe_port_is_mapped_even_without_a_readiness_probe():
    pod = june_pod(ports=None, readinessProbe=None, livenessProbe={"httpGet": {"port": 8888, "path": "/live"}})
    assert spec_of(pod).ports == (8888,)


# --- volumes: files before the entrypoint -------------------------------------------------------

APP_CONFIG = {"config.yaml": "model: whisper\nworkers: 2\n", "log-level": "debug"}
CREDENTIALS = {"token": "hf_SECRET_abc123", "gcp.json": '{"private_key": "SECRET-KEY"}'}


def volume_lookup(**extra_configmaps: dict[str, str]) -> DictLookup:
    lookup = june_lookup()
    lookup.configmaps[("speech", "app-config")] = APP_CONFIG
    lookup.secrets[("speech", "credentials")] = CREDENTIALS
    for name, data in extra_configmaps.items():
        lookup.configmaps[("speech", name)] = data
    return lookup


def with_volumes(pod: dict[str, Any], volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["spec"]["volumes"] = pod["spec"]["volumes"] + volumes
    pod["spec"]["containers"][0]["volumeMounts"] += mounts
    return pod


def carried_files(spec: LaunchSpec, root) -> dict[str, tuple[bytes, int]]:
    """Run the spec's entrypoint and args as the instance would (the start script under /bin/sh,
    ``root`` prefixed to every path; the command replaced by ``true``) and read back what it wrote."""
    assert spec.onstart == "/bin/sh" and spec.args is not None
    script_args = list(spec.args[:spec.args.index("kube-vast") + 1])
    env = {"PATH": os.environ["PATH"], "KUBE_VAST_FILES_ROOT": str(root), **spec.env}
    done = subprocess.run([spec.onstart, *script_args, "true"], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return {"/" + str(p.relative_to(root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_config_map_and_secret_volumes_become_files_written_before_the_command(tmp_path):
    pod = with_volumes(june_pod(), [
        {"name": "config", "configMap": {"name": "app-config"}},
        {"name": "creds", "secret": {"secretName": "credentials", "defaultMode": 0o400}},
    ], [{"name": "config", "mountPath": "/etc/june"}, {"name": "creds", "mountPath": "/var/run/creds/", "readOnly": True}])
    spec = spec_of(pod, volume_lookup())
    assert spec.args[-6:] == ("python", "-m", "june.serve", "--tts-port=8000", "--stt-port=8001",
                              "--model=whisper-large-v3")
    assert carried_files(spec, tmp_path) == {
        "/etc/june/config.yaml": (b"model: whisper\nworkers: 2\n", 0o644),
        "/etc/june/log-level": (b"debug", 0o644),
        "/var/run/creds/gcp.json": (b'{"private_key": "SECRET-KEY"}', 0o400),
        "/var/run/creds/token": (b"hf_SECRET_abc123", 0o400),
    }
    assert spec.files == ("/etc/june/config.yaml", "/etc/june/log-level", "/var/run/creds/gcp.json",
                          "/var/run/creds/token")
    assert spec.warnings == ()


def test_items_choose_keys_paths_and_modes_and_sub_path_mounts_one_file(tmp_path):
    pod = with_volumes(june_pod(), [
        {"name": "config", "configMap": {"name": "app-config", "defaultMode": 0o600,
                                         "items": [{"key": "config.yaml", "path": "conf/app.yaml"},
                                                   {"key": "log-level", "path": "level", "mode": 0o444}]}},
        {"name": "one", "configMap": {"name": "app-config"}},
    ], [{"name": "config", "mountPath": "/etc/june"},
        {"name": "one", "mountPath": "/srv/app/config.yaml", "subPath": "config.yaml"}])
    assert carried_files(spec_of(pod, volume_lookup()), tmp_path) == {
        "/etc/june/conf/app.yaml": (b"model: whisper\nworkers: 2\n", 0o600),
        "/etc/june/level": (b"debug", 0o444),
        "/srv/app/config.yaml": (b"model: whisper\nworkers: 2\n", 0o644),
    }


def test_projected_and_downward_api_volumes_become_files(tmp_path):
    pod = with_volumes(june_pod(), [
        {"name": "all", "projected": {"defaultMode": 0o640, "sources": [
            {"configMap": {"name": "app-config", "items": [{"key": "log-level", "path": "level"}]}},
            {"secret": {"name": "credentials", "items": [{"key": "token", "path": "secret/token", "mode": 0o400}]}},
            {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                                       {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        ]}},
    ], [{"name": "all", "mountPath": "/etc/pod"}])
    assert carried_files(spec_of(pod, volume_lookup()), tmp_path) == {
        "/etc/pod/level": (b"debug", 0o640),
        "/etc/pod/secret/token": (b"hf_SECRET_abc123", 0o400),
        "/etc/pod/name": (b"june-7d9f8b6c5-x2x7q", 0o640),
        "/etc/pod/labels": (b'app="june"\npod-template-hash="7d9f8b6c5"\ntier="gpu"', 0o640),
    }


@pytest.mark.parametrize("volume, message", [
    ({"configMap": {"name": "absent"}}, 'configmap "absent" not found'),
    ({"secret": {"secretName": "absent"}}, 'secret "absent" not found'),
    ({"configMap": {"name": "app-config", "items": [{"key": "nope", "path": "x"}]}},
     "configmap speech/app-config references non-existent config key: nope"),
    ({"secret": {"secretName": "credentials", "items": [{"key": "nope", "path": "x"}]}},
     "secret speech/credentials references non-existent secret key: nope"),
    ({"projected": {"sources": [{"configMap": {"name": "absent"}}]}}, 'configmap "absent" not found'),
], ids=["configmap", "secret", "configmap key", "secret key", "projected"])
def test_a_missing_required_volume_source_is_a_create_container_config_error(volume, message):
    pod = with_volumes(june_pod(), [{"name": "v", **volume}], [{"name": "v", "mountPath": "/etc/v"}])
    error = launch_error(pod, volume_lookup())
    assert (error.reason, error.message) == (CONFIG_ERROR, message)


def test_a_missing_optional_volume_source_or_key_is_skipped(tmp_path):
    pod = with_volumes(june_pod(), [
        {"name": "a", "configMap": {"name": "absent", "optional": True}},
        {"name": "b", "secret": {"secretName": "credentials", "optional": True,
                                 "items": [{"key": "nope", "path": "x"}, {"key": "token", "path": "t"}]}},
    ], [{"name": "a", "mountPath": "/etc/a"}, {"name": "b", "mountPath": "/etc/b"}])
    assert carried_files(spec_of(pod, volume_lookup()), tmp_path) == {"/etc/b/t": (b"hf_SECRET_abc123", 0o644)}


def test_files_without_a_command_are_refused_because_the_entrypoint_is_unknown():
    pod = with_volumes(june_pod(command=None), [{"name": "config", "configMap": {"name": "app-config"}}],
                       [{"name": "config", "mountPath": "/etc/june"}])
    error = launch_error(pod, volume_lookup())
    assert error.reason == UNSUPPORTED
    assert "files from volumes (/etc/june/config.yaml, /etc/june/log-level)" in error.message
    assert "Set command" in error.message


def test_volume_files_that_do_not_fit_vast_s_environment_are_refused():
    pod = with_volumes(june_pod(), [{"name": "big", "configMap": {"name": "big"}}],
                       [{"name": "big", "mountPath": "/models"}])
    error = launch_error(pod, volume_lookup(big={"weights.txt": "w" * 30_000}))
    assert error.reason == UNSUPPORTED
    assert "over its limit of 32768 bytes" in error.message and "carry files from volumes" in error.message


@pytest.mark.parametrize("empty_dir, mount, dirs, warning", [
    ({}, "/cache", ["/cache"], None),
    ({"medium": "Memory"}, "/dev/shm", [], None),
    ({"medium": "Memory", "sizeLimit": "16Gi"}, "/dev/shm", [], "sizeLimit 16Gi is not applied"),
    ({"medium": "Memory"}, "/scratch", ["/scratch"], "ordinary directory on the instance's disk"),
], ids=["disk", "shared memory", "shared memory size", "memory elsewhere"])
def test_empty_dirs_are_directories_and_dev_shm_is_vast_s_own(tmp_path, empty_dir, mount, dirs, warning):
    pod = with_volumes(june_pod(workingDir="/srv"), [{"name": "e", "emptyDir": empty_dir}],
                       [{"name": "e", "mountPath": mount}])
    spec = spec_of(pod)
    carried_files(spec, tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.iterdir()) == sorted(
        [d.strip("/") for d in dirs] + ["srv"])
    assert [w.reason for w in spec.warnings] == ([VOLUME_APPROXIMATED] if warning else [])
    assert all(warning in w.message for w in spec.warnings)


def test_an_empty_dir_alone_keeps_the_command_as_the_entrypoint():
    pod = with_volumes(june_pod(), [{"name": "shm", "emptyDir": {"medium": "Memory"}},
                                    {"name": "cache", "emptyDir": {}}],
                       [{"name": "shm", "mountPath": "/dev/shm"}, {"name": "cache", "mountPath": "/cache"}])
    spec = spec_of(pod)
    assert spec.onstart == "python" and spec.warnings == ()


def test_the_working_directory_is_entered_when_the_pod_has_a_command(tmp_path):
    spec = spec_of(june_pod(workingDir="/srv/june"))
    carried_files(spec, tmp_path)
    assert (tmp_path / "srv/june").is_dir()


# --- Vast's limits --------------------------------------------------------------------------------

def test_a_long_environment_value_is_set_by_the_start_script_when_the_pod_has_a_command():
    value = '{"type": "service_account"' + ", " * 200 + "}"
    spec = spec_of(with_env(june_pod(), [{"name": "GOOGLE_CREDENTIALS", "value": value}]))
    assert "GOOGLE_CREDENTIALS" not in spec.env
    assert spec.onstart == "/bin/sh"
    spec.rent_request("l").validate()


def test_a_long_environment_value_without_a_command_is_refused_naming_the_limit():
    error = launch_error(with_env(june_pod(command=None), [{"name": "LONG", "value": "x" * 257}]))
    assert error.reason == UNSUPPORTED
    assert "environment values over Vast's limit of 256 characters (LONG)" in error.message


@pytest.mark.parametrize("pod, fragment", [
    (june_pod(command=["serve"], args=["x" * 4093]), "is 4098 characters; Vast allows at most 4096"),
    (june_pod(command=None, args=["x" * 4097]), "is 4097 characters; Vast allows at most 4096"),
], ids=["command and args", "args"])
def test_a_command_line_over_vast_s_limit_is_refused_naming_it(pod, fragment):
    error = launch_error(pod)
    assert error.reason == UNSUPPORTED and fragment in error.message


def test_a_disk_under_vast_s_minimum_is_refused():
    pod = june_pod()
    pod["metadata"]["annotations"]["vast.ai/disk"] = "5"
    error = launch_error(pod)
    assert error.reason == UNSUPPORTED and "at least 8 GB" in error.message


def test_a_pod_may_not_define_the_start_script_s_variables():
    pod = with_volumes(with_env(june_pod(), [{"name": "_KV0", "value": "x"}]),
                       [{"name": "config", "configMap": {"name": "app-config"}}],
                       [{"name": "config", "mountPath": "/etc/june"}])
    assert "reserved" in launch_error(pod, volume_lookup()).message


# --- private images --------------------------------------------------------------------------------

def pull_secret(registry_key: str, **entry: str) -> dict[str, str]:
    return {".dockerconfigjson": json.dumps({"auths": {registry_key: entry}})}


@pytest.mark.parametrize("image, secret, login", [
    ("ghcr.io/june-ai/speech:2.3.1", pull_secret("ghcr.io", username="june", password="ghp_S3cret"),
     "-u june -p ghp_S3cret ghcr.io"),
    ("ghcr.io/june-ai/speech:2.3.1", pull_secret("https://ghcr.io", auth=base64.b64encode(b"june:pa:ss").decode()),
     "-u june -p pa:ss ghcr.io"),
    ("june/speech:2.3.1", pull_secret("https://index.docker.io/v1/", username="june", password="hub"),
     "-u june -p hub docker.io"),
    ("registry.local:5000/speech", {".dockercfg": json.dumps({"registry.local:5000": {"auth": base64.b64encode(
        b"u:p").decode()}})}, "-u u -p p registry.local:5000"),
    ("ghcr.io/june-ai/speech:2.3.1", pull_secret("docker.io", username="june", password="hub"), None),
], ids=["dockerconfigjson", "auth field", "docker hub", "dockercfg", "another registry"])
def test_an_image_pull_secret_becomes_vast_s_image_login(image, secret, login):
    pod = june_pod(image=image)
    pod["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    lookup = june_lookup()
    lookup.secrets[("speech", "regcred")] = secret
    spec = spec_of(pod, lookup)
    assert spec.image_login == login and spec.warnings == ()
    assert spec.rent_request("l").body().get("image_login") == login


def test_a_missing_pull_secret_is_a_warning_and_the_pull_goes_ahead():
    pod = june_pod()
    pod["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    spec = spec_of(pod)
    assert spec.image_login is None
    assert [w.reason for w in spec.warnings] == [PULL_SECRET_MISSING]


# --- secrets stay secret ---------------------------------------------------------------------------

def secret_pod() -> tuple[dict[str, Any], DictLookup]:
    pod = with_volumes(june_pod(), [{"name": "creds", "secret": {"secretName": "credentials"}}],
                       [{"name": "creds", "mountPath": "/var/run/creds"}])
    pod["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    lookup = volume_lookup()
    lookup.secrets[("speech", "regcred")] = pull_secret("ghcr.io", username="june", password="ghp_S3cret")
    return pod, lookup


def test_secret_values_are_in_no_repr_and_no_warning():
    pod, lookup = secret_pod()
    spec = spec_of(pod, lookup)
    shown = repr(spec) + repr(spec.rent_request("l")) + " ".join(w.message for w in spec.warnings)
    for secret in ("hf_abc123", "hf_SECRET_abc123", "SECRET-KEY", "ghp_S3cret",
                   base64.b64encode(b"hf_SECRET_abc123").decode()[:12]):
        assert secret not in shown


def test_a_refusal_names_the_limit_never_the_secret():
    pod, lookup = secret_pod()
    lookup.secrets[("speech", "credentials")] = {"token": "SECRETVALUE" * 3000}
    error = launch_error(pod, lookup)
    assert "SECRETVALUE" not in error.message and "32768" in error.message
