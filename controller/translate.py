"""Pod → what to run on Vast: :func:`launch_spec` turns one pod (a plain Kubernetes JSON dict) into
a :class:`LaunchSpec`, and :meth:`LaunchSpec.rent_request` into a
:class:`~vastmarket.instances.RentRequest`.

Contract
--------
- Pure: no I/O. ConfigMaps and Secrets come through the injected :class:`RefLookup` (Secret values
  already base64-decoded to text by the caller).
- Either a complete, valid spec, or :class:`LaunchError` with a CamelCase Event ``reason`` and a
  human message; then nothing must be rented and the pod stays Pending:

  * ``CreateContainerConfigError`` — the environment cannot be resolved (a required ConfigMap,
    Secret or key is missing, an unsupported ``fieldRef``/``resourceFieldRef``). The message is
    the kubelet's (``configmap "x" not found``, ``couldn't find key k in ConfigMap ns/x``).
  * ``UnsupportedPod`` — the pod cannot run on Vast as written (not exactly one container, init
    containers, no image, an invalid environment variable name, a bad ``vast.ai/*`` annotation,
    or a spec that :meth:`RentRequest.validate` refuses).

Resolved like the kubelet (``makeEnvironmentVariables``, ``expandContainerCommandAndArgs``):

- ``envFrom`` first (``configMapRef``/``secretRef``, ``prefix``, ``optional``), then ``env`` in
  order (literal ``value``; ``valueFrom`` ``configMapKeyRef``/``secretKeyRef`` honouring
  ``optional``, ``fieldRef``, ``resourceFieldRef`` with ``divisor``, rounded up). A literal value
  wins over ``valueFrom``. ``envFrom`` keys that are not valid variable names are skipped and
  reported in :attr:`LaunchSpec.warnings` (reason ``InvalidEnvironmentVariableNames``).
- ``$(VAR)`` in literal values refers to variables defined before it (``envFrom`` and earlier
  ``env``); in ``command``/``args`` to every variable. ``$$`` is a literal ``$``; an unknown
  ``$(X)`` stays as written. ``valueFrom`` values are never expanded.
- ``fieldRef``: ``metadata.name|namespace|uid``, ``metadata.labels['k']``,
  ``metadata.annotations['k']`` (a missing key gives ``""``), ``spec.nodeName``,
  ``spec.serviceAccountName``. ``status.podIP(s)``/``status.hostIP(s)`` are not known before the
  instance exists: they resolve to ``""``.
- ``resourceFieldRef``: ``requests.*`` default to the limit (as the API server defaults them),
  then to 0; an unset ``limits.*`` is the machine's ``allocatable`` (like the kubelet's node
  allocatable) — when the caller does not pass it, the spec is refused
  (``CreateContainerConfigError``) rather than guessed.

Differences from a kubelet, on purpose or forced by Vast:

- **command**: Vast's ``runtype: args`` passes ``args`` to the image's ENTRYPOINT and cannot
  replace the entrypoint. A pod ``command`` is therefore *prepended* to ``args``: Vast runs
  ``ENTRYPOINT + command + args``. This is what the pod means only when the image has no
  ENTRYPOINT (just a CMD) or an entrypoint that executes its arguments (``exec "$@"``). Without
  ``command`` and ``args`` the image's own CMD runs (``args`` is ``None``).
- Service-link variables (``FOO_SERVICE_HOST``...) are not injected: cluster IPs are not
  reachable from a Vast machine.
- Ports: the TCP ``containerPorts`` (UDP/SCTP cannot be mapped; duplicates removed), then the
  readiness probe's port when it is not declared, so that the health check can reach it. Each
  becomes a ``-p P:P`` mapping; Vast chooses the public host port.
- GPU count from ``nvidia.com/gpu`` (``pod_needs``), disk from ``vast.ai/disk`` else the default;
  the image from ``vast.ai/image`` else the container's.
- Fields with no Vast equivalent (``workingDir``, volume mounts, ``imagePullSecrets``) are ignored
  and reported in :attr:`LaunchSpec.warnings` (reason ``IgnoredPodField``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Protocol

from vastmarket.errors import KubeVastError, RequirementError
from vastmarket.instances import RentRequest
from vastmarket.quantities import parse_quantity
from vastmarket.requirements import parse_overrides, pod_needs

from .health import probe_for
from .shapes import mapping as _mapping, items as _list, text as _text

CONFIG_ERROR = "CreateContainerConfigError"
UNSUPPORTED = "UnsupportedPod"
INVALID_ENV_NAMES = "InvalidEnvironmentVariableNames"
IGNORED_FIELD = "IgnoredPodField"

# Kubernetes' IsEnvVarName without a leading "-": Vast reads "-p …"/"-h" env keys as docker flags.
_ENV_NAME = re.compile(r"^[._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")
_SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


class LaunchError(KubeVastError):
    """The pod cannot be launched. ``reason`` is a CamelCase Event reason, ``message`` says why."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


