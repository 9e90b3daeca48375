"""Vast instances (rented machines): the frozen :class:`Instance` model, its defensive parser,
and :class:`RentRequest`, what the controller asks Vast to run.

Quirks handled here: ``ports`` is null until the instance runs and then a Docker-style map whose
``HostPort`` is a *string*; ``public_ipaddr`` may carry whitespace; numbers may be null;
``actual_status`` is null while provisioning. No I/O.

A container that ended shows ``actual_status: "exited"``; its exit code is read from
``status_msg`` when that carries one in docker's words (``Exited (3) 5 seconds ago``,
``container exited with code 3``) and is otherwise unknown (``None``): Vast does not promise
to report it. A stop request shows as ``intended_status: "stopped"`` at once; the instance is
stopped once ``actual_status`` leaves running (``stopped``, or ``exited`` for the stopped
container).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from .errors import InvalidResponse

PENDING_STATES = frozenset({None, "created", "loading", "rebooting", "restarting", "scheduling"})
DEAD_STATES = frozenset({"exited", "offline", "unknown", "stopped", "frozen"})
HOST_LOST_STATES = frozenset({"offline", "unknown", "frozen"})
_EXIT_CODE = (
    re.compile(r"\bexited\s*\((-?\d+)\)", re.IGNORECASE),  # docker ps: "Exited (3) 5 seconds ago"
    re.compile(r"\bexit(?:ed)?\s+(?:with\s+)?(?:code|status)\s*[:=]?\s*(-?\d+)", re.IGNORECASE),
)
MAX_LABEL = 256
MAX_IMAGE = 1024
MAX_ARGS = 4096  # args + args_str + onstart, in characters
MIN_DISK_GB = 8.0
MIN_BID, MAX_BID = 0.001, 128.0  # $/h, the create body's price (vast-api.md §4)
MAX_ENV_VALUE = 256  # characters in one env value
MAX_ENV_TOTAL = 32 * 1024  # bytes of every env key and value together (port flags included)


@dataclass(frozen=True, slots=True)
class Instance:
    id: int
    actual_status: str | None
    intended_status: str | None = None
    cur_state: str | None = None
    status_msg: str | None = None
    label: str | None = None
    public_ip: str | None = None
    ports: Mapping[int, int] = field(default_factory=dict)
    dph_total: float | None = None
    machine_id: int | None = None
    gpu_name: str | None = None
    num_gpus: int | None = None
    start_date: float | None = None
    image: str | None = None
    is_bid: bool = False             # interruptible: rented with a bid (vastmarket.bids)
    min_bid: float | None = None     # the market's minimum bid for its machine now, $/h
    dph_base: float | None = None    # the machine's on-demand GPU price now, $/h
    next_state: str | None = None
    storage_cost: float | None = None  # $/GB/month: what a stopped instance still bills for its disk
    disk_space: float | None = None    # GB

    @property
    def running(self) -> bool:
        return self.actual_status == "running"

    @property
    def pending(self) -> bool:
        return self.actual_status in PENDING_STATES

    @property
    def dead(self) -> bool:
        """States that never lead to ``running`` (vast-api.md §5, §7)."""
        return self.actual_status in DEAD_STATES or self.cur_state == "unloaded"

    @property
    def gone(self) -> bool:
        """Destroyed: nothing is billed any more."""
        return self.cur_state == "unloaded"

    @property
    def stop_requested(self) -> bool:
        """Someone asked Vast to stop it (``intended_status: stopped``)."""
        return self.intended_status == "stopped"

    @property
    def stopped(self) -> bool:
        """Asked to stop, and its container no longer runs."""
        return self.stop_requested and self.actual_status in ("stopped", "exited")

    @property
    def container_exited(self) -> bool:
        """The container ended on its own: ``exited`` while meant to be running."""
        return self.actual_status == "exited" and not self.stop_requested

    @property
    def host_lost(self) -> bool:
        """The machine is out of reach (no heartbeat, offline, frozen)."""
        return self.actual_status in HOST_LOST_STATES

    @property
    def exit_code(self) -> int | None:
        """The exited container's code, when ``status_msg`` says it; else ``None``."""
        return exit_code_of(self.status_msg) if self.actual_status == "exited" else None

    @property
    def paused(self) -> bool:
        """Stopped and meant to stay stopped: ``cur_state == intended_status == next_state ==
        "stopped"``. For an interruptible instance that this controller did not stop, this is
        an outbid (vast-api.md §7)."""
        return (self.actual_status == "stopped" and self.cur_state == "stopped"
                and self.intended_status == "stopped" and self.next_state in ("stopped", None))

    def host_port(self, container_port: int) -> int | None:
        return self.ports.get(container_port)


