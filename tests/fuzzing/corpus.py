"""The real bodies the fuzzers start from: every captured AdmissionReview and ExtenderArgs, and the
same pods with every field kube-vast reads filled in (probes, env, envFrom, lifecycle hooks, each
kind of volume, GPU node selectors and node affinity, tolerations, pull secrets), and the
workloads the webhook reviews (Deployment, StatefulSet with claim templates, CronJob)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
WEBHOOK_CAPTURED = TESTS / "webhooks" / "captured"
EXTENDER_CAPTURED = TESTS / "extender" / "captured"

CONTAINER_FIELDS: dict[str, Any] = {
    "command": ["python", "-m", "serve"],
    "args": ["--port", "$(PORT)"],
    "workingDir": "/srv",
    "env": [
        {"name": "PORT", "value": "8000"},
        {"name": "MODEL", "valueFrom": {"configMapKeyRef": {"name": "speech", "key": "model", "optional": True}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "speech", "key": "token", "optional": True}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
    ],
    "envFrom": [{"prefix": "S_", "configMapRef": {"name": "speech", "optional": True}},
                {"secretRef": {"name": "speech", "optional": True}}],
    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "tts", "scheme": "HTTP",
                                   "httpHeaders": [{"name": "X", "value": "1"}]},
                       "initialDelaySeconds": 1, "periodSeconds": 5, "timeoutSeconds": 1, "failureThreshold": 3,
                       "successThreshold": 1},
    "livenessProbe": {"tcpSocket": {"port": 8001}, "periodSeconds": 10},
    "startupProbe": {"exec": {"command": ["true"]}, "failureThreshold": 30},
    "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "true"]}}, "preStop": {"sleep": {"seconds": 5}}},
    "volumeMounts": [{"name": "config", "mountPath": "/etc/speech"}, {"name": "cache", "mountPath": "/cache"},
                     {"name": "info", "mountPath": "/etc/info", "readOnly": True},
                     {"name": "secret", "mountPath": "/etc/secret", "subPath": "token"}],
}

SPEC_FIELDS: dict[str, Any] = {
    "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4", "kubernetes.io/os": "linux"},
    "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4"]},
                                  {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["20000"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}},
    "imagePullSecrets": [{"name": "registry"}],
    "readinessGates": [{"conditionType": "example.com/ready"}],
    "volumes": [
        {"name": "config", "configMap": {"name": "speech", "items": [{"key": "a", "path": "a.yaml", "mode": 0o600}],
                                         "defaultMode": 0o644, "optional": True}},
        {"name": "secret", "secret": {"secretName": "speech", "optional": True}},
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                                   {"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu"}}]}},
        {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 3600}},
                                                    {"configMap": {"name": "speech"}}]}},
    ],
}


def _json(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def enriched(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with every field kube-vast reads filled in."""
    out = copy.deepcopy(spec)
    for key, value in SPEC_FIELDS.items():
        out.setdefault(key, copy.deepcopy(value)) if key != "volumes" else out.update(volumes=copy.deepcopy(value))
    out.setdefault("tolerations", []).append(
        {"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "vast", "effect": "NoSchedule",
         "tolerationSeconds": 30})
    for container in out.get("containers") or []:
        for key, value in CONTAINER_FIELDS.items():
            container.setdefault(key, copy.deepcopy(value))
        container.setdefault("ports", [{"name": "tts", "containerPort": 8000}, {"containerPort": 8001}])
        container["ports"][0].setdefault("name", "tts")
        container.setdefault("resources", {}).setdefault("limits", {})["nvidia.com/gpu"] = "1"
    return out


def webhook_bodies() -> list[dict[str, Any]]:
    """The captured AdmissionReviews, the pod creates again with every field filled in, and a
    StatefulSet and a CronJob made from the captured Deployment."""
    captured = {p.stem: _json(p) for p in sorted(WEBHOOK_CAPTURED.glob("*.json"))}
    bodies = list(captured.values())
    for body in captured.values():
        request = body["request"]
        if request["resource"]["resource"] == "pods" and request["operation"] == "CREATE":
            rich = copy.deepcopy(body)
            rich["request"]["object"]["spec"] = enriched(request["object"]["spec"])
            bodies.append(rich)
    deployment = copy.deepcopy(captured["deployment-create"])
    template = deployment["request"]["object"]["spec"]["template"]
    template["spec"] = enriched(template["spec"])
    template["metadata"].setdefault("labels", {})["vast.ai/enabled"] = "true"
    bodies.append(deployment)
    statefulset = copy.deepcopy(deployment)
    statefulset["request"]["resource"] = {"group": "apps", "version": "v1", "resource": "statefulsets"}
    statefulset["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "StatefulSet"}
    statefulset["request"]["object"]["spec"]["volumeClaimTemplates"] = [
        {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "10Gi"}}}}]
    bodies.append(statefulset)
    cronjob = copy.deepcopy(deployment)
    cronjob["request"]["resource"] = {"group": "batch", "version": "v1", "resource": "cronjobs"}
    cronjob["request"]["kind"] = {"group": "batch", "version": "v1", "kind": "CronJob"}
    cronjob["request"]["object"]["spec"] = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
    update = copy.deepcopy(cronjob)
    update["request"]["operation"] = "UPDATE"
    update["request"]["oldObject"] = copy.deepcopy(cronjob["request"]["object"])
    update["request"]["oldObject"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] = "old"
    bodies += [cronjob, update]
    return bodies


def extender_bodies() -> list[dict[str, Any]]:
    """The captured ExtenderArgs (node names, full nodes), and each with every pod field filled in."""
    bodies = [_json(p) for p in sorted(EXTENDER_CAPTURED.glob("*.json"))]
    for body in list(bodies):
        rich = copy.deepcopy(body)
        rich["Pod"]["spec"] = enriched(rich["Pod"]["spec"])
        bodies.append(rich)
    return bodies


def pods() -> list[dict[str, Any]]:
    """Every pod in the corpus, as the controller would read it (bound to the virtual node, with
    the metadata the API server sets)."""
    found = [b["request"]["object"] for b in webhook_bodies() if b["request"]["resource"]["resource"] == "pods"]
    found += [b["Pod"] for b in extender_bodies()]
    out = []
    for i, pod in enumerate(found):
        pod = copy.deepcopy(pod)
        meta = pod.setdefault("metadata", {})
        meta.setdefault("name", f"{meta.get('generateName', 'pod-')}{i}")
        meta.setdefault("namespace", "default")
        meta.setdefault("uid", f"00000000-0000-4000-8000-{i:012d}")
        pod["spec"]["nodeName"] = "vast-gpu-node-1"
        out.append(pod)
    return out
