"""What a Vast instance can run, checked on a pod (a plain dict). Pure functions.

A Vast instance runs one image: so a pod that goes to Vast has exactly one container with an
image, and no init containers (nothing would run them first). It is a machine outside the
cluster with its own disk: PersistentVolumeClaims (also generic ephemeral volumes), hostPath and
every other volume that needs a cluster node cannot be mounted there. Its container runs under
Docker with NVIDIA's runtime: a pod that asks for another runtime class (a sandbox, a confidential
VM) is not sent there. ConfigMap, Secret,
downwardAPI and emptyDir volumes (and projected ones made of those) are created on the instance by
the controller; a service account token is not (the instance cannot reach the API server), which
is worth a warning only where the app mounts one itself. Hard problems deny the pod; soft ones
become admission warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vastmarket.requirements import GPU_RESOURCE

PREFIX = "this pod cannot run on Vast: "
ENABLED_LABEL = "vast.ai/enabled"
NO_GPU = (f"it requests no {GPU_RESOURCE}, and kube-vast sends only GPU pods to Vast (add resources.limits "
          f'{GPU_RESOURCE}: 1, or remove the label vast.ai/enabled: "true")')

# Volumes an instance gets: files (configMap, secret, downwardAPI, projected), directories (emptyDir).
ADMITTED_VOLUMES = frozenset({"configMap", "secret", "emptyDir", "projected", "downwardAPI"})
# Projected sources that never reach the instance, and where every pod mounts its own token.
DROPPED_SOURCES = ("serviceAccountToken", "clusterTrustBundle", "podCertificate")
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_CLAIMS = {"persistentVolumeClaim": "a PersistentVolumeClaim",
           "ephemeral": "a generic ephemeral volume (a PersistentVolumeClaim per pod)"}
HOOKS = ("postStart", "preStop")
# Runtime classes that only give the container its GPUs, which Vast's runtime (Docker with NVIDIA's)
# does on every instance: NVIDIA's GPU operator creates nvidia, nvidia-cdi and nvidia-legacy, and
# k3s nvidia and nvidia-experimental. Any other (gVisor, Kata, a confidential VM) asks for an
# isolation that a Vast host does not give.
GPU_RUNTIME_CLASSES = frozenset({"nvidia", "nvidia-cdi", "nvidia-legacy", "nvidia-experimental"})


def _name(container: Mapping[str, Any], idx: int) -> str:
    name = container.get("name")
    return repr(name) if isinstance(name, str) and name else f"#{idx}"


def _volume_kind(volume: Mapping[str, Any]) -> str | None:
    kinds = [k for k in volume if k != "name"]
    return kinds[0] if kinds else None


def volume_reasons(spec: Mapping[str, Any]) -> list[str]:
    """Why the pod's volumes cannot exist on a Vast instance (empty when they can)."""
    volumes = spec.get("volumes")
    reasons: list[str] = []
    for idx, volume in enumerate(volumes if isinstance(volumes, list) else []):
        if not isinstance(volume, Mapping):
            continue
        kind = _volume_kind(volume)
        if kind is None or kind in ADMITTED_VOLUMES:
            continue
        name = _name(volume, idx)
        if kind in _CLAIMS:
            reasons.append(f"volume {name} is {_CLAIMS[kind]}: Vast cannot mount PersistentVolumeClaims "
                           "(an instance has only its own local disk; size it with vast.ai/disk)")
        elif kind == "hostPath":
            reasons.append(f"volume {name} is a hostPath: a Vast instance is not a cluster node, so no "
                           "node's path exists there")
        else:
            reasons.append(f"volume {name} ({kind}) cannot be mounted on a Vast instance (only configMap, "
                           "secret, emptyDir, projected and downwardAPI volumes can)")
    return reasons


