"""The selection configuration (``kube-vast.yaml`` / the ConfigMap) and the ``VAST_*`` environment.

The file has the seed's shape::

    gpu:
      preferred_types: [RTX3060, RTX4090, A4000]   # ordered; the allowed set
      min_memory_gb: 12
    locations: [US-CA, US-TX, US-NY, US, EU]        # ordered; the allowed set
    max_price_per_hour: 0.50
    min_reliability: 0.95
    min_download_mbps: 100
    min_disk_gb: 20
    verified_only: false
    weights: {price: 0.30, performance: 0.25, gpu_match: 0.20, location: 0.15, availability: 0.10}
    modifiers:
      - {when: {datacenter: true}, add: 0.05}
    blacklist: {hosts: [], machines: [], countries: []}
    budget: {max_total_price_per_hour: 10.0, max_instances: 10}

Every key is optional; unknown keys are refused with their path so that a typo never turns into
a silent default. :func:`load_config` validates with marshmallow into the frozen
:class:`SelectionConfig`; :func:`env_overrides` reads the seed's ``VAST_*`` variables. The only
I/O is reading the file named by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .bids import InterruptibleConfig, InterruptibleSchema, interruptible_config
from .errors import ConfigError, RequirementError
from .instances import MIN_DISK_GB
from .names import LocationSyntaxError, is_plausible_gpu_name, parse_location_pattern
from .quantities import (
    FRACTION_FORM, PRICE_FORM, RATE_FORM, SIZE_FORM, parse_fraction, parse_mbps, parse_price,
    parse_size_gb,
)

WEIGHT_NAMES = ("price", "performance", "gpu_match", "location", "availability")


@dataclass(frozen=True, slots=True)
class Weights:
    """Scoring weights; always normalised so that they sum to 1."""

    price: float = 0.30
    performance: float = 0.25
    gpu_match: float = 0.20
    location: float = 0.15
    availability: float = 0.10

    def normalised(self) -> Weights:
        total = sum(getattr(self, n) for n in WEIGHT_NAMES)
        return Weights(**{n: getattr(self, n) / total for n in WEIGHT_NAMES})

    def as_dict(self) -> dict[str, float]:
        return {n: getattr(self, n) for n in WEIGHT_NAMES}


MODIFIER_CONDITIONS = ("datacenter", "static_ip", "verified", "gpu", "location", "host_id", "machine_id")


@dataclass(frozen=True, slots=True)
class Modifier:
    """Add ``add`` (may be negative) to the score of offers matching every condition in ``when``."""

    when: tuple[tuple[str, Any], ...]
    add: float
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or ",".join(f"{k}={v}" for k, v in self.when)


@dataclass(frozen=True, slots=True)
class Blacklist:
    hosts: frozenset[int] = frozenset()
    machines: frozenset[int] = frozenset()
    countries: frozenset[str] = frozenset()
    # worked out once: a blacklist lives as long as its config, and every ranking's keys hash it
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.hosts, self.machines, self.countries)))

    def __hash__(self) -> int:
        return self._hash

    def __bool__(self) -> bool:
        return bool(self.hosts or self.machines or self.countries)


@dataclass(frozen=True, slots=True)
class Budget:
    """Global caps the controller enforces across all instances it runs."""

    max_total_price_per_hour: float = 10.0
    max_instances: int = 10


@dataclass(frozen=True, slots=True)
class RequirementDefaults:
    """Per-pod requirement defaults from the file and environment (before pod and annotations)."""

    gpu_types: tuple[str, ...] = ()
    min_gpu_memory_gb: float = 0.0
    max_price: float = 1.00
    min_reliability: float = 0.90
    min_download_mbps: float = 0.0
    locations: tuple[str, ...] = ()
    min_disk_gb: float = 10.0
    verified_only: bool = False


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    defaults: RequirementDefaults = field(default_factory=RequirementDefaults)
    weights: Weights = field(default_factory=Weights)
    modifiers: tuple[Modifier, ...] = ()
    blacklist: Blacklist = field(default_factory=Blacklist)
    budget: Budget = field(default_factory=Budget)
    interruptible: InterruptibleConfig = field(default_factory=InterruptibleConfig)


# --- value fields that report the accepted form ------------------------------------------------

class _Parsed(fields.Field):  # type: ignore[type-arg]
    """A field parsed by one of :mod:`vastmarket.quantities`' parsers."""

    def __init__(self, parser: Any, form: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._parser = parser
        self._form = form

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return self._parser(value)
        except (ValueError, TypeError):
            raise ValidationError(f"invalid value {value!r}: expected {self._form}") from None


def _rental_disk(text: str | int | float) -> float:
    size = parse_size_gb(text)
    if size < MIN_DISK_GB:
        raise ValueError(f"below Vast's minimum disk of {MIN_DISK_GB:g} GB")
    return size


def _check_gpu_names(names: list[str]) -> None:
    for name in names:
        if not is_plausible_gpu_name(name):
            raise ValidationError(f"invalid GPU type {name!r}: expected a model name such as RTX3060, RTX 4090 or A4000")


def _check_locations(names: list[str]) -> None:
    for name in names:
        try:
            parse_location_pattern(name)
        except LocationSyntaxError as exc:
            raise ValidationError(str(exc)) from None


class _GpuSchema(Schema):
    class Meta:
        unknown = RAISE

    preferred_types = fields.List(fields.String(), validate=_check_gpu_names)
    min_memory_gb = _Parsed(parse_size_gb, SIZE_FORM)


class _WeightsSchema(Schema):
    class Meta:
        unknown = RAISE

    price = fields.Float(validate=validate.Range(min=0))
    performance = fields.Float(validate=validate.Range(min=0))
    gpu_match = fields.Float(validate=validate.Range(min=0))
    location = fields.Float(validate=validate.Range(min=0))
    availability = fields.Float(validate=validate.Range(min=0))

    @validates_schema
    def _positive_total(self, data: dict[str, float], **_: Any) -> None:
        merged = {**Weights().as_dict(), **data}
        if not all(math.isfinite(v) for v in merged.values()) or sum(merged.values()) <= 0:
            raise ValidationError("the weights must be finite, non-negative and not all zero")


class _WhenSchema(Schema):
    class Meta:
        unknown = RAISE

    datacenter = fields.Boolean()
    static_ip = fields.Boolean()
    verified = fields.Boolean()
    gpu = fields.String(validate=lambda v: _check_gpu_names([v]))
    location = fields.String(validate=lambda v: _check_locations([v]))
    host_id = fields.Integer()
    machine_id = fields.Integer()


class _ModifierSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String()
    when = fields.Nested(_WhenSchema, required=True, validate=validate.Length(min=1))
    add = fields.Float(required=True, validate=validate.Range(min=-1, max=1))


class _BlacklistSchema(Schema):
    class Meta:
        unknown = RAISE

    hosts = fields.List(fields.Integer())
    machines = fields.List(fields.Integer())
    countries = fields.List(fields.String(validate=validate.Regexp(r"^[A-Za-z]{2}$", error="expected an ISO-2 country code such as DE")))


class _BudgetSchema(Schema):
    class Meta:
        unknown = RAISE

    max_total_price_per_hour = _Parsed(parse_price, PRICE_FORM)
    max_instances = fields.Integer(validate=validate.Range(min=0))


class _ConfigSchema(Schema):
    class Meta:
        unknown = RAISE

    gpu = fields.Nested(_GpuSchema)
    locations = fields.List(fields.String(), validate=_check_locations)
    max_price_per_hour = _Parsed(parse_price, PRICE_FORM)
    min_reliability = _Parsed(parse_fraction, FRACTION_FORM)
    min_download_mbps = _Parsed(parse_mbps, RATE_FORM)
    # Also every rental's disk unless the pod sets vast.ai/disk: at least Vast's minimum.
    min_disk_gb = _Parsed(_rental_disk, f"a size in GB of at least {MIN_DISK_GB:g} (Vast's minimum disk) such as 20")
    verified_only = fields.Boolean()
    weights = fields.Nested(_WeightsSchema)
    modifiers = fields.List(fields.Nested(_ModifierSchema))
    blacklist = fields.Nested(_BlacklistSchema)
    budget = fields.Nested(_BudgetSchema)
    interruptible = fields.Nested(InterruptibleSchema)


def _flatten_errors(messages: Any, prefix: str = "") -> list[str]:
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix and key != "_schema" else (prefix or str(key))
            if key == "_schema":
                path = prefix or "(top level)"
            out.extend(_flatten_errors(value, path))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix}: {m}" for m in messages]
    if isinstance(messages, list):
        return [line for m in messages for line in _flatten_errors(m, prefix)]
    return [f"{prefix}: {messages}"]


