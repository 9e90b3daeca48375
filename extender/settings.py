"""The extender's settings, from flags and ``KUBE_VAST_*`` environment, validated at start-up
(a wrong value stops the process with a message naming it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vastmarket.errors import ConfigError

from .decisions import BURST_POLICIES, VirtualNodes

DEFAULT_SNAPSHOT = "/var/run/kube-vast/offers.json"


@dataclass(frozen=True, slots=True)
class ExtenderSettings:
    snapshot_path: Path = Path(DEFAULT_SNAPSHOT)
    config_path: Path | None = None
    virtual: VirtualNodes = field(default_factory=VirtualNodes)
    burst_policy: str = "local-first"
    real_node_score: int = 5
    max_snapshot_age: float = 300.0

    def __post_init__(self) -> None:
        if self.burst_policy not in BURST_POLICIES:
            raise ConfigError(f"burst policy {self.burst_policy!r}: expected one of {', '.join(BURST_POLICIES)}")
        if not 0 <= self.real_node_score <= 10:
            raise ConfigError(f"real node score {self.real_node_score}: expected a whole number from 0 to 10")
        if not math.isfinite(self.max_snapshot_age) or self.max_snapshot_age <= 0:
            raise ConfigError(f"max snapshot age {self.max_snapshot_age}: expected a positive number of seconds")
        if not self.virtual.names and not self.virtual.labels:
            raise ConfigError("no virtual node names or labels: the extender would recognise no Vast node")


def parse_labels(text: str) -> dict[str, str]:
    """``a=b,c=d`` → ``{"a": "b", "c": "d"}``; an empty text gives no labels."""
    out: dict[str, str] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"virtual node label {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def settings_from(environ: Mapping[str, str], **overrides: object) -> ExtenderSettings:
    """Settings from ``KUBE_VAST_*`` variables, then explicit overrides (flags) that are not None."""
    values: dict[str, object] = {}
    env = {k: v.strip() for k, v in environ.items() if k.startswith("KUBE_VAST_") and v.strip()}
    if "KUBE_VAST_SNAPSHOT" in env:
        values["snapshot_path"] = Path(env["KUBE_VAST_SNAPSHOT"])
    if "KUBE_VAST_CONFIG" in env:
        values["config_path"] = Path(env["KUBE_VAST_CONFIG"])
    if "KUBE_VAST_BURST_POLICY" in env:
        values["burst_policy"] = env["KUBE_VAST_BURST_POLICY"]
    for key, attr, kind in (("KUBE_VAST_MAX_SNAPSHOT_AGE", "max_snapshot_age", float),
                            ("KUBE_VAST_REAL_NODE_SCORE", "real_node_score", int)):
        if key in env:
            try:
                values[attr] = kind(env[key])
            except ValueError:
                raise ConfigError(f"{key}={env[key]!r}: expected a number") from None
    names = env.get("KUBE_VAST_VIRTUAL_NODES")
    labels = environ.get("KUBE_VAST_VIRTUAL_NODE_LABELS")
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "virtual_node_names":
            names = ",".join(value) if isinstance(value, (list, tuple)) else str(value)
        elif key == "virtual_node_labels":
            labels = str(value)
        else:
            values[key] = value
    default = VirtualNodes()
    virtual = VirtualNodes(
        names=frozenset(n.strip() for n in names.split(",") if n.strip()) if names is not None else default.names,
        labels=parse_labels(labels) if labels is not None else default.labels,
    )
    return ExtenderSettings(virtual=virtual, **values)  # type: ignore[arg-type]
