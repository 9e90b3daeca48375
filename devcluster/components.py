"""Our own components for the local cluster (the demo and the end-to-end tests): the simulator in-process, a published offer
snapshot, and the extender and the webhook (and later the controller) as real gunicorn processes
started through the ``kube-vast`` command line, stopped by the harness's process management."""

from __future__ import annotations

import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from devcluster import WebhookCert, register_mutating_webhook
from devcluster.processes import ManagedProcess, free_port
from vastmarket.client import VastClient, broad_query
from vastsim import SimulatorServer
from vastmarket.snapshot import SnapshotFile, SnapshotPoller

KUBE_VAST = [sys.executable, "-m", "kube_vast.cli"]
T = TypeVar("T")


def publish_snapshot(sim: SimulatorServer, path: Path) -> SnapshotPoller:
    """Search the simulator once and publish the snapshot to ``path`` (what the controller does)."""
    client = VastClient(sim.url)
    poller = SnapshotPoller(lambda: client.search_offers(broad_query(), limit=10_000).offers,
                            SnapshotFile(path).publish, interval=3600, source=sim.url)
    assert poller.poll_once() is not None, "the simulator search failed"
    return poller


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return bool(reply.status == 200)


class Extender:
    def __init__(self, workdir: Path, snapshot: Path, *, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "extender",
            [*KUBE_VAST, "extender", "--host", "127.0.0.1", "--port", str(self.port),
             "--snapshot", str(snapshot), *extra],
            workdir / f"extender-{self.port}.log",
        )

    def start(self, timeout: float = 30.0) -> "Extender":
        self.process.start()
        self.process.wait_until(lambda: _http_ok(f"{self.url}/readyz"), timeout=timeout)
        return self

    def stop(self) -> None:
        self.process.stop()

    def metric(self, name: str) -> float:
        """The sum of a metric's samples (0 when absent)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=2) as reply:
            text = reply.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


class Webhook:
    """The admission webhook as a real gunicorn HTTPS process (``kube-vast webhook``).

    ``cert`` is a ``devcluster.WebhookCert`` (cert file, key file, CA PEM). ``restart()`` starts
    a new process on the same port (the registered URL stays valid)."""

    def __init__(self, workdir: Path, snapshot: Path, cert: WebhookCert, *, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.cert = cert
        self.tls = ssl.create_default_context(cadata=cert.ca_pem.decode())
        self._argv = [*KUBE_VAST, "webhook", "--host", "127.0.0.1", "--port", str(self.port),
                      "--tls-cert", str(cert.cert_file), "--tls-key", str(cert.key_file),
                      "--snapshot", str(snapshot), *extra]
        self._log = workdir / f"webhook-{self.port}.log"
        self.process = ManagedProcess("webhook", self._argv, self._log)

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=2, context=self.tls) as reply:
            return str(reply.read().decode())

    def start(self, timeout: float = 30.0) -> "Webhook":
        self.process.start()
        self.process.wait_until(lambda: '"ready"' in self._get("/readyz"), timeout=timeout)
        return self

    def stop(self) -> None:
        self.process.stop()

    def restart(self, timeout: float = 30.0) -> "Webhook":
        self.stop()
        self.process = ManagedProcess("webhook", self._argv, self._log)
        return self.start(timeout)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples that carry ``labels`` (0 when absent)."""
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        return sum(float(line.rsplit(" ", 1)[1]) for line in self._get("/metrics").splitlines()
                   if (line.startswith(name + "{") or line.startswith(name + " "))
                   and all(w in line for w in wanted))

    def log(self) -> str:
        return self._log.read_text(errors="replace")


def wait_until(predicate: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


# --- the webhook configuration as shipped ---------------------------------------------------

MANIFEST = Path(__file__).resolve().parents[1] / "webhooks" / "mutating-webhook-configuration.yaml"
MANIFEST_RELEASE_NAMESPACE = "kube-vast"
# What register_mutating_webhook carries over; anything else in the manifest would be dropped.
CARRIED = {"name", "clientConfig", "rules", "failurePolicy", "sideEffects", "timeoutSeconds", "namespaceSelector",
           "objectSelector", "reinvocationPolicy", "admissionReviewVersions", "matchPolicy", "matchConditions"}

def register_manifest(api: Any, *, url: str, ca_pem: bytes, release_namespace: str) -> list[str]:
    """Register every webhook of the manifest (one configuration each, as the helper builds them)
    with its own settings; returns the configuration names."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["kind"] == "MutatingWebhookConfiguration"
    names = []
    for index, webhook in enumerate(manifest["webhooks"]):
        assert set(webhook) <= CARRIED and webhook.get("matchPolicy", "Equivalent") == "Equivalent"
        namespace_selector = webhook["namespaceSelector"]
        for expression in namespace_selector.get("matchExpressions", []):
            if expression["key"] == "kubernetes.io/metadata.name":
                expression["values"] = [release_namespace if v == MANIFEST_RELEASE_NAMESPACE else v
                                        for v in expression["values"]]
        name = f"{manifest['metadata']['name']}-{index}"
        register_mutating_webhook(
            api, name=webhook["name"], configuration_name=name, url=url, ca_pem=ca_pem, rules=webhook["rules"],
            failure_policy=webhook["failurePolicy"], side_effects=webhook["sideEffects"],
            timeout_seconds=webhook["timeoutSeconds"], namespace_selector=namespace_selector,
            object_selector=webhook["objectSelector"], reinvocation_policy=webhook["reinvocationPolicy"],
            match_conditions=webhook.get("matchConditions"),
            admission_review_versions=webhook["admissionReviewVersions"])
        names.append(name)
    return names
