"""Vast instances (rented machines): the frozen :class:`Instance` model, its defensive parser,
and :class:`RentRequest`, what the controller asks Vast to run.

Quirks handled here: ``ports`` is null until the instance runs and then a Docker-style map whose
``HostPort`` is a *string*; ``public_ipaddr`` may carry whitespace; numbers may be null;
``actual_status`` is null while provisioning. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from .errors import InvalidResponse

PENDING_STATES = frozenset({None, "created", "loading", "rebooting", "restarting", "scheduling"})
DEAD_STATES = frozenset({"exited", "offline", "unknown", "stopped", "frozen"})
MAX_LABEL = 256
MAX_IMAGE = 1024
MAX_ARGS = 4096


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
    )


@dataclass(frozen=True, slots=True)
class RentRequest:
    """What to run on a rented offer. ``ports`` become ``-p P:P`` mappings."""

    image: str
    label: str
    disk_gb: float = 10.0
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    args: tuple[str, ...] | None = None
    onstart: str | None = None

    def validate(self) -> None:
        if not self.image or len(self.image) > MAX_IMAGE:
            raise ValueError(f"image must be 1 to {MAX_IMAGE} characters")
        if len(self.label) > MAX_LABEL:
            raise ValueError(f"label must be at most {MAX_LABEL} characters")
        size = sum(len(a) for a in self.args or ()) + len(self.onstart or "")
        if size > MAX_ARGS:
            raise ValueError(f"args and onstart together must be at most {MAX_ARGS} characters")
        for key in self.env:
            if key.startswith("-"):
                raise ValueError(f"environment variable name {key!r} may not start with '-'")

    def body(self) -> dict[str, Any]:
        """The JSON body of ``PUT /api/v0/asks/{id}/`` (env is a dict, ports are keys)."""
        env: dict[str, str] = dict(self.env)
        for port in self.ports:
            env[f"-p {port}:{port}"] = "1"
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
        return body
