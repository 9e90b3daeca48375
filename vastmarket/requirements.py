"""What a pod needs from an offer, built layer by layer.

Precedence, lowest first: built-in defaults → config file → ``VAST_*`` environment (both in
:class:`~vastmarket.config.SelectionConfig`) → the pod itself (GPU count from ``nvidia.com/gpu``,
CPU and memory requests, number of container ports, the GPU model and memory its cloud GPU node
selectors ask for — :mod:`vastmarket.selectors`) → ``vast.ai/*`` annotations. Every value is
validated; a wrong one raises :class:`~vastmarket.errors.RequirementError` naming the field, the
value and the accepted form. Pods are plain Kubernetes JSON dicts. No I/O.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

from .bids import POLICY_FORM, BidChoice, InterruptionPolicy
from .config import Blacklist, SelectionConfig, parse_gpu_list, parse_location_list
from .errors import RequirementError
from .instances import MIN_DISK_GB
from .names import display_gpu
from .quantities import (
    BOOL_FORM, FRACTION_FORM, PRICE_FORM, QUANTITY_FORM, RATE_FORM, SIZE_FORM, parse_bool,
    parse_fraction, parse_mbps, parse_price, parse_quantity, parse_size_gb,
)
from .selectors import gpu_selection

# isinstance(x, _MAPPING) is isinstance(x, Mapping), and answers a dict without the ABC's check.
_MAPPING = (dict, Mapping)
GPU_RESOURCE = "nvidia.com/gpu"
ANNOTATION_PREFIX = "vast.ai/"


@dataclass(frozen=True, slots=True)
class Requirements:
    """The hard requirements and preference orders for one pod. Hashable: rankings are cached
    by it."""

    gpu_types: tuple[str, ...] = ()
    min_gpu_memory_gb: float = 0.0
    num_gpus: int = 1
    max_price: float = 1.0
    min_reliability: float = 0.0
    min_download_mbps: float = 0.0
    locations: tuple[str, ...] = ()
    min_cpu_cores: float = 0.0
    min_ram_gb: float = 0.0
    min_disk_gb: float = 0.0
    direct_ports: int = 0
    verified_only: bool = False
    blacklist: Blacklist = Blacklist()
    # Where gpu_types / min_gpu_memory_gb came from when the pod's node selectors set them
    # ("node selector cloud.google.com/gke-accelerator=nvidia-l4"); reasons and explain name it.
    gpu_origin: str = ""
    # Rented as a bid (vastmarket.bids): offers are priced at their min_bid, max_price is bid-max.
    interruptible: bool = False

    def describe(self) -> str:
        """One line in the seed's style: ``RTX3060, 12GB+, <$0.50/hr``."""
        parts = ["/".join(display_gpu(g) for g in self.gpu_types) if self.gpu_types else "any GPU"]
        if self.num_gpus > 1:
            parts.append(f"{self.num_gpus}x")
        if self.min_gpu_memory_gb:
            parts.append(f"{self.min_gpu_memory_gb:g}GB+")
        parts.append(f"<${self.max_price:.2f}/hr" + (" interruptible" if self.interruptible else ""))
        if self.min_reliability:
            parts.append(f"{self.min_reliability:.0%}+ reliability")
        if self.min_download_mbps:
            parts.append(f"{self.min_download_mbps:g}+ Mbps")
        if self.locations:
            parts.append("in " + "/".join(self.locations))
        if self.direct_ports:
            parts.append(f"{self.direct_ports} ports")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        origin = {"gpu_from": self.gpu_origin} if self.gpu_origin else {}
        return {
            "gpu_types": list(self.gpu_types), "min_gpu_memory_gb": self.min_gpu_memory_gb,
            "num_gpus": self.num_gpus, "max_price": self.max_price,
            "min_reliability": self.min_reliability, "min_download_mbps": self.min_download_mbps,
            "locations": list(self.locations), "min_cpu_cores": self.min_cpu_cores,
            "min_ram_gb": round(self.min_ram_gb, 3), "min_disk_gb": self.min_disk_gb,
            "direct_ports": self.direct_ports, "verified_only": self.verified_only, **origin,
            **({"interruptible": True} if self.interruptible else {}),
        }


def base_requirements(config: SelectionConfig) -> Requirements:
    """The requirements every pod starts from: the config's defaults (file + environment)."""
    d = config.defaults
    return Requirements(
        gpu_types=d.gpu_types, min_gpu_memory_gb=d.min_gpu_memory_gb, max_price=d.max_price,
        min_reliability=d.min_reliability, min_download_mbps=d.min_download_mbps,
        locations=d.locations, min_disk_gb=d.min_disk_gb, verified_only=d.verified_only,
        blacklist=config.blacklist,
    )


