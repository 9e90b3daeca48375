"""The official Vast client (the `vastai` package, CLI and SDK) against the simulator.

Every call the official client makes is checked against what the same call gives through
kube-vast's own client (`VastClient`) on the same simulator: search with the official filter
syntax (string values, `_` for spaces) and ordering, create with ports, env, `--login` and an
entrypoint, show, label, stop and start, destroy, the account, the search quota, and an
interruptible instance bid for, outbid and raised with `change bid`. A mismatch
is a simulator bug unless vast-api.md says otherwise.

The official client only ever talks to the simulator on loopback: it is pointed there with its
own settings (`VAST_URL` — also used for the GPU name list it fetches at import — and `--url`),
its update check is off (`VASTAI_NO_UPDATE_CHECK`), its files live in a temporary home (XDG
directories), and every proxy variable points at a trap on loopback: a call to any other address
(console.vast.ai, vast.ai's release manifest) would land there, resolved by nobody, and fail
the test. Nothing of the client is patched.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vastmarket.client import ApiKey, VastClient
from vastmarket.instances import RentRequest
from vastsim import SimulatorServer

KEY = "vast_api_key_official_client_s3cr3t"
VASTAI = Path(sys.executable).with_name("vastai")
SDK = Path(sys.executable)


class Trap:
    """A loopback listener every proxy variable points at: it counts who knocks."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.knocks: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.knocks.append(conn.recv(200))
                except OSError:
                    self.knocks.append(b"?")

    def close(self) -> None:
        self.sock.close()


