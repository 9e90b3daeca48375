"""The standard demand profile of demand-driven market watching: 3 GPU models, 2 regions, 20 pods.

The selection config prefers the RTX 4090, then the RTX 3090, then the RTX A6000, in the US then
the EU, up to $0.80/h at 95 % reliability. The 20 opted-in GPU pods ask for one of those models
(four of them with another of the three as fallback), one of the two regions or both, a price cap
from $0.40 to $1.20/h (some above the config's), one or two GPUs, up to two ports, and some a
VRAM floor or verified hosts only. Used by ``bench/market.py`` (``make bench-market``) and the
placement-equality test (``tests/contract/test_market_watch.py``).
"""

from __future__ import annotations

from typing import Any

from vastmarket.config import SelectionConfig, config_from_mapping

MODELS = ("RTX4090", "RTX3090", "A6000")
REGIONS = ("US", "EU")
PODS = 20

CONFIG: dict[str, Any] = {
    "gpu": {"preferred_types": list(MODELS)},
    "locations": list(REGIONS),
    "max_price_per_hour": 0.80,
    "min_reliability": 0.95,
    "min_disk_gb": 20,
}


def standard_config() -> SelectionConfig:
    return config_from_mapping(CONFIG, source="the standard demand profile")


def standard_pods(count: int = PODS) -> list[dict[str, Any]]:
    """``count`` opted-in GPU pods, deterministic, as the API server holds them."""
    pods = []
    for i in range(count):
        model = MODELS[i % 3]
        annotations = {"vast.ai/gpu-type": model, "vast.ai/price-max": f"{0.40 + 0.05 * (i % 17):.2f}"}
        if i % 5 == 0:
            annotations["vast.ai/gpu-fallbacks"] = MODELS[(i + 1) % 3]
        if i % 4 != 3:
            annotations["vast.ai/region"] = REGIONS[i % 2]
        if i % 6 == 1:
            annotations["vast.ai/min-gpu-memory"] = "24GB"
        if i % 7 == 2:
            annotations["vast.ai/verified-only"] = "true"
        ports = [{"containerPort": 8000 + p} for p in range(i % 3)]
        gpus = 2 if i % 8 == 5 else 1
        pods.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"worker-{i}", "namespace": "ml", "uid": f"uid-{i:04d}",
                         "labels": {"vast.ai/enabled": "true"}, "annotations": annotations},
            "spec": {"schedulerName": "vast-scheduler",
                     "containers": [{"name": "main", "image": "ghcr.io/example/infer:1",
                                     "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                                     "ports": ports}]},
            "status": {"phase": "Pending" if i % 2 else "Running"},
        })
    return pods
