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


def _offer_lists(numbers, available, min_size=0):
    """Lists of offers; ``numbers`` wraps each numeric field's strategy, ``available`` draws
    (rentable, rented)."""
    return st.lists(
        st.builds(
            lambda i, availability, **kw: make_offer(i, rentable=availability[0], rented=availability[1], **kw),
            st.integers(1, 10**6),
            availability=available,
            gpu_name=st.sampled_from(GPUS),
            num_gpus=st.sampled_from([1, 1, 2, 4, 8]),
            gpu_ram_mb=st.sampled_from([8192, 11264, 12288, 16376, 24564, 81559]),
            dph_total=numbers(st.floats(0.01, 5.0)),
            reliability=numbers(st.floats(0.5, 1.0)),
            inet_down=numbers(st.floats(0.0, 5000.0)),
            dlperf=numbers(st.floats(0.0, 300.0)),
            cpu_cores=numbers(st.floats(1, 64)),
            cpu_ram_mb=numbers(st.floats(1000, 512000)),
            disk_gb=numbers(st.floats(5, 2000)),
            geolocation=st.sampled_from(GEOS),
            verified=st.booleans(),
            direct_port_count=st.integers(0, 50),
            datacenter=st.booleans(),
            duration_s=numbers(st.floats(0, 60 * 86400)),
            host_id=st.integers(1, 20),
        ),
        min_size=min_size,
        max_size=40,
        unique_by=lambda o: o.id,
    )


# Messy offers (missing numbers, rented, not rentable) a third of the time, else offers that are
# for rent with every number set: with messy ones alone, hardly an example had two offers passing a pod's
# requirements, and a ranking's order and scores went unchecked.
_messy = _offer_lists(_maybe, st.tuples(st.booleans(), st.booleans()))
_for_rent = _offer_lists(lambda numbers: numbers, st.just((True, False)), min_size=2)
offers_strategy = st.integers(0, 2).flatmap(lambda k: _messy if k == 0 else _for_rent)
