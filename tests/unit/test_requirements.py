import pytest

from vastmarket.config import config_from_mapping
from vastmarket.errors import RequirementError
from vastmarket.requirements import OVERRIDES, parse_overrides, pod_needs, requirements_for


def gpu_pod(annotations=None, *, gpus=1, cpu="4", memory="16Gi", ports=(8000, 8001)):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "stt-", "annotations": annotations or {}},
        "spec": {"containers": [{
            "name": "app", "image": "ghcr.io/example/speech:1.0",
            "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"cpu": cpu, "memory": memory}},
            "ports": [{"containerPort": p} for p in ports],
        }]},
    }


def test_the_pod_supplies_gpu_count_cpu_memory_and_ports():
    needs = pod_needs(gpu_pod(gpus=2))
    assert needs.num_gpus == 2 and needs.cpu_cores == 4.0 and needs.ports == (8000, 8001)
    assert needs.ram_gb == pytest.approx(17.179869184)


def test_udp_ports_do_not_need_direct_tcp_ports():
    pod = gpu_pod(ports=())
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 80}]
    assert pod_needs(pod).ports == (80,)


def test_precedence_is_defaults_then_config_then_pod_then_annotations():
    config = config_from_mapping({"gpu": {"preferred_types": ["RTX4090"], "min_memory_gb": 24},
                                  "max_price_per_hour": 0.7, "locations": ["EU"]})
    req = requirements_for(config, gpu_pod({"vast.ai/price-max": "0.40", "vast.ai/gpu-type": "RTX3060",
                                            "vast.ai/min-gpu-memory": "12GB"}))
    assert req.gpu_types == ("RTX3060",)
    assert req.max_price == 0.4 and req.min_gpu_memory_gb == 12
    assert req.locations == ("EU",)  # from the config: no annotation overrides it
    assert req.direct_ports == 2 and req.num_gpus == 1


def test_gpu_fallbacks_extend_the_first_choice_in_order():
    req = requirements_for(config_from_mapping({}), gpu_pod({"vast.ai/gpu-type": "RTX3060",
                                                             "vast.ai/gpu-fallbacks": "RTX4090, A4000"}))
    assert req.gpu_types == ("RTX3060", "RTX4090", "A4000")


def test_output_annotations_written_by_kube_vast_are_not_overrides():
    assert parse_overrides({"vast.ai/offer-id": "123", "vast.ai/selected-at": "now"}).max_price is None


@pytest.mark.parametrize("key, value, accepted", [
    ("vast.ai/price-max", "cheap", "a price in $/hour"),
    ("vast.ai/price-max", "-1", "a price in $/hour"),
    ("vast.ai/min-gpu-memory", "lots", "a size in GB"),
    ("vast.ai/min-reliability", "95", "a fraction between 0 and 1"),
    ("vast.ai/min-download-mbps", "fast", "a bandwidth in Mbps"),
    ("vast.ai/region", "MARS", "comma-separated locations"),
    ("vast.ai/locations", "US-CA,XX-YY", "comma-separated locations"),
    ("vast.ai/disk", "big", "a disk size of at least 8 GB"),
    ("vast.ai/disk", "5", "a disk size of at least 8 GB (Vast's minimum)"),
    ("vast.ai/disk", "7.9GB", "a disk size of at least 8 GB (Vast's minimum)"),
    ("vast.ai/image", "not an image", "a container image reference"),
    ("vast.ai/gpu-type", "!!", "a GPU model"),
    ("vast.ai/verified-only", "sure", "true or false"),
    ("vast.ai/price_max", "0.5", "one of the known annotations"),
])
def test_a_bad_override_names_the_annotation_the_value_and_the_accepted_form(key, value, accepted):
    with pytest.raises(RequirementError) as info:
        parse_overrides({key: value})
    assert info.value.field == key and info.value.value == value
    assert accepted in str(info.value)
    assert str(info.value).startswith(f"{key}: invalid value {value!r}: expected")


def test_fallbacks_without_a_first_choice_are_refused():
    with pytest.raises(RequirementError, match="together with vast.ai/gpu-type"):
        parse_overrides({"vast.ai/gpu-fallbacks": "RTX4090"})


def test_region_and_locations_together_are_refused():
    with pytest.raises(RequirementError, match="not both"):
        parse_overrides({"vast.ai/region": "US", "vast.ai/locations": "EU"})


def test_a_non_string_annotation_value_is_refused():
    with pytest.raises(RequirementError, match="vast.ai/disk"):
        parse_overrides({"vast.ai/disk": 50})


@pytest.mark.parametrize("field, bad", [("nvidia.com/gpu", "0.5"), ("cpu", "lots"), ("memory", "-1Gi")])
def test_malformed_pod_resources_name_the_container_field(field, bad):
    pod = gpu_pod()
    pod["spec"]["containers"][0]["resources"] = {"limits": {field: bad}}
    with pytest.raises(RequirementError, match=rf"spec.containers\[0\].resources.{field}"):
        pod_needs(pod)


def test_every_documented_override_has_a_validator():
    assert set(OVERRIDES) >= {"vast.ai/gpu-type", "vast.ai/gpu-fallbacks", "vast.ai/price-max",
                              "vast.ai/min-gpu-memory", "vast.ai/min-reliability",
                              "vast.ai/min-download-mbps", "vast.ai/region", "vast.ai/locations",
                              "vast.ai/disk", "vast.ai/image"}