class _InstanceSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.Integer(required=True)
    actual_status = fields.String(allow_none=True)
    intended_status = fields.String(allow_none=True)
    cur_state = fields.String(allow_none=True)
    status_msg = fields.String(allow_none=True)
    label = fields.String(allow_none=True)
    public_ipaddr = fields.String(allow_none=True)
    ports = fields.Raw(allow_none=True)
    dph_total = fields.Float(allow_none=True)
    machine_id = fields.Integer(allow_none=True)
    gpu_name = fields.String(allow_none=True)
    num_gpus = fields.Integer(allow_none=True)
    start_date = fields.Float(allow_none=True)
    image_uuid = fields.String(allow_none=True)
    is_bid = fields.Boolean(allow_none=True)
    min_bid = fields.Float(allow_none=True)
    dph_base = fields.Float(allow_none=True)
    next_state = fields.String(allow_none=True)
    storage_cost = fields.Float(allow_none=True)
    disk_space = fields.Float(allow_none=True)


_SCHEMA = _InstanceSchema()


def parse_ports(raw: Any) -> dict[int, int]:
    """``{"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "42351"}]}`` → ``{8000: 42351}``.
    UDP and malformed entries are skipped; ``null`` gives ``{}``."""
    out: dict[int, int] = {}
    if not isinstance(raw, Mapping):
        return out
    for key, bindings in raw.items():
        port_text, _, proto = str(key).partition("/")
        if (proto or "tcp").lower() != "tcp" or not isinstance(bindings, list):
            continue
        for binding in bindings:
            if not isinstance(binding, Mapping):
                continue
            try:
                container, host = int(port_text), int(str(binding.get("HostPort", "")).strip())
            except ValueError:
                continue
            if 0 < host < 65536 and 0 < container < 65536:
                out[container] = host
                break
    return out


def exit_code_of(status_msg: str | None) -> int | None:
    """The exit code in a docker-style message (``Exited (3) 2 minutes ago``, ``container exited
    with code 3``, ``exit status 3``), or ``None`` when it names none."""
    for pattern in _EXIT_CODE:
        match = pattern.search(status_msg or "")
        if match is not None:
            return int(match.group(1))
    return None


def parse_instance(raw: Any) -> Instance:
    """Parse one instance object; optional fields that do not parse become ``None``."""
    if not isinstance(raw, Mapping):
        raise InvalidResponse("instance is not a JSON object")
    try:
        data: dict[str, Any] = _SCHEMA.load(raw)
    except ValidationError as exc:
        data = exc.valid_data if isinstance(exc.valid_data, dict) else {}
        if "id" not in data:
            raise InvalidResponse("instance without a valid id") from None
    ip = data.get("public_ipaddr")
    return Instance(
        id=data["id"],
        actual_status=data.get("actual_status"),
        intended_status=data.get("intended_status"),
        cur_state=data.get("cur_state"),
        status_msg=data.get("status_msg"),
        label=data.get("label"),
        public_ip=(ip.strip() or None) if isinstance(ip, str) else None,
        ports=parse_ports(data.get("ports")),
        dph_total=data.get("dph_total"),
        machine_id=data.get("machine_id"),
        gpu_name=data.get("gpu_name"),
        num_gpus=data.get("num_gpus"),
        start_date=data.get("start_date"),
        image=data.get("image_uuid"),
        is_bid=bool(data.get("is_bid")),
        min_bid=data.get("min_bid"),
        dph_base=data.get("dph_base"),
        next_state=data.get("next_state"),
        storage_cost=data.get("storage_cost"),
        disk_space=data.get("disk_space"),
    )


