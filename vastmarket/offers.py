"""Vast offers ("asks"): the frozen :class:`Offer` model and its defensive parser.

Vast's search answers ``{"offers": [...]}``. Numbers may be null, ``cpu_cores`` may be 0,
``public_ipaddr`` may carry whitespace and ``geolocation`` is free text. :func:`parse_offers`
validates each record with marshmallow at this edge, keeps what is valid (an unparseable
optional field becomes ``None``), drops records without a usable ``id`` and reports how many it
dropped. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from .errors import InvalidResponse
from .names import Location, display_gpu, gpu_key, parse_geolocation


@dataclass(frozen=True, slots=True)
class Offer:
    """One rentable machine configuration, normalised for filtering and scoring."""

    id: int
    gpu_name: str
    num_gpus: int
    gpu_ram_mb: float
    dph_total: float | None
    reliability: float | None
    inet_down: float | None
    inet_up: float | None
    dlperf: float | None
    cpu_cores: float | None
    cpu_ram_mb: float | None
    disk_gb: float | None
    geolocation: str | None
    verified: bool
    rentable: bool
    rented: bool
    direct_port_count: int
    datacenter: bool
    static_ip: bool
    duration_s: float | None
    machine_id: int | None = None
    host_id: int | None = None
    public_ip: str | None = None
    cuda_max_good: float | None = None
    min_bid: float | None = None   # $/h for the GPUs rented as a bid (interruptible)
    dph_base: float | None = None  # $/h for the GPUs on demand (dph_total less storage)
    gpu_key: str = field(init=False)
    location: Location = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gpu_key", gpu_key(self.gpu_name))
        object.__setattr__(self, "location", parse_geolocation(self.geolocation))

    @property
    def gpu_display(self) -> str:
        return display_gpu(self.gpu_name)

    @property
    def gpu_ram_gb(self) -> float:
        """VRAM per GPU in GB, counting 1 GB as 1000 MB (Vast reports nvidia-smi MiB)."""
        return self.gpu_ram_mb / 1000.0

    def brief(self) -> dict[str, Any]:
        """The fields a human or a JSON consumer wants to see about this offer."""
        return {
            "id": self.id,
            "gpu": self.gpu_name,
            "num_gpus": self.num_gpus,
            "gpu_ram_gb": round(self.gpu_ram_gb, 1),
            "dph_total": self.dph_total,
            "location": self.location.label,
            "geolocation": self.geolocation,
            "reliability": self.reliability,
            "inet_down": self.inet_down,
            "verified": self.verified,
            "direct_port_count": self.direct_port_count,
            "machine_id": self.machine_id,
            "host_id": self.host_id,
        }


OFFER_FIELDS = tuple(f.name for f in dataclass_fields(Offer) if f.init)  # the constructor's, in order


# A count the offer table holds as a float: a larger integer (10**400 is valid JSON) would not
# convert, and the whole snapshot with it. Out of range, it is invalid like any other wrong value.
_COLUMN_INT = validate.Range(min=-(2**63), max=2**63 - 1)


class _OfferSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.Integer(required=True, strict=False)
    machine_id = fields.Integer(allow_none=True)
    host_id = fields.Integer(allow_none=True)
    gpu_name = fields.String(allow_none=True)
    num_gpus = fields.Integer(allow_none=True, validate=_COLUMN_INT)
    gpu_ram = fields.Float(allow_none=True)
    cpu_cores = fields.Float(allow_none=True)
    cpu_cores_effective = fields.Float(allow_none=True)
    cpu_ram = fields.Float(allow_none=True)
    disk_space = fields.Float(allow_none=True)
    dph_total = fields.Float(allow_none=True)
    reliability = fields.Float(allow_none=True)
    reliability2 = fields.Float(allow_none=True)
    inet_down = fields.Float(allow_none=True)
    inet_up = fields.Float(allow_none=True)
    dlperf = fields.Float(allow_none=True)
    geolocation = fields.String(allow_none=True)
    verification = fields.String(allow_none=True)
    verified = fields.Boolean(allow_none=True)
    rentable = fields.Boolean(allow_none=True)
    rented = fields.Boolean(allow_none=True)
    direct_port_count = fields.Integer(allow_none=True, validate=_COLUMN_INT)
    hosting_type = fields.Integer(allow_none=True)
    static_ip = fields.Boolean(allow_none=True)
    duration = fields.Float(allow_none=True)
    public_ipaddr = fields.String(allow_none=True)
    cuda_max_good = fields.Float(allow_none=True)
    min_bid = fields.Float(allow_none=True)
    dph_base = fields.Float(allow_none=True)


_SCHEMA = _OfferSchema()


def _usable_ram(raw: Mapping[str, Any]) -> float | None:
    """Usable RAM in MB: ``cpu_ram * cpu_cores_effective / cpu_cores`` when the host shares its
    RAM between several rentals (gpuhunt's rule), else ``cpu_ram``."""
    ram = raw.get("cpu_ram")
    if ram is None:
        return None
    cores, effective = raw.get("cpu_cores"), raw.get("cpu_cores_effective")
    if cores and effective and 0 < effective < cores:
        return float(ram) * float(effective) / float(cores)
    return float(ram)


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return value


def _price(value: float | None) -> float | None:
    """A price below 0 is no price: such an offer is over every cap, never the cheapest."""
    value = _finite(value)
    return None if value is None or value < 0 else value


def offer_from_fields(raw: Mapping[str, Any]) -> Offer | None:
    """Build an :class:`Offer` from schema-validated fields; ``None`` when it has no usable id
    or GPU name."""
    offer_id = raw.get("id")
    name = (raw.get("gpu_name") or "").strip()
    if offer_id is None or not name:
        return None
    verification = raw.get("verification")
    verified = verification == "verified" if verification is not None else bool(raw.get("verified"))
    cores = raw.get("cpu_cores_effective") or raw.get("cpu_cores") or None
    ip = raw.get("public_ipaddr")
    return Offer(
        id=int(offer_id),
        gpu_name=name,
        num_gpus=max(int(raw.get("num_gpus") or 1), 1),
        gpu_ram_mb=float(raw.get("gpu_ram") or 0.0),
        dph_total=_price(raw.get("dph_total")),
        reliability=_finite(raw.get("reliability") if raw.get("reliability") is not None
                            else raw.get("reliability2")),
        inet_down=_finite(raw.get("inet_down")),
        inet_up=_finite(raw.get("inet_up")),
        dlperf=_finite(raw.get("dlperf")),
        cpu_cores=_finite(float(cores)) if cores else None,
        cpu_ram_mb=_finite(_usable_ram(raw)),
        disk_gb=_finite(raw.get("disk_space")),
        geolocation=raw.get("geolocation"),
        verified=verified,
        rentable=raw.get("rentable") is not False,
        rented=bool(raw.get("rented")),
        direct_port_count=max(int(raw.get("direct_port_count") or 0), 0),
        datacenter=raw.get("hosting_type") == 1,
        static_ip=bool(raw.get("static_ip")),
        duration_s=_finite(raw.get("duration")),
        machine_id=raw.get("machine_id"),
        host_id=raw.get("host_id"),
        public_ip=ip.strip() or None if isinstance(ip, str) else None,
        cuda_max_good=_finite(raw.get("cuda_max_good")),
        min_bid=_price(raw.get("min_bid")),
        dph_base=_price(raw.get("dph_base")),
    )


@dataclass(frozen=True, slots=True)
class ParsedOffers:
    """``truncated``: Vast said more offers matched than it returned (``"truncated": true``)."""

    offers: tuple[Offer, ...]
    dropped: int
    truncated: bool = False


def parse_offers(records: Iterable[Any]) -> ParsedOffers:
    """Parse raw offer records; invalid optional fields become ``None``, records without an id
    or GPU name are dropped and counted."""
    items = list(records)
    dicts = [r for r in items if isinstance(r, Mapping)]
    try:
        loaded: list[dict[str, Any]] = _SCHEMA.load(dicts, many=True)
    except ValidationError as exc:
        valid = exc.valid_data
        loaded = list(valid) if isinstance(valid, list) else []
    offers = []
    for raw in loaded:
        offer = offer_from_fields(raw) if isinstance(raw, Mapping) else None
        if offer is not None:
            offers.append(offer)
    return ParsedOffers(tuple(offers), len(items) - len(offers))


def parse_search_response(body: Any) -> ParsedOffers:
    """Parse the body of ``POST /api/v0/bundles/`` (``{"offers": [...]}``)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("offers"), list):
        raise InvalidResponse("offer search answered without an 'offers' list")
    parsed = parse_offers(body["offers"])
    if body.get("truncated") is True:
        return ParsedOffers(parsed.offers, parsed.dropped, truncated=True)
    return parsed
