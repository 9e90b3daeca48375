"""The generated offer set: deterministic, realistic, and carrying the quirks clients must survive."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from vastsim import generate_offers
from vastsim.offerset import DEFAULT_ALLOCATED_STORAGE, driver_vers, storage_dph

OFFERS = generate_offers(11, 3000)


def by_gpu(name: str) -> list[dict[str, Any]]:
    return [o for o in OFFERS if o["gpu_name"] == name]


def test_the_same_seed_gives_identical_offers() -> None:
    assert generate_offers(5, 400) == generate_offers(5, 400)


def test_different_seeds_give_different_markets() -> None:
    assert generate_offers(5, 50) != generate_offers(6, 50)


def test_exactly_the_requested_number_of_offers_is_generated() -> None:
    assert [len(generate_offers(1, n)) for n in (0, 1, 7, 250)] == [0, 1, 7, 250]


def test_ten_thousand_offers_generate_in_well_under_two_seconds() -> None:
    started = time.perf_counter()
    offers = generate_offers(42, 10_000)
    assert len(offers) == 10_000
    assert time.perf_counter() - started < 2.0


def test_offer_ids_are_unique_and_ask_contract_id_equals_id() -> None:
    assert len({o["id"] for o in OFFERS}) == len(OFFERS)
    assert all(o["ask_contract_id"] == o["id"] for o in OFFERS)


def test_some_machines_carry_several_offers() -> None:
    per_machine = Counter(o["machine_id"] for o in OFFERS)
    assert max(per_machine.values()) > 1


def test_most_offers_have_one_gpu_and_bigger_bundles_exist() -> None:
    sizes = Counter(o["num_gpus"] for o in OFFERS)
    assert set(sizes) == {1, 2, 4, 8}
    assert sizes[1] > len(OFFERS) / 2


@pytest.mark.parametrize(
    ("gpu", "vram_mib", "low", "high"),
    [
        ("RTX 3060", 12288, 0.06, 0.20),
        ("RTX 4090", 24564, 0.25, 0.70),
        ("RTX 3090", 24576, 0.15, 0.45),
        ("A100 SXM4", 81920, 0.80, 1.80),
        ("H100 SXM", 81559, 1.80, 3.50),
        ("H100 PCIE", 81559, 1.80, 3.50),
        ("GTX 1080 Ti", 11264, 0.05, 0.15),
    ],
)
def test_gpu_models_have_nvidia_smi_vram_and_plausible_prices(gpu: str, vram_mib: int, low: float, high: float) -> None:
    offers = by_gpu(gpu)
    assert offers, f"no {gpu} in the market"
    for offer in offers:
        assert offer["gpu_ram"] == vram_mib
        assert offer["gpu_total_ram"] == vram_mib * offer["num_gpus"]
        per_gpu = offer["dph_base"] / offer["num_gpus"]
        assert low * 0.9 <= per_gpu <= high


def test_the_market_spans_gtx_1080_ti_to_h100() -> None:
    names = {o["gpu_name"] for o in OFFERS}
    assert {"GTX 1080 Ti", "RTX 3060", "RTX 4090", "RTX A6000", "RTX 6000Ada", "Tesla V100", "Tesla T4",
            "A100 PCIE", "A100 SXM4", "H100 PCIE", "H100 SXM", "L40S"} <= names


def test_dph_total_is_dph_base_plus_storage_at_the_allocated_size() -> None:
    for offer in OFFERS[:200]:
        expected = offer["dph_base"] + storage_dph(offer["storage_cost"], DEFAULT_ALLOCATED_STORAGE)
        assert offer["dph_total"] == pytest.approx(expected, abs=1e-6)
        assert offer["search"]["totalHour"] == offer["dph_total"]


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [
        ("reliability", 0.7, 0.999),
        ("reliability2", 0.7, 0.999),
        ("inet_up", 10.0, 5000.0),
        ("inet_down", 10.0, 5000.0),
        ("direct_port_count", 0, 500),
        ("disk_space", 1.0, 8000.0),
    ],
)
def test_numeric_fields_stay_in_realistic_ranges(field: str, low: float, high: float) -> None:
    values = [o[field] for o in OFFERS if o[field] is not None]
    assert min(values) >= low
    assert max(values) <= high


@pytest.mark.parametrize(
    ("description", "quirk"),
    [
        ("cpu_cores is sometimes null", lambda o: o["cpu_cores"] is None),
        ("cpu_cores is sometimes 0", lambda o: o["cpu_cores"] == 0),
        ("inet_down is rarely null", lambda o: o["inet_down"] is None),
        ("public_ipaddr sometimes carries whitespace", lambda o: o["public_ipaddr"] != o["public_ipaddr"].strip()),
        ("geolocation is sometimes null", lambda o: o["geolocation"] is None),
        ("geolocation is sometimes just a country code", lambda o: o["geolocation"] == "US"),
        ("geolocation sometimes spells the country out", lambda o: o["geolocation"] == "California, United States"),
        ("some hosts offer no direct ports", lambda o: o["direct_port_count"] == 0),
        ("some offers are unverified", lambda o: o["verification"] == "unverified"),
        ("some offers are deverified", lambda o: o["verification"] == "deverified"),
        ("some offers are in datacenters", lambda o: o["hosting_type"] == 1),
    ],
)
def test_the_market_carries_the_quirks_clients_must_survive(description: str, quirk: Any) -> None:
    assert any(quirk(o) for o in OFFERS), description


def test_public_addresses_are_documentation_range_ips() -> None:
    prefixes = ("203.0.113.", "198.51.100.", "192.0.2.")
    assert all(o["public_ipaddr"].strip().startswith(prefixes) for o in OFFERS)


def test_geolocations_mostly_end_in_an_iso_country_code() -> None:
    codes = Counter(o["geolocation"][-2:] for o in OFFERS if o["geolocation"])
    assert {"US", "CA", "DE", "NL", "FR", "GB", "JP", "KR", "SG", "TW", "AU", "BR"} <= set(codes)


def test_driver_version_and_driver_vers_agree() -> None:
    assert driver_vers("535.86.05") == 535086005
    assert all(o["driver_vers"] == driver_vers(o["driver_version"]) for o in OFFERS)


def test_verification_and_vericode_agree() -> None:
    codes = {(o["verification"], o["vericode"]) for o in OFFERS}
    assert codes == {("verified", 1), ("unverified", 0), ("deverified", -1)}


def test_offers_are_for_rent_and_not_rented() -> None:
    assert all(o["rented"] is False for o in OFFERS)
    assert sum(o["rentable"] for o in OFFERS) > 0.9 * len(OFFERS)
