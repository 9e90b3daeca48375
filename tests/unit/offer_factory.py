"""Builders for Offer objects and a hypothesis strategy producing realistic, messy offers."""

from __future__ import annotations

from hypothesis import strategies as st

from vastmarket.offers import Offer

GPUS = ["RTX 3060", "RTX 3060 Ti", "RTX 4090", "RTX A4000", "GTX 1080 Ti", "H100 SXM", "A100 PCIE"]
GEOS = ["California, US", "Texas, US", "New York, US", "US", "Bavaria, DE", "Tokyo, JP",
        "Quebec, CA", None, "Somewhere"]


def make_offer(id=1, **kw) -> Offer:
    base = dict(
        gpu_name="RTX 3060", num_gpus=1, gpu_ram_mb=12288, dph_total=0.20, reliability=0.98,
        inet_down=500.0, inet_up=200.0, dlperf=15.0, cpu_cores=8.0, cpu_ram_mb=32000.0, disk_gb=100.0,
        geolocation="California, US", verified=True, rentable=True, rented=False,
        direct_port_count=20, datacenter=False, static_ip=False, duration_s=30 * 86400.0,
        machine_id=1000 + id, host_id=2000 + id,
    )
    base.update(kw)
    return Offer(id=id, **base)


def _maybe(strategy):
    return st.one_of(st.none(), strategy)


offers_strategy = st.lists(
    st.builds(
        lambda i, **kw: make_offer(i, **kw),
        st.integers(1, 10**6),
        gpu_name=st.sampled_from(GPUS),
        num_gpus=st.sampled_from([1, 1, 2, 4, 8]),
        gpu_ram_mb=st.sampled_from([8192, 11264, 12288, 16376, 24564, 81559]),
        dph_total=_maybe(st.floats(0.01, 5.0)),
        reliability=_maybe(st.floats(0.5, 1.0)),
        inet_down=_maybe(st.floats(0.0, 5000.0)),
        dlperf=_maybe(st.floats(0.0, 300.0)),
        cpu_cores=_maybe(st.floats(1, 64)),
        cpu_ram_mb=_maybe(st.floats(1000, 512000)),
        disk_gb=_maybe(st.floats(5, 2000)),
        geolocation=st.sampled_from(GEOS),
        verified=st.booleans(),
        rentable=st.booleans(),
        rented=st.booleans(),
        direct_port_count=st.integers(0, 50),
        datacenter=st.booleans(),
        duration_s=_maybe(st.floats(0, 60 * 86400)),
        host_id=st.integers(1, 20),
    ),
    max_size=40,
    unique_by=lambda o: o.id,
)
