import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vastmarket.config import SelectionConfig, config_from_mapping
from vastmarket.errors import RequirementError
from vastmarket.quantities import PRICE_FORM, QUANTITY_FORM, parse_quantity
from vastmarket.requirements import (
    OVERRIDES, Overrides, _containers, _resource, _sorted_override_values, base_requirements, parse_overrides,
    pod_needs, requirements_for,
)
from vastmarket.selectors import _gpu_selection


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


# --- the fast paths give the general path's answer ------------------------------------------------

_QUANTITIES = st.one_of(st.sampled_from(["1", "2", "0", "0.5", "500m", "16Gi", "8G", "-1", "lots", "1e3", " 2 "]),
                        st.integers(-2, 4), st.floats(-1, 4), st.booleans(), st.none(), st.just([1]))
_SECTION = st.one_of(st.none(), st.just("x"), st.dictionaries(
    st.sampled_from(["nvidia.com/gpu", "cpu", "memory", "other"]), _QUANTITIES, max_size=4))
_PORT = st.one_of(st.just(3), st.fixed_dictionaries({}, optional={
    "containerPort": st.one_of(st.integers(-1, 70000), st.booleans(), st.just("80")),
    "protocol": st.sampled_from(["TCP", "tcp", "UDP", 5, None])}))
_CONTAINER = st.one_of(st.just("c"), st.fixed_dictionaries({}, optional={
    "resources": st.one_of(st.none(), st.just(1), st.fixed_dictionaries({}, optional={"requests": _SECTION,
                                                                                      "limits": _SECTION})),
    "ports": st.one_of(st.none(), st.lists(_PORT, max_size=3))}))
_VALID = {"vast.ai/gpu-type": "RTX3060", "vast.ai/gpu-fallbacks": "RTX4090,A4000", "vast.ai/price-max": "$0.30",
          "vast.ai/min-gpu-memory": "12GB", "vast.ai/min-reliability": "95%", "vast.ai/min-download-mbps": "100",
          "vast.ai/region": "US", "vast.ai/locations": "EU", "vast.ai/disk": "50", "vast.ai/image": "ghcr.io/a:1",
          "vast.ai/verified-only": "true", "vast.ai/interruptible": "true", "vast.ai/bid-max": "0.5",
          "vast.ai/interruption-policy": "wait", "vast.ai/offer-id": "7", "app": "x"}
_BAD = st.sampled_from(["", "x", "5", "0", "false", "0.5", 2])
_ANNOTATIONS = st.one_of(st.none(), st.lists(st.sampled_from(sorted(_VALID) + ["vast.ai/price_max"]), unique=True,
                                             max_size=6).flatmap(lambda keys: st.fixed_dictionaries({
    k: st.one_of(st.just(_VALID.get(k, "0.5")), st.just(_VALID.get(k, "0.5")), _BAD) for k in keys})))
_SELECTOR = st.one_of(st.none(), st.just("x"), st.dictionaries(
    st.sampled_from(["cloud.google.com/gke-accelerator", "kubernetes.io/os"]),
    st.sampled_from(["nvidia-l4", "NVIDIA-A100-SXM4-80GB", "linux", "bogus!"]), max_size=2))
_AFFINITY = st.one_of(st.none(), st.just({}), st.builds(lambda models: {"nodeAffinity": {
    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": models}]}]}}},
    st.lists(st.sampled_from(["NVIDIA-L4", "Tesla-T4", "x"]), max_size=2)))
_PODS = st.fixed_dictionaries({}, optional={
    "spec": st.fixed_dictionaries({}, optional={"containers": st.lists(_CONTAINER, max_size=3),
                                                "nodeSelector": _SELECTOR, "affinity": _AFFINITY}),
    "metadata": st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        "annotations": _ANNOTATIONS, "namespace": st.sampled_from(["", "batch", 3])})),
})
_CONFIGS = [SelectionConfig(), config_from_mapping({
    "gpu": {"preferred_types": ["RTX4090"], "min_memory_gb": 24}, "max_price_per_hour": 0.7,
    "locations": ["EU"], "interruptible": {"namespaces": ["batch"]}})]


