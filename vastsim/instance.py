"""A rented instance as the market keeps it, and its renderings: the API object and the audit record.

`render_instance` gives the object `GET /api/v0/instances/{id}/` and the v1 list return, quirks
included: `public_ipaddr` wrapped in whitespace, `ports` null until running and then Docker-style
with `HostPort` a string, `local_ipaddrs` with a trailing newline.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from vastsim.container import ContainerScript
from vastsim.faults import Health
from vastsim.lifecycle import Timeline, exited_message, status_message
from vastsim.offerset import Offer, storage_dph
from vastsim.ports import Binding
from vastsim.rental import RentRequest

PortMap = dict[str, list[dict[str, str]]]


@dataclass
class InstanceRecord:
    id: int
    offer: Offer
    request: RentRequest
    created_at: float
    timeline: Timeline
    dph_total: float  # billed
    offer_dph_total: float  # what the offer said for this disk and rental type
    api_key: str
    label: str | None
    holds_offer: bool = True  # the offer left the market for this rental
    stopped: bool = False  # intended_status stopped (by the client, or created stopped)
    script: ContainerScript = field(default_factory=ContainerScript)  # what the image does
    run: int = 0  # the container's run: 0, then one more for every start after a stop
    exits: list[dict[str, Any]] = field(default_factory=list)  # {run, exit_code, at} per exit seen
    stop_requested_at: float | None = None  # the last stop request
    health: Health = field(default_factory=Health)
    bindings: list[Binding] = field(default_factory=list)
    last_host_ports: frozenset[int] = frozenset()  # of the last run: a new run gets others
    ports: PortMap | None = None
    host: str | None = None  # the host's own address (vastsim.hostnet); None: the simulator's public IP
    running_at: float | None = None  # first time seen running
    destroyed_at: float | None = None
    last_status: str | None = None
    bid: float | None = None  # interruptible: the bid, $/h for the GPUs (vastsim.bids); None on-demand
    paused: bool = False  # stopped because outbid (not by its owner)

    @property
    def offer_id(self) -> int:
        return int(self.offer["id"])

    @property
    def live(self) -> bool:
        return self.destroyed_at is None

    def status(self, now: float) -> str | None:
        """`actual_status` at `now` (the last one seen, once destroyed)."""
        if not self.live:
            return self.last_status
        return self.timeline.status(now)

    def stopped_at(self, now: float) -> float | None:
        """When the last stop took effect (None: not stopped, or destroyed before it did)."""
        stop_at = self.timeline.stop_at
        until = now if self.destroyed_at is None else self.destroyed_at
        return stop_at if stop_at is not None and stop_at <= until else None


def port_map(bindings: list[Binding]) -> PortMap:
    """Docker's shape: `{"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "42351"}]}`."""
    ports: PortMap = {}
    for binding in bindings:
        key = f"{binding.container_port}/{binding.proto}"
        ports.setdefault(key, []).append({"HostIp": "0.0.0.0", "HostPort": str(binding.host_port)})
    return ports


def _states(record: InstanceRecord, now: float) -> tuple[str | None, str, str, str]:
    """actual_status, intended_status, cur_state and next_state at `now`. While a stopped
    container shuts down, intended_status and next_state read stopped and cur_state running."""
    status = record.status(now)
    stopped = status == "stopped"
    intended = "stopped" if stopped or record.stopped else "running"
    if not record.live:
        return status, intended, "unloaded", "unloaded"
    return status, intended, "stopped" if stopped else "running", intended


def status_msg(record: InstanceRecord, status: str | None, now: float) -> str:
    """The fate's message while the fate shows; docker's `Exited (N) … ago` for an exit."""
    timeline = record.timeline
    if timeline.fated(now) and status == timeline.fail_status and timeline.status_msg:
        return timeline.status_msg
    exit = timeline.exit(now)
    if exit is not None:
        return exited_message(exit[0], now - exit[1])
    return status_message(status, record.request.image)


def direct_port_range(offer: Mapping[str, Any]) -> tuple[int, int] | None:
    """The machine's direct ports (first, last): where its instances' host ports are drawn; None
    without direct ports."""
    direct = int(offer["direct_port_count"])
    if not direct:
        return None
    start = 20_000 + (int(offer["machine_id"]) % 400) * 100
    return start, start + direct - 1


