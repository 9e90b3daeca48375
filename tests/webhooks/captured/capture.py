"""Re-capture the AdmissionReviews in this directory from the real kube-apiserver of the test
harness (``tools/versions.env``): a recording HTTPS webhook that allows everything is registered
for pods (CREATE, UPDATE) and deployments (CREATE) in one namespace, then the objects below are
created. Not a test; run ``.venv/bin/python tests/webhooks/captured/capture.py``.
"""

from __future__ import annotations

import json
import shutil
import ssl
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from kubernetes import client  # noqa: E402

from devcluster import (  # noqa: E402
    ControlPlane, create_namespace, free_port, register_mutating_webhook, wait_for, webhook_serving_cert,
)

NS = "ml-inference"
BODIES: list[dict[str, Any]] = []


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        BODIES.append(body)
        reply = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                            "response": {"uid": body["request"]["uid"], "allowed": True}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


def pod(name: str | None, containers: list[dict[str, Any]], *, annotations: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"vast.ai/enabled": "true"}, "annotations": annotations or {}}
    meta.update({"name": name} if name else {"generateName": "whisper-", "labels": {"app": "whisper", "vast.ai/enabled": "true"}})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": containers, **spec}}


def gpu(n: str = "1") -> dict[str, Any]:
    return {"limits": {"nvidia.com/gpu": n}}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="capture-"))
    cp = ControlPlane()
    cp.start()
    try:
        cert = webhook_serving_cert(work)
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), Recorder)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert.cert_file, cert.key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        api = cp.api_client()
        register_mutating_webhook(
            api, name="capture.kube-vast.io", url=f"https://127.0.0.1:{server.server_port}/mutate",
            ca_pem=cert.ca_pem, failure_policy="Ignore",
            rules=[{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                    "resources": ["pods"], "scope": "*"},
                   {"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
                    "resources": ["deployments"], "scope": "*"}],
            namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": NS}})
        create_namespace(api, NS, labels={"vast.ai/enabled": "true"})
        core = client.CoreV1Api(api)
        whisper = pod(None, [{"name": "whisper", "image": "ghcr.io/example/whisper:1.4",
                              "ports": [{"containerPort": 9000, "name": "http"}],
                              "resources": {**gpu(), "requests": {"cpu": "2", "memory": "8Gi"}},
                              "readinessProbe": {"httpGet": {"path": "/health", "port": 9000}}}],
                      annotations={"vast.ai/gpu-type": "RTX3060", "vast.ai/price-max": "0.50",
                                   "vast.ai/min-gpu-memory": "12GB"})
        wait_for(lambda: core.create_namespaced_pod(NS, whisper, dry_run="All") and BODIES, timeout=30)
        BODIES.clear()
        names = []
        created = core.create_namespaced_pod(NS, whisper)
        names.append("pod-create-generatename")
        core.create_namespaced_pod(NS, whisper, dry_run="All")
        names.append("pod-create-dry-run")
        core.create_namespaced_pod(NS, pod("tts-0", [{"name": "tts", "image": "ghcr.io/example/tts:2.0",
                                                      "resources": gpu("2")}]))
        names.append("pod-create-named-two-gpus")
        core.patch_namespaced_pod(created.metadata.name, NS, {"metadata": {"labels": {"touched": "yes"}}})
        names.append("pod-update")
        core.create_namespaced_pod(NS, pod(
            "with-sidecar", [{"name": "app", "image": "ghcr.io/example/app:1", "resources": gpu()},
                             {"name": "proxy", "image": "envoyproxy/envoy:v1.31"}],
            initContainers=[{"name": "fetch-model", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}]))
        names.append("pod-create-sidecar-and-init-container")
        core.create_namespaced_pod(NS, pod("typo", [{"name": "app", "image": "ghcr.io/example/app:1",
                                                     "resources": gpu()}],
                                           annotations={"vast.ai/price-max": "free"}))
        names.append("pod-create-bad-annotation")
        cp.start_controller_manager()
        client.AppsV1Api(api).create_namespaced_deployment(NS, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "speech"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "speech"}}, "template": {
                "metadata": {"labels": {"app": "speech"}, "annotations": {"vast.ai/gpu-type": "RTX4090,A4000"}},
                "spec": {"containers": [{"name": "speech", "image": "ghcr.io/example/speech:1.0",
                                         "ports": [{"containerPort": 8000}, {"containerPort": 8001}],
                                         "resources": {**gpu(), "requests": {"cpu": "2", "memory": "8Gi"}}}]}}}})
        names += ["deployment-create", "deployment-pod-create"]
        wait_for(lambda: len(BODIES) >= len(names), timeout=60)
        for name, body in zip(names, BODIES):
            (HERE / f"{name}.json").write_text(json.dumps(body, indent=1) + "\n")
            print(name, body["request"]["operation"], body["request"]["resource"]["resource"])
    finally:
        cp.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
