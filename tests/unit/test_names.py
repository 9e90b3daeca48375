import pytest

from vastmarket.names import (
    LocationSyntaxError, display_gpu, gpu_key, gpu_matches, parse_geolocation, parse_location_pattern,
)


@pytest.mark.parametrize("user, vast", [
    ("RTX3060", "RTX 3060"), ("rtx-3060", "RTX 3060"), ("RTX 3060", "RTX 3060"),
    ("A4000", "RTX A4000"), ("GTX1080Ti", "GTX 1080 Ti"), ("gtx 1080 ti", "GTX 1080 Ti"),
    ("V100", "Tesla V100"), ("RTX6000Ada", "RTX 6000Ada"), ("4090", "GeForce 4090"),
])
def test_user_and_vast_spellings_of_a_gpu_share_one_key(user, vast):
    assert gpu_key(user) == gpu_key(vast)


@pytest.mark.parametrize("pattern, offer, expected", [
    ("A100", "A100 SXM4", True), ("A100", "A100 PCIE", True), ("H100", "H100 NVL", True),
    ("RTX3060", "RTX 3060 Ti", False), ("RTX3060", "RTX 3060", True), ("A100", "A1000", False),
    ("A4000", "RTX A4000", True), ("RTX4090", "RTX 4090D", False),
])
def test_a_family_name_matches_its_form_factors_but_not_other_models(pattern, offer, expected):
    assert gpu_matches(gpu_key(pattern), gpu_key(offer)) is expected


def test_the_selection_log_shows_compact_gpu_names():
    assert display_gpu("RTX 3060") == "RTX3060"
    assert display_gpu("GTX 1080 Ti") == "GTX1080Ti"


@pytest.mark.parametrize("geo, label", [
    ("California, US", "US-CA"), ("Texas, US", "US-TX"), ("US", "US"), ("Austin, TX, US", "US-TX"),
    ("Yutakachō, Shinagawa District, Tokyo, JP", "ASIA-JP"), ("Bavaria, DE", "EU-DE"),
    ("California, United States", "US-CA"), ("Quebec, CA", "CA"), (None, "unknown"), ("", "unknown"),
    ("  ", "unknown"), ("Somewhere", "unknown"), ("New South Wales, AU", "OC-AU"),
])
def test_vast_geolocation_text_maps_to_a_location_label(geo, label):
    assert parse_geolocation(geo).label == label


@pytest.mark.parametrize("pattern, geo, expected", [
    ("US-CA", "California, US", True), ("US-CA", "Texas, US", False), ("US", "Texas, US", True),
    ("EU", "Bavaria, DE", True), ("EU", "Tokyo, JP", False), ("ASIA", "Tokyo, JP", True),
    ("DE", "Bavaria, DE", True), ("EU-DE", "Bavaria, DE", True), ("us-ca", "California, US", True),
    ("US", None, False), ("NA", "Quebec, CA", True),
])
def test_location_patterns_match_regions_countries_and_states(pattern, geo, expected):
    assert parse_location_pattern(pattern).matches(parse_geolocation(geo)) is expected


@pytest.mark.parametrize("bad", ["Mars", "US-XX", "EU-JP", "", "X"])
def test_an_unknown_location_pattern_is_refused_with_the_accepted_forms(bad):
    with pytest.raises(LocationSyntaxError, match="expected a region"):
        parse_location_pattern(bad)
