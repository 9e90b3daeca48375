"""Where the control-plane binaries are: versions from tools/versions.env, paths in the build cache.

Layout (written by tools/build-control-plane.sh)::

    ${KUBE_VAST_CACHE:-~/.cache/kube-vast}/k8s-<KUBERNETES_VERSION>/bin/{kube-apiserver,kube-scheduler,kube-controller-manager,kubectl}
    ${KUBE_VAST_CACHE:-~/.cache/kube-vast}/etcd-<ETCD_VERSION>/bin/etcd
    ${KUBE_VAST_CACHE:-~/.cache/kube-vast}/helm-<HELM_VERSION>/bin/helm

``KUBE_VAST_BIN_DIR``, when set, is searched first for every binary (a directory holding binaries
built some other way, at the pinned versions).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSIONS_FILE = REPO_ROOT / "tools" / "versions.env"
BUILD_SCRIPT = "tools/build-control-plane.sh"

CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager")


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parse the ``KEY=value`` lines of versions.env (comments and blank lines ignored)."""
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or "=" not in line:
            continue
        key, value = line.split("=", 1)
        versions[key.strip()] = value.strip().strip("'\"")
    return versions


def cache_root() -> Path:
    """The binary cache root: ``$KUBE_VAST_CACHE`` or ``~/.cache/kube-vast``."""
    env = os.environ.get("KUBE_VAST_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kube-vast"


@dataclass(frozen=True)
class Binaries:
    """Expected paths of the pinned binaries (they may not exist: see :meth:`missing`)."""

    kubernetes_version: str
    etcd_version: str
    helm_version: str
    paths: dict[str, Path] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.paths[name]

    @property
    def etcd(self) -> Path:
        return self.paths["etcd"]

    @property
    def kube_apiserver(self) -> Path:
        return self.paths["kube-apiserver"]

    @property
    def kube_scheduler(self) -> Path:
        return self.paths["kube-scheduler"]

    @property
    def kube_controller_manager(self) -> Path:
        return self.paths["kube-controller-manager"]

    @property
    def helm(self) -> Path:
        return self.paths["helm"]

    @property
    def kubectl(self) -> Path:
        return self.paths["kubectl"]

    def missing(self, names: tuple[str, ...] | list[str] = CONTROL_PLANE_BINARIES) -> list[str]:
        """``name (expected path)`` for each of ``names`` that is not an executable file."""
        out = []
        for name in names:
            p = self.paths[name]
            if not (p.is_file() and os.access(p, os.X_OK)):
                out.append(f"{name} ({p})")
        return out

    def version_output(self, name: str) -> str:
        """What ``<binary> --version`` prints (``helm version`` for helm, ``kubectl version --client`` for kubectl)."""
        args = {"helm": ["version", "--template", "{{.Version}}"],
                "kubectl": ["version", "--client"]}.get(name, ["--version"])
        res = subprocess.run(
            [str(self.paths[name]), *args], capture_output=True, text=True, timeout=30, check=False
        )
        return (res.stdout + res.stderr).strip()


def find_binaries(versions_file: Path = VERSIONS_FILE) -> Binaries:
    """Resolve the pinned binaries' paths from versions.env, ``KUBE_VAST_BIN_DIR`` and the cache."""
    v = read_versions(versions_file)
    k8s, etcd, helm = v["KUBERNETES_VERSION"], v["ETCD_VERSION"], v.get("HELM_VERSION", "")
    root = cache_root()
    default_dirs = {
        "etcd": root / f"etcd-{etcd}" / "bin",
        "kube-apiserver": root / f"k8s-{k8s}" / "bin",
        "kube-scheduler": root / f"k8s-{k8s}" / "bin",
        "kube-controller-manager": root / f"k8s-{k8s}" / "bin",
        "kubectl": root / f"k8s-{k8s}" / "bin",
        "helm": root / f"helm-{helm}" / "bin",
    }
    override = os.environ.get("KUBE_VAST_BIN_DIR")
    paths: dict[str, Path] = {}
    for name, d in default_dirs.items():
        candidate = Path(override).expanduser() / name if override else None
        paths[name] = candidate if candidate is not None and candidate.is_file() else d / name
    return Binaries(kubernetes_version=k8s, etcd_version=etcd, helm_version=helm, paths=paths)


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
