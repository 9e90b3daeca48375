"""Cloud GPU node selectors → Vast requirements, and the rewrite that lets the virtual node satisfy
them without changing what they mean for real nodes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from kube_vast.explain import requirements_report
from tests.unit.offer_factory import make_offer
from vastmarket.config import SelectionConfig
from vastmarket.errors import RequirementError
from vastmarket.placement import place
from vastmarket.requirements import requirements_for
from vastmarket.selection import ScoringPolicy
from vastmarket.selectors import (
    GPU_SELECTOR_KEYS, VIRTUAL_NODE_LABEL, _gpu_selection, for_virtual_node, gpu_model, gpu_selection, instance_type_gpu,
)
from vastmarket.snapshot import OfferSnapshot

CONFIG = SelectionConfig()
# The labels the controller gives the virtual node (controller/node.py).
VIRTUAL_NODE = {"type": "virtual-kubelet", "kubernetes.io/role": "agent", "kubernetes.io/hostname": "vast-gpu-node-1",
                "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", VIRTUAL_NODE_LABEL: "true"}


def gpu_pod(*, node_selector: dict[str, str] | None = None, terms: list[dict[str, Any]] | None = None,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "vllm/vllm-openai:v0.6.0",
                                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    if node_selector is not None:
        spec["nodeSelector"] = dict(node_selector)
    if terms is not None:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}}
    return {"metadata": {"name": "p", "annotations": dict(annotations or {})}, "spec": spec}


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        out["values"] = list(values)
    return out


def rewritten(pod: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(pod)
    selector, affinity = for_virtual_node(out["spec"])
    for name, value in (("nodeSelector", selector), ("affinity", affinity)):
        if value is None:
            out["spec"].pop(name, None)
        else:
            out["spec"][name] = value
    return out


# --- the names clouds use -----------------------------------------------------------------------

@pytest.mark.parametrize("label, model, memory", [
    ("NVIDIA-L4", "L4", 0), ("NVIDIA-A100-SXM4-80GB", "A100 SXM4", 72), ("NVIDIA-A100-SXM4-40GB", "A100 SXM4", 36),
    ("NVIDIA-A100-80GB-PCIe", "A100 PCIE", 72), ("Tesla-T4", "T4", 0), ("Tesla-V100-SXM2-16GB", "V100", 14.4),
    ("NVIDIA-H100-80GB-HBM3", "H100", 72), ("NVIDIA-H100-PCIe", "H100 PCIE", 0), ("NVIDIA-H100-NVL", "H100 NVL", 0),
    ("NVIDIA-GeForce-RTX-4090", "RTX4090", 0), ("NVIDIA-RTX-A6000", "A6000", 0),
    ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "A100 SXM4", 36), ("NVIDIA-L4-SHARED", "L4", 0),
    # GKE accelerators
    ("nvidia-l4", "L4", 0), ("nvidia-tesla-t4", "T4", 0), ("nvidia-tesla-a100", "A100", 0),
    ("nvidia-a100-80gb", "A100", 72), ("nvidia-h100-mega-80gb", "H100", 72),
    # Karpenter GPU names
    ("l4", "L4", 0), ("a10g", "A10", 0), ("t4g", "T4", 0), ("l40s", "L40S", 0),
])
def test_gpu_labels_name_the_vast_model_and_the_memory_in_the_name(label, model, memory):
    choice = gpu_model(label)
    assert choice.gpu_types == (model,)
    assert choice.min_gpu_memory_gb == pytest.approx(memory)


@pytest.mark.parametrize("instance_type, model", [
    ("g6.xlarge", "L4"), ("g5.12xlarge", "A10"), ("g4dn.xlarge", "T4"), ("g6e.2xlarge", "L40S"),
    ("p4d.24xlarge", "A100 SXM4"), ("p5.48xlarge", "H100 SXM"), ("a2-highgpu-1g", "A100 SXM4"),
    ("a2-ultragpu-8g", "A100 SXM4"), ("g2-standard-8", "L4"), ("a3-highgpu-8g", "H100 SXM"),
    ("Standard_NC4as_T4_v3", "T4"), ("Standard_NC24ads_A100_v4", "A100 PCIE"), ("Standard_NV36ads_A10_v5", "A10"),
])
def test_common_cloud_gpu_instance_types_name_their_gpu(instance_type, model):
    assert instance_type_gpu(instance_type).gpu_types == (model,)


@pytest.mark.parametrize("selector, field, value, accepted", [
    ({"node.kubernetes.io/instance-type": "m5.large"}, "spec.nodeSelector[node.kubernetes.io/instance-type]",
     "m5.large", "a cloud GPU instance type kube-vast can translate"),
    ({"cloud.google.com/gke-accelerator": "nvidia-banana"}, "spec.nodeSelector[cloud.google.com/gke-accelerator]",
     "nvidia-banana", "a GKE accelerator such as nvidia-l4"),
    ({"nvidia.com/gpu.memory": "24GB"}, "spec.nodeSelector[nvidia.com/gpu.memory]", "24GB",
     "GPU memory in MiB"),
    ({"karpenter.k8s.aws/instance-gpu-manufacturer": "amd"},
     "spec.nodeSelector[karpenter.k8s.aws/instance-gpu-manufacturer]", "amd", "nvidia"),
])
def test_a_selector_value_that_cannot_be_translated_is_refused_naming_the_selector(selector, field, value, accepted):
    with pytest.raises(RequirementError) as refused:
        requirements_for(CONFIG, gpu_pod(node_selector=selector))
    assert refused.value.field.startswith(field) and refused.value.value == value
    assert accepted in refused.value.accepted
    assert str(refused.value).startswith(f"{field}")


# --- into requirements -------------------------------------------------------------------------

def test_a_gke_accelerator_selector_makes_the_pod_require_that_gpu_and_says_where_it_came_from():
    req = requirements_for(CONFIG, gpu_pod(node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4",
                                                          "kubernetes.io/os": "linux"}))
    assert req.gpu_types == ("L4",)
    assert req.gpu_origin == "node selector cloud.google.com/gke-accelerator=nvidia-l4"
    assert req.as_dict()["gpu_from"] == req.gpu_origin


def test_explain_shows_the_selector_at_the_pod_spec_layer_for_the_pod_as_stored():
    pod = gpu_pod(node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"})
    [layer] = [step for step in requirements_report(CONFIG, rewritten(pod))["layers"] if step["layer"] == "pod spec"]
    assert layer["changes"] == {"gpu_types": ["L4"],
                                "gpu_from": "node selector cloud.google.com/gke-accelerator=nvidia-l4"}


def test_a_pod_without_gpu_selectors_keeps_the_configured_gpus():
    req = requirements_for(CONFIG, gpu_pod(node_selector={"kubernetes.io/os": "linux"}))
    assert req.gpu_types == () and req.gpu_origin == "" and "gpu_from" not in req.as_dict()
    assert gpu_selection(gpu_pod()) is None


def test_the_annotations_still_win_over_the_node_selector():
    req = requirements_for(CONFIG, gpu_pod(node_selector={"nvidia.com/gpu.product": "NVIDIA-L4"},
                                           annotations={"vast.ai/gpu-type": "RTX4090"}))
    assert req.gpu_types == ("RTX4090",) and req.gpu_origin == ""


@pytest.mark.parametrize("terms, types, memory", [
    # In: any of the models, in the order written
    ([[expr("nvidia.com/gpu.product", "In", "NVIDIA-L4", "NVIDIA-A10G")]], ("L4", "A10"), 0.0),
    # Exists: any GPU
    ([[expr("nvidia.com/gpu.product", "Exists")]], (), 0.0),
    # memory: In → the smallest; Gt → above it (MiB; 1 GB = 1000 MB)
    ([[expr("nvidia.com/gpu.memory", "In", "40960", "23034")]], (), 23.034),
    ([[expr("karpenter.k8s.aws/instance-gpu-memory", "Gt", "20000")]], (), 20.001),
    # terms are ORed, expressions in a term ANDed
    ([[expr("karpenter.k8s.aws/instance-gpu-name", "In", "l4")],
      [expr("karpenter.k8s.aws/instance-gpu-name", "In", "a10g")]], ("L4", "A10"), 0.0),
    ([[expr("nvidia.com/gpu.product", "In", "NVIDIA-L4", "Tesla-T4"), expr("nvidia.com/gpu.memory", "Gt", "16000")]],
     ("L4", "T4"), 16.001),
    # a family and one of its variants: the variant
    ([[expr("karpenter.k8s.aws/instance-gpu-name", "In", "a100"),
       expr("nvidia.com/gpu.product", "In", "NVIDIA-A100-SXM4-80GB")]], ("A100 SXM4",), 72.0),
    # a term without a GPU selector allows any GPU
    ([[expr("nvidia.com/gpu.product", "In", "NVIDIA-L4")], [expr("topology.kubernetes.io/zone", "In", "a")]],
     (), 0.0),
])
def test_required_node_affinity_is_read_like_the_scheduler_reads_it(terms, types, memory):
    req = requirements_for(CONFIG, gpu_pod(terms=[{"matchExpressions": t} for t in terms]))
    assert req.gpu_types == types
    assert req.min_gpu_memory_gb == pytest.approx(memory)


@pytest.mark.parametrize("operator", ["NotIn", "DoesNotExist", "Lt", "Gt"])
def test_a_model_operator_vast_cannot_express_is_refused_naming_the_expression(operator):
    terms = [{"matchExpressions": [expr("topology.kubernetes.io/zone", "In", "a"),
                                   expr("nvidia.com/gpu.product", operator, *(["Tesla-T4"] if operator != "DoesNotExist" else []))]}]
    with pytest.raises(RequirementError) as refused:
        requirements_for(CONFIG, gpu_pod(terms=terms))
    assert refused.value.field == ("spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                                   f".nodeSelectorTerms[0].matchExpressions[1] (nvidia.com/gpu.product {operator})")
    assert "In or Exists" in refused.value.accepted


def test_selectors_no_gpu_satisfies_together_are_refused():
    with pytest.raises(RequirementError) as refused:
        requirements_for(CONFIG, gpu_pod(node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4",
                                                        "nvidia.com/gpu.product": "Tesla-T4"}))
    assert "one GPU model satisfies together" in str(refused.value)
    assert "cloud.google.com/gke-accelerator=nvidia-l4" in str(refused.value)


def test_without_a_matching_offer_the_reason_names_the_selector():
    snapshot = OfferSnapshot([make_offer(1, gpu_name="RTX 3060"), make_offer(2, gpu_name="L4", dph_total=3.0)],
                             taken_at=100.0)
    pod = gpu_pod(node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"})
    placement = place(pod, snapshot=snapshot, now=100.0, config=CONFIG, policy=ScoringPolicy(), max_age=60)
    assert placement.chosen is None
    assert placement.reason.endswith("(the GPU is required by the pod's node selector "
                                     "cloud.google.com/gke-accelerator=nvidia-l4)")
    cheap = OfferSnapshot([make_offer(1, gpu_name="RTX 3060"), make_offer(2, gpu_name="L4", dph_total=0.4)],
                          taken_at=100.0)
    chosen = place(pod, snapshot=cheap, now=100.0, config=CONFIG, policy=ScoringPolicy(), max_age=60).chosen
    assert chosen is not None and chosen.offer.id == 2


# --- the rewrite for the virtual node -----------------------------------------------------------

def matches(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    """The scheduler's node selector requirement, for the test's own nodes."""
    key, op, values = expression["key"], expression["operator"], expression.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if key not in labels or not labels[key].isdigit():
        return False
    return int(labels[key]) > int(values[0]) if op == "Gt" else int(labels[key]) < int(values[0])


def schedulable_on(pod: dict[str, Any], labels: dict[str, str]) -> bool:
    spec = pod["spec"]
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    terms = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(t.get("matchExpressions") and all(matches(e, labels) for e in t["matchExpressions"]) for t in terms)


def test_a_gke_pod_is_rewritten_so_that_the_virtual_node_and_real_l4_nodes_both_qualify():
    pod = gpu_pod(node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4", "kubernetes.io/os": "linux"})
    assert not schedulable_on(pod, VIRTUAL_NODE), "as written, the pod waits forever for the virtual node"
    out = rewritten(pod)
    assert out["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert out["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [
            {"matchExpressions": [expr("cloud.google.com/gke-accelerator", "In", "nvidia-l4")]},
            {"matchExpressions": [expr(VIRTUAL_NODE_LABEL, "In", "true")]},
        ]}
    assert schedulable_on(out, VIRTUAL_NODE)
    l4_node = {"kubernetes.io/os": "linux", "cloud.google.com/gke-accelerator": "nvidia-l4"}
    t4_node = {"kubernetes.io/os": "linux", "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert schedulable_on(out, l4_node) and not schedulable_on(out, t4_node)
    assert requirements_for(CONFIG, out) == requirements_for(CONFIG, pod)
    assert rewritten(out) == out, "idempotent: a reinvoked webhook changes nothing"


def test_a_pod_without_gpu_selectors_is_not_rewritten():
    pod = gpu_pod(node_selector={"kubernetes.io/os": "linux"},
                  terms=[{"matchExpressions": [expr("topology.kubernetes.io/zone", "In", "a")]}])
    assert rewritten(pod) == pod


LABEL_VALUES = {
    "cloud.google.com/gke-accelerator": ["nvidia-l4", "nvidia-tesla-t4", "nvidia-a100-80gb"],
    "nvidia.com/gpu.product": ["NVIDIA-L4", "Tesla-T4", "NVIDIA-A100-SXM4-80GB"],
    "karpenter.k8s.aws/instance-gpu-name": ["l4", "t4", "a100"],
    "nvidia.com/gpu.memory": ["15360", "23034", "81920"],
    "topology.kubernetes.io/zone": ["a", "b"],
    "kubernetes.io/os": ["linux"],
}
KEYS = sorted(LABEL_VALUES)
expressions = st.sampled_from(KEYS).flatmap(lambda key: st.one_of(
    st.lists(st.sampled_from(LABEL_VALUES[key]), min_size=1, max_size=2, unique=True).map(
        lambda values: expr(key, "In", *values)),
    st.just(expr(key, "Exists")),
    *([st.sampled_from(["16000", "20000"]).map(lambda v: expr(key, "Gt", v))] if key == "nvidia.com/gpu.memory" else []),
))
pods = st.builds(
    lambda selector, terms: gpu_pod(node_selector=selector or None,
                                    terms=[{"matchExpressions": t} for t in terms] if terms else None),
    st.dictionaries(st.sampled_from(KEYS), st.just(""), max_size=2).map(
        lambda d: {k: LABEL_VALUES[k][0] for k in d}),
    st.lists(st.lists(expressions, min_size=1, max_size=3), max_size=3),
)
real_nodes = st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in LABEL_VALUES.items()})


@settings(max_examples=300, deadline=None)
@given(pod=pods, node=real_nodes)
def test_the_rewrite_keeps_real_nodes_requirements_and_the_vast_requirement_and_is_idempotent(pod, node):
    try:
        before = requirements_for(CONFIG, pod)
    except RequirementError:
        return  # refused at admission: never rewritten
    out = rewritten(pod)
    assert schedulable_on(out, node) == schedulable_on(pod, node), "a real node qualifies exactly as before"
    assert requirements_for(CONFIG, out) == before, "the extender and explain read what the webhook read"
    assert rewritten(out) == out
    # The virtual node qualifies exactly when the pod's other (non-GPU) constraints allow it.
    assert schedulable_on(out, VIRTUAL_NODE) == schedulable_on(without_gpu_selectors(pod), VIRTUAL_NODE)


def without_gpu_selectors(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod with every GPU selector dropped (a term left empty matches every node)."""
    out = copy.deepcopy(pod)
    spec = out["spec"]
    if "nodeSelector" in spec:
        spec["nodeSelector"] = {k: v for k, v in spec["nodeSelector"].items() if k not in GPU_SELECTOR_KEYS}
    for term in (spec.get("affinity") or {}).get("nodeAffinity", {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", []):
        kept = [e for e in term["matchExpressions"] if e["key"] not in GPU_SELECTOR_KEYS]
        term["matchExpressions"] = kept or [expr("kubernetes.io/os", "Exists")]
    return out


_EXPRESSIONS = st.fixed_dictionaries({
    "key": st.sampled_from(["nvidia.com/gpu.product", "nvidia.com/gpu.memory", "zone", VIRTUAL_NODE_LABEL]),
    "operator": st.sampled_from(["In", "Gt", "Exists", "NotIn"]),
    "values": st.lists(st.sampled_from(["NVIDIA-L4", "nvidia-a100-80gb", "24000", "true", "x"]), max_size=2)})
_SPECS = st.fixed_dictionaries({}, optional={
    "nodeSelector": st.one_of(st.none(), st.just({}), st.just("x"), st.dictionaries(
        st.sampled_from(["cloud.google.com/gke-accelerator", "nvidia.com/gpu.product", "kubernetes.io/os"]),
        st.one_of(st.sampled_from(["nvidia-l4", "NVIDIA-A100-SXM4-80GB", "linux", "bogus!"]), st.integers()),
        max_size=3)),
    "affinity": st.one_of(st.none(), st.just({}), st.just(3), st.builds(
        lambda terms: {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}},
        st.lists(st.builds(lambda e: {"matchExpressions": e}, st.lists(_EXPRESSIONS, max_size=3)), max_size=2))),
})


def _selection_or_error(function: Any, argument: Any) -> Any:
    try:
        return function(argument)
    except RequirementError as e:
        return str(e)


@settings(max_examples=1000, deadline=None, database=None)
@given(spec=_SPECS)
def test_the_shortcut_for_pods_without_gpu_selectors_gives_the_full_walks_answer(spec: dict[str, Any]) -> None:
    """gpu_selection answers a spec without affinity and without GPU keys in nodeSelector at once;
    for every spec it gives what the full walk gives (a selection, None or the same refusal)."""
    assert _selection_or_error(gpu_selection, {"spec": spec}) == _selection_or_error(_gpu_selection, spec)
