import copy
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.translate import (
    CONFIG_ERROR, IGNORED_FIELD, INVALID_ENV_NAMES, UNSUPPORTED, LaunchError, LaunchSpec, expand,
    launch_spec,
)
from vastmarket.errors import KubeVastError

from .objects import NODE, POD_UID, DictLookup, june_lookup, june_pod, with_env


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