def render_instance(record: InstanceRecord, now: float, *, public_ip: str) -> dict[str, Any]:
    """The instance as the Vast API returns it (`public_ip` unless it has a host address of its own)."""
    offer, request = record.offer, record.request
    public_ip = record.host or public_ip
    status, intended, cur_state, next_state = _states(record, now)
    direct = int(offer["direct_port_count"])
    port_start, port_end = direct_port_range(offer) or (-1, -1)
    return {
        "id": record.id,
        "machine_id": offer["machine_id"],
        "host_id": offer["host_id"],
        "ask_id": record.offer_id,
        "bundle_id": offer["bundle_id"],
        "actual_status": status,
        "intended_status": intended,
        "cur_state": cur_state,
        "next_state": next_state,
        "status_msg": status_msg(record, status, now),
        "label": record.label,
        "image_uuid": request.image,
        "image_args": list(request.args or ()),
        "args_str": request.args_str,
        "image_runtype": request.runtype,
        "onstart": request.onstart,
        "extra_env": [[key, value] for key, value in request.env],
        "template_id": None,
        "template_hash_id": None,
        "jupyter_token": hashlib.sha256(f"jupyter-{record.id}".encode()).hexdigest(),
        "public_ipaddr": f" {public_ip}\n",
        "local_ipaddrs": f"172.17.0.{2 + record.id % 200} 10.0.{record.id % 250}.5\n",
        "ssh_host": f"ssh{1 + offer['machine_id'] % 9}.vast.ai",
        "ssh_idx": str(1 + offer["machine_id"] % 9),
        "ssh_port": 10_000 + record.id % 50_000,
        "machine_dir_ssh_port": port_start if direct else None,
        "direct_port_count": direct,
        "direct_port_start": port_start,
        "direct_port_end": port_end,
        "ports": record.ports if status == "running" else None,
        "dph_total": record.dph_total,
        "dph_base": offer["dph_base"],
        "storage_cost": offer["storage_cost"],
        "min_bid": offer["min_bid"],
        "is_bid": request.price is not None,
        "inet_up": offer["inet_up"],
        "inet_down": offer["inet_down"],
        "inet_up_cost": offer["inet_up_cost"],
        "inet_down_cost": offer["inet_down_cost"],
        "start_date": record.created_at,
        "end_date": offer["end_date"],
        "duration": round(float(offer["end_date"]) - now, 3),
        "uptime_mins": round((now - record.running_at) / 60.0, 2) if record.running_at and status == "running" else None,
        "gpu_name": offer["gpu_name"],
        "gpu_arch": offer["gpu_arch"],
        "num_gpus": offer["num_gpus"],
        "gpu_ram": offer["gpu_ram"],
        "gpu_totalram": offer["gpu_total_ram"],
        "gpu_frac": offer["gpu_frac"],
        "gpu_util": 0.0 if status == "running" else None,
        "gpu_temp": 41.0 if status == "running" else None,
        "cpu_name": offer["cpu_name"],
        "cpu_arch": offer["cpu_arch"],
        "cpu_cores": offer["cpu_cores"],
        "cpu_cores_effective": offer["cpu_cores_effective"],
        "cpu_ram": offer["cpu_ram"],
        "cpu_util": 0.0 if status == "running" else None,
        "disk_name": offer["disk_name"],
        "disk_space": request.disk,
        "disk_util": 0.0,
        "compute_cap": offer["compute_cap"],
        "cuda_max_good": offer["cuda_max_good"],
        "driver_version": offer["driver_version"],
        "geolocation": offer["geolocation"],
        "reliability2": offer["reliability2"],
        "verification": offer["verification"],
        "hosting_type": offer["hosting_type"],
        "static_ip": offer["static_ip"],
    }


def login_registry(image_login: str | None) -> str | None:
    """The registry of ``"-u USER -p PASSWORD REGISTRY"`` (``""`` for Docker Hub), never the rest."""
    if image_login is None:
        return None
    words = image_login.split()
    return words[4] if len(words) > 4 else ""


def audit_record(record: InstanceRecord, now: float) -> dict[str, Any]:
    """What `/_sim/state` shows of the instance: enough to prove nothing leaked."""
    status, intended, cur_state, _ = _states(record, now)
    return {
        "id": record.id,
        "offer_id": record.offer_id,
        "label": record.label,
        "actual_status": status,
        "intended_status": intended,
        "cur_state": cur_state,
        "destroyed": not record.live,
        "dph_total": record.dph_total,
        "offer_dph_total": record.offer_dph_total,
        "is_bid": record.request.price is not None,
        # Interruptible (vastsim.bids): the bid, the machine's min_bid now, paused when outbid;
        # what it bills per hour now (storage only while stopped).
        "bid": record.bid,
        "min_bid": record.offer["min_bid"],
        "paused": record.paused,
        "storage_dph": round(storage_dph(float(record.offer["storage_cost"]), record.request.disk), 6),
        "billed_dph": record.dph_total if status == "running" else (
            0.0 if not record.live else round(storage_dph(float(record.offer["storage_cost"]), record.request.disk), 6)),
        "gpu_name": record.offer["gpu_name"],
        # What the container was asked to run; env by key only (values may be secrets, the API
        # object's extra_env has them for the account's owner), the login as its registry only.
        "image": record.request.image,
        "onstart": record.request.onstart,
        "args": list(record.request.args) if record.request.args is not None else None,
        "env_keys": [key for key, _ in record.request.env],
        "image_login_registry": login_registry(record.request.image_login),
        "ports": port_map(record.bindings) if record.bindings else None,
        "listening": sorted(b.host_port for b in record.bindings if b.listening),
        "host": record.host,
        "health": asdict(record.health),
        "fate": record.timeline.fail_status,
        "runs": record.run + 1,
        "exits": [dict(e) for e in record.exits],
        "stop_requested_at": record.stop_requested_at,
        "stopped_at": record.stopped_at(now),
        "created_at": record.created_at,
        "running_at": record.running_at,
        "destroyed_at": record.destroyed_at,
    }
