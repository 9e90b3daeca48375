import json

import pytest

from kube_vast.cli import main
from vastsim import SimulatorServer
from vastsim.offerset import generate_offers


@pytest.fixture(scope="module")
def market():
    with SimulatorServer(seed=1, offers=2000, boot_seconds=(0.05, 0.05)) as server:
        yield server


@pytest.fixture
def offers_file(tmp_path):
    path = tmp_path / "search.json"
    path.write_text(json.dumps({"offers": generate_offers(seed=1, count=500)}))
    return path


def run(capsys, *argv, environ=None):
    code = main(list(argv), environ or {})
    out, err = capsys.readouterr()
    return code, out, err


def test_offers_prints_the_seed_style_selection_log(capsys, market):
    code, out, _ = run(capsys, "offers", "--api-url", market.url, "--gpu-type", "RTX3060",
                       "--min-gpu-memory", "12", "--max-price", "0.50", "--location", "US")
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "[VAST] Searching for instances matching: RTX3060, 12GB+, <$0.50/hr, 90%+ reliability, in US"
    assert lines[1].startswith("[VAST] Found ") and lines[2].startswith("[VAST] After filtering: ")
    assert sum(1 for line in lines if line.startswith("  - Instance ")) == 3
    assert lines[-1].startswith("[VAST] Selected instance ")


def test_offers_json_lists_ranked_offers_with_terms_and_rejections(capsys, market):
    code, out, _ = run(capsys, "offers", "--api-url", market.url, "--gpu-type", "RTX4090",
                       "--max-price", "0.7", "--top", "5", "--json")
    data = json.loads(out)
    assert code == 0 and 0 < len(data["offers"]) <= 5
    scores = [o["score"] for o in data["offers"]]
    assert scores == sorted(scores, reverse=True)
    assert all(o["gpu"] == "RTX 4090" and o["dph_total"] <= 0.7 for o in data["offers"])
    assert set(data["offers"][0]["terms"]) == {"price", "performance", "gpu_match", "location", "availability"}
    assert data["rejected"]["gpu_type"] > 0 and data["matched"] < data["seen"]


def test_explain_shows_rejection_counts_and_score_terms(capsys, offers_file):
    code, out, _ = run(capsys, "offers", "--offers-file", str(offers_file), "--max-price", "0.3", "--explain")
    assert code == 0
    assert "Rejected (an offer failing several requirements counts under each):" in out
    assert "over $0.30/h" in out and "price=" in out and "availability=" in out


def test_a_pod_manifest_supplies_resources_and_annotations(capsys, offers_file):
    code, out, _ = run(capsys, "offers", "--offers-file", str(offers_file), "--pod", "examples/pod.yaml", "--json")
    req = json.loads(out)["requirements"]
    assert req["gpu_types"] == ["RTX3060", "RTX4090", "A4000"] and req["direct_ports"] == 2
    assert req["min_cpu_cores"] == 4 and req["locations"] == ["US"]


def test_a_pod_manifest_with_a_field_of_the_wrong_shape_exits_2_naming_its_path(capsys, offers_file, tmp_path):
    pod = tmp_path / "pod.yaml"
    pod.write_text("kind: Pod\nspec:\n  containers:\n  - name: app\n    resources:\n      limits:\n"
                   "        nvidia.com/gpu: [1]\n")
    code, _, err = run(capsys, "offers", "--offers-file", str(offers_file), "--pod", str(pod))
    assert code == 2
    assert f"--pod {pod}: spec.containers[0].resources.limits[nvidia.com/gpu]: expected a Kubernetes quantity" in err


def test_flags_override_the_config_file_and_the_environment(capsys, offers_file):
    env = {"VAST_MAX_PRICE_PER_HOUR": "0.2", "VAST_GPU_TYPE": "RTX3060"}
    code, out, _ = run(capsys, "offers", "--offers-file", str(offers_file), "--config", "examples/kube-vast.yaml",
                       "--max-price", "0.9", "--json", environ=env)
    req = json.loads(out)["requirements"]
    assert req["max_price"] == 0.9 and req["gpu_types"] == ["RTX3060"] and req["min_download_mbps"] == 100


def test_no_match_exits_1_with_the_reason(capsys, offers_file):
    code, out, _ = run(capsys, "offers", "--offers-file", str(offers_file), "--gpu-type", "H100", "--max-price", "0.01")
    assert code == 1 and "no offer matches: " in out and "over $0.01/h" in out


@pytest.mark.parametrize("argv, message", [
    (["--max-price", "cheap"], "--max-price: invalid value 'cheap'"),
    (["--min-reliability", "95"], "--min-reliability: invalid value '95'"),
    (["--location", "Atlantis"], "--location: invalid value 'Atlantis'"),
    (["--num-gpus", "0"], "--num-gpus"),
    (["--top", "0"], "--top must be at least 1"),
])
def test_bad_flags_exit_2_naming_the_flag(capsys, offers_file, argv, message):
    code, _, err = run(capsys, "offers", "--offers-file", str(offers_file), *argv)
    assert code == 2 and message in err


@pytest.mark.parametrize("content, message", [("{not json", "not JSON"), ('{"bundles": []}', "'offers' list")])
def test_a_broken_offers_file_is_a_clear_error(capsys, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = run(capsys, "offers", "--offers-file", str(path))
    assert code == 2 and message in err


def test_no_offer_source_is_a_usage_error(capsys):
    code, _, err = run(capsys, "offers")
    assert code == 2 and "no offer source" in err


def test_the_real_vast_api_without_a_key_is_refused(capsys):
    code, _, err = run(capsys, "offers", "--api-url", "https://console.vast.ai")
    assert code == 2 and "needs a key" in err


def test_config_check_accepts_the_example_and_names_a_broken_key(capsys, tmp_path):
    code, out, _ = run(capsys, "config", "check", "examples/kube-vast.yaml")
    assert code == 0 and "OK" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu:\n  prefered_types: [RTX3060]\nmax_price_per_hour: free\n")
    code, _, err = run(capsys, "config", "check", str(bad))
    assert code == 2 and "gpu.prefered_types: Unknown field" in err and "max_price_per_hour" in err


def test_config_check_also_validates_the_environment(capsys):
    code, _, err = run(capsys, "config", "check", "examples/kube-vast.yaml", environ={"VAST_RELIABILITY_SCORE": "high"})
    assert code == 2 and "VAST_RELIABILITY_SCORE" in err


def test_config_check_says_who_rents_interruptibly_and_names_a_bad_policy(capsys, tmp_path):
    spot = tmp_path / "spot.yaml"
    spot.write_text("interruptible:\n  namespaces: [batch]\n  policy: move\n  move_after_seconds: 30\n")
    code, out, _ = run(capsys, "config", "check", str(spot))
    assert code == 0
    assert "  interruptible: namespaces batch; bid 10% over min_bid; when outbid move, moving after 30s" in out
    spot.write_text("interruptible:\n  policy: pray\n")
    code, _, err = run(capsys, "config", "check", str(spot))
    assert code == 2 and "interruptible.policy" in err and "raise-then-move" in err
