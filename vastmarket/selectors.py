"""Cloud GPU node selectors, translated into Vast requirements. Pure functions, no I/O.

Pods written for a cloud GPU node pick it by node label: ``cloud.google.com/gke-accelerator:
nvidia-l4`` on GKE, ``nvidia.com/gpu.product: NVIDIA-L4`` where NVIDIA's GPU feature discovery
runs, ``karpenter.k8s.aws/instance-gpu-name: l4`` with Karpenter, ``node.kubernetes.io/instance-type:
g6.xlarge``, ``nvidia.com/gpu.memory`` (MiB). The virtual node carries none of these labels, so as
written such a pod would wait forever for it. Instead:

- :func:`gpu_selection` reads the pod's ``spec.nodeSelector`` and its *required* node affinity and
  turns the keys in :data:`GPU_SELECTOR_KEYS` into a :class:`GpuSelection`: the GPU models that
  satisfy them (Vast spelling, e.g. ``L4``, ``A100 SXM4``) and a VRAM floor. ``requirements_for``
  applies it at the pod layer, so the webhook, the extender, the controller and ``explain`` read
  the same requirement from the same pod. A value that cannot be translated raises
  :class:`~vastmarket.errors.RequirementError` naming the selector.
- :func:`for_virtual_node` rewrites the scheduling constraints so that the virtual node can satisfy
  them, without changing what they mean for real nodes: the GPU entries of ``nodeSelector`` move
  into every required node-affinity term (``k: v`` is ``k In [v]``), and for every such term a
  copy without its GPU expressions, plus ``vast.ai/virtual-node In [true]``, is added (terms are
  ORed). A real L4 node still qualifies; the virtual node qualifies through its own terms, and
  the GPU model is then Vast's requirement. A pod that already has a term naming
  ``vast.ai/virtual-node`` is left as it is (so the rewrite is idempotent).

Semantics: expressions in one term are ANDed, terms ORed, ``nodeSelector`` ANDed with them
(the scheduler's rules). Model keys accept ``In`` (any of the models) and ``Exists`` (any GPU);
memory keys ``In`` (the smallest value is the floor), ``Gt`` and ``Exists``. Anything Vast cannot
express (``NotIn``, ``DoesNotExist``, ``Lt``) is refused. A VRAM size in a model name
(``NVIDIA-A100-SXM4-80GB``, ``nvidia-a100-80gb``) becomes a floor of 90 % of it, so the 80 GB
variant is told from the 40 GB one whatever the card reports. The models of an ``In`` list keep the
order they are written in (the ``gpu_match`` score ranks them).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import RequirementError
from .names import gpu_key, gpu_matches, is_plausible_gpu_name

# isinstance(x, _MAPPING) is isinstance(x, Mapping), and answers a dict without the ABC's check.
_MAPPING = (dict, Mapping)
VIRTUAL_NODE_LABEL = "vast.ai/virtual-node"
VIRTUAL_NODE_EXPRESSION: Mapping[str, Any] = {"key": VIRTUAL_NODE_LABEL, "operator": "In", "values": ["true"]}
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
TERMS_FIELD = f"spec.affinity.nodeAffinity.{REQUIRED}.nodeSelectorTerms"

# A size in a model name is what the vendor sells; the card reports a little less (an L4 sold as
# 24 GB reports 23034 MiB). 90 % still tells 40 GB from 80 GB and 16 GB from 32 GB.
NAMED_MEMORY_SHARE = 0.9


@dataclass(frozen=True, slots=True)
class GpuChoice:
    """What a selector allows: GPU models (Vast spelling; ``None``: any model) and a VRAM floor
    in GB (1 GB = 1000 MB, as everywhere in kube-vast)."""

    gpu_types: tuple[str, ...] | None = None
    min_gpu_memory_gb: float = 0.0

    def both(self, other: GpuChoice) -> GpuChoice | None:
        """Both selectors at once (one term); ``None`` when no GPU model satisfies both."""
        if self.gpu_types is None:
            types = other.gpu_types
        elif other.gpu_types is None:
            types = self.gpu_types
        else:
            types = _intersection(self.gpu_types, other.gpu_types)
            if not types:
                return None
        return GpuChoice(types, max(self.min_gpu_memory_gb, other.min_gpu_memory_gb))

    def either(self, other: GpuChoice) -> GpuChoice:
        """One selector or the other (``In`` values, terms)."""
        if self.gpu_types is None or other.gpu_types is None:
            types = None
        else:
            types = _minimal(self.gpu_types + other.gpu_types)
        return GpuChoice(types, min(self.min_gpu_memory_gb, other.min_gpu_memory_gb))


def _covers(pattern: str, model: str) -> bool:
    return gpu_matches(gpu_key(pattern), gpu_key(model))


def _minimal(models: Iterable[str]) -> tuple[str, ...]:
    """Without duplicates and without models another one already covers (``A100`` covers
    ``A100 SXM4``): the same offers match, and the result does not depend on how it was built."""
    unique = list(dict.fromkeys(models))
    return tuple(m for m in unique if not any(o != m and _covers(o, m) for o in unique))


def _intersection(first: Sequence[str], second: Sequence[str]) -> tuple[str, ...]:
    """The models both lists allow: each model that a model of the other list covers."""
    kept = [m for m in first if any(_covers(o, m) for o in second)]
    kept += [m for m in second if any(_covers(o, m) for o in first)]
    return _minimal(kept)


@dataclass(frozen=True, slots=True)
class GpuSelection:
    """The GPU a pod's node selectors ask for. ``selectors`` are the translated selectors as
    written (``cloud.google.com/gke-accelerator=nvidia-l4``), sorted."""

    gpu_types: tuple[str, ...] | None
    min_gpu_memory_gb: float
    selectors: tuple[str, ...]

    @property
    def origin(self) -> str:
        """``node selector cloud.google.com/gke-accelerator=nvidia-l4`` (for reasons and explain)."""
        return "node selector " + ", ".join(self.selectors)


# --- GPU model names ----------------------------------------------------------------------------

_CUT = re.compile(r"[-_ .](MIG|SHARED)([-_ .].*)?$", re.I)  # GPU feature discovery's suffixes
_WORD = re.compile(r"[^A-Z0-9]+")
_MEMORY_WORD = re.compile(r"^(\d{1,4})GB$")
_NOISE_WORDS = frozenset({"NVIDIA", "TESLA", "GEFORCE", "QUADRO", "HBM2", "HBM2E", "HBM3", "HBM3E", "MEGA",
                          "GENERATION"})
_FORM_WORDS = frozenset({"PCIE", "SXM", "SXM2", "SXM3", "SXM4", "SXM5", "NVL"})
# Form factors Vast writes into the model name; other models are one name on Vast whatever the form.
_VAST_FORMS = {("A100", "PCIE"): "A100 PCIE", ("A100", "SXM"): "A100 SXM4", ("A100", "SXM4"): "A100 SXM4",
               ("H100", "PCIE"): "H100 PCIE", ("H100", "SXM"): "H100 SXM", ("H100", "SXM5"): "H100 SXM",
               ("H100", "NVL"): "H100 NVL"}
# Cloud-only variants and the model Vast sells: the A10G (AWS g5) is an A10, the T4G (AWS g5g) a T4.
_ALIASES = {"A10G": "A10", "T4G": "T4"}


def gpu_model(label: str) -> GpuChoice:
    """A GPU model as node labels spell it → the Vast model (and VRAM floor when the name has one).

    >>> gpu_model("NVIDIA-A100-SXM4-80GB")
    GpuChoice(gpu_types=('A100 SXM4',), min_gpu_memory_gb=72.0)
    >>> gpu_model("nvidia-l4").gpu_types, gpu_model("Tesla-T4").gpu_types, gpu_model("a10g").gpu_types
    (('L4',), ('T4',), ('A10',))

    Raises ``ValueError`` for a name that is not a GPU model (letters and digits such as L4)."""
    text = _CUT.sub("", label.strip())
    memory = 0.0
    base: list[str] = []
    forms: list[str] = []
    for word in _WORD.split(text.upper()):
        sized = _MEMORY_WORD.match(word)
        if sized:
            memory = max(memory, float(sized.group(1)) * NAMED_MEMORY_SHARE)
        elif word in _FORM_WORDS:
            forms.append(word)
        elif word and word not in _NOISE_WORDS:
            base.append(word)
    key = gpu_key(" ".join(base)) if base else ""
    key = _ALIASES.get(key, key)
    if not key or not is_plausible_gpu_name(key):
        raise ValueError(label)
    model = _VAST_FORMS.get((key, forms[0]), key) if forms else key
    return GpuChoice((model,), memory)


# Cloud GPU instance types → the GPU they carry. Matched on the lower-cased type.
_INSTANCE_TYPES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), m) for p, m in (
    # AWS: family.size
    (r"^g4dn\.", "T4"), (r"^g5g\.", "T4"), (r"^g5\.", "A10"), (r"^(g6|g6f|gr6|gr6f)\.", "L4"),
    (r"^g6e\.", "L40S"), (r"^p3dn\.", "V100-32GB"), (r"^p3\.", "V100"), (r"^p4d\.", "A100-SXM4-40GB"),
    (r"^p4de\.", "A100-SXM4-80GB"), (r"^p5\.", "H100-SXM"), (r"^p5en?\.", "H200"), (r"^p6-b200\.", "B200"),
    # Google Cloud: family-shape-gpus
    (r"^a2-(highgpu|megagpu)-", "A100-SXM4-40GB"), (r"^a2-ultragpu-", "A100-SXM4-80GB"),
    (r"^a3-(highgpu|megagpu|edgegpu)-", "H100-SXM"), (r"^a3-ultragpu-", "H200"), (r"^a4-highgpu-", "B200"),
    (r"^g2-standard-", "L4"),
    # Azure
    (r"^standard_nc\d+as_t4_v3$", "T4"), (r"^standard_nc\d+ads_a100_v4$", "A100-PCIE-80GB"),
    (r"^standard_nd96asr_v4$", "A100-SXM4-40GB"), (r"^standard_nd96amsr_a100_v4$", "A100-SXM4-80GB"),
    (r"^standard_nd96isr_h100_v5$", "H100-SXM"), (r"^standard_nc\d+ads_h100_v5$", "H100-NVL"),
    (r"^standard_nv\d+ads_a10_v5$", "A10"), (r"^standard_nc\d+ads_a10_v4$", "A10"),
    (r"^standard_nc\d+s_v3$", "V100"), (r"^standard_nd40rs_v2$", "V100-32GB"),
))

INSTANCE_TYPE_FORM = (
    "a cloud GPU instance type kube-vast can translate: AWS g4dn, g5, g5g, g6, g6e, gr6, p3, p3dn, p4d, "
    "p4de, p5, p5e, p5en; Google Cloud a2, a3, a4, g2; Azure NCasT4_v3, NCads_A10_v4, NVadsA10_v5, "
    "NCads_A100_v4, NDasrA100_v4, NDamsrA100_v4, NCads_H100_v5, NDisrH100_v5, NCsv3, NDrsv2 "
    "(for any other, name the GPU with vast.ai/gpu-type or nvidia.com/gpu.product)"
)


def instance_type_gpu(value: str) -> GpuChoice:
    """``g6.xlarge`` → L4. Raises ``ValueError`` for a type kube-vast does not know."""
    lowered = value.strip().lower()
    for pattern, model in _INSTANCE_TYPES:
        if pattern.match(lowered):
            return gpu_model(model)
    raise ValueError(value)


def _memory_mib(value: str) -> GpuChoice:
    text = value.strip()
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(value)
    return GpuChoice(None, int(text) / 1000.0)


def _any_of(accepted: frozenset[str]) -> Callable[[str], GpuChoice]:
    def parse(value: str) -> GpuChoice:
        if value.strip().lower() not in accepted:
            raise ValueError(value)
        return GpuChoice()
    return parse


# --- the selector keys ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Key:
    """How one label key translates: ``parse`` maps one value; ``form`` says what values look like;
    ``numeric`` keys (MiB) also take ``Gt``."""

    form: str
    parse: Callable[[str], GpuChoice]
    numeric: bool = False


_PRODUCT = _Key("a GPU product as GPU feature discovery labels it, such as NVIDIA-L4, "
                "NVIDIA-A100-SXM4-80GB or Tesla-T4", gpu_model)
_ACCELERATOR = _Key("a GKE accelerator such as nvidia-l4, nvidia-tesla-t4, nvidia-tesla-a100 or "
                    "nvidia-a100-80gb", gpu_model)
_MEMORY = _Key("GPU memory in MiB as a whole number, such as 23034", _memory_mib, numeric=True)
_INSTANCE = _Key(INSTANCE_TYPE_FORM, instance_type_gpu)

GPU_SELECTOR_KEYS: Mapping[str, _Key] = {
    "nvidia.com/gpu.product": _PRODUCT,
    "nvidia.com/gpu.memory": _MEMORY,
    "nvidia.com/gpu.present": _Key('"true"', _any_of(frozenset({"true"}))),
    "cloud.google.com/gke-accelerator": _ACCELERATOR,
    "k8s.amazonaws.com/accelerator": _ACCELERATOR,
    "karpenter.k8s.aws/instance-gpu-name": _Key("a GPU name as Karpenter labels it, such as l4, a10g, t4, a100 "
                                                "or h100", gpu_model),
    "karpenter.k8s.aws/instance-gpu-memory": _MEMORY,
    "karpenter.k8s.aws/instance-gpu-manufacturer": _Key("nvidia (every Vast GPU is an NVIDIA GPU)",
                                                        _any_of(frozenset({"nvidia"}))),
    "node.kubernetes.io/instance-type": _INSTANCE,
    "beta.kubernetes.io/instance-type": _INSTANCE,
}


def _describe(key: str, operator: str, values: Sequence[str]) -> str:
    if operator == "In" and len(values) == 1:
        return f"{key}={values[0]}"
    if operator == "In":
        return f"{key} in ({', '.join(values)})"
    if operator == "Exists":
        return f"{key} exists"
    return f"{key}>{values[0]}" if operator == "Gt" else f"{key} {operator} {list(values)}"


def _translate(key: str, operator: str, values: Sequence[str], where: str,
               seen: list[str]) -> GpuChoice:
    """One selector (``key operator values``) → what it allows; appends the models it names to
    ``seen`` (in the order written). Raises :class:`RequirementError` naming ``where``."""
    spec = GPU_SELECTOR_KEYS[key]
    if operator == "Exists":
        return GpuChoice()
    shown = values[0] if len(values) == 1 else list(values)
    if operator not in ("In", "Gt") or (operator == "Gt" and not spec.numeric):
        accepted = "In, Gt or Exists" if spec.numeric else "In or Exists"
        raise RequirementError(f"{where} ({key} {operator})", shown,
                               f"{accepted}: Vast can only be asked for GPU models and a minimum of "
                               "GPU memory (for anything else use the vast.ai/* annotations)")
    if not values or not all(isinstance(v, str) for v in values) or (operator == "Gt" and len(values) != 1):
        raise RequirementError(f"{where} ({key} {operator})", shown, "a list of strings (exactly one for Gt)")
    choice: GpuChoice | None = None
    for value in values:
        try:
            one = spec.parse(value)
        except ValueError:
            raise RequirementError(f"{where} ({key})", value, spec.form) from None
        if operator == "Gt":
            one = GpuChoice(None, one.min_gpu_memory_gb + 0.001)
        seen.extend(one.gpu_types or ())
        choice = one if choice is None else choice.either(one)
    assert choice is not None
    return choice


# --- reading a pod -------------------------------------------------------------------------------

def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, _MAPPING) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def node_selector(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(spec.get("nodeSelector"))


def required_terms(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms``."""
    node_affinity = _mapping(_mapping(spec.get("affinity")).get("nodeAffinity"))
    return [t for t in _list(_mapping(node_affinity.get(REQUIRED)).get("nodeSelectorTerms")) if isinstance(t, _MAPPING)]


