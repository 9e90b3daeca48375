"""Fakes at the kubelet API's seams: the pod directory, the Vast log reader, the authorizer, a clock."""

from __future__ import annotations

from controller.kubelet_api import PodTarget
from controller.kubelet_auth import Attributes
from controller.kubelet_tls import Identity
from vastmarket.errors import KubeVastError

NODE = "vast-gpu-node-1"
APISERVER = Identity("kube-apiserver-kubelet-client")
LOGS = "/containerLogs/speech/june/speech"
INSTANCE = 20000001


class Pods:
    def __init__(self) -> None:
        self.targets: dict[tuple[str, str], PodTarget] = {
            ("speech", "june"): PodTarget(NODE, ("speech",), INSTANCE, False)}
        self.error: KubeVastError | None = None

    def find(self, namespace: str, name: str) -> PodTarget | None:
        if self.error is not None:
            raise self.error
        return self.targets.get((namespace, name))


class VastLogs:
    """The instance's log as Vast would answer it: the last `tail` lines."""

    def __init__(self) -> None:
        self.lines = ["[vastsim] instance 20000001 started ghcr.io/example/speech:1.0", "model loaded",
                      "listening on :8000"]
        self.calls: list[tuple[int, int | None]] = []
        self.error: Exception | None = None

    def instance_logs(self, instance_id: int, *, tail: int | None = None) -> str:
        self.calls.append((instance_id, tail))
        if self.error is not None:
            raise self.error
        shown = self.lines if tail is None else self.lines[len(self.lines) - tail:] if tail else []
        return "".join(f"{line}\n" for line in shown)


class Authorizer:
    def __init__(self) -> None:
        self.allow = True
        self.asked: list[tuple[Identity, Attributes]] = []
        self.error: Exception | None = None

    def allowed(self, identity: Identity, attributes: Attributes) -> bool:
        self.asked.append((identity, attributes))
        if self.error is not None:
            raise self.error
        return self.allow


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now
