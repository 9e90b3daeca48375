"""Render the project's ``scheduler-config.yaml`` for a test kube-scheduler.

The repository root ``scheduler-config.yaml`` (a ``KubeSchedulerConfiguration``
``kubescheduler.config.k8s.io/v1`` with profile ``vast-scheduler`` and an ``extenders:`` entry) is
loaded when present; otherwise :data:`BUILTIN_CONFIG` (profile ``vast-scheduler``, no extender).
The rendered copy always has leader election off and ``clientConnection.kubeconfig`` set to the
test kubeconfig; each extender ``urlPrefix`` is replaced with the test's URL, or the ``extenders``
list is dropped when the test asks for no extender (``extender_url=None``).
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any, Callable

import yaml

from .binaries import REPO_ROOT

REPO_SCHEDULER_CONFIG = REPO_ROOT / "scheduler-config.yaml"
SCHEDULER_NAME = "vast-scheduler"

BUILTIN_CONFIG: dict[str, Any] = {
    "apiVersion": "kubescheduler.config.k8s.io/v1",
    "kind": "KubeSchedulerConfiguration",
    "leaderElection": {"leaderElect": False},
    "profiles": [{"schedulerName": SCHEDULER_NAME}],
}


def load_base_config(path: Path | None = None) -> dict[str, Any]:
    """The repository's scheduler config (or ``path``), else a copy of :data:`BUILTIN_CONFIG`."""
    p = Path(path) if path is not None else REPO_SCHEDULER_CONFIG
    if not p.exists():
        if path is not None:
            raise FileNotFoundError(p)
        return copy.deepcopy(BUILTIN_CONFIG)
    docs = [d for d in yaml.safe_load_all(p.read_text()) if d]
    configs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "KubeSchedulerConfiguration"]
    if len(configs) != 1:
        raise ValueError(f"{p}: expected exactly one KubeSchedulerConfiguration document, found {len(configs)}")
    return configs[0]


def render_scheduler_config(
    *,
    kubeconfig: Path | str,
    extender_url: str | None = None,
    extender_ca_pem: bytes | str | None = None,
    base: dict[str, Any] | Path | str | None = None,
    customize: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """A scheduler configuration ready for the test control plane.

    - ``extender_url=None``: no extender (the ``extenders`` list is removed).
    - ``extender_url="https://127.0.0.1:PORT/prefix"``: every extender's ``urlPrefix`` becomes it.
      With ``extender_ca_pem`` the extender TLS config becomes ``{caData: <that CA>}`` (file paths
      of the production config are dropped); with an ``http://`` URL the TLS settings are dropped.
    - ``customize(config)`` may change the rendered dict in place, last.
    """
    if base is None:
        cfg = load_base_config()
    elif isinstance(base, dict):
        cfg = copy.deepcopy(base)
    else:
        cfg = load_base_config(Path(base))

    cfg.setdefault("apiVersion", "kubescheduler.config.k8s.io/v1")
    cfg.setdefault("kind", "KubeSchedulerConfiguration")
    le = cfg.get("leaderElection") or {}
    le["leaderElect"] = False
    cfg["leaderElection"] = le
    cc = cfg.get("clientConnection") or {}
    cc["kubeconfig"] = str(kubeconfig)
    cfg["clientConnection"] = cc
    if not cfg.get("profiles"):
        cfg["profiles"] = [{"schedulerName": SCHEDULER_NAME}]

    if extender_url is None:
        cfg.pop("extenders", None)
    else:
        extenders = cfg.get("extenders") or []
        if not extenders:
            raise ValueError(
                "an extender URL was given but the scheduler config has no 'extenders' entry; "
                "pass base=/customize= with one"
            )
        for ext in extenders:
            ext["urlPrefix"] = extender_url
            if extender_url.startswith("http://"):
                ext["enableHTTPS"] = False
                ext.pop("tlsConfig", None)
            elif extender_ca_pem is not None:
                pem = extender_ca_pem.encode() if isinstance(extender_ca_pem, str) else extender_ca_pem
                ext["enableHTTPS"] = True
                tls = {k: v for k, v in (ext.get("tlsConfig") or {}).items() if k in ("serverName",)}
                tls["caData"] = base64.b64encode(pem).decode()
                ext["tlsConfig"] = tls
    if customize is not None:
        customize(cfg)
    return cfg


def write_scheduler_config(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
