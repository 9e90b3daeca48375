"""Helm for the chart tests: the pinned binary (``HELM_VERSION`` in tools/versions.env, built by
tools/build-control-plane.sh into the cache, found like the control-plane binaries by
:func:`devcluster.binaries.find_binaries`), and ``helm template`` / ``helm lint`` as functions.

Without the binary a test that needs it is skipped with the reason locally and fails under
``CI=true``, like the harness's ``cluster`` tests.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.binaries import BUILD_SCRIPT, REPO_ROOT, find_binaries, running_in_ci

CHART = REPO_ROOT / "charts" / "kube-vast"


@cache
def kubernetes_version() -> str:
    """The Kubernetes version the project pins: what ``helm`` renders for (``--kube-version``)."""
    return find_binaries().kubernetes_version


def helm_path() -> Path:
    return find_binaries().helm


def require_helm() -> Path:
    """The helm binary; skip (locally) or fail (``CI=true``) the current test without it."""
    binaries = find_binaries()
    missing = binaries.missing(["helm"])
    if not missing:
        return binaries.helm
    msg = (f"helm {binaries.helm_version} missing: {missing[0]}. Build it with `{BUILD_SCRIPT}` "
           "(make control-plane); KUBE_VAST_CACHE / KUBE_VAST_BIN_DIR point at other locations.")
    if running_in_ci():
        pytest.fail(f"CI=true and {msg}", pytrace=False)
    pytest.skip(f"!!! CHART NOT RENDERED: {msg}")


def require_a_real_node(what: str) -> None:
    """Skip (locally) or fail (``CI=true``) the current test unless the control plane, helm and
    a real node (root, the built images, the node's binaries) are all there; ``what`` is what
    the test does there, for the message."""
    from devcluster.chart_stack import missing
    from tests.cluster_plugin import require_control_plane_binaries

    require_control_plane_binaries()
    require_helm()
    reason = missing()
    if reason is None:
        return
    if running_in_ci():
        pytest.fail(f"CI=true and {what} cannot run on a real node: {reason}", pytrace=False)
    pytest.skip(f"!!! {what.upper()} NOT RUN ON A REAL NODE: {reason}")


class HelmError(Exception):
    """helm exited non-zero; the message is what it printed (lint reports on stdout)."""


@dataclass(frozen=True)
class Rendered:
    """The manifests of one ``helm template`` run, parsed (YAML comments dropped)."""

    docs: tuple[dict[str, Any], ...]
    text: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
        return found[0]

    def names(self, kind: str) -> list[str]:
        return [d["metadata"]["name"] for d in self.of_kind(kind)]

    def pod_specs(self) -> dict[str, dict[str, Any]]:
        """Deployment name → its pod template spec."""
        return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in self.of_kind("Deployment")}


def _run(args: Sequence[str]) -> str:
    helm = require_helm()
    res = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0:
        raise HelmError("\n".join(x for x in (res.stdout.strip(), res.stderr.strip()) if x))
    return res.stdout


def _values_args(values: Mapping[str, Any] | None, tmp_dir: Path | None) -> list[str]:
    if not values:
        return []
    # --values with a JSON file (JSON is YAML): exact types, no --set escaping rules.
    assert tmp_dir is not None
    path = tmp_dir / f"values-{abs(hash(json.dumps(values, sort_keys=True)))}.json"
    path.write_text(json.dumps(values))
    return ["--values", str(path)]


def template(values: Mapping[str, Any] | None = None, *, release: str = "kube-vast",
             namespace: str = "kube-vast", tmp_dir: Path | None = None,
             extra: Sequence[str] = ()) -> Rendered:
    """``helm template RELEASE charts/kube-vast`` with ``values``; raises :class:`HelmError`."""
    text = _run(["template", release, str(CHART), "--namespace", namespace,
                 "--kube-version", kubernetes_version(), *_values_args(values, tmp_dir), *extra])
    docs = tuple(d for d in yaml.safe_load_all(text) if d)
    return Rendered(docs=docs, text=text)


def lint(values: Mapping[str, Any] | None = None, *, tmp_dir: Path | None = None) -> str:
    """``helm lint --strict charts/kube-vast`` with ``values``; raises :class:`HelmError`."""
    return _run(["lint", "--strict", str(CHART), "--kube-version", kubernetes_version(),
                 *_values_args(values, tmp_dir)])


def run(args: Sequence[str], *, kubeconfig: Path) -> str:
    """Any helm command against the cluster of ``kubeconfig``; raises :class:`HelmError`."""
    return _run([*args, "--kubeconfig", str(kubeconfig)])
