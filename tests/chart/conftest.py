"""The chart's variants (values a real install would use) and a cached ``helm template`` of each."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.binaries import REPO_ROOT

from .helm import Rendered, template

EXISTING_SECRET = {"vast": {"existingSecret": {"name": "vast-api", "key": "token"}}}

# name → values. Every variant must install: lint, render and pass the API server's validation.
VARIANTS: dict[str, dict[str, Any]] = {
    # The production install: defaults plus the one thing that cannot default (the key's Secret).
    "existing-secret": EXISTING_SECRET,
    # The chart creates the Secret from vast.apiKey.
    "api-key": {"vast": {"apiKey": "not-a-real-vast-key-0123456789"}},
    # A trial install against the simulator: no key at all.
    "simulator": {"simulator": {"enabled": True}},
    # cert-manager issues the webhook's certificate (the chart's self-signed Issuer).
    "cert-manager": {**EXISTING_SECRET, "webhook": {"tls": {"certManager": {"enabled": True}}}},
    # cert-manager with the operator's own ClusterIssuer.
    "cert-manager-cluster-issuer": {**EXISTING_SECRET, "webhook": {"tls": {"certManager": {
        "enabled": True, "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"}}}}},
    # Several virtual nodes.
    "several-nodes": {**EXISTING_SECRET, "virtualNodes": ["vast-gpu-node-1", "vast-gpu-node-2", "vast-gpu-node-3"]},
    # Everything an operator might tune, at once.
    "tuned": {
        **EXISTING_SECRET,
        "fullnameOverride": "gpu-burst",
        "image": {"repository": "registry.example.com/kube-vast", "digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": [{"name": "registry-creds"}],
        "commonLabels": {"team": "ml-platform"},
        "logLevel": "DEBUG",
        "selection": yaml.safe_load((REPO_ROOT / "examples" / "kube-vast.yaml").read_text()),
        "deployment": {"replicaCount": 3, "podDisruptionBudget": {"minAvailable": "", "maxUnavailable": 1},
                       "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra",
                                        "effect": "NoSchedule"}],
                       "priorityClassName": "gpu-infra"},
        "extender": {"burstPolicy": "cost-first", "readinessProbe": {"path": "/healthz"},
                     "extraEnv": [{"name": "KUBE_VAST_REAL_NODE_SCORE", "value": "3"}]},
        "webhook": {"failurePolicy": "Fail", "timeoutSeconds": 5, "excludedNamespaces": ["monitoring", "kube-system"],
                    "denyWithoutOffer": True},
        "controller": {"clusterId": "prod-eu-1", "reaperDryRun": True, "pollInterval": 60, "refreshInterval": 120,
                       "extraEnv": [{"name": "VAST_MAX_INSTANCES", "value": "2"}]},
        "scheduler": {"name": "gpu-burst-scheduler", "replicaCount": 1, "leaderElection": {"enabled": False},
                      "podDisruptionBudget": {"enabled": False}},
        "dashboards": {"enabled": True, "labels": {"grafana_dashboard": "1", "team": "ml-platform"}},
    },
}


@pytest.fixture(scope="session")
def values_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chart-values")


@pytest.fixture(scope="session")
def render(values_dir: Path) -> Iterator[Callable[..., Rendered]]:
    """``render(variant_or_values, release=..., namespace=...)`` → the parsed manifests (cached)."""
    cache: dict[tuple[str, str, str], Rendered] = {}

    def _render(values: str | Mapping[str, Any], *, release: str = "kube-vast",
                namespace: str = "kube-vast") -> Rendered:
        vals = VARIANTS[values] if isinstance(values, str) else values
        key = (yaml.safe_dump(dict(vals), sort_keys=True), release, namespace)
        if key not in cache:
            cache[key] = template(vals, release=release, namespace=namespace, tmp_dir=values_dir)
        return cache[key]

    yield _render