# The last config's base requirements and their fields by name: the extender asks with one config
# for every pod. SelectionConfig is frozen, so the same object gives the same base; one slot,
# replaced whole, so threads share it safely and it never grows.
_last_base: tuple[SelectionConfig, Requirements, dict[str, Any]] | None = None


def _base(config: SelectionConfig) -> tuple[Requirements, dict[str, Any]]:
    global _last_base
    cached = _last_base
    if cached is None or cached[0] is not config:
        req = base_requirements(config)
        cached = (config, req, {f.name: getattr(req, f.name) for f in fields(Requirements)})
        _last_base = cached
    return cached[1], cached[2]


# --- the pod ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PodNeeds:
    """What the pod's spec asks for, read like the scheduler reads it. ``num_gpus`` is at least 1
    (every Vast instance has a GPU); ``requested_gpus`` is what the containers ask for, 0 when
    they ask for none — such a pod never goes to Vast."""

    num_gpus: int
    cpu_cores: float
    ram_gb: float
    ports: tuple[int, ...]
    requested_gpus: int = 0


def _containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = pod.get("spec")
    if not isinstance(spec, _MAPPING):
        return []
    containers = spec.get("containers")
    return [c for c in containers if isinstance(c, _MAPPING)] if isinstance(containers, list) else []


def _resource(container: Mapping[str, Any], name: str) -> Any:
    resources = container.get("resources")
    if not isinstance(resources, _MAPPING):
        return None
    for kind in ("requests", "limits"):
        section = resources.get(kind)
        if isinstance(section, _MAPPING) and section.get(name) is not None:
            return section[name]
    return None


def _amount(name: str, raw: object) -> int | float:
    """What ``raw`` adds to the pod's ``name``: whole GPUs, CPU cores, GB of memory. Raises
    ``ValueError`` with the accepted form."""
    try:
        amount = parse_quantity(raw)
    except ValueError:
        raise ValueError(QUANTITY_FORM) from None
    if amount < 0:
        raise ValueError(QUANTITY_FORM)
    if name == GPU_RESOURCE:
        if amount != int(amount):
            raise ValueError("a whole number of GPUs")
        return int(amount)
    return float(amount) if name == "cpu" else float(amount) / 1e9


# A cluster's pods repeat a few quantities ("1", "16Gi") endlessly; only text is cached (True == 1).
_text_amount = functools.lru_cache(maxsize=1024)(_amount)
_NO_SECTION: Mapping[str, Any] = {}


def _pod_needs(pod: Mapping[str, Any]) -> tuple[int, float, float, list[int]]:
    """GPUs, CPU cores, GB of memory and TCP ports the containers ask for: :func:`pod_needs` in one
    pass, without the dataclass (it runs for every extender request)."""
    gpus, cpu, ram = 0, 0.0, 0.0
    ports: list[int] = []
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, _MAPPING) else None
    idx = -1  # counts the containers _containers keeps
    for container in containers if isinstance(containers, list) else ():
        if not isinstance(container, _MAPPING):
            continue
        idx += 1
        resources = container.get("resources")
        if isinstance(resources, _MAPPING):
            requests = resources.get("requests")
            limits = resources.get("limits")
            if not isinstance(requests, _MAPPING):
                requests = _NO_SECTION
            if not isinstance(limits, _MAPPING):
                limits = _NO_SECTION
            for name in (GPU_RESOURCE, "cpu", "memory"):
                raw = requests.get(name)  # the request, else the limit (as _resource reads them)
                if raw is None:
                    raw = limits.get(name)
                    if raw is None:
                        continue
                try:
                    amount = _text_amount(name, raw) if type(raw) is str else _amount(name, raw)
                except ValueError as e:
                    raise RequirementError(f"spec.containers[{idx}].resources.{name}", raw, str(e)) from None
                if name == GPU_RESOURCE:
                    gpus += int(amount)
                elif name == "cpu":
                    cpu += amount
                else:
                    ram += amount
        for port in container.get("ports") or []:
            if isinstance(port, _MAPPING):
                protocol = port.get("protocol", "TCP")
                if protocol == "TCP" or str(protocol).upper() == "TCP":
                    number = port.get("containerPort")
                    if (type(number) is int or (isinstance(number, int) and not isinstance(number, bool))) \
                            and 0 < number < 65536:
                        ports.append(number)
    return gpus, cpu, ram, ports