@dataclass(frozen=True, slots=True)
class RentRequest:
    """What to run on a rented offer (``runtype: args``). ``ports`` become ``-p P:P`` mappings.

    ``onstart`` replaces the image's ENTRYPOINT (the CLI's ``--entrypoint``) and ``args`` are passed
    to the entrypoint; ``args`` of ``None`` keep the image's CMD. ``image_login`` is
    ``"-u USER -p PASSWORD REGISTRY"`` for a private image. ``env`` and ``image_login`` may hold
    secrets: they are left out of ``repr``.
    """

    image: str
    label: str
    disk_gb: float = 10.0
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    ports: tuple[int, ...] = ()
    args: tuple[str, ...] | None = None
    onstart: str | None = None
    image_login: str | None = field(default=None, repr=False)
    price: float | None = None  # a bid, $/h for the GPUs: an interruptible rental (vastmarket.bids)

    def validate(self) -> None:
        """Vast's documented create limits (vast-api.md §4, §9); ``ValueError`` naming the limit.
        Messages name keys, never values."""
        if not self.image or len(self.image) > MAX_IMAGE:
            raise ValueError(f"image must be 1 to {MAX_IMAGE} characters")
        if len(self.label) > MAX_LABEL:
            raise ValueError(f"label must be at most {MAX_LABEL} characters")
        if self.disk_gb < MIN_DISK_GB:
            raise ValueError(f"disk must be at least {MIN_DISK_GB:g} GB (Vast's minimum), not {self.disk_gb:g}")
        if self.price is not None and not (MIN_BID <= self.price <= MAX_BID):
            raise ValueError(f"a bid (price) must be from {MIN_BID:g} to {MAX_BID:g} $/h, not {self.price:g}")
        size = script_size(self.args, self.onstart)
        if size > MAX_ARGS:
            raise ValueError(f"the command line (Vast's onstart and args together) is {size} characters; "
                             f"Vast allows at most {MAX_ARGS} characters")
        for key, value in self.env.items():
            if key.startswith("-"):
                raise ValueError(f"environment variable name {key!r} may not start with '-'")
            if len(value) > MAX_ENV_VALUE:
                raise ValueError(f"the value of environment variable {key} is {len(value)} characters; "
                                 f"Vast allows at most {MAX_ENV_VALUE} per value")
        total = env_size(self.env_dict())
        if total > MAX_ENV_TOTAL:
            raise ValueError(f"the environment is {total} bytes (keys, values and port mappings); "
                             f"Vast allows at most {MAX_ENV_TOTAL} bytes in all")

    def env_dict(self) -> dict[str, str]:
        """``env`` as Vast takes it: the variables, then each port as ``"-p P:P": "1"``."""
        env: dict[str, str] = dict(self.env)
        for port in self.ports:
            env[f"-p {port}:{port}"] = "1"
        return env

    def body(self) -> dict[str, Any]:
        """The JSON body of ``PUT /api/v0/asks/{id}/`` (env is a dict, ports are keys)."""
        env = self.env_dict()
        body: dict[str, Any] = {
            "client_id": "me",
            "image": self.image,
            "disk": self.disk_gb,
            "label": self.label,
            "env": env,
            "runtype": "args",
            "target_state": "running",
            "cancel_unavail": True,
        }
        if self.args is not None:
            body["args"] = list(self.args)
        if self.onstart:
            body["onstart"] = self.onstart
        if self.image_login:
            body["image_login"] = self.image_login
        if self.price is not None:  # a bid: interruptible (cancel_unavail stays true: no stopped leftover)
            body["price"] = self.price
        return body


def script_size(args: tuple[str, ...] | list[str] | None, onstart: str | None) -> int:
    """What counts against :data:`MAX_ARGS`: the characters of every arg and of ``onstart``."""
    return sum(len(a) for a in args or ()) + len(onstart or "")


def env_size(env: Mapping[str, str]) -> int:
    """What counts against :data:`MAX_ENV_TOTAL`: the UTF-8 bytes of every key and value."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in env.items())
