"""Fake pods and Events for the ``explain`` and ``status`` rendering tests, shaped as the API
server returns them (camelCase; Events as core/v1 shows events.k8s.io writers: ``eventTime``
set, the old timestamps null)."""

from __future__ import annotations

import copy
import json
from typing import Any

UID = "0b6f3c1e-9a2d-4c55-8f1e-6d2a7b9c0e11"
CLUSTER = "c1a2b3c4"


def june_pod(*, annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None,
             node: str | None = "vast-gpu-node-1", finalizers: list[str] | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "june-6c9d7f-abcde", "namespace": "default", "uid": UID,
            "labels": {"app": "june", "vast.ai/enabled": "true"},
            "annotations": {"vast.ai/gpu-type": "RTX3060", "vast.ai/price-max": "0.50",
                            "vast.ai/min-gpu-memory": "12GB", **(annotations or {})},
            "finalizers": finalizers or [],
        },
        "spec": {
            "schedulerName": "vast-scheduler",
            "containers": [{
                "name": "june", "image": "ghcr.io/example/june:1.0",
                "ports": [{"name": "tts", "containerPort": 8000, "protocol": "TCP"},
                          {"name": "stt", "containerPort": 8001, "protocol": "TCP"}],
                "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "2", "memory": "8Gi"}},
            }],
        },
        "status": status or {"phase": "Pending"},
    }
    if node:
        pod["spec"]["nodeName"] = node
    return pod


WEBHOOK_ANNOTATIONS = {
    "vast.ai/offer-id": "2", "vast.ai/offer-score": "0.871", "vast.ai/offer-price": "0.2000",
    "vast.ai/offer-gpu": "RTX 3060", "vast.ai/offer-location": "US-CA", "vast.ai/offer-reliability": "0.9800",
    "vast.ai/selected-at": "2025-01-02T03:04:05Z",
    "vast.ai/selection": json.dumps({"seen": 3, "matched": 2, "rejected": {"price": 1},
                                     "runnersUp": [{"id": 1, "score": 0.8, "price": 0.3, "gpu": "RTX 3060",
                                                    "location": "US-TX"}]}),
}

CONTROLLER_ANNOTATIONS = {
    "vast.ai/launch": json.dumps({"label": f"kv:{CLUSTER}:{UID}", "since": "2025-01-02T03:04:07Z", "attempts": 1,
                                  "failedMachines": [], "offerId": 2}),
    "vast.ai/instance-id": "4242", "vast.ai/public-ip": "203.0.113.45",
    "vast.ai/ports": json.dumps({"8000": 42351, "8001": 42352}),
}

READY = {
    "phase": "Running", "hostIP": "203.0.113.45",
    "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
}


def served_pod() -> dict[str, Any]:
    return june_pod(annotations={**WEBHOOK_ANNOTATIONS, **CONTROLLER_ANNOTATIONS}, status=copy.deepcopy(READY),
                    finalizers=["vast.ai/instance-cleanup"])


def event(reason: str, message: str, *, at: str, name: str, kind: str = "Normal", **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "creationTimestamp": at[:19] + "Z"},
            "involvedObject": {"kind": "Pod", "name": "june-6c9d7f-abcde", "uid": UID},
            "reason": reason, "message": message, "type": kind, "eventTime": at,
            "firstTimestamp": None, "lastTimestamp": None, "reportingComponent": "vast.ai/kube-vast-controller",
            **extra}