class Clock:
    """Real time, plus hours a test skips (the simulator's billing follows it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class World:
    sim: SimulatorServer
    clock: Clock
    trap: Trap
    env: dict[str, str]
    client: VastClient

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(VASTAI), "--url", self.sim.url, *args], env=self.env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli("--raw", *args).stdout)

    def sdk(self, code: str) -> Any:
        """Run ``code`` with ``vast = VastAI(api_key=..., server_url=...)``; it sets ``result``."""
        script = ("import json, os\nfrom vastai import VastAI\n"
                  "vast = VastAI(api_key=os.environ['VAST_API_KEY'], server_url=os.environ['VAST_URL'])\n"
                  f"{code}\nprint(json.dumps(result))\n")
        done = subprocess.run([str(SDK), "-c", script], env=self.env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def ledger(self, instance_id: int) -> dict[str, Any]:
        record: dict[str, Any] = next(i for i in self.sim.state()["instances"] if i["id"] == instance_id)
        return record


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    if not VASTAI.exists():
        pytest.fail(f"the official client is not installed ({VASTAI}); `make dev` installs the test extra")
    clock = Clock()
    trap = Trap()
    home = tmp_path / "home"
    trapped = f"http://127.0.0.1:{trap.port}"
    with SimulatorServer(seed=21, offers=600, api_key=KEY, clock=clock, boot_seconds=(0.05, 0.1)) as sim:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_STATE_HOME": str(home / "state"), "XDG_DATA_HOME": str(home / "data"),
            "VAST_URL": sim.url, "VAST_API_KEY": KEY, "VASTAI_NO_UPDATE_CHECK": "1", "CI": "true",
            "HTTP_PROXY": trapped, "HTTPS_PROXY": trapped, "ALL_PROXY": trapped,
            "http_proxy": trapped, "https_proxy": trapped, "all_proxy": trapped,
            "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "PYTHONDONTWRITEBYTECODE": "1",
        }
        client = VastClient(sim.url, ApiKey(KEY))
        yield World(sim, clock, trap, env, client)
        client.close()
    trap.close()
    assert trap.knocks == [], f"the official client tried to reach another address: {trap.knocks!r}"


def ids(offers: list[dict[str, Any]]) -> list[int]:
    return [int(o["id"]) for o in offers]


# --- search ---------------------------------------------------------------------------------------

QUERY = "num_gpus=1 gpu_name=RTX_3060 reliability>0.95 direct_port_count>=1 inet_down>=100"
TYPED = {"num_gpus": {"eq": 1}, "gpu_name": {"eq": "RTX 3060"}, "reliability": {"gt": 0.95},
         "direct_port_count": {"gte": 1}, "inet_down": {"gte": 100}}
CLI_DEFAULTS = {"verified": {"eq": True}, "external": {"eq": False}, "rentable": {"eq": True}}


def test_the_cli_search_finds_what_typed_filters_find_in_the_same_order(world: World) -> None:
    found = world.cli_json("search", "offers", QUERY, "-o", "dph_total,id", "--limit", "40")
    ours = world.client.search_offers({**CLI_DEFAULTS, **TYPED}, order=[("dph_total", "asc"), ("id", "asc")],
                                      limit=40, allocated_storage=5.0)
    assert found, "the official client's string filters must match offers"
    assert ids(found) == [o.id for o in ours.offers]
    assert [o["dph_total"] for o in found] == [o.dph_total for o in ours.offers]
    assert all(o["gpu_name"] == "RTX 3060" and o["verification"] == "verified" and not o["external"] for o in found)


def test_the_cli_search_orders_descending_and_takes_the_bid_type(world: World) -> None:
    found = world.cli_json("search", "offers", "gpu_name in [RTX_4090,RTX_3090] num_gpus>=2", "-o", "dlperf-",
                           "--type", "bid", "--limit", "15")
    ours = world.client.search_offers({**CLI_DEFAULTS, "gpu_name": {"in": ["RTX 4090", "RTX 3090"]},
                                       "num_gpus": {"gte": 2}}, order=[("dlperf", "desc")], limit=15,
                                      offer_type="bid", allocated_storage=5.0)
    assert found and ids(found) == [o.id for o in ours.offers]
    assert [o["dph_total"] for o in found] == [o.dph_total for o in ours.offers]


def test_the_sdk_search_agrees_with_the_cli_and_kube_vast(world: World) -> None:
    found = world.sdk(f"result = vast.search_offers({QUERY!r}, order='dph_total', limit=25)")
    ours = world.client.search_offers({**CLI_DEFAULTS, **TYPED}, order=[("dph_total", "asc")], limit=25,
                                      allocated_storage=5.0)
    assert found and ids(found) == [o.id for o in ours.offers]


# --- the instance round trip ---------------------------------------------------------------------

def rentable(world: World, count: int) -> list[int]:
    offers = world.client.search_offers({**CLI_DEFAULTS, "direct_port_count": {"gte": 2}, "disk_space": {"gte": 30}},
                                        order=[("dph_total", "asc")], limit=count).offers
    assert len(offers) == count
    return [o.id for o in offers]


def wait_running(world: World, instance_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = world.cli_json("show", "instance", str(instance_id))
        if shown.get("actual_status") == "running" and shown.get("ports"):
            return dict(shown)
        time.sleep(0.2)
    pytest.fail(f"instance {instance_id} did not run")


def test_create_show_label_stop_start_destroy_agree_with_kube_vasts_client(world: World) -> None:
    theirs, ours = rentable(world, 2)
    created = world.cli_json(
        "create", "instance", str(theirs), "--image", "ghcr.io/example/infer:1.2", "--disk", "20",
        "--label", "kv:contract:official", "--env", "-e MODEL=tiny -e LEVEL=3 -p 8000:8000",
        "--login", "-u robot -p hunter2 ghcr.io", "--entrypoint", "/bin/sh", "--args", "-c", "serve --port 8000")
    assert created["success"] is True
    official = int(created["new_contract"])
    mine = world.client.rent(ours, RentRequest(
        image="ghcr.io/example/infer:1.2", label="kv:contract:mine", disk_gb=20, env={"MODEL": "tiny", "LEVEL": "3"},
        ports=(8000,), onstart="/bin/sh", args=("-c", "serve --port 8000"), image_login="-u robot -p hunter2 ghcr.io"))

    # The simulator recorded the same launch from both clients.
    same = ("image", "onstart", "args", "env_keys", "image_login_registry", "is_bid")
    assert {k: world.ledger(official)[k] for k in same} == {k: world.ledger(mine)[k] for k in same}
    assert world.ledger(official)["onstart"] == "/bin/sh" and world.ledger(official)["args"] == ["-c", "serve --port 8000"]

    # show instance: the official client's view and kube-vast's are one instance.
    shown = wait_running(world, official)
    seen = world.client.get_instance(official)
    assert seen is not None and seen.id == shown["id"] == official
    assert seen.label == shown["label"] == "kv:contract:official"
    assert seen.actual_status == shown["actual_status"] == "running"
    assert seen.public_ip == shown["public_ipaddr"].strip()  # Vast pads it; kube-vast strips it
    assert seen.dph_total == shown["dph_total"] and seen.gpu_name == shown["gpu_name"]
    assert shown["extra_env"]["MODEL"] == "tiny" and "8000/tcp" in shown["ports"]
    assert {int(p): int(shown["ports"][f"{p}/tcp"][0]["HostPort"]) for p in (8000,)} == dict(seen.ports)

    # show instances: the same instances, labels and states.
    listed = world.cli_json("show", "instances")
    assert {(i["id"], i["label"]) for i in listed} == {(i.id, i.label) for i in world.client.list_instances()}
    assert world.sdk("result = [[i['id'], i['label']] for i in vast.show_instances()]") == \
        [[i.id, i.label] for i in sorted(world.client.list_instances(), key=lambda i: i.id)]

    # label, both ways.
    world.cli("label", "instance", str(official), "kv:contract:relabelled")
    assert world.client.get_instance(official).label == "kv:contract:relabelled"
    world.client.relabel(official, "kv:contract:back")
    assert world.cli_json("show", "instance", str(official))["label"] == "kv:contract:back"

    # stop and start.
    world.cli("stop", "instance", str(official))
    assert world.client.get_instance(official).intended_status == "stopped"
    world.cli("start", "instance", str(official))
    assert world.client.get_instance(official).intended_status == "running"
    wait_running(world, official)

    # destroy: gone for both.
    # (its --raw prints nothing for destroy: the command drops the answer; the text says it)
    assert world.cli("destroy", "instance", str(official), "-y").stdout.strip() == f"destroying instance {official}."
    assert world.client.get_instance(official) is None
    assert world.cli_json("show", "instance", str(official)) == {"instances": None}
    world.client.destroy(mine)
    assert world.sim.state()["counters"]["live_instances"] == 0


def test_the_sdk_creates_labels_and_destroys_like_kube_vast(world: World) -> None:
    (offer,) = rentable(world, 1)
    created = world.sdk(f"result = vast.create_instance({offer}, image='ghcr.io/example/infer:1.2', disk=16, "
                        "env='-e MODEL=tiny -p 8000:8000', label='kv:contract:sdk', onstart_cmd='/bin/sh', "
                        "args=['-c', 'serve'], login='-u robot -p hunter2 ghcr.io')")
    instance = int(created["new_contract"])
    record = world.ledger(instance)
    assert record["onstart"] == "/bin/sh" and record["args"] == ["-c", "serve"]
    assert record["env_keys"] == ["MODEL", "-p 8000:8000"] and record["image_login_registry"] == "ghcr.io"
    world.sdk(f"result = vast.label_instance({instance}, 'kv:contract:sdk2')")
    assert world.client.get_instance(instance).label == "kv:contract:sdk2"
    assert world.sdk(f"result = vast.destroy_instance({instance})")["success"] is True
    assert world.client.get_instance(instance) is None


def test_a_disk_under_vasts_minimum_is_refused_to_both_clients(world: World) -> None:
    (offer,) = rentable(world, 1)
    refused = world.cli("create", "instance", str(offer), "--image", "x/y:1", "--disk", "5", ok=False)
    assert "Failed with error 400" in refused.stderr and "disk must be at least 8 GB" in refused.stderr
    assert world.sim.state()["counters"]["rentals"] == 0


# --- the account and the search quota --------------------------------------------------------------

def test_show_user_reads_the_balance_that_rentals_draw_down(world: World) -> None:
    before = world.cli_json("show", "user")
    assert before["credit"] == 100.0 and "api_key" not in before
    (offer,) = rentable(world, 1)
    instance = world.client.rent(offer, RentRequest(image="x/y:1", label="kv:contract:bill", disk_gb=10))
    price = world.client.get_instance(instance).dph_total
    world.clock.offset += 3 * 3600
    after = world.cli_json("show", "user")
    assert after["credit"] == pytest.approx(100.0 - 3 * price, abs=0.01)


def test_the_official_client_stops_at_the_search_quota_as_kube_vast_does(world: World) -> None:
    world.sim.search_limits.configure(quota_rows=0)
    calls = world.sim.state()["counters"]["calls"].get("search", 0)
    refused = world.cli("search", "offers", "num_gpus=1", ok=False)
    assert "429" in refused.stderr and "search quota" in refused.stderr and "Resets at" in refused.stderr
    assert world.sim.state()["counters"]["calls"]["search"] == calls + 1, "the official client does not retry it"


# --- interruptible (bid) instances ---------------------------------------------------------------

def test_a_bid_made_outbid_and_raised_by_the_cli_reads_the_same_to_kube_vast(world: World) -> None:
    """`create instance --bid_price`, an outbid by other renters, `change bid`: what the official
    client does to an interruptible instance is what kube-vast's client reads (is_bid, the bid as
    dph_total, paused when outbid, running again after a raise) — and a bid the official client
    makes under min_bid is refused the same way."""
    offers = world.client.search_offers({**CLI_DEFAULTS, "direct_port_count": {"gte": 1}},
                                        order=[("dph_total", "asc")], limit=20, offer_type="bid").offers
    offer = next(o for o in offers if o.min_bid)
    assert offer.min_bid is not None
    low = world.cli("--raw", "create", "instance", str(offer.id), "--image", "x/y:1", "--disk", "16",
                    "--bid_price", f"{offer.min_bid * 0.5:.4f}", ok=False)
    assert "min" in (low.stdout + low.stderr).lower(), low.stdout + low.stderr
    bid = round(offer.min_bid * 1.1, 4)
    created = world.cli_json("create", "instance", str(offer.id), "--image", "ghcr.io/example/infer:1.2",
                             "--disk", "16", "--label", "kv:contract:bid", "--env", "-p 8000:8000",
                             "--bid_price", f"{bid}")
    instance = int(created["new_contract"])
    assert world.ledger(instance)["is_bid"] is True
    wait_running(world, instance)
    seen = world.client.get_instance(instance)
    assert seen is not None and seen.is_bid and not seen.paused and seen.min_bid == offer.min_bid
    assert seen.dph_base is not None and seen.dph_total is not None
    assert bid < seen.dph_total < seen.dph_base  # billed at the bid (plus storage), not at the on-demand price

    world.sim.market.outbid(instance, price=round(bid * 1.3, 4))
    shown = world.cli_json("show", "instance", str(instance))
    assert shown["cur_state"] == shown["intended_status"] == shown["next_state"] == "stopped"
    paused = world.client.get_instance(instance)
    assert paused is not None and paused.paused and not paused.gone

    raised = round(bid * 1.5, 4)
    world.cli("change", "bid", str(instance), "--price", f"{raised}")
    running = wait_running(world, instance)
    assert running["cur_state"] == "running"
    again = world.client.get_instance(instance)
    assert again is not None and again.running and not again.paused

    world.cli("destroy", "instance", str(instance), "-y")
    assert world.client.get_instance(instance) is None
    # The official client leaves the stopped instance Vast made for the low bid (kube-vast's
    # client destroys it: tests/contract/test_client_bids.py); it is still there, billing storage.
    (leftover,) = [i for i in world.sim.state()["instances"] if not i["destroyed"]]
    assert leftover["id"] != instance and leftover["is_bid"] is True
    kept = world.client.get_instance(int(leftover["id"]))
    assert kept is not None and kept.intended_status == "stopped"
    world.client.destroy(int(leftover["id"]))
    assert world.sim.state()["counters"]["live_instances"] == 0