class RefLookup(Protocol):
    """Read access to the pod's ConfigMaps and Secrets; ``None`` when the object does not exist."""

    def configmap(self, namespace: str, name: str) -> Mapping[str, str] | None: ...

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None: ...


@dataclass(frozen=True, slots=True)
class LaunchWarning:
    """Something ignored that the pod's owner should hear about (an Event of type Warning)."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything Vast needs to run the pod's container. ``ports`` are TCP container ports."""

    image: str
    args: tuple[str, ...] | None
    env: Mapping[str, str]
    ports: tuple[int, ...]
    num_gpus: int
    disk_gb: float
    warnings: tuple[LaunchWarning, ...] = ()

    def rent_request(self, label: str) -> RentRequest:
        """The rent request under the instance ``label``; :class:`LaunchError` if Vast would
        refuse it."""
        request = RentRequest(image=self.image, label=label, disk_gb=self.disk_gb,
                              env=dict(self.env), ports=self.ports, args=self.args)
        try:
            request.validate()
        except ValueError as exc:
            raise LaunchError(UNSUPPORTED, str(exc)) from None
        return request


def launch_spec(
    pod: Mapping[str, Any],
    *,
    lookup: RefLookup,
    default_disk_gb: float = 10.0,
    allocatable: Mapping[str, str | int | float] | None = None,
) -> LaunchSpec:
    """Translate ``pod``; see the module docstring. ``allocatable`` (``{"cpu": "16",
    "memory": "64Gi"}``, the rented machine) backs ``resourceFieldRef`` on an unset limit."""
    container = _only_container(pod)
    meta = _mapping(pod.get("metadata"))
    annotations = _mapping(meta.get("annotations"))
    try:
        overrides = parse_overrides(annotations)
        needs = pod_needs(pod)
    except RequirementError as exc:
        raise LaunchError(UNSUPPORTED, str(exc)) from None

    image = overrides.image or _text(container.get("image")).strip()
    if not image:
        raise LaunchError(UNSUPPORTED, f"container {_name(container)!r} has no image")

    warnings: list[LaunchWarning] = []
    env = _environment(pod, container, lookup, allocatable, warnings)
    args = _command_line(container, env)
    warnings.extend(_ignored_fields(pod, container))

    spec = LaunchSpec(
        image=image,
        args=args,
        env=MappingProxyType(env),
        ports=_ports(pod, needs.ports),
        num_gpus=needs.num_gpus,
        disk_gb=default_disk_gb if overrides.disk_gb is None else overrides.disk_gb,
        warnings=tuple(warnings),
    )
    spec.rent_request("")  # validates: image, args length, env names
    return spec


# --- $(VAR) expansion --------------------------------------------------------------------------

def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' ``expansion.Expand``: ``$(NAME)`` → ``lookup(NAME)`` unless that is ``None``
    (then ``$(NAME)`` stays); ``$$`` → ``$``; any other ``$`` is kept as is."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char != "$" or i + 1 == n:
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2:close]
                value = lookup(name)
                out.append(f"$({name})" if value is None else value)
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


# --- the container ------------------------------------------------------------------------------




def _name(container: Mapping[str, Any]) -> str:
    return _text(container.get("name")) or "?"


