"""A deterministic, realistic set of marketplace offers, and the price fields derived from them.

`generate_offers(seed, count)` draws machines from the catalog and splits each into one or more
offers (disjoint GPU slices of the machine). The same seed and `now` always give the same offers.
Quirks real clients must survive are drawn in on purpose: null or zero `cpu_cores`, a rare null
`inet_down`, whitespace around `public_ipaddr`, geolocations that are just "US", spelled out
("California, United States") or null.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Sequence

from vastsim.catalog import (
    CONSUMER_CPUS,
    DATACENTER_CPUS,
    DIRECT_PORT_COUNTS,
    DISKS,
    DRIVERS,
    GPU_MODELS,
    LOCATIONS,
    MOTHERBOARDS,
    PUBLIC_NETS,
    VERIFICATIONS,
    Driver,
    GpuModel,
    Location,
)

Offer = dict[str, Any]

GENERATION_EPOCH = 1_735_689_600.0  # 2025-01-01T00:00:00Z: the default "now" of a generated market
DEFAULT_ALLOCATED_STORAGE = 8.0  # GB priced into dph_total when a search names none (DOCS default)
HOURS_PER_MONTH = 720.0
DAY = 86_400.0


class _Weighted:
    """Weighted choice over a fixed table, with the cumulative weights computed once."""

    def __init__(self, items: Sequence[Any], weights: Sequence[float]) -> None:
        self.items = items
        self.cum = list(accumulate(weights))

    def pick(self, rng: random.Random) -> Any:
        return rng.choices(self.items, cum_weights=self.cum)[0]


_GPU = _Weighted(GPU_MODELS, [m.weight for m in GPU_MODELS])
_LOCATION = _Weighted(LOCATIONS, [loc.weight for loc in LOCATIONS])
_VERIFICATION = _Weighted(VERIFICATIONS, [v[2] for v in VERIFICATIONS])
_PORTS = _Weighted([c for c, _ in DIRECT_PORT_COUNTS], [w for _, w in DIRECT_PORT_COUNTS])
_DRIVERS_FOR: dict[int, _Weighted] = {}


def _drivers_for(min_major: int) -> _Weighted:
    table = _DRIVERS_FOR.get(min_major)
    if table is None:
        usable = [d for d in DRIVERS if d.major >= min_major]
        table = _DRIVERS_FOR[min_major] = _Weighted(usable, [d.weight for d in usable])
    return table


def driver_vers(version: str) -> int:
    """`"535.86.05"` → 535086005, the integer form offers carry in `driver_vers`."""
    parts = (version.split(".") + ["0", "0"])[:3]
    major, minor, patch = (int(p) for p in parts)
    return major * 1_000_000 + minor * 1_000 + patch


def storage_dph(storage_cost: float, gigabytes: float) -> float:
    """$/h for `gigabytes` of disk at `storage_cost` $/GB/month."""
    return storage_cost * gigabytes / HOURS_PER_MONTH


def price_fields(offer: Offer, *, allocated_storage: float, bid: bool = False) -> dict[str, Any]:
    """The fields of `offer` that depend on the storage priced in and on the rental type.

    On-demand prices the GPUs at `dph_base`; an interruptible (bid) search at `min_bid`.
    """
    gpu_dph = float(offer["min_bid"] if bid else offer["dph_base"])
    disk_dph = storage_dph(float(offer["storage_cost"]), allocated_storage)
    total = round(gpu_dph + disk_dph, 6)
    dlperf_per = offer["dlperf"] / total if total > 0 else 0.0
    pricing = {
        "gpuCostPerHour": round(gpu_dph, 6),
        "diskHour": round(disk_dph, 6),
        "totalHour": total,
        "discountTotalHour": 0.0,
        "discountedTotalPerHour": total,
    }
    return {
        "dph_total": total,
        "is_bid": bid,
        "dlperf_per_dphtotal": round(dlperf_per, 4),
        "flops_per_dphtotal": round(offer["total_flops"] / total, 4) if total > 0 else 0.0,
        "score": round(dlperf_per * float(offer["reliability2"]), 4),
        "search": pricing,
        "instance": dict(pricing),
    }


@dataclass(frozen=True)
class _Host:
    host_id: int
    location: Location
    hosting_type: int
    verification: tuple[str, int, float]
    ip: str
    static_ip: bool


@dataclass(frozen=True)
class _Machine:
    machine_id: int
    host: _Host
    model: GpuModel
    gpus: int
    driver: Driver
    cpu_name: str
    cpu_cores: int  # real vCPU count; the reported one may be null or 0
    cpu_cores_reported: int | None
    cpu_ram: int  # MB
    disk_space: float  # GB
    disk_name: str
    mobo_name: str
    inet_up: float
    inet_down: float | None
    reliability: float
    direct_port_count: int
    pci_gen: int
    start_date: float
    end_date: float


def _draw_host(rng: random.Random, model: GpuModel) -> _Host:
    datacenter = rng.random() < (0.55 if model.datacenter else 0.12)
    net = rng.choice(PUBLIC_NETS)
    ip = f"{net}{rng.randrange(1, 255)}"
    quirk = rng.random()
    if quirk < 0.06:
        ip = f" {ip}\n"
    elif quirk < 0.12:
        ip = f"{ip}\n"
    elif quirk < 0.15:
        ip = f"  {ip} "
    return _Host(
        host_id=rng.randrange(1_000, 400_000),
        location=_LOCATION.pick(rng),
        hosting_type=1 if datacenter else 0,
        verification=_VERIFICATION.pick(rng),
        ip=ip,
        static_ip=rng.random() < (0.8 if datacenter else 0.25),
    )


def _draw_machine(rng: random.Random, machine_id: int, hosts: list[_Host], now: float) -> _Machine:
    model: GpuModel = _GPU.pick(rng)
    if hosts and rng.random() < 0.35:
        host = rng.choice(hosts[-20:])
    else:
        host = _draw_host(rng, model)
        hosts.append(host)
    big = model.datacenter or host.hosting_type == 1
    gpus = rng.choices((1, 2, 4, 8), weights=(30, 15, 20, 35) if big else (55, 20, 15, 10))[0]
    cores = gpus * rng.choice((4, 8, 12, 16) if big else (2, 4, 6, 8))
    quirk = rng.random()
    reported: int | None = None if quirk < 0.02 else 0 if quirk < 0.04 else cores
    ram_gb = rng.choice((256, 512, 1024, 2048) if big else (32, 64, 128, 256))
    inet_down = 10 ** rng.uniform(math.log10(50.0), math.log10(5000.0))
    inet_up = max(10.0, inet_down * rng.uniform(0.15, 1.0))
    start = now - rng.uniform(1.0, 400.0) * DAY
    return _Machine(
        machine_id=machine_id,
        host=host,
        model=model,
        gpus=gpus,
        driver=_drivers_for(model.min_driver).pick(rng),
        cpu_name=rng.choice(DATACENTER_CPUS if big else CONSUMER_CPUS),
        cpu_cores=cores,
        cpu_cores_reported=reported,
        cpu_ram=int(ram_gb * 1024 * rng.uniform(0.94, 0.99)),
        disk_space=round(rng.uniform(200.0, 8000.0 if big else 2000.0), 1),
        disk_name=rng.choice(DISKS),
        mobo_name=rng.choice(MOTHERBOARDS),
        inet_up=round(inet_up, 1),
        inet_down=None if rng.random() < 0.01 else round(inet_down, 1),
        reliability=round(0.999 - 0.299 * rng.random() ** 3, 4),
        direct_port_count=max(16, _PORTS.pick(rng)) if big else _PORTS.pick(rng),
        pci_gen=rng.choice((4, 5)) if model.min_driver >= 525 else rng.choice((3, 4)),
        start_date=round(start, 3),
        end_date=round(now + rng.uniform(7.0, 180.0) * DAY, 3),
    )


def _split(rng: random.Random, gpus: int) -> list[int]:
    """Disjoint GPU slices a machine is offered in: often whole, sometimes halved, recursively."""
    if gpus == 1 or rng.random() < 0.5:
        return [gpus]
    half = gpus // 2
    return _split(rng, half) + _split(rng, half)


def _external(host: _Host) -> bool:
    """About 5% of hosts list external offers (left out by the official client's default query).
    Drawn from the host id, not the market's random stream, so a seed gives the same market."""
    return (host.host_id * 2_654_435_761) % 1_000 < 50


def _offer(
    rng: random.Random,
    machine: _Machine,
    offer_id: int,
    gpus: int,
    *,
    now: float,
    allocated_storage: float,
) -> Offer:
    model = machine.model
    host = machine.host
    frac = gpus / machine.gpus
    low, high = model.price_per_gpu
    per_gpu = low + (high - low) * rng.random() ** 1.4
    dph_base = round(per_gpu * gpus * (1.0 - 0.02 * math.log2(gpus)), 4)
    dlperf = round(model.dlperf * gpus * rng.uniform(0.85, 1.05) * (0.93 if machine.pci_gen == 3 else 1.0), 4)
    offer: Offer = {
        "id": offer_id,
        "ask_contract_id": offer_id,
        "bundle_id": 900_000_000 + offer_id,
        "bundled_results": None,
        "machine_id": machine.machine_id,
        "host_id": host.host_id,
        "hostname": None,
        "gpu_name": model.name,
        "gpu_arch": "nvidia",
        "num_gpus": gpus,
        "gpu_ram": model.vram_mib,
        "gpu_total_ram": model.vram_mib * gpus,
        "gpu_frac": round(frac, 4),
        "gpu_ids": [machine.machine_id * 10 + i for i in range(gpus)],
        "gpu_lanes": 16 if machine.gpus <= 4 else 8,
        "gpu_mem_bw": model.mem_bw,
        "gpu_max_power": model.max_power,
        "gpu_max_temp": 83 if model.datacenter else 90,
        "gpu_display_active": False,
        "bw_nvlink": 400.0 if "SXM" in model.name else 0.0,
        "compute_cap": model.compute_cap,
        "total_flops": round(model.tflops * gpus, 2),
        "dlperf": dlperf,
        "cpu_name": machine.cpu_name,
        "cpu_arch": "amd64",
        "cpu_ghz": round(rng.uniform(2.2, 5.4), 2),
        "cpu_cores": machine.cpu_cores_reported,
        "cpu_cores_effective": round(machine.cpu_cores * frac, 1),
        "cpu_ram": machine.cpu_ram,
        "has_avx": 1,
        "mobo_name": machine.mobo_name,
        "pci_gen": machine.pci_gen,
        "pcie_bw": round(machine.pci_gen * 6.5 * rng.uniform(0.8, 1.0), 1),
        "disk_name": machine.disk_name,
        "disk_space": round(machine.disk_space * frac, 1),
        "disk_bw": round(rng.uniform(800.0, 7000.0), 1),
        "storage_cost": round(rng.uniform(0.05, 0.30), 3),
        "dph_base": dph_base,
        "min_bid": round(dph_base * rng.uniform(0.3, 0.7), 4),
        "credit_discount_max": 0.0,
        "inet_up": machine.inet_up,
        "inet_down": machine.inet_down,
        "inet_up_cost": round(rng.uniform(0.0, 0.02), 4),
        "inet_down_cost": round(rng.uniform(0.0, 0.02), 4),
        "reliability": machine.reliability,
        "reliability2": machine.reliability,
        "cuda_max_good": machine.driver.cuda_max_good,
        "driver_version": machine.driver.version,
        "driver_vers": driver_vers(machine.driver.version),
        "os_version": rng.choice(("20.04", "22.04", "22.04", "24.04")),
        "verification": host.verification[0],
        "vericode": host.verification[1],
        "rentable": rng.random() >= 0.03,
        "rented": False,
        "external": _external(host),
        "vms_enabled": False,
        "static_ip": host.static_ip,
        "direct_port_count": machine.direct_port_count,
        "public_ipaddr": host.ip,
        "hosting_type": host.hosting_type,
        "geolocation": host.location.text,
        "geolocode": host.location.geolocode,
        "start_date": machine.start_date,
        "end_date": machine.end_date,
        "duration": round(machine.end_date - now, 3),
        "logo": "/static/logos/vastai_small2.png",
    }
    offer.update(price_fields(offer, allocated_storage=allocated_storage))
    return offer


def generate_offers(
    seed: int,
    count: int,
    *,
    now: float = GENERATION_EPOCH,
    allocated_storage: float = DEFAULT_ALLOCATED_STORAGE,
) -> list[Offer]:
    """`count` offers drawn from `seed`; identical for the same arguments.

    `now` anchors `start_date`, `end_date` and `duration`; `allocated_storage` is the disk (GB)
    priced into `dph_total`.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = random.Random(seed)
    offers: list[Offer] = []
    hosts: list[_Host] = []
    offer_id = 5_000_000 + rng.randrange(1_000_000)
    machine_id = 10_000 + rng.randrange(20_000)
    while len(offers) < count:
        machine_id += rng.randint(1, 40)
        machine = _draw_machine(rng, machine_id, hosts, now)
        for gpus in _split(rng, machine.gpus):
            if len(offers) >= count:
                break
            offer_id += rng.randint(1, 60)
            offers.append(
                _offer(rng, machine, offer_id, gpus, now=now, allocated_storage=allocated_storage)
            )
    return offers