def runtime_reasons(spec: Mapping[str, Any], gpu_runtime_classes: frozenset[str] = GPU_RUNTIME_CLASSES) -> list[str]:
    """Why the pod's ``runtimeClassName`` cannot be had on a Vast instance (empty when it can)."""
    name = spec.get("runtimeClassName")
    if name is None or name == "" or name in gpu_runtime_classes:
        return []
    accepted = ", ".join(sorted(gpu_runtime_classes)) or "none"
    shown = repr(name) if isinstance(name, str) else f"{name!r} (not a string)"
    return [f"runtimeClassName {shown} asks for a container runtime a Vast instance does not have: Vast runs "
            "the container with Docker and NVIDIA's runtime on a rented host, with no sandbox (gVisor, Kata) "
            f"or confidential VM around it; the GPU runtime classes that may go to Vast are {accepted} "
            f'(the webhook\'s KUBE_VAST_GPU_RUNTIME_CLASSES); to keep the pod in the cluster, label it '
            f'{ENABLED_LABEL}: "false"']


def unrunnable_reasons(pod: Mapping[str, Any], gpu_runtime_classes: frozenset[str] = GPU_RUNTIME_CLASSES) -> list[str]:
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
    reasons.extend(volume_reasons(spec))
    reasons.extend(runtime_reasons(spec, gpu_runtime_classes))
    return reasons


def denial_message(reasons: list[str]) -> str | None:
    """One denial message for every reason, or ``None`` when there is none."""
    return PREFIX + "; ".join(reasons) if reasons else None


def unrunnable_message(pod: Mapping[str, Any]) -> str | None:
    """One denial message for every reason, or ``None`` when Vast can run the pod."""
    return denial_message(unrunnable_reasons(pod))


def _hooks(container: Mapping[str, Any]) -> list[str]:
    lifecycle = container.get("lifecycle")
    if not isinstance(lifecycle, Mapping):
        return []
    found = []
    for hook in HOOKS:
        handler = lifecycle.get(hook)
        if isinstance(handler, Mapping):
            kinds = [k for k in handler if k in ("exec", "httpGet", "tcpSocket", "sleep")]
            found.append(f"{hook} ({', '.join(kinds) or 'empty'})")
    return found


def soft_problems(pod: Mapping[str, Any]) -> list[str]:
    """Things worth a warning that do not stop the pod: what is dropped on the way to Vast."""
    spec = pod.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    containers = spec.get("containers")
    warnings: list[str] = []
    for idx, container in enumerate(containers if isinstance(containers, list) else []):
        hooks = _hooks(container) if isinstance(container, Mapping) else []
        if hooks:
            warnings.append(f"container {_name(container, idx)}: {' and '.join(hooks)} cannot run on a Vast "
                            "instance (nothing runs beside the container there); on deletion the container "
                            "only gets SIGTERM and terminationGracePeriodSeconds")
    warnings.extend(_dropped_projections(spec))
    return warnings


def _mount_paths(spec: Mapping[str, Any], volume_name: Any) -> list[str]:
    containers = spec.get("containers")
    paths = []
    for container in containers if isinstance(containers, list) else []:
        mounts = container.get("volumeMounts") if isinstance(container, Mapping) else None
        for mount in mounts if isinstance(mounts, list) else []:
            if isinstance(mount, Mapping) and mount.get("name") == volume_name:
                paths.append(str(mount.get("mountPath") or ""))
    return paths


def _dropped_projections(spec: Mapping[str, Any]) -> list[str]:
    """Projected sources that are not created on the instance, where the app mounts them itself
    (the service account token every pod carries at its usual path is no news)."""
    warnings = []
    volumes = spec.get("volumes")
    for idx, volume in enumerate(volumes if isinstance(volumes, list) else []):
        if not isinstance(volume, Mapping) or _volume_kind(volume) != "projected":
            continue
        projected = volume.get("projected")
        sources = projected.get("sources") if isinstance(projected, Mapping) else None
        dropped = sorted({k for s in (sources if isinstance(sources, list) else []) if isinstance(s, Mapping)
                          for k in s if k in DROPPED_SOURCES})
        paths = _mount_paths(spec, volume.get("name"))
        if dropped and any(not p.startswith(SERVICE_ACCOUNT_MOUNT) for p in paths):
            warnings.append(f"volume {_name(volume, idx)}: its {', '.join(dropped)} source is not created on the "
                            "Vast instance (it cannot reach the cluster's API server)")
    return warnings
