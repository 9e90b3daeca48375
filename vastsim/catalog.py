"""The static facts the simulated market is drawn from: GPU models, host locations, drivers, CPUs.

Figures are plausible, not measured: VRAM is what nvidia-smi reports (MiB), prices are the usual
per-GPU $/h band seen on the marketplace, `dlperf` and `tflops` are per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuModel:
    """One GPU model as it appears in offers."""

    name: str
    vram_mib: int
    price_per_gpu: tuple[float, float]  # $/h band for one GPU, on demand
    compute_cap: int
    tflops: float  # per GPU, as summed into `total_flops`
    dlperf: float  # per GPU
    mem_bw: float  # GB/s
    max_power: int  # W
    weight: float  # relative share of the market
    datacenter: bool  # a datacenter card: hosted in datacenters more often, in bigger boxes
    min_driver: int  # oldest driver major version that supports it


GPU_MODELS: tuple[GpuModel, ...] = (
    GpuModel("GTX 1080 Ti", 11264, (0.05, 0.15), 610, 11.3, 7.0, 484.0, 250, 3, False, 470),
    GpuModel("RTX 2080 Ti", 11264, (0.08, 0.20), 750, 13.4, 11.5, 616.0, 250, 4, False, 470),
    GpuModel("RTX 3060", 12288, (0.06, 0.20), 860, 12.7, 9.5, 360.0, 170, 9, False, 470),
    GpuModel("RTX 3070", 8192, (0.07, 0.18), 860, 20.3, 12.5, 448.0, 220, 5, False, 470),
    GpuModel("RTX 3080", 10240, (0.10, 0.25), 860, 29.8, 17.0, 760.0, 320, 6, False, 470),
    GpuModel("RTX 3090", 24576, (0.15, 0.45), 860, 35.6, 21.5, 936.0, 350, 12, False, 470),
    GpuModel("RTX 4070", 12282, (0.10, 0.25), 890, 29.1, 17.5, 504.0, 200, 4, False, 525),
    GpuModel("RTX 4080", 16376, (0.18, 0.45), 890, 48.7, 27.0, 717.0, 320, 4, False, 525),
    GpuModel("RTX 4090", 24564, (0.25, 0.70), 890, 82.6, 42.0, 1008.0, 450, 15, False, 525),
    GpuModel("RTX A4000", 16376, (0.12, 0.30), 860, 19.2, 12.0, 448.0, 140, 4, False, 470),
    GpuModel("RTX A5000", 24564, (0.18, 0.40), 860, 27.8, 17.5, 768.0, 230, 4, False, 470),
    GpuModel("RTX A6000", 49140, (0.35, 0.90), 860, 38.7, 25.0, 768.0, 300, 5, False, 470),
    GpuModel("RTX 6000Ada", 49140, (0.70, 1.30), 890, 91.1, 48.0, 960.0, 300, 3, True, 525),
    GpuModel("Tesla T4", 15360, (0.08, 0.20), 750, 8.1, 6.5, 320.0, 70, 3, True, 470),
    GpuModel("Tesla V100", 16384, (0.15, 0.45), 700, 15.7, 15.0, 900.0, 300, 3, True, 470),
    GpuModel("A100 PCIE", 40960, (0.60, 1.40), 800, 19.5, 48.0, 1555.0, 250, 3, True, 470),
    GpuModel("A100 SXM4", 81920, (0.80, 1.80), 800, 19.5, 58.0, 2039.0, 400, 4, True, 470),
    GpuModel("L40S", 46068, (0.60, 1.20), 890, 91.6, 52.0, 864.0, 350, 3, True, 525),
    GpuModel("H100 PCIE", 81559, (1.80, 3.00), 900, 51.2, 80.0, 2039.0, 350, 3, True, 525),
    GpuModel("H100 SXM", 81559, (2.00, 3.50), 900, 66.9, 100.0, 3352.0, 700, 4, True, 525),
    GpuModel("H100 NVL", 95830, (2.20, 3.40), 900, 60.0, 95.0, 3938.0, 400, 1, True, 535),
    # The inference cards cloud GPU node pools are built on (GKE nvidia-l4, AWS g6/g5).
    GpuModel("L4", 23034, (0.25, 0.55), 890, 30.3, 20.0, 300.0, 72, 4, True, 525),
    GpuModel("A10", 23028, (0.20, 0.45), 860, 31.2, 18.0, 600.0, 150, 3, True, 470),
)


@dataclass(frozen=True)
class Location:
    """Where a host says it is: free text ending (usually) in an ISO-2 code."""

    text: str | None
    geolocode: int | None  # ISO 3166 numeric code of the country
    weight: float


LOCATIONS: tuple[Location, ...] = (
    Location("California, US", 840, 12),
    Location("Texas, US", 840, 8),
    Location("New York, US", 840, 5),
    Location("Washington, US", 840, 3),
    Location("Florida, US", 840, 3),
    Location("Quebec, CA", 124, 4),
    Location("Ontario, CA", 124, 2),
    Location("Bavaria, DE", 276, 4),
    Location("Hesse, DE", 276, 2),
    Location("North Holland, NL", 528, 4),
    Location("Île-de-France, FR", 250, 3),
    Location("England, GB", 826, 4),
    Location("Stockholm County, SE", 752, 2),
    Location("Tokyo, JP", 392, 2),
    Location("Yutakachō, Shinagawa District, Tokyo, JP", 392, 1),
    Location("Seoul, KR", 410, 2),
    Location("Singapore, SG", 702, 2),
    Location("Taiwan, TW", 158, 3),
    Location("New South Wales, AU", 36, 2),
    Location("São Paulo, BR", 76, 2),
    # The quirks a parser must survive.
    Location("US", 840, 1.5),
    Location("California, United States", 840, 1),
    Location(None, None, 1),
)


@dataclass(frozen=True)
class Driver:
    """An NVIDIA driver release and the newest CUDA it runs well."""

    version: str
    cuda_max_good: float
    weight: float

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])


DRIVERS: tuple[Driver, ...] = (
    Driver("470.223.02", 11.4, 1),
    Driver("525.147.05", 12.0, 2),
    Driver("535.86.05", 12.2, 6),
    Driver("535.183.01", 12.2, 4),
    Driver("545.29.06", 12.3, 2),
    Driver("550.54.14", 12.4, 5),
    Driver("550.127.05", 12.4, 4),
    Driver("555.42.06", 12.5, 2),
    Driver("560.35.03", 12.6, 3),
    Driver("565.57.01", 12.7, 2),
    Driver("570.124.06", 12.8, 3),
    Driver("570.133.07", 12.8, 2),
)


CONSUMER_CPUS: tuple[str, ...] = (
    "AMD Ryzen 9 5950X 16-Core Processor",
    "AMD Ryzen 9 7950X 16-Core Processor",
    "AMD Ryzen Threadripper 3960X 24-Core Processor",
    "Intel Core i9-13900K",
    "Intel Core i7-12700K",
    "Intel Xeon E5-2680 v4",
)

DATACENTER_CPUS: tuple[str, ...] = (
    "AMD EPYC 7B13 64-Core Processor",
    "AMD EPYC 7742 64-Core Processor",
    "AMD EPYC 9554 64-Core Processor",
    "Intel Xeon Gold 6248R",
    "Intel Xeon Platinum 8480+",
    "AMD Ryzen Threadripper PRO 5975WX 32-Cores",
)

DISKS: tuple[str, ...] = (
    "Samsung SSD 980 PRO 2TB",
    "Samsung SSD 990 PRO 4TB",
    "WD_BLACK SN850X 2000GB",
    "KIOXIA KCD8XRUG7T68",
    "Micron_7450_MTFDKCC3T8TFR",
    "INTEL SSDPE2KX040T8",
)

MOTHERBOARDS: tuple[str, ...] = (
    "ROG STRIX X570-E GAMING",
    "PRIME Z790-P",
    "ROMED8-2T",
    "H12SSL-i",
    "X11DPG-OT-CPU",
    "MZ73-LM0-000",
)

# Documentation address ranges (RFC 5737): realistic-looking, never routable.
PUBLIC_NETS: tuple[str, ...] = ("203.0.113.", "198.51.100.", "192.0.2.")

VERIFICATIONS: tuple[tuple[str, int, float], ...] = (
    ("verified", 1, 75),
    ("unverified", 0, 20),
    ("deverified", -1, 5),
)

DIRECT_PORT_COUNTS: tuple[tuple[int, float], ...] = (
    (0, 15),
    (8, 10),
    (16, 15),
    (32, 15),
    (64, 15),
    (100, 15),
    (200, 10),
    (500, 5),
)
