"""Vast's documented create limits (disk ≥ 8 GB, env values ≤ 256 characters and ≤ 32 KB in all,
args + args_str + onstart ≤ 4096) enforced by the simulator with Vast-shaped errors that never
echo a value; the entrypoint (onstart), args and the private-image login as the instance and the
ledger show them."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.simulator.support import Vast, port_offer, rent_body
from vastsim import SimulatorServer

SECRET = "hf_VERY_SECRET_value"

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("disk under 8 GB", {"disk": 7.5}, "disk must be at least 8 GB"),
    ("an env value over 256", {"env": {"TOKEN": SECRET + "x" * 250}}, "env value for 'TOKEN' is 270 characters"),
    ("env over 32 KB", {"env": {f"V{i:03d}": SECRET + "y" * 230 for i in range(130)}}, "the limit is 32768 bytes"),
    ("onstart and args over 4096", {"onstart": "/bin/sh", "args": ["-c", "z" * 4088]}, "at most 4096 characters"),
    ("a malformed image login", {"image_login": f"user {SECRET}"}, "image_login must read"),
]


@pytest.mark.parametrize(("name", "overrides", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_a_body_over_a_create_limit_is_a_400_invalid_args_naming_the_limit_not_the_value(
        vast: Vast, name: str, overrides: dict[str, Any], fragment: str) -> None:
    offer = port_offer(vast)
    reply = vast.rent(offer["id"], rent_body(**overrides))
    assert reply.status == 400, reply.text
    body = reply.json()
    assert (body["success"], body["error"], body["ask_id"]) == (False, "invalid_args", offer["id"])
    assert fragment in body["msg"]
    assert SECRET not in reply.text


@pytest.mark.parametrize("overrides", [
    {"disk": 8},
    {"env": {"TOKEN": "t" * 256}},
    {"env": {f"V{i:03d}": "y" * 250 for i in range(128)}},  # 128 × 254 = 32512 bytes
    {"onstart": "/bin/sh", "args": ["-c", "z" * 4087]},
], ids=["8 GB", "256 characters", "just under 32 KB", "4096 characters"])
def test_a_body_at_the_limits_is_accepted(vast: Vast, overrides: dict[str, Any]) -> None:
    reply = vast.rent(port_offer(vast)["id"], rent_body(**overrides))
    assert reply.status == 200, reply.text


def test_the_instance_shows_its_entrypoint_and_args_and_the_ledger_keeps_secrets_out(
        sim: SimulatorServer, vast: Vast, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    login = f"-u june -p {SECRET} ghcr.io"
    reply = vast.rent(port_offer(vast)["id"], rent_body(
        image="ghcr.io/june/speech:1", onstart="vllm", args=["serve", "--port", "8000"], image_login=login,
        env={"HF_TOKEN": SECRET, "-p 8000:8000": "1"}))
    assert reply.status == 200, reply.text
    instance_id = reply.json()["new_contract"]
    instance = vast.instance(instance_id)
    assert instance is not None
    assert (instance["onstart"], instance["image_args"]) == ("vllm", ["serve", "--port", "8000"])
    assert "image_login" not in instance and "-p june" not in json.dumps(instance)
    [record] = [i for i in sim.state()["instances"] if i["id"] == instance_id]
    assert (record["onstart"], record["args"]) == ("vllm", ["serve", "--port", "8000"])
    assert record["env_keys"] == ["HF_TOKEN", "-p 8000:8000"]
    assert record["image_login_registry"] == "ghcr.io"
    assert SECRET not in json.dumps(sim.state())
    assert SECRET not in caplog.text