def pod_needs(pod: Mapping[str, Any]) -> PodNeeds:
    """GPU count, CPU and memory requests (limits when no request) and TCP container ports."""
    gpus, cpu, ram, ports = _pod_needs(pod)
    return PodNeeds(num_gpus=max(gpus, 1), cpu_cores=cpu, ram_gb=ram, ports=tuple(ports), requested_gpus=gpus)


def requests_gpu(pod: Mapping[str, Any]) -> bool:
    """Whether a container of ``pod`` asks for ``nvidia.com/gpu`` (requests or limits) more than 0.
    Never raises: a malformed quantity counts as asking (it is refused where it is parsed)."""
    for container in _containers(pod):
        raw = _resource(container, GPU_RESOURCE)
        if raw is None:
            continue
        try:
            if parse_quantity(raw) == 0:
                continue
        except ValueError:
            pass
        return True
    return False


# --- annotations ------------------------------------------------------------------------------

IMAGE_FORM = "a container image reference such as ghcr.io/org/app:1.2 (no spaces, at most 1024 characters)"
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")


def _image(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 1024 or not _IMAGE.match(value):
        raise ValueError(IMAGE_FORM)
    return value


@dataclass(frozen=True, slots=True)
class _Override:
    key: str
    form: str
    parse: Callable[[str], Any]


def _wrap(field: str, parser: Callable[[str], Any], form: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return parser(text)
        except ValueError:
            raise RequirementError(field, text, form) from None
    return parse


def _override(name: str, parser: Callable[[str], Any], form: str) -> _Override:
    key = ANNOTATION_PREFIX + name
    return _Override(key, form, _wrap(key, parser, form))


GPU_FORM = "a GPU model such as RTX3060, RTX 4090 or A4000"
DISK_FORM = f"a disk size of at least {MIN_DISK_GB:g} GB (Vast's minimum) such as 20, 20GB or 20Gi"


def _disk(text: str) -> float:
    size = parse_size_gb(text)
    if size < MIN_DISK_GB:
        raise ValueError(DISK_FORM)
    return size
LOCATIONS_FORM = "comma-separated locations such as US, EU, ASIA, DE or US-CA"

OVERRIDES: dict[str, _Override] = {o.key: o for o in (
    _Override("vast.ai/gpu-type", GPU_FORM, lambda t: parse_gpu_list("vast.ai/gpu-type", t)),
    _Override("vast.ai/gpu-fallbacks", "comma-separated GPU models such as RTX4090,A4000",
              lambda t: parse_gpu_list("vast.ai/gpu-fallbacks", t)),
    _override("price-max", parse_price, PRICE_FORM),
    _override("min-gpu-memory", parse_size_gb, SIZE_FORM),
    _override("min-reliability", parse_fraction, FRACTION_FORM),
    _override("min-download-mbps", parse_mbps, RATE_FORM),
    _Override("vast.ai/region", LOCATIONS_FORM, lambda t: parse_location_list("vast.ai/region", t)),
    _Override("vast.ai/locations", LOCATIONS_FORM, lambda t: parse_location_list("vast.ai/locations", t)),
    _override("disk", lambda t: _disk(t), DISK_FORM),
    _override("image", _image, IMAGE_FORM),
    _override("verified-only", parse_bool, BOOL_FORM),
    _override("interruptible", parse_bool, BOOL_FORM),
    _override("bid-max", parse_price, PRICE_FORM),
    _override("interruption-policy", InterruptionPolicy.parse, POLICY_FORM),
)}

# Annotations kube-vast itself writes on pods; they are outputs, not overrides.
OUTPUT_ANNOTATIONS = frozenset({
    "vast.ai/offer-id", "vast.ai/offer-score", "vast.ai/offer-price", "vast.ai/offer-gpu",
    "vast.ai/offer-location", "vast.ai/offer-reliability", "vast.ai/selected-at",
    "vast.ai/selection", "vast.ai/selection-error", "vast.ai/instance-id", "vast.ai/public-ip",
    "vast.ai/ports", "vast.ai/launch", "vast.ai/enabled", "vast.ai/failed-hosts",
    "vast.ai/rented-offer-id", "vast.ai/rented-offer-score", "vast.ai/rented-offer-price",
    "vast.ai/rented-offer-gpu", "vast.ai/rented-offer-location", "vast.ai/rented-offer-reason",
    "vast.ai/offer-price-type", "vast.ai/bid", "vast.ai/interruption",
    "vast.ai/budget-queued",  # the webhook: admitted over a VastBudget that queues (webhooks/budgets.py)
})


@dataclass(frozen=True, slots=True)
class Overrides:
    """The validated ``vast.ai/*`` annotations of a pod."""

    gpu_types: tuple[str, ...] | None = None
    gpu_fallbacks: tuple[str, ...] | None = None
    max_price: float | None = None
    min_gpu_memory_gb: float | None = None
    min_reliability: float | None = None
    min_download_mbps: float | None = None
    locations: tuple[str, ...] | None = None
    disk_gb: float | None = None
    image: str | None = None
    verified_only: bool | None = None
    interruptible: bool | None = None
    bid_max: float | None = None
    interruption_policy: InterruptionPolicy | None = None


_OVERRIDE_ATTRS = {
    "vast.ai/gpu-type": "gpu_types", "vast.ai/gpu-fallbacks": "gpu_fallbacks",
    "vast.ai/price-max": "max_price", "vast.ai/min-gpu-memory": "min_gpu_memory_gb",
    "vast.ai/min-reliability": "min_reliability", "vast.ai/min-download-mbps": "min_download_mbps",
    "vast.ai/region": "locations", "vast.ai/locations": "locations", "vast.ai/disk": "disk_gb",
    "vast.ai/image": "image", "vast.ai/verified-only": "verified_only",
    "vast.ai/interruptible": "interruptible", "vast.ai/bid-max": "bid_max",
    "vast.ai/interruption-policy": "interruption_policy",
}


def parse_overrides(annotations: Mapping[str, Any] | None) -> Overrides:
    """Validate every ``vast.ai/*`` annotation. Unknown ``vast.ai/`` keys are refused too, so a
    typo (``vast.ai/price_max``) is an error, not a silently ignored wish."""
    if not annotations:
        return Overrides()
    return Overrides(**_override_values(annotations))


@functools.lru_cache(maxsize=1024)  # pods of one Deployment repeat their annotations; values are immutable
def _parsed(key: str, text: str) -> Any:
    return OVERRIDES[key].parse(text)


def _override_values(annotations: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`Overrides` fields ``annotations`` set, by name. Walks the annotations in their
    own order; when anything is wrong, :func:`_sorted_override_values` raises the error the sorted
    order meets first (the walk is pure, so it may run twice)."""
    values: dict[str, Any] = {}
    try:
        for key, raw in annotations.items():
            attr = _OVERRIDE_ATTRS.get(key)
            if attr is None:
                if key.startswith(ANNOTATION_PREFIX) and key not in OUTPUT_ANNOTATIONS:
                    raise ValueError(key)  # an unknown vast.ai/ annotation
            elif attr in values or type(raw) is not str:  # region and locations; not text
                raise ValueError(key)
            else:
                values[attr] = _parsed(key, raw)
        if "gpu_fallbacks" in values and "gpu_types" not in values:
            raise ValueError("vast.ai/gpu-fallbacks")
    except Exception:
        return _sorted_override_values(annotations)
    return values


def _sorted_override_values(annotations: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`_override_values`, walking the keys in sorted order: the first error met is raised."""
    values: dict[str, Any] = {}
    for key in sorted(annotations):
        if not key.startswith(ANNOTATION_PREFIX) or key in OUTPUT_ANNOTATIONS:
            continue
        raw = annotations[key]
        override = OVERRIDES.get(key)
        if override is None:
            raise RequirementError(key, raw, "one of the known annotations: " + ", ".join(sorted(OVERRIDES)))
        if not isinstance(raw, str):
            raise RequirementError(key, raw, override.form)
        attr = _OVERRIDE_ATTRS[key]
        if attr in values and key == "vast.ai/region":
            raise RequirementError(key, raw, "either vast.ai/region or vast.ai/locations, not both")
        values[attr] = override.parse(raw)
    if "gpu_fallbacks" in values and "gpu_types" not in values:
        raise RequirementError("vast.ai/gpu-fallbacks", annotations["vast.ai/gpu-fallbacks"],
                               "to be used together with vast.ai/gpu-type (the first choice)")
    return values


def requirements_for(
    config: SelectionConfig,
    pod: Mapping[str, Any] | None = None,
    *,
    annotations: Mapping[str, Any] | None = None,
) -> Requirements:
    """The requirements of ``pod`` (its annotations unless ``annotations`` is given)."""
    req, base = _base(config)
    updates: dict[str, Any]  # one Requirements at the end: this runs for every extender request
    namespace = None
    if pod is None:
        updates = {}
    else:
        gpus, cpu, ram, ports = _pod_needs(pod)
        updates = {"num_gpus": max(gpus, 1), "min_cpu_cores": cpu, "min_ram_gb": ram, "direct_ports": len(ports)}
        selection = gpu_selection(pod)
        if selection is not None:
            updates.update(gpu_origin=selection.origin,
                           gpu_types=req.gpu_types if selection.gpu_types is None else selection.gpu_types,
                           min_gpu_memory_gb=selection.min_gpu_memory_gb or req.min_gpu_memory_gb)
        meta = pod.get("metadata")
        if isinstance(meta, _MAPPING):
            if annotations is None:
                found = meta.get("annotations")
                annotations = found if isinstance(found, _MAPPING) else None
            namespace = _namespace_of(meta)
    values = _override_values(annotations) if annotations else {}
    updates["interruptible"] = config.interruptible.default_for(namespace)
    return _apply(req, values, updates, base)


def _namespace_of(meta: Mapping[str, Any]) -> str | None:
    ns = meta.get("namespace")
    return ns if isinstance(ns, str) and ns else None


def bid_choice(config: SelectionConfig, pod: Mapping[str, Any]) -> BidChoice:
    """Whether ``pod`` rents interruptibly, its ceiling and its outbid policy (config section
    ``interruptible``, then ``vast.ai/interruptible``, ``vast.ai/bid-max``,
    ``vast.ai/interruption-policy``). Raises :class:`RequirementError` like :func:`requirements_for`."""
    req = requirements_for(config, pod)
    meta = pod.get("metadata")
    found = meta.get("annotations") if isinstance(meta, _MAPPING) else None
    ov = parse_overrides(found if isinstance(found, _MAPPING) else None)
    policy = ov.interruption_policy or config.interruptible.policy
    return BidChoice(interruptible=req.interruptible, bid_max=req.max_price if req.interruptible else None,
                     policy=policy)


def apply_overrides(req: Requirements, ov: Overrides, earlier: Mapping[str, Any] | None = None) -> Requirements:
    """``req`` with ``earlier`` changes, then the pod's annotations (``ov``), applied."""
    return _apply(req, {name: getattr(ov, name) for name in _OVERRIDE_FIELDS}, dict(earlier or {}))


_OVERRIDE_FIELDS = tuple(f.name for f in fields(Overrides))
# Overrides that replace a Requirements field as they are: the field each one sets.
_SAME_AS_FIELD = {
    "max_price": "max_price", "min_gpu_memory_gb": "min_gpu_memory_gb", "min_reliability": "min_reliability",
    "min_download_mbps": "min_download_mbps", "locations": "locations", "verified_only": "verified_only",
    "disk_gb": "min_disk_gb", "interruptible": "interruptible",
}


def _apply(req: Requirements, ov: Mapping[str, Any], updates: dict[str, Any],
           fields_of_req: Mapping[str, Any] | None = None) -> Requirements:
    """:func:`apply_overrides` with the :class:`Overrides` fields by name (a missing one is
    ``None``) and ``updates`` changed in place; ``fields_of_req`` are ``req``'s fields by name
    when known, to build the result without :func:`dataclasses.replace`."""
    for attr, value in ov.items():
        if value is not None and attr in _SAME_AS_FIELD:
            updates[_SAME_AS_FIELD[attr]] = value
    gpu_types = ov.get("gpu_types")
    if gpu_types is not None:
        updates["gpu_types"] = gpu_types + (ov.get("gpu_fallbacks") or ())
        updates["gpu_origin"] = ""  # vast.ai/gpu-type decides the model, not the node selectors
    if (bid_max := ov.get("bid_max")) is not None:
        if not updates.get("interruptible", req.interruptible):
            raise RequirementError("vast.ai/bid-max", bid_max,
                                   'an interruptible pod (vast.ai/interruptible: "true")')
        updates["max_price"] = bid_max  # an interruptible pod's ceiling is its bid-max
    if not updates:
        result = req
    elif fields_of_req is not None:
        result = Requirements(**{**fields_of_req, **updates})  # what replace() does, a third of the time
    else:
        result = replace(req, **updates)
    if not math.isfinite(result.max_price) or result.max_price <= 0:
        raise RequirementError("max price", result.max_price, PRICE_FORM)
    return result
