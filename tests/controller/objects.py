"""Realistic Kubernetes objects for the controller tests, shaped as the API server serialises them
(camelCase, defaults filled in): the june speech pod (text-to-speech on port 8000 named ``tts``,
speech-to-text on 8001 named ``stt``), its two Services, and an in-memory :class:`RefLookup`."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

POD_UID = "5f0c6b7e-3f4a-4d6b-9c1e-2b7d8a9e0f11"
NODE = "vast-rtx3060-us"


def june_pod(**changes: Any) -> dict[str, Any]:
    """The june pod bound to the virtual node; ``changes`` replace top-level container keys
    (``ports=[...]``, ``readinessProbe=None`` to remove one)."""
    container: dict[str, Any] = {
        "name": "june",
        "image": "ghcr.io/june-ai/speech:2.3.1",
        "command": ["python", "-m", "june.serve"],
        "args": ["--tts-port=8000", "--stt-port=8001", "--model=$(MODEL_NAME)"],
        "ports": [
            {"name": "tts", "containerPort": 8000, "protocol": "TCP"},
            {"name": "stt", "containerPort": 8001, "protocol": "TCP"},
        ],
        "env": [
            {"name": "MODEL_NAME", "value": "whisper-large-v3"},
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "june-secrets", "key": "hf-token"}}},
            {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "june-config", "key": "log-level"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        ],
        "resources": {
            "limits": {"nvidia.com/gpu": "1", "memory": "16Gi"},
            "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
        },
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "tts", "scheme": "HTTP"},
            "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 2,
            "successThreshold": 1, "failureThreshold": 3,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "volumeMounts": [{
            "name": "kube-api-access-x7k2p", "readOnly": True,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        }],
    }
    for key, value in changes.items():
        if value is None:
            container.pop(key, None)
        else:
            container[key] = value
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "june-7d9f8b6c5-x2x7q",
            "generateName": "june-7d9f8b6c5-",
            "namespace": "speech",
            "uid": POD_UID,
            "resourceVersion": "48213",
            "creationTimestamp": "2025-03-01T10:00:00Z",
            "labels": {"app": "june", "pod-template-hash": "7d9f8b6c5", "tier": "gpu"},
            "annotations": {"vast.ai/gpu-type": "RTX3060", "vast.ai/disk": "40"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "june-7d9f8b6c5",
                                 "uid": "0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6",
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "containers": [container],
            "nodeName": NODE,
            "serviceAccountName": "default",
            "schedulerName": "vast-scheduler",
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": True,
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Equal",
                             "value": "vast", "effect": "NoSchedule"}],
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": []}}],
        },
        "status": {
            "phase": "Pending",
            "qosClass": "Burstable",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": "2025-03-01T10:00:01Z"}],
        },
    }


def june_service(name: str, port: int, target_port: int | str | None, **spec: Any) -> dict[str, Any]:
    port_spec: dict[str, Any] = {"name": "http", "port": port, "protocol": "TCP"}
    if target_port is not None:
        port_spec["targetPort"] = target_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "speech", "uid": f"uid-{name}", "resourceVersion": "100",
                     "labels": {"app": "june"}},
        "spec": {"selector": {"app": "june"}, "ports": [port_spec], "type": "ClusterIP",
                 "clusterIP": "10.96.12.34", "clusterIPs": ["10.96.12.34"], "sessionAffinity": "None",
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", **spec},
    }


def tts_service() -> dict[str, Any]:
    return june_service("june-tts", 8000, "tts")


def stt_service() -> dict[str, Any]:
    return june_service("june-stt", 8001, 8001)


class DictLookup:
    """A :class:`controller.translate.RefLookup` over ``{(namespace, name): data}`` dicts."""

    def __init__(self, configmaps: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
                 secrets: Mapping[tuple[str, str], Mapping[str, str]] | None = None) -> None:
        self.configmaps = dict(configmaps or {})
        self.secrets = dict(secrets or {})

    def configmap(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.configmaps.get((namespace, name))

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.secrets.get((namespace, name))


def june_lookup() -> DictLookup:
    return DictLookup(
        configmaps={("speech", "june-config"): {"log-level": "info", "WORKERS": "2"}},
        secrets={("speech", "june-secrets"): {"hf-token": "hf_abc123"}},
    )


def with_env(pod: dict[str, Any], env: list[dict[str, Any]] | None = None,
             env_from: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A copy of ``pod`` with its container's ``env``/``envFrom`` replaced."""
    pod = copy.deepcopy(pod)
    container = pod["spec"]["containers"][0]
    container["env"] = env or []
    if env_from is not None:
        container["envFrom"] = env_from
    return pod