def _only_container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = _mapping(pod.get("spec"))
    containers = [c for c in _list(spec.get("containers")) if isinstance(c, Mapping)]
    if len(containers) != 1:
        names = ", ".join(_name(c) for c in containers) or "none"
        raise LaunchError(UNSUPPORTED, f"a Vast instance runs exactly one container; "
                                       f"the pod has {len(containers)} ({names})")
    init = [c for c in _list(spec.get("initContainers")) if isinstance(c, Mapping)]
    if init:
        raise LaunchError(UNSUPPORTED, "init containers cannot run on a Vast instance: "
                                       + ", ".join(_name(c) for c in init))
    return containers[0]


def _command_line(container: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, ...] | None:
    words = [_text(w) for w in _list(container.get("command")) + _list(container.get("args"))]
    if not words:
        return None
    return tuple(expand(w, env.get) for w in words)


def _ports(pod: Mapping[str, Any], declared: Sequence[int]) -> tuple[int, ...]:
    ports = list(dict.fromkeys(declared))
    probe_port = probe_for(pod).container_port
    if probe_port is not None and probe_port not in ports:
        ports.append(probe_port)
    return tuple(ports)


def _ignored_fields(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[LaunchWarning]:
    ignored = []
    if _text(container.get("workingDir")):
        ignored.append("workingDir")
    mounts = [_text(_mapping(m).get("mountPath")) for m in _list(container.get("volumeMounts"))]
    mounts = [m for m in mounts if not m.startswith(_SERVICE_ACCOUNT_MOUNT)]
    if mounts:
        ignored.append("volumeMounts (" + ", ".join(mounts) + ")")
    if _list(_mapping(pod.get("spec")).get("imagePullSecrets")):
        ignored.append("imagePullSecrets")
    return [LaunchWarning(IGNORED_FIELD, f"not supported on Vast and ignored: {what}") for what in ignored]


# --- the environment ---------------------------------------------------------------------------

def _environment(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    lookup: RefLookup,
    allocatable: Mapping[str, str | int | float] | None,
    warnings: list[LaunchWarning],
) -> dict[str, str]:
    namespace = _text(_mapping(pod.get("metadata")).get("namespace")) or "default"
    env: dict[str, str] = {}

    for source in _list(container.get("envFrom")):
        source = _mapping(source)
        prefix = _text(source.get("prefix"))
        for kind, ref in (("configMap", source.get("configMapRef")), ("secret", source.get("secretRef"))):
            if not isinstance(ref, Mapping):
                continue
            name = _text(ref.get("name"))
            data = _fetch(lookup, kind, namespace, name)
            if data is None:
                if ref.get("optional") is True:
                    continue
                raise LaunchError(CONFIG_ERROR, f'{kind.lower()} "{name}" not found')
            invalid = []
            for key in sorted(data):
                if _ENV_NAME.match(prefix + key):
                    env[prefix + key] = data[key]
                else:
                    invalid.append(prefix + key)
            if invalid:
                warnings.append(LaunchWarning(INVALID_ENV_NAMES, (
                    f"Keys [{', '.join(invalid)}] from the EnvFrom {kind} {namespace}/{name} were "
                    "skipped since they are considered invalid environment variable names.")))

    for var in _list(container.get("env")):
        var = _mapping(var)
        name = _text(var.get("name"))
        if not _ENV_NAME.match(name):
            raise LaunchError(UNSUPPORTED, f"invalid environment variable name {name!r}: it must "
                                           "match [._a-zA-Z][-._a-zA-Z0-9]* (no leading '-' on Vast)")
        value = var.get("value")
        if isinstance(value, str) and value:
            env[name] = expand(value, env.get)
            continue
        source = var.get("valueFrom")
        if not isinstance(source, Mapping):
            env[name] = "" if value is None else str(value)
            continue
        resolved = _value_from(pod, container, namespace, source, lookup, allocatable)
        if resolved is not None:
            env[name] = resolved
    return env


def _fetch(lookup: RefLookup, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
    return lookup.configmap(namespace, name) if kind == "configMap" else lookup.secret(namespace, name)


def _value_from(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    namespace: str,
    source: Mapping[str, Any],
    lookup: RefLookup,
    allocatable: Mapping[str, str | int | float] | None,
) -> str | None:
    """The value of one ``valueFrom``; ``None`` when an optional reference is missing."""
    for kind, title, key_ref in (("configMap", "ConfigMap", "configMapKeyRef"),
                                 ("secret", "Secret", "secretKeyRef")):
        ref = source.get(key_ref)
        if not isinstance(ref, Mapping):
            continue
        name, key = _text(ref.get("name")), _text(ref.get("key"))
        optional = ref.get("optional") is True
        data = _fetch(lookup, kind, namespace, name)
        if data is None:
            if optional:
                return None
            raise LaunchError(CONFIG_ERROR, f'{kind.lower()} "{name}" not found')
        if key not in data:
            if optional:
                return None
            raise LaunchError(CONFIG_ERROR, f"couldn't find key {key} in {title} {namespace}/{name}")
        return data[key]
    if isinstance(source.get("fieldRef"), Mapping):
        return _field_value(pod, _text(source["fieldRef"].get("fieldPath")))
    if isinstance(source.get("resourceFieldRef"), Mapping):
        return _resource_value(container, source["resourceFieldRef"], allocatable)
    raise LaunchError(CONFIG_ERROR, "valueFrom without a supported source "
                                    "(configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef)")


_FIELDS: dict[str, tuple[str, str]] = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "metadata.uid": ("metadata", "uid"),
    "spec.nodeName": ("spec", "nodeName"),
    "spec.serviceAccountName": ("spec", "serviceAccountName"),
}
_UNKNOWN_AT_LAUNCH = frozenset({"status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs"})


def _field_value(pod: Mapping[str, Any], path: str) -> str:
    if path in _FIELDS:
        section, key = _FIELDS[path]
        value = _mapping(pod.get(section)).get(key)
        if path == "metadata.namespace" and not value:
            return "default"
        return "" if value is None else str(value)
    if path in _UNKNOWN_AT_LAUNCH:
        return ""
    match = _SUBSCRIPT.match(path)
    if match:
        values = _mapping(_mapping(pod.get("metadata")).get(match.group(1)))
        return str(values.get(match.group(2), ""))
    raise LaunchError(CONFIG_ERROR, f"unsupported fieldPath {path!r} in an environment variable")


def _resource_value(
    container: Mapping[str, Any],
    ref: Mapping[str, Any],
    allocatable: Mapping[str, str | int | float] | None,
) -> str:
    selector = _text(ref.get("resource"))
    wanted = _text(ref.get("containerName"))
    if wanted and wanted != _text(container.get("name")):
        raise LaunchError(CONFIG_ERROR, f"resourceFieldRef names container {wanted!r}, which is not in the pod")
    kind, _, resource = selector.partition(".")
    if kind not in ("requests", "limits") or not resource:
        raise LaunchError(CONFIG_ERROR, f"unsupported container resource : {selector}")
    resources = _mapping(container.get("resources"))
    raw = _mapping(resources.get(kind)).get(resource)
    if raw is None and kind == "requests":
        raw = _mapping(resources.get("limits")).get(resource, 0)
    if raw is None:
        raw = (allocatable or {}).get(resource)
        if raw is None:
            raise LaunchError(CONFIG_ERROR, f"{selector} is not set and the machine's allocatable "
                                            f"{resource} is unknown")
    try:
        amount = parse_quantity(raw)
        divisor = parse_quantity(ref.get("divisor") or "1")
    except (ValueError, AttributeError):
        raise LaunchError(CONFIG_ERROR, f"resourceFieldRef {selector}: invalid quantity "
                                        f"{raw!r} or divisor {ref.get('divisor')!r}") from None
    # The kubelet divides MilliValue()s for CPU and Value()s otherwise, each rounded up first.
    scale = Decimal(1000) if resource == "cpu" else Decimal(1)
    whole_divisor = math.ceil(divisor * scale)
    if whole_divisor <= 0:
        raise LaunchError(CONFIG_ERROR, f"resourceFieldRef {selector}: the divisor must be positive")
    return str(math.ceil(Decimal(math.ceil(amount * scale)) / whole_divisor))
