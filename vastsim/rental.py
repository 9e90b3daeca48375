"""The body of `PUT /api/v0/asks/{id}/`, validated as the service does.

Pure: `parse_rent_request(body)` → `RentRequest`, or ApiError 400 (`invalid_args`,
`invalid_price`). Port mappings travel inside `env` as keys `"-p HOST:CONTAINER[/udp]"` with the
value `"1"`; other keys are environment variables (or docker flags such as `-h`).

The documented create limits are enforced: `disk` ≥ 8 GB, each `env` value ≤ 256 characters and
the whole `env` ≤ 32 KB, `args` + `args_str` + `onstart` ≤ 4096 characters. Error messages name
keys, never values (env values may be secrets). `image_login` (`"-u USER -p PASSWORD REGISTRY"`)
is kept out of `repr` and of every rendering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from vastsim.responses import ApiError

MAX_IMAGE = 1024
MAX_LABEL = 256
MAX_SCRIPT = 4096  # args + args_str + onstart together
MIN_DISK = 8.0  # GB
MAX_ENV_VALUE = 256  # characters in one env value
MAX_ENV_TOTAL = 32 * 1024  # UTF-8 bytes of every env key and value together
MIN_PRICE, MAX_PRICE = 0.001, 128.0
DEFAULT_DISK = 10.0
RUNTYPE_WORDS = frozenset(
    {
        "ssh",
        "jupyter",
        "args",
        "ssh_proxy",
        "ssh_direct",
        "ssh_direc",
        "jupyter_proxy",
        "jupyter_direct",
        "jupyter_direc",
    }
)
_LOGIN = re.compile(r"^-u\s+\S+\s+-p\s+\S+(\s+\S+)?$")
_PORT_FLAG = re.compile(r"^-p\s+(?:(\d{1,5}):)?(\d{1,5})(?:/(tcp|udp))?$")


@dataclass(frozen=True)
class PortMapping:
    """`-p HOST:CONTAINER/proto`; the host port asked for is ignored, a random one is assigned."""

    requested_host_port: int | None
    container_port: int
    proto: str

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"


@dataclass(frozen=True)
class RentRequest:
    image: str
    disk: float = DEFAULT_DISK
    label: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortMapping, ...] = ()
    args: tuple[str, ...] | None = None
    args_str: str | None = None
    onstart: str | None = None
    image_login: str | None = field(default=None, repr=False)
    runtype: str = "ssh"
    price: float | None = None  # a bid: interruptible instance
    target_state: str = "running"


def parse_rent_request(body: Mapping[str, Any]) -> RentRequest:
    """The rent request in `body`; raises ApiError 400 with the reason."""
    image = body.get("image")
    if not isinstance(image, str) or not image.strip():
        raise _invalid("image is required")
    if len(image) > MAX_IMAGE:
        raise _invalid(f"image must be at most {MAX_IMAGE} characters")
    label = body.get("label")
    if label is not None and not isinstance(label, str):
        raise _invalid("label must be a string")
    if label is not None and len(label) > MAX_LABEL:
        raise _invalid(f"label must be at most {MAX_LABEL} characters")
    env, ports = _env(body.get("env"))
    args = body.get("args")
    if args is not None and (not isinstance(args, list) or not all(isinstance(a, str) for a in args)):
        raise _invalid("args must be a list of strings")
    args_str = _optional_str(body, "args_str")
    onstart = _optional_str(body, "onstart")
    image_login = _optional_str(body, "image_login")
    if image_login is not None and not _LOGIN.match(image_login):
        raise _invalid('image_login must read "-u USER -p PASSWORD REGISTRY"')
    script = sum(len(a) for a in args or ()) + len(args_str or "") + len(onstart or "")
    if script > MAX_SCRIPT:
        raise _invalid(f"args, args_str and onstart together must be at most {MAX_SCRIPT} characters")
    runtype = body.get("runtype")
    if runtype is None:
        runtype = "args" if args is not None or args_str is not None else "ssh"
    if not isinstance(runtype, str) or not runtype.split() or not set(runtype.split()) <= RUNTYPE_WORDS:
        raise _invalid(f"runtype {runtype!r} is not one of {', '.join(sorted(RUNTYPE_WORDS))}")
    target_state = body.get("target_state") or "running"
    if target_state not in ("running", "stopped"):
        raise _invalid("target_state must be 'running' or 'stopped'")
    return RentRequest(
        image=image,
        disk=_disk(body.get("disk")),
        label=label,
        env=env,
        ports=ports,
        args=tuple(args) if args is not None else None,
        args_str=args_str,
        onstart=onstart,
        image_login=image_login,
        runtype=runtype,
        price=_price(body.get("price")),
        target_state=target_state,
    )


def _env(env: Any) -> tuple[tuple[tuple[str, str], ...], tuple[PortMapping, ...]]:
    if env is None:
        return (), ()
    if not isinstance(env, dict):
        raise _invalid('env must be a dict such as {"KEY": "value", "-p 8000:8000": "1"}')
    pairs: list[tuple[str, str]] = []
    ports: list[PortMapping] = []
    for key, value in env.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _invalid(f"env value for {key!r} must be a string")
        text = str(value)
        if len(text) > MAX_ENV_VALUE:
            raise _invalid(f"env value for {key!r} is {len(text)} characters; the limit is {MAX_ENV_VALUE}")
        pairs.append((key, text))
        if key.split(maxsplit=1)[:1] == ["-p"]:
            ports.append(_port(key))
    total = sum(len(key.encode()) + len(value.encode()) for key, value in pairs)
    if total > MAX_ENV_TOTAL:
        raise _invalid(f"env is {total} bytes; the limit is {MAX_ENV_TOTAL} bytes in all")
    return tuple(pairs), tuple(ports)


def _port(flag: str) -> PortMapping:
    match = _PORT_FLAG.match(flag.strip())
    if match is None:
        raise _invalid(f"bad port mapping {flag!r}; use '-p HOST:CONTAINER' or '-p HOST:CONTAINER/udp'")
    host, container, proto = match.groups()
    numbers = [int(container)] + ([int(host)] if host else [])
    if not all(1 <= n <= 65535 for n in numbers):
        raise _invalid(f"bad port number in {flag!r}")
    return PortMapping(int(host) if host else None, int(container), proto or "tcp")


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{name} must be a string")
    return value


def _disk(disk: Any) -> float:
    if disk is None:
        return DEFAULT_DISK
    if isinstance(disk, bool) or not isinstance(disk, (int, float)) or not 0 < disk <= 1_000_000:
        raise _invalid(f"disk must be a positive number of GB, got {disk!r}")
    if disk < MIN_DISK:
        raise _invalid(f"disk must be at least {MIN_DISK:g} GB, got {disk!r}")
    return float(disk)


def _price(price: Any) -> float | None:
    if price is None:
        return None
    if isinstance(price, bool) or not isinstance(price, (int, float)) or not MIN_PRICE <= price <= MAX_PRICE:
        raise ApiError(400, "invalid_price", f"price must be between {MIN_PRICE} and {MAX_PRICE} $/h, got {price!r}")
    return float(price)


def _invalid(msg: str) -> ApiError:
    return ApiError(400, "invalid_args", msg)