def config_from_mapping(data: Any, *, source: str = "config") -> SelectionConfig:
    """Validate a parsed config document and build the frozen :class:`SelectionConfig`."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        loaded: dict[str, Any] = _ConfigSchema().load(data)
    except ValidationError as exc:
        problems = "; ".join(_flatten_errors(exc.messages))
        raise ConfigError(f"{source}: {problems}") from None
    gpu = loaded.get("gpu", {})
    defaults = RequirementDefaults()
    updates: dict[str, Any] = {}
    if "preferred_types" in gpu:
        updates["gpu_types"] = tuple(gpu["preferred_types"])
    if "min_memory_gb" in gpu:
        updates["min_gpu_memory_gb"] = gpu["min_memory_gb"]
    simple = {"max_price_per_hour": "max_price", "min_reliability": "min_reliability",
              "min_download_mbps": "min_download_mbps", "min_disk_gb": "min_disk_gb",
              "verified_only": "verified_only"}
    for key, attr in simple.items():
        if key in loaded:
            updates[attr] = loaded[key]
    if "locations" in loaded:
        updates["locations"] = tuple(parse_location_pattern(x).text for x in loaded["locations"])
    modifiers = tuple(
        Modifier(when=tuple(sorted(m["when"].items())), add=m["add"], name=m.get("name", ""))
        for m in loaded.get("modifiers", [])
    )
    bl = loaded.get("blacklist", {})
    blacklist = Blacklist(
        hosts=frozenset(bl.get("hosts", [])), machines=frozenset(bl.get("machines", [])),
        countries=frozenset(c.upper() for c in bl.get("countries", [])),
    )
    return SelectionConfig(
        defaults=replace(defaults, **updates),
        weights=replace(Weights(), **loaded.get("weights", {})),
        modifiers=modifiers,
        blacklist=blacklist,
        budget=replace(Budget(), **loaded.get("budget", {})),
        interruptible=interruptible_config(loaded.get("interruptible")),
    )


def load_config(path: str | Path) -> SelectionConfig:
    """Read and validate a YAML (or JSON) config file; every problem is a :class:`ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return config_from_mapping(data, source=str(p))


# --- the seed's environment variables --------------------------------------------------------

ENV_VARIABLES = {
    "VAST_GPU_TYPE": "gpu_types",
    "VAST_MIN_GPU_MEMORY": "min_gpu_memory_gb",
    "VAST_MAX_PRICE_PER_HOUR": "max_price",
    "VAST_RELIABILITY_SCORE": "min_reliability",
    "VAST_MIN_DOWNLOAD_SPEED": "min_download_mbps",
    "VAST_DATACENTER_LOCATION": "locations",
}


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_gpu_list(field_name: str, text: str) -> tuple[str, ...]:
    names = _split_list(text)
    if not names or not all(is_plausible_gpu_name(n) for n in names):
        raise RequirementError(field_name, text, "a GPU model such as RTX3060, RTX 4090 or A4000 (comma-separated for several)")
    return tuple(names)


def parse_location_list(field_name: str, text: str) -> tuple[str, ...]:
    names = _split_list(text)
    if not names:
        raise RequirementError(field_name, text, "one or more locations such as US, EU, ASIA or US-CA")
    try:
        return tuple(parse_location_pattern(n).text for n in names)
    except LocationSyntaxError:
        raise RequirementError(field_name, text, "comma-separated locations, each a region (US, EU, ASIA), a country code (DE) or a US state (US-CA)") from None


def _parse_env_value(name: str, text: str) -> Any:
    parsers: dict[str, tuple[Any, str]] = {
        "VAST_MIN_GPU_MEMORY": (parse_size_gb, SIZE_FORM),
        "VAST_MAX_PRICE_PER_HOUR": (parse_price, PRICE_FORM),
        "VAST_RELIABILITY_SCORE": (parse_fraction, FRACTION_FORM),
        "VAST_MIN_DOWNLOAD_SPEED": (parse_mbps, RATE_FORM),
    }
    if name == "VAST_GPU_TYPE":
        return parse_gpu_list(name, text)
    if name == "VAST_DATACENTER_LOCATION":
        return parse_location_list(name, text)
    parser, form = parsers[name]
    try:
        return parser(text)
    except ValueError:
        raise RequirementError(name, text, form) from None


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The requirement defaults set by ``VAST_*`` variables (empty values are ignored)."""
    out: dict[str, Any] = {}
    for name, attr in ENV_VARIABLES.items():
        text = environ.get(name, "").strip()
        if text:
            out[attr] = _parse_env_value(name, text)
    return out


def apply_env(config: SelectionConfig, environ: Mapping[str, str]) -> SelectionConfig:
    """The config with the ``VAST_*`` environment laid over its requirement defaults."""
    try:
        updates = env_overrides(environ)
    except RequirementError as exc:
        raise ConfigError(str(exc)) from None
    return replace(config, defaults=replace(config.defaults, **updates)) if updates else config