def _expressions(term: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [e for e in _list(term.get("matchExpressions")) if isinstance(e, _MAPPING)]


def is_gpu_expression(expression: Mapping[str, Any]) -> bool:
    key = expression.get("key")
    return isinstance(key, str) and key in GPU_SELECTOR_KEYS


def names_virtual_node(term: Mapping[str, Any]) -> bool:
    """A term that selects the virtual node by its label (written by :func:`for_virtual_node`)."""
    return any(e.get("key") == VIRTUAL_NODE_LABEL for e in _expressions(term))


def _routed(terms: Sequence[Mapping[str, Any]]) -> bool:
    return any(names_virtual_node(t) for t in terms)


def _gpu_node_selector(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in node_selector(spec).items() if k in GPU_SELECTOR_KEYS]


def gpu_selection(pod: Mapping[str, Any]) -> GpuSelection | None:
    """The GPU the pod's node selectors ask for, or ``None`` when none of
    :data:`GPU_SELECTOR_KEYS` is used. Raises :class:`RequirementError` naming the selector that
    cannot be translated."""
    spec = _mapping(pod.get("spec"))
    if _uses_no_gpu_selector(spec):  # most pods: answered without the walk (it runs per request)
        return None
    return _gpu_selection(spec)


def _uses_no_gpu_selector(spec: Mapping[str, Any]) -> bool:
    """No affinity to read terms from and no :data:`GPU_SELECTOR_KEYS` in ``nodeSelector``: then
    :func:`_gpu_selection` finds no source and returns ``None`` without raising."""
    affinity = spec.get("affinity")
    if affinity and isinstance(affinity, _MAPPING):
        return False
    selector = spec.get("nodeSelector")
    return not selector or not isinstance(selector, _MAPPING) or GPU_SELECTOR_KEYS.keys().isdisjoint(selector)


def _gpu_selection(spec: Mapping[str, Any]) -> GpuSelection | None:
    """:func:`gpu_selection` of a pod with this ``spec``, by the full walk."""
    seen: list[str] = []
    sources: set[str] = set()
    base = GpuChoice()
    for key, value in _gpu_node_selector(spec):
        where = f"spec.nodeSelector[{key}]"
        if not isinstance(value, str):
            raise RequirementError(where, value, "a string")
        found = base.both(_translate(key, "In", [value], where, seen))
        if found is None:
            raise RequirementError("spec.nodeSelector", _joined(sources | {_describe(key, "In", [value])}),
                                   "GPU selectors that one GPU model satisfies together")
        base = found
        sources.add(_describe(key, "In", [value]))
    terms = [t for t in required_terms(spec) if not names_virtual_node(t)]
    per_term: list[GpuChoice | None] = []
    for i, term in enumerate(terms):
        choice: GpuChoice | None = base
        term_sources: set[str] = set()
        for j, expression in enumerate(_expressions(term)):
            if not is_gpu_expression(expression):
                continue
            key, operator = str(expression["key"]), str(expression.get("operator", ""))
            values = [v for v in _list(expression.get("values"))]
            one = _translate(key, operator, values, f"{TERMS_FIELD}[{i}].matchExpressions[{j}]", seen)
            term_sources.add(_describe(key, operator, values))
            choice = None if choice is None else choice.both(one)
        sources |= term_sources
        per_term.append(choice)
    if not sources:
        return None
    result: GpuChoice | None = base
    if per_term:
        possible = [c for c in per_term if c is not None]
        result = None
        for c in possible:
            result = c if result is None else result.either(c)
    if result is None:
        raise RequirementError(f"{TERMS_FIELD} and spec.nodeSelector", _joined(sources),
                               "GPU selectors that one GPU model satisfies together (in at least one term)")
    types = result.gpu_types
    if types is not None:
        types = tuple(m for m in dict.fromkeys(seen) if m in types)
    return GpuSelection(types, result.min_gpu_memory_gb, tuple(sorted(sources)))


def _joined(sources: Iterable[str]) -> str:
    return ", ".join(sorted(sources))


# --- the rewrite for the virtual node --------------------------------------------------------------

def _as_expression(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": [value]}


def for_virtual_node(spec: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The ``nodeSelector`` and ``affinity`` that let the virtual node satisfy ``spec`` (see the
    module docstring); ``None`` for a field that ends up absent. Returns them unchanged (copies)
    when the pod uses no GPU selector or already names the virtual node."""
    selector = node_selector(spec)
    affinity = copy.deepcopy(dict(_mapping(spec.get("affinity")))) if "affinity" in spec else None
    kept_selector = dict(selector) if "nodeSelector" in spec else None
    terms = required_terms(spec)
    moved = _gpu_node_selector(spec)
    in_terms = any(is_gpu_expression(e) for t in terms for e in _expressions(t))
    if (not moved and not in_terms) or _routed(terms):
        return kept_selector, affinity
    front = [_as_expression(k, v) for k, v in moved]
    real: list[dict[str, Any]] = []
    for term in terms or [{}]:
        merged = copy.deepcopy(dict(term))
        if front or "matchExpressions" in merged:
            merged["matchExpressions"] = copy.deepcopy(front) + copy.deepcopy(_expressions(term))
        real.append(merged)
    virtual: list[dict[str, Any]] = []
    for term in real:
        routed = copy.deepcopy(term)
        routed["matchExpressions"] = [e for e in _expressions(term) if not is_gpu_expression(e)] + \
            [dict(VIRTUAL_NODE_EXPRESSION, values=["true"])]
        if routed not in virtual:
            virtual.append(routed)
    out_affinity = affinity if affinity is not None else {}
    node_affinity = dict(_mapping(out_affinity.get("nodeAffinity")))
    node_affinity[REQUIRED] = {**_mapping(node_affinity.get(REQUIRED)), "nodeSelectorTerms": real + virtual}
    out_affinity["nodeAffinity"] = node_affinity
    rest = {k: v for k, v in selector.items() if k not in GPU_SELECTOR_KEYS}
    return (rest if rest else None), out_affinity
