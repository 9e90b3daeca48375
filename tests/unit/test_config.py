import textwrap

import pytest

from vastmarket.config import SelectionConfig, apply_env, config_from_mapping, load_config
from vastmarket.errors import ConfigError

SEED_CONFIG = textwrap.dedent("""
    gpu:
      preferred_types:
        - "RTX3060"     # First choice (budget)
        - "RTX4090"     # Second choice (performance)
        - "A4000"       # Third choice (professional)
    locations:
      - "US-CA"
      - "US-TX"
      - "US-NY"
      - "US"
      - "EU"
    max_price_per_hour: 0.50
    min_reliability: 95%
    weights: {price: 0.4, gpu_match: 0.1}
    modifiers:
      - {name: datacenter-bonus, when: {datacenter: true}, add: 0.05}
    blacklist: {hosts: [7], countries: [cn]}
    budget: {max_total_price_per_hour: 3, max_instances: 2}
""")


def test_the_seed_advanced_configuration_loads(tmp_path):
    path = tmp_path / "kube-vast.yaml"
    path.write_text(SEED_CONFIG)
    config = load_config(path)
    assert config.defaults.gpu_types == ("RTX3060", "RTX4090", "A4000")
    assert config.defaults.locations == ("US-CA", "US-TX", "US-NY", "US", "EU")
    assert config.defaults.max_price == 0.5
    assert config.defaults.min_reliability == pytest.approx(0.95)
    assert config.weights.price == 0.4 and config.weights.performance == 0.25
    assert config.modifiers[0].label == "datacenter-bonus"
    assert config.blacklist.hosts == frozenset({7}) and config.blacklist.countries == frozenset({"CN"})
    assert config.budget.max_instances == 2


def test_weights_are_normalised_to_sum_to_one():
    w = config_from_mapping({"weights": {"price": 3, "performance": 1, "gpu_match": 0, "location": 0,
                                          "availability": 0}}).weights.normalised()
    assert w.price == pytest.approx(0.75) and w.performance == pytest.approx(0.25)


@pytest.mark.parametrize("doc, message", [
    ({"gpu": {"prefered_types": ["RTX3060"]}}, "gpu.prefered_types: Unknown field"),
    ({"max_price_per_hour": "cheap"}, "max_price_per_hour: invalid value 'cheap': expected a price"),
    ({"min_reliability": 95}, "min_reliability: invalid value 95: expected a fraction"),
    ({"locations": ["Atlantis"]}, "unknown location 'Atlantis'"),
    ({"weights": {"price": -1}}, "weights.price"),
    ({"weights": {"price": 0, "performance": 0, "gpu_match": 0, "location": 0, "availability": 0}},
     "not all zero"),
    ({"gpu": {"preferred_types": ["!!!"]}}, "invalid GPU type '!!!'"),
    ({"modifiers": [{"when": {"colour": "red"}, "add": 0.1}]}, "modifiers.0.when.colour"),
    ({"modifiers": [{"when": {"datacenter": True}, "add": 5}]}, "modifiers.0.add"),
    ({"blacklist": {"countries": ["Germany"]}}, "ISO-2 country code"),
    ({"min_disk_gb": 5}, "min_disk_gb: invalid value 5: expected a size in GB of at least 8"),
    (["not", "a", "mapping"], "expected a mapping"),
])
def test_a_broken_config_is_refused_with_the_path_and_the_reason(doc, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        config_from_mapping(doc)


def test_unreadable_and_invalid_yaml_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_an_empty_config_file_means_the_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == SelectionConfig()


def test_the_seed_environment_variables_override_the_file():
    config = config_from_mapping({"gpu": {"preferred_types": ["RTX4090"]}, "max_price_per_hour": 2})
    env = {"VAST_GPU_TYPE": "RTX3060", "VAST_MIN_GPU_MEMORY": "12", "VAST_MAX_PRICE_PER_HOUR": "0.50",
           "VAST_RELIABILITY_SCORE": "0.95", "VAST_MIN_DOWNLOAD_SPEED": "100",
           "VAST_DATACENTER_LOCATION": "US"}
    d = apply_env(config, env).defaults
    assert d.gpu_types == ("RTX3060",)
    assert (d.min_gpu_memory_gb, d.max_price, d.min_reliability, d.min_download_mbps) == (12, 0.5, 0.95, 100)
    assert d.locations == ("US",)


def test_empty_environment_variables_are_ignored():
    assert apply_env(SelectionConfig(), {"VAST_GPU_TYPE": "", "VAST_MAX_PRICE_PER_HOUR": " "}) == SelectionConfig()


@pytest.mark.parametrize("name, value", [
    ("VAST_MAX_PRICE_PER_HOUR", "fifty cents"), ("VAST_RELIABILITY_SCORE", "95"),
    ("VAST_DATACENTER_LOCATION", "MOON"), ("VAST_GPU_TYPE", "???"), ("VAST_MIN_GPU_MEMORY", "lots"),
])
def test_a_wrong_environment_variable_stops_the_process_naming_it(name, value):
    with pytest.raises(ConfigError, match=name):
        apply_env(SelectionConfig(), {name: value})