def _general_requirements(config, pod):
    """requirements_for as the general path reads it: every container field through _resource and
    parse_quantity, the annotations in sorted order, the full selector walk, dataclasses.replace."""
    req = base_requirements(config)
    gpus, cpu, ram, ports = 0, 0.0, 0.0, 0
    for idx, container in enumerate(_containers(pod)):
        for name in ("nvidia.com/gpu", "cpu", "memory"):
            raw = _resource(container, name)
            if raw is None:
                continue
            try:
                amount = parse_quantity(raw)
            except ValueError:
                raise RequirementError(f"spec.containers[{idx}].resources.{name}", raw, QUANTITY_FORM) from None
            if amount < 0:
                raise RequirementError(f"spec.containers[{idx}].resources.{name}", raw, QUANTITY_FORM)
            if name == "nvidia.com/gpu":
                if amount != int(amount):
                    raise RequirementError(f"spec.containers[{idx}].resources.{name}", raw, "a whole number of GPUs")
                gpus += int(amount)
            elif name == "cpu":
                cpu += float(amount)
            else:
                ram += float(amount) / 1e9
        for port in container.get("ports") or []:
            if isinstance(port, dict) and str(port.get("protocol", "TCP")).upper() == "TCP":
                number = port.get("containerPort")
                ports += isinstance(number, int) and not isinstance(number, bool) and 0 < number < 65536
    updates = {"num_gpus": max(gpus, 1), "min_cpu_cores": cpu, "min_ram_gb": ram, "direct_ports": ports}
    spec = pod.get("spec")
    selection = _gpu_selection(spec if isinstance(spec, dict) else {})
    if selection is not None:
        updates.update(gpu_origin=selection.origin, min_gpu_memory_gb=selection.min_gpu_memory_gb or req.min_gpu_memory_gb,
                       gpu_types=req.gpu_types if selection.gpu_types is None else selection.gpu_types)
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    annotations = meta.get("annotations")
    values = _sorted_override_values(annotations) if annotations else {}
    ns = meta.get("namespace")
    updates["interruptible"] = config.interruptible.default_for(ns if isinstance(ns, str) and ns else None)
    ov = Overrides(**values)
    if ov.gpu_types is not None:
        updates.update(gpu_types=ov.gpu_types + (ov.gpu_fallbacks or ()), gpu_origin="")
    for attr, field in (("max_price", "max_price"), ("min_gpu_memory_gb", "min_gpu_memory_gb"),
                        ("min_reliability", "min_reliability"), ("min_download_mbps", "min_download_mbps"),
                        ("locations", "locations"), ("verified_only", "verified_only"),
                        ("disk_gb", "min_disk_gb"), ("interruptible", "interruptible")):
        if getattr(ov, attr) is not None:
            updates[field] = getattr(ov, attr)
    if ov.bid_max is not None:
        if not updates["interruptible"]:
            raise RequirementError("vast.ai/bid-max", ov.bid_max, 'an interruptible pod (vast.ai/interruptible: "true")')
        updates["max_price"] = ov.bid_max
    result = replace(req, **updates)
    if not math.isfinite(result.max_price) or result.max_price <= 0:
        raise RequirementError("max price", result.max_price, PRICE_FORM)
    return result


def _outcome(function, *args):
    try:
        return "ok", repr(function(*args))  # repr: floats bit for bit
    except RequirementError as e:
        return "refused", str(e)


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod=_PODS, config=st.sampled_from(_CONFIGS))
def test_requirements_for_gives_the_general_paths_answer_and_error_for_any_pod(pod, config):
    """The one-pass pod reading, the cached quantities and annotation values, the unsorted walk of
    the annotations (the sorted one names the error), the cached base and the selector shortcut
    change nothing: same Requirements (floats bit for bit) or the same refusal."""
    assert _outcome(requirements_for, config, pod) == _outcome(_general_requirements, config, pod)


@settings(max_examples=1500, deadline=None, database=None)
@given(annotations=_ANNOTATIONS.filter(bool))
def test_overrides_walked_in_any_order_raise_the_error_the_sorted_walk_meets_first(annotations):
    keys = list(annotations)
    reversed_order = {k: annotations[k] for k in reversed(keys)}
    expected = _outcome(lambda a: Overrides(**_sorted_override_values(a)), annotations)
    assert _outcome(parse_overrides, annotations) == expected
    assert _outcome(parse_overrides, reversed_order) == expected


def test_the_cached_base_follows_the_config_it_is_asked_with():
    pod = gpu_pod()
    for config in _CONFIGS + _CONFIGS:
        assert requirements_for(config, pod).locations == config.defaults.locations
        assert requirements_for(config, pod).max_price == config.defaults.max_price
