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

What the instance runs (``runtype: args``; vast-api.md §4, §9):

- **command** replaces the image's ENTRYPOINT: Vast's ``onstart`` is the entrypoint (the CLI's
  ``--entrypoint``; one executable, as docker's ``--entrypoint``) and ``args`` are passed to it, so
  ``command: [c0, c1…]`` becomes ``onstart: c0``, ``args: [c1…, *args]``. **args** alone replace
  the image's CMD (``args``, no ``onstart``). Neither: the image's ENTRYPOINT and CMD run
  (``args`` is ``None``). ``onstart`` + ``args`` must fit Vast's 4096 characters, or the pod is
  refused (``UnsupportedPod`` naming the limit).
- **Files before the entrypoint** (:mod:`controller.bootstrap`): ConfigMap, Secret and
  downward-API volumes (also as ``projected`` sources; ``items`` ``key``→``path``, ``mode``,
  ``defaultMode``, ``optional``, ``subPath`` mounts) are written as files at their ``mountPath``
  by a POSIX-sh start script that then execs the pod's command: ``onstart: /bin/sh``,
  ``args: [-c, SCRIPT, kube-vast, *command, *args]``; the files travel base64-encoded in env values
  of at most 256 characters. Environment values longer than Vast's 256 characters travel the same
  way and are set by the script. The script needs the pod's ``command``: kube-vast cannot know the
  image's ENTRYPOINT/CMD to run after it, so a pod with such files or values and no ``command`` is
  refused (``UnsupportedPod``, saying to set ``command``). With a command, the script also creates
  the ``emptyDir`` mount directories and changes to ``workingDir``. A required ConfigMap/Secret (or
  key) that is missing is a ``CreateContainerConfigError``, as for env. Secret contents appear only
  in the create body's env (as for ``secretKeyRef``): never in a log, an Event or a ``repr``.
- Vast's create limits: each env value at most 256 characters (longer ones: see above), the whole
  env (keys, values and ``-p`` port mappings) at most 32 KB — about 23 KB of volume files —
  and a disk of at least 8 GB; otherwise ``UnsupportedPod`` naming the limit.
- ``emptyDir``: a directory on the instance's disk (the container's own filesystem, which lives as
  long as the pod's instance). ``medium: Memory`` mounted at ``/dev/shm`` is the container's own
  shared memory: Vast sizes ``/dev/shm`` itself, in proportion to the rented GPU fraction, and its
  env-dict docker flags carry only ``-p``/``-e``/``-h`` (no ``--shm-size``), so a ``sizeLimit``
  cannot be honoured (a Warning says so). ``medium: Memory`` elsewhere is an ordinary directory
  (a Warning says it is not in memory).
- ``imagePullSecrets`` → ``image_login`` (``-u USER -p PASSWORD REGISTRY``) from the first
  ``.dockerconfigjson``/``.dockercfg`` auth for the image's registry (Docker Hub is
  ``docker.io``); a pull secret that does not exist gives the kubelet's
  ``FailedToRetrieveImagePullSecret`` Warning and the image is pulled without it.
- Ports: the TCP ``containerPorts``, the ports of the readiness, liveness and startup probes
  (``httpGet``/``tcpSocket``, a number or a declared name), and the ports of every Service that
  selects the pod (``services``): a numeric ``targetPort`` (or none: ``port``) as written, a named
  one resolved against the container's named ports — one that matches none gets a Warning
  (``ServicePortUnresolved``) and no mapping. Duplicates are removed; UDP/SCTP cannot be mapped.
  Each becomes a ``-p P:P`` mapping; Vast chooses the public host port.
- Service-link variables (``FOO_SERVICE_HOST``...) are not injected: cluster IPs are not
  reachable from a Vast machine.
- GPU count from ``nvidia.com/gpu`` (``pod_needs``), disk from ``vast.ai/disk`` else the default;
  the image from ``vast.ai/image`` else the container's.
