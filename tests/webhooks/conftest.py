from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from prometheus_client import CollectorRegistry

from tests.unit.offer_factory import make_offer
from vastmarket.config import SelectionConfig
from vastmarket.snapshot import OfferSnapshot
from webhooks.app import create_app
from webhooks.settings import WebhookSettings

CAPTURED = Path(__file__).parent / "captured"
NOW = 1_800_000_000.0


def captured(name: str) -> dict[str, Any]:
    """An AdmissionReview as the harness's kube-apiserver sent it (see captured/capture.py)."""
    return json.loads((CAPTURED / f"{name}.json").read_text())


def market() -> OfferSnapshot:
    offers = [
        make_offer(1, gpu_name="RTX 3060", dph_total=0.22, geolocation="California, US"),
        make_offer(2, gpu_name="RTX 3060", dph_total=0.19, geolocation="Texas, US", reliability=0.991),
        make_offer(3, gpu_name="RTX 4090", dph_total=0.45, gpu_ram_mb=24564),
        make_offer(4, gpu_name="RTX 3060", dph_total=0.80),
        make_offer(5, gpu_name="H100 SXM", dph_total=2.5, gpu_ram_mb=81559),
        make_offer(6, gpu_name="RTX 3060", num_gpus=2, dph_total=0.40, geolocation="Bavaria, DE"),
    ]
    return OfferSnapshot(offers, taken_at=NOW - 10)


def with_object(review: dict[str, Any], obj: Any) -> dict[str, Any]:
    out = copy.deepcopy(review)
    out["request"]["object"] = obj
    return out


def annotated(review: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    out = copy.deepcopy(review)
    out["request"]["object"]["metadata"]["annotations"] = dict(annotations)
    return out


def patch_of(reply: dict[str, Any]) -> list[dict[str, Any]]:
    response = reply["response"]
    if "patch" not in response:
        assert "patchType" not in response
        return []
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return patch


def patched(review: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    """The object as the apiserver stores it after applying the reply's patch."""
    obj: dict[str, Any] = jsonpatch.apply_patch(review["request"]["object"], patch_of(reply))
    return obj


class Harness:
    def __init__(self, settings: WebhookSettings | None = None, snapshot: OfferSnapshot | None = None,
                 *, no_snapshot: bool = False) -> None:
        self.snapshot = None if no_snapshot else (snapshot if snapshot is not None else market())
        self.now = NOW
        self.registry = CollectorRegistry()
        self.settings = settings or WebhookSettings(max_snapshot_age=120, release_namespace="kube-vast")
        self.app = create_app(self.settings, config=SelectionConfig(), snapshots=lambda: self.snapshot,
                              clock=lambda: self.now, registry=self.registry)
        self.http = self.app.test_client()

    def post(self, body: Any, *, raw: bytes | None = None, path: str = "/mutate") -> Any:
        data = raw if raw is not None else json.dumps(body)
        return self.http.post(path, data=data, content_type="application/json")

    def review(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = self.post(body)
        assert reply.status_code == 200, reply.get_data(as_text=True)
        data: dict[str, Any] = reply.get_json()
        return data

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
def hook() -> Harness:
    return Harness()
