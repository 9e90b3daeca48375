"""KUBE_VAST_VAST_PACING: auto paces at Vast's published intervals when the API is vast.ai and
not at all elsewhere (the simulator); an explicit value wins; a bad one stops the controller at
start with the setting's name."""

from __future__ import annotations

import pytest

from controller.settings import settings_from
from vastmarket.errors import ConfigError
from vastmarket.pacing import PUBLISHED_INTERVALS


@pytest.mark.parametrize("value, url, expected", [
    ("", "https://console.vast.ai", dict(PUBLISHED_INTERVALS)),
    ("auto", "https://cloud.vast.ai/api", dict(PUBLISHED_INTERVALS)),
    ("", "http://10.0.0.5:8181", {}),
    ("", "http://notvast.ai.example:8181", {}),
    ("published", "http://10.0.0.5:8181", dict(PUBLISHED_INTERVALS)),
    ("off", "https://console.vast.ai", {}),
    ("create=9", "http://10.0.0.5:8181", {**PUBLISHED_INTERVALS, "create": 9.0}),
])
def test_the_pacing_follows_the_setting_and_the_api_it_talks_to(value: str, url: str,
                                                                 expected: dict[str, float]) -> None:
    settings = settings_from({"KUBE_VAST_VAST_PACING": value} if value else {})
    assert settings.pacing_intervals(url) == expected


def test_a_bad_pacing_setting_stops_the_controller_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"KUBE_VAST_VAST_PACING: .*'create=later'.* \(or auto\)"):
        settings_from({"KUBE_VAST_VAST_PACING": "create=later"})
