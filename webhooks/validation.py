"""What a Vast instance can run, checked on a pod (a plain dict). Pure functions.

A Vast instance runs one image: so a pod that goes to Vast has exactly one container with an
image, and no init containers (nothing would run them first). Hard problems deny the pod;
soft ones become admission warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vastmarket.requirements import GPU_RESOURCE

PREFIX = "this pod cannot run on Vast: "


def _name(container: Mapping[str, Any], idx: int) -> str:
    name = container.get("name")
    return repr(name) if isinstance(name, str) and name else f"#{idx}"


def unrunnable_reasons(pod: Mapping[str, Any]) -> list[str]:
    """Why Vast cannot run ``pod`` (empty when it can)."""
    spec = pod.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    reasons: list[str] = []
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        reasons.append("it has no containers (exactly one is needed)")
        containers = []
    elif len(containers) > 1:
        names = ", ".join(_name(c, i) if isinstance(c, Mapping) else f"#{i}" for i, c in enumerate(containers))
        reasons.append(f"it has {len(containers)} containers ({names}); a Vast instance runs exactly one")
    for idx, container in enumerate(containers):
        if not isinstance(container, Mapping):
            reasons.append(f"spec.containers[{idx}] is not a container object")
            continue
        image = container.get("image")
        if not isinstance(image, str) or not image.strip():
            reasons.append(f"container {_name(container, idx)} has no image")
    init = spec.get("initContainers")
    if isinstance(init, list) and init:
        names = ", ".join(_name(c, i) if isinstance(c, Mapping) else f"#{i}" for i, c in enumerate(init))
        reasons.append(f"init containers ({names}) cannot run on a Vast instance")
    return reasons


def unrunnable_message(pod: Mapping[str, Any]) -> str | None:
    """One denial message for every reason, or ``None`` when Vast can run the pod."""
    reasons = unrunnable_reasons(pod)
    return PREFIX + "; ".join(reasons) if reasons else None


def _requests_gpu(container: Mapping[str, Any]) -> bool:
    resources = container.get("resources")
    if not isinstance(resources, Mapping):
        return False
    return any(isinstance(section, Mapping) and section.get(GPU_RESOURCE) is not None
               for section in (resources.get("requests"), resources.get("limits")))


def soft_problems(pod: Mapping[str, Any]) -> list[str]:
    """Things worth a warning that do not stop the pod."""
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    warnings: list[str] = []
    if isinstance(containers, list) and containers and not any(
            isinstance(c, Mapping) and _requests_gpu(c) for c in containers):
        warnings.append(f"the pod requests no {GPU_RESOURCE}: the scheduler extender only handles pods "
                        f"that do, and every Vast instance has at least one GPU "
                        f"(add resources.limits {GPU_RESOURCE}: 1)")
    return warnings
