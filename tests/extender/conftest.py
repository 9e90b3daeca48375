from __future__ import annotations

import json
from pathlib import Path

import pytest

from extender.app import create_app
from extender.settings import ExtenderSettings
from tests.unit.offer_factory import make_offer
from vastmarket.config import SelectionConfig
from vastmarket.snapshot import OfferSnapshot

CAPTURED = Path(__file__).parent / "captured"
NOW = 1_800_000_000.0


def captured(name: str) -> dict:
    return json.loads((CAPTURED / name).read_text())


def market() -> OfferSnapshot:
    offers = [
        make_offer(1, gpu_name="RTX 3060", dph_total=0.22, geolocation="California, US"),
        make_offer(2, gpu_name="RTX 3060", dph_total=0.19, geolocation="Texas, US"),
        make_offer(3, gpu_name="RTX 4090", dph_total=0.45, gpu_ram_mb=24564),
        make_offer(4, gpu_name="RTX 3060", dph_total=0.80),
        make_offer(5, gpu_name="H100 SXM", dph_total=2.5, gpu_ram_mb=81559),
    ]
    return OfferSnapshot(offers, taken_at=NOW - 10)


class Harness:
    def __init__(self, settings: ExtenderSettings | None = None, snapshot: OfferSnapshot | None = None):
        self.snapshot = snapshot if snapshot is not None else market()
        self.now = NOW
        self.app = create_app(settings or ExtenderSettings(max_snapshot_age=120), config=SelectionConfig(),
                              snapshots=lambda: self.snapshot, clock=lambda: self.now)
        self.http = self.app.test_client()

    def post(self, verb: str, body, *, raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(body)
        return self.http.post(f"/{verb}", data=data, content_type="application/json")


@pytest.fixture
def ext() -> Harness:
    return Harness()
