from __future__ import annotations

from pathlib import Path

import pytest

from vastmarket.errors import ConfigError
from webhooks.mutation import Taint
from webhooks.settings import WebhookSettings, settings_from


def test_defaults():
    s = settings_from({})
    assert s.scheduler_name == "vast-scheduler" and s.deny_without_offer is False
    assert s.excluded_namespaces == {"kube-system"} and s.max_snapshot_age == 300
    assert s.snapshot_path == Path("/var/run/kube-vast/offers.json")


def test_environment_then_flags():
    env = {"KUBE_VAST_NAMESPACE": "kube-vast", "KUBE_VAST_DENY_WITHOUT_OFFER": "true",
           "KUBE_VAST_SCHEDULER_NAME": "gpu-scheduler", "KUBE_VAST_MAX_SNAPSHOT_AGE": "60",
           "KUBE_VAST_TLS_CERT": "/tls/tls.crt", "KUBE_VAST_TLS_KEY": "/tls/tls.key",
           "KUBE_VAST_VIRTUAL_NODE_TAINT": "vast.ai/node=yes:NoSchedule"}
    s = settings_from(env, release_namespace="vast-system", max_snapshot_age=None)
    assert s.excluded_namespaces == {"kube-system", "vast-system"}
    assert s.deny_without_offer and s.scheduler_name == "gpu-scheduler" and s.max_snapshot_age == 60
    assert s.require_tls() == (Path("/tls/tls.crt"), Path("/tls/tls.key"))
    assert s.taint == Taint("vast.ai/node", "yes", "NoSchedule")


def test_the_gpu_runtime_classes_are_nvidias_unless_set():
    assert settings_from({}).gpu_runtime_classes == {"nvidia", "nvidia-cdi", "nvidia-legacy", "nvidia-experimental"}
    assert settings_from({"KUBE_VAST_GPU_RUNTIME_CLASSES": " nvidia-gpu , nvidia ,"}).gpu_runtime_classes == {
        "nvidia-gpu", "nvidia"}
    assert settings_from({"KUBE_VAST_GPU_RUNTIME_CLASSES": ""}).gpu_runtime_classes == frozenset()


def test_the_scheduler_name_can_be_left_alone():
    assert settings_from({"KUBE_VAST_SET_SCHEDULER_NAME": "false"}).scheduler_name is None
    assert settings_from({}, keep_scheduler_name=True).scheduler_name is None


def test_https_only():
    with pytest.raises(ConfigError, match="HTTPS only: give --tls-cert FILE and --tls-key FILE"):
        settings_from({}, tls_cert="/only/the/cert").require_tls()


@pytest.mark.parametrize("env, message", [
    ({"KUBE_VAST_DENY_WITHOUT_OFFER": "maybe"}, "KUBE_VAST_DENY_WITHOUT_OFFER='maybe': expected true or false"),
    ({"KUBE_VAST_MAX_SNAPSHOT_AGE": "soon"}, "KUBE_VAST_MAX_SNAPSHOT_AGE='soon'"),
    ({"KUBE_VAST_MAX_SNAPSHOT_AGE": "-1"}, "expected a positive number of seconds"),
    ({"KUBE_VAST_SCHEDULER_NAME": "Vast Scheduler"}, "expected a DNS subdomain"),
    ({"KUBE_VAST_NAMESPACE": "Kube_Vast"}, "expected a namespace name"),
    ({"KUBE_VAST_VIRTUAL_NODE_TAINT": "vast"}, "expected key[=value]:Effect"),
    ({"KUBE_VAST_GPU_RUNTIME_CLASSES": "nvidia, NVIDIA GPU"}, "GPU runtime class 'NVIDIA GPU': expected a "
                                                               "RuntimeClass name such as nvidia"),
])
def test_a_wrong_value_names_the_setting(env, message):
    with pytest.raises(ConfigError) as err:
        settings_from(env)
    assert message in str(err.value)


def test_settings_are_validated_when_built_directly_too():
    with pytest.raises(ConfigError):
        WebhookSettings(max_snapshot_age=float("nan"))