- Fields with no Vast equivalent (``workingDir`` without ``command``, volumes of other kinds such as
  ``persistentVolumeClaim`` or ``hostPath``) are ignored and reported in
  :attr:`LaunchSpec.warnings` (reason ``IgnoredPodField``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Protocol

from vastmarket.errors import KubeVastError, RequirementError
from vastmarket.instances import MAX_ENV_TOTAL, MAX_ENV_VALUE, RentRequest, env_size
from vastmarket.quantities import parse_quantity
from vastmarket.requirements import parse_overrides, pod_needs

from . import bootstrap, endpoints
from .health import probe_for
from .shapes import mapping as _mapping, items as _list, text as _text

CONFIG_ERROR = "CreateContainerConfigError"
UNSUPPORTED = "UnsupportedPod"
INVALID_ENV_NAMES = "InvalidEnvironmentVariableNames"
IGNORED_FIELD = "IgnoredPodField"
UNRESOLVED_SERVICE_PORT = "ServicePortUnresolved"
PULL_SECRET_MISSING = "FailedToRetrieveImagePullSecret"
VOLUME_APPROXIMATED = "VolumeApproximated"
DEFAULT_MODE = 0o644
SHM = "/dev/shm"

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
    """Everything Vast needs to run the pod's container. ``ports`` are TCP container ports;
    ``onstart`` is the entrypoint (``None``: the image's), ``args`` its arguments (``None``: the
    image's CMD); ``files`` the paths the start script writes. ``env`` and ``image_login`` may
    hold secrets and stay out of ``repr``."""

    image: str
    args: tuple[str, ...] | None
    env: Mapping[str, str] = field(repr=False)
    ports: tuple[int, ...]
    num_gpus: int
    disk_gb: float
    warnings: tuple[LaunchWarning, ...] = ()
    onstart: str | None = None
    image_login: str | None = field(default=None, repr=False)
    files: tuple[str, ...] = ()

    def rent_request(self, label: str) -> RentRequest:
        """The rent request under the instance ``label``; :class:`LaunchError` if Vast would
        refuse it."""
        request = RentRequest(image=self.image, label=label, disk_gb=self.disk_gb,
                              env=dict(self.env), ports=self.ports, args=self.args,
                              onstart=self.onstart, image_login=self.image_login)
        try:
            request.validate()
        except ValueError as exc:
            raise LaunchError(UNSUPPORTED, str(exc)) from None
        return request


def launch_spec(
    pod: Mapping[str, Any],
    *,
    lookup: RefLookup,
    services: Sequence[Mapping[str, Any]] = (),
    default_disk_gb: float = 10.0,
    allocatable: Mapping[str, str | int | float] | None = None,
) -> LaunchSpec:
    """Translate ``pod``; see the module docstring. ``services`` are the Services of the pod's
    namespace (those that select it add their target ports). ``allocatable`` (``{"cpu": "16",
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
    volumes = _volumes(pod, container, lookup, allocatable, warnings)
    onstart, args, env = _command_line(container, env, volumes, warnings)
    image_login = _image_login(pod, image, lookup, warnings)
    ports = _ports(pod, container, needs.ports, services, warnings)
    _check_env_size(env, ports)

    spec = LaunchSpec(
        image=image,
        args=args,
        env=MappingProxyType(env),
        ports=ports,
        num_gpus=needs.num_gpus,
        disk_gb=default_disk_gb if overrides.disk_gb is None else overrides.disk_gb,
        warnings=tuple(warnings),
        onstart=onstart,
        image_login=image_login,
        files=tuple(f.path for f in volumes.files),
    )
    spec.rent_request("")  # validates: image, command length, disk, env names and sizes
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


def _command_line(
    container: Mapping[str, Any],
    env: dict[str, str],
    volumes: bootstrap.Payload,
    warnings: list[LaunchWarning],
) -> tuple[str | None, tuple[str, ...] | None, dict[str, str]]:
    """``(onstart, args, env)``: the pod's command as Vast's entrypoint, or the start script that
    sets up ``volumes`` and long env values and then runs the command."""
    command = [expand(_text(w), env.get) for w in _list(container.get("command"))]
    args = [expand(_text(w), env.get) for w in _list(container.get("args"))]
    long_values = {k: v for k, v in env.items() if len(v) > MAX_ENV_VALUE}
    working_dir = _text(container.get("workingDir"))
    needed = []
    if volumes.files:
        needed.append("files from volumes (" + ", ".join(f.path for f in volumes.files[:5])
                      + (", …" if len(volumes.files) > 5 else "") + ")")
    if long_values:
        needed.append("environment values over Vast's limit of "
                      f"{MAX_ENV_VALUE} characters ({', '.join(sorted(long_values))})")
    if needed and not command:
        raise LaunchError(UNSUPPORTED, (
            f"{' and '.join(needed)} need the container's command on Vast: kube-vast sets them up with "
            "a start script that then runs the command, and it cannot know the image's ENTRYPOINT/CMD "
            "to run after it. Set command (and args) to what the image runs"))
    if not command:
        if working_dir:
            warnings.append(LaunchWarning(IGNORED_FIELD, "not supported on Vast and ignored: workingDir "
                                                         "(kube-vast can change to it only when the "
                                                         "container sets command)"))
        return None, (tuple(args) if args else None), env
    if not (needed or working_dir):
        return command[0], tuple(command[1:] + args), env
    for name in env:
        if bootstrap.carries(name):
            raise LaunchError(UNSUPPORTED, f"environment variable {name!r} is reserved for kube-vast's start script")
    if long_values and "=" in command[0]:
        raise LaunchError(UNSUPPORTED, f"the command {command[0]!r} contains '=': the start script cannot pass "
                                       "long environment values to it through env")
    payload = bootstrap.Payload(directories=volumes.directories, files=volumes.files,
                                variables=long_values, working_dir=working_dir or None)
    try:
        carried = bootstrap.encode(payload)
        onstart, vast_args = bootstrap.wrap(command + args)
    except bootstrap.PayloadError as exc:
        raise LaunchError(UNSUPPORTED, str(exc)) from None
    kept = {k: v for k, v in env.items() if k not in long_values}
    return onstart, vast_args, {**kept, **carried}


def _check_env_size(env: Mapping[str, str], ports: Sequence[int]) -> None:
    total = env_size(RentRequest(image="-", label="", env=env, ports=tuple(ports)).env_dict())
    if total <= MAX_ENV_TOTAL:
        return
    carried = env_size({k: v for k, v in env.items() if bootstrap.carries(k)})
    raise LaunchError(UNSUPPORTED, (
        f"the pod needs {total} bytes of Vast's environment, over its limit of {MAX_ENV_TOTAL} bytes: "
        f"{carried} carry files from volumes and long values (base64), {total - carried} are the pod's "
        "variables and port mappings"))


def _ports(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    declared: Sequence[int],
    services: Sequence[Mapping[str, Any]],
    warnings: list[LaunchWarning],
) -> tuple[int, ...]:
    ports = list(dict.fromkeys(declared))

    def add(port: int | None) -> None:
        if port is not None and port not in ports:
            ports.append(port)

    add(probe_for(pod).container_port)
    named = {_text(_mapping(p).get("name")): _valid_port(_mapping(p).get("containerPort"))
             for p in _list(container.get("ports"))
             if (_text(_mapping(p).get("protocol")) or "TCP") == "TCP"}
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = _mapping(container.get(kind))
        for handler in ("httpGet", "tcpSocket"):
            target = _mapping(probe.get(handler)).get("port")
            add(named.get(target) if isinstance(target, str) and not target.isdigit() else _valid_port(target))
    for service in services:
        if not endpoints.selects(service, pod):
            continue
        for port in endpoints.service_ports(service, pod):
            if port.protocol != "TCP":
                continue
            if port.container_port is None:
                warnings.append(LaunchWarning(UNRESOLVED_SERVICE_PORT, (
                    f"{port.describe()}: targetPort {port.target!r} names no port of container "
                    f"{_name(container)!r}; it is not mapped and the Service gets no endpoint for it")))
            add(port.container_port)
    return tuple(ports)


def _valid_port(value: Any) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536 else None


# --- volumes -------------------------------------------------------------------------------------

def _volumes(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    lookup: RefLookup,
    allocatable: Mapping[str, str | int | float] | None,
    warnings: list[LaunchWarning],
) -> bootstrap.Payload:
    """The files and directories the container's volume mounts need on the instance."""
    spec = _mapping(pod.get("spec"))
    namespace = _text(_mapping(pod.get("metadata")).get("namespace")) or "default"
    by_name = {_text(_mapping(v).get("name")): _mapping(v) for v in _list(spec.get("volumes"))}
    files: dict[str, bootstrap.File] = {}
    directories: list[str] = []
    ignored: list[str] = []
    for raw in _list(container.get("volumeMounts")):
        mount = _mapping(raw)
        path = _text(mount.get("mountPath")).rstrip("/") or "/"
        if path.startswith(_SERVICE_ACCOUNT_MOUNT):
            continue  # the API token: no use on a machine that cannot reach the API server
        volume = by_name.get(_text(mount.get("name")), {})
        kind = next((k for k in volume if k != "name"), "unknown")
        if kind == "emptyDir":
            directories += _empty_dir(path, _mapping(volume.get("emptyDir")), warnings)
            continue
        entries = _projections(kind, volume, namespace, pod, container, lookup, allocatable)
        if entries is None:
            ignored.append(f"{path}: {kind}")
            continue
        for relative, content, mode in _sub_path(entries, _text(mount.get("subPath"))):
            target = path if not relative else f"{path.rstrip('/')}/{relative}"
            files[target] = bootstrap.File(target, content, mode)
    if ignored:
        warnings.append(LaunchWarning(IGNORED_FIELD, "not supported on Vast and ignored: volumeMounts ("
                                                     + ", ".join(ignored) + ")"))
    return bootstrap.Payload(directories=tuple(dict.fromkeys(directories)), files=tuple(files.values()))


def _empty_dir(path: str, empty_dir: Mapping[str, Any], warnings: list[LaunchWarning]) -> list[str]:
    if _text(empty_dir.get("medium")) != "Memory":
        return [path]
    if path == SHM:
        if empty_dir.get("sizeLimit"):
            warnings.append(LaunchWarning(VOLUME_APPROXIMATED, (
                f"{SHM}: sizeLimit {empty_dir['sizeLimit']} is not applied; Vast sizes the container's "
                f"{SHM} itself, in proportion to the rented GPU fraction")))
        return []
    warnings.append(LaunchWarning(VOLUME_APPROXIMATED, (
        f"{path}: emptyDir medium Memory is an ordinary directory on the instance's disk (only {SHM} "
        "is memory-backed on Vast)")))
    return [path]


_Entry = tuple[str, bytes, int]  # path relative to the mount, content, mode


def _projections(
    kind: str,
    volume: Mapping[str, Any],
    namespace: str,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    lookup: RefLookup,
    allocatable: Mapping[str, str | int | float] | None,
) -> list[_Entry] | None:
    """The files of a configMap, secret, downwardAPI or projected volume; ``None`` for a kind
    kube-vast cannot put on the instance."""
    source = _mapping(volume.get(kind))
    mode = _mode(source.get("defaultMode"), DEFAULT_MODE)
    if kind == "configMap":
        return _key_files("configMap", _text(source.get("name")), source, namespace, lookup, mode)
    if kind == "secret":
        return _key_files("secret", _text(source.get("secretName")), source, namespace, lookup, mode)
    if kind == "downwardAPI":
        return _downward_files(source, pod, container, allocatable, mode)
    if kind != "projected":
        return None
    entries: list[_Entry] = []
    for raw in _list(source.get("sources")):
        projection = _mapping(raw)
        if isinstance(projection.get("configMap"), Mapping):
            ref = projection["configMap"]
            entries += _key_files("configMap", _text(ref.get("name")), ref, namespace, lookup, mode)
        elif isinstance(projection.get("secret"), Mapping):
            ref = projection["secret"]
            entries += _key_files("secret", _text(ref.get("name")), ref, namespace, lookup, mode)
        elif isinstance(projection.get("downwardAPI"), Mapping):
            entries += _downward_files(projection["downwardAPI"], pod, container, allocatable, mode)
        else:
            return None  # serviceAccountToken, clusterTrustBundle: nothing Vast can use
    return entries


def _key_files(kind: str, name: str, ref: Mapping[str, Any], namespace: str, lookup: RefLookup,
               mode: int) -> list[_Entry]:
    """The kubelet's configMap/secret volume: every key, or ``items`` (``key`` → ``path``)."""
    optional = ref.get("optional") is True
    data = _fetch(lookup, kind, namespace, name)
    if data is None:
        if optional:
            return []
        raise LaunchError(CONFIG_ERROR, f'{kind.lower()} "{name}" not found')
    items = [_mapping(i) for i in _list(ref.get("items"))]
    if not items:
        return [(key, data[key].encode(), mode) for key in sorted(data)]
    out = []
    for item in items:
        key = _text(item.get("key"))
        if key not in data:
            if optional:
                continue
            noun = "config" if kind == "configMap" else "secret"
            raise LaunchError(CONFIG_ERROR, f"{kind.lower()} {namespace}/{name} references non-existent "
                                            f"{noun} key: {key}")
        out.append((_relative(_text(item.get("path")) or key), data[key].encode(), _mode(item.get("mode"), mode)))
    return out


def _downward_files(source: Mapping[str, Any], pod: Mapping[str, Any], container: Mapping[str, Any],
                    allocatable: Mapping[str, str | int | float] | None, mode: int) -> list[_Entry]:
    out = []
    for raw in _list(source.get("items")):
        item = _mapping(raw)
        if isinstance(item.get("fieldRef"), Mapping):
            path = _text(item["fieldRef"].get("fieldPath"))
            value = _field_map(pod, path) if path in ("metadata.labels", "metadata.annotations") \
                else _field_value(pod, path)
        elif isinstance(item.get("resourceFieldRef"), Mapping):
            value = _resource_value(container, item["resourceFieldRef"], allocatable)
        else:
            continue
        out.append((_relative(_text(item.get("path"))), value.encode(), _mode(item.get("mode"), mode)))
    return out


def _field_map(pod: Mapping[str, Any], path: str) -> str:
    """``metadata.labels``/``annotations`` as the kubelet writes them: ``key="value"`` lines, sorted."""
    values = _mapping(_mapping(pod.get("metadata")).get(path.split(".")[1]))
    return "\n".join(f"{k}={json.dumps(str(v))}" for k, v in sorted(values.items()))


def _sub_path(entries: list[_Entry], sub_path: str) -> list[_Entry]:
    """The entries a ``subPath`` mount shows: the one at ``subPath`` (as the mount itself) and
    those below it."""
    if not sub_path:
        return entries
    sub = sub_path.strip("/")
    out = [("", content, mode) for rel, content, mode in entries if rel == sub]
    out += [(rel[len(sub) + 1:], content, mode) for rel, content, mode in entries if rel.startswith(sub + "/")]
    return out


def _relative(path: str) -> str:
    if not path or path.startswith("/") or ".." in path.split("/"):
        raise LaunchError(UNSUPPORTED, f"volume item path {path!r} must be relative and must not contain '..'")
    return path


def _mode(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o777 else default


# --- private images ------------------------------------------------------------------------------

_DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", _DOCKER_HUB})


def image_registry(image: str) -> str:
    """The registry host of an image reference (``docker.io`` for Docker Hub's short names)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return _DOCKER_HUB if first.lower() in _HUB_ALIASES else first.lower()
    return _DOCKER_HUB


def _auth_host(key: str) -> str:
    host = key.split("://", 1)[-1].split("/", 1)[0].lower()
    return _DOCKER_HUB if host in _HUB_ALIASES else host


def _image_login(pod: Mapping[str, Any], image: str, lookup: RefLookup,
                 warnings: list[LaunchWarning]) -> str | None:
    """``-u USER -p PASSWORD REGISTRY`` from the pod's pull secrets, for the image's registry."""
    names = [_text(_mapping(s).get("name")) for s in _list(_mapping(pod.get("spec")).get("imagePullSecrets"))]
    namespace = _text(_mapping(pod.get("metadata")).get("namespace")) or "default"
    registry = image_registry(image)
    missing = []
    for name in filter(None, names):
        data = lookup.secret(namespace, name)
        if data is None:
            missing.append(name)
            continue
        for key, entry in _auths(data).items():
            if _auth_host(key) != registry:
                continue
            user, password = _credentials(entry)
            if not user or not password:
                continue
            if any(c.isspace() for c in user + password):
                warnings.append(LaunchWarning(IGNORED_FIELD, (
                    f"imagePullSecret {name}: the credentials for {registry} contain whitespace, which "
                    "Vast's image_login cannot carry; pulling without them")))
                continue
            return f"-u {user} -p {password} {registry}"
    if missing:
        warnings.append(LaunchWarning(PULL_SECRET_MISSING, (
            f"Unable to retrieve some image pull secrets ({', '.join(missing)}); attempting to pull the "
            "image may not succeed.")))
    return None


def _auths(data: Mapping[str, str]) -> Mapping[str, Any]:
    for key, nested in ((".dockerconfigjson", True), (".dockercfg", False)):
        try:
            parsed = json.loads(data.get(key) or "null")
        except ValueError:
            continue
        if isinstance(parsed, Mapping):
            return _mapping(parsed.get("auths")) if nested else parsed
    return {}


def _credentials(entry: Any) -> tuple[str, str]:
    entry = _mapping(entry)
    user, password = _text(entry.get("username")), _text(entry.get("password"))
    if (not user or not password) and _text(entry.get("auth")):
        try:
            decoded = base64.b64decode(_text(entry.get("auth")), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        user, _, password = decoded.partition(":")
    return user, password


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
