"""The pod as kube-vast reads it: one validated shape, checked with marshmallow where a pod comes in.

kube-vast reads a subset of a Pod: its metadata (name, generateName, namespace, uid, labels,
annotations, finalizers, the deletion fields), the containers (image, command, args, workingDir,
ports, env, envFrom, resources, probes, lifecycle hooks, volumeMounts), volumes, the node selector
and node affinity, tolerations, imagePullSecrets, readinessGates, restartPolicy, the grace period
and the status phase. :func:`check_pod` checks that subset and raises :class:`InvalidPod` naming
the JSON path of each field of the wrong shape::

    spec.containers[0].resources.limits[nvidia.com/gpu]: expected a Kubernetes quantity such as
    500m, 2, 16Gi or 1G, got a list

Fields kube-vast does not read are not looked at, so a pod with fields a newer Kubernetes added
passes. What is checked is what Kubernetes' own decoding of a Pod guarantees — types, int32 and
int64 ranges, quantities in the syntax and int64 range of ``resource.Quantity`` — so a pod the API
server sends always passes; values within that (a negative GPU count, an unknown restartPolicy, a
port number out of range) are for the domain to judge, with its own messages. ``null`` is an absent
field, as in Kubernetes' JSON; an item of a list may not be null.

Where pods come in, this is called first: the webhook (the AdmissionReview's pod, a workload's pod
template), the extender (``ExtenderArgs.Pod``, only the fields a scheduling decision reads:
``scheduling=True``), the controller (each pod it reads before acting on
it) and ``kube-vast offers --pod``. Everything that reads a pod afterwards (requirements, GPU
selectors, placement, the webhook's validation and patch, the controller's translation, probes,
endpoints and status) takes the same plain dict: pods stay dicts (unknown fields kept, patches
computed on them), and the fields those readers use are known to have the shape they expect.
Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence, Set as AbstractSet
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from .errors import InvalidPod
from .quantities import QUANTITY_FORM, parse_quantity

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def describe(value: Any) -> str:
    """What a JSON value is, for messages (never the value itself: it may be large or secret)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, Mapping) else type(value).__name__


class MapKey(str):
    """A key of a map field (labels, resources) in an error path: shown as ``[key]``."""


def _null(expected: str) -> dict[str, str | list[Any] | dict[Any, Any]]:
    return {"null": f"expected {expected}, got null"}


class _Leaf(fields.Field):  # type: ignore[type-arg]
    """A field that accepts one kind of JSON value; ``null`` is absent unless ``nullable=False``."""

    expected = "a value"

    def __init__(self, *, nullable: bool = True) -> None:
        super().__init__(allow_none=nullable, error_messages=_null(self.expected))

    def wrong(self, value: Any) -> ValidationError:
        return ValidationError(f"expected {self.expected}, got {describe(value)}")

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not self.accepts(value):
            raise self.wrong(value)
        return value


class Text(_Leaf):
    expected = "a string"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)


class Flag(_Leaf):
    expected = "true or false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


class Whole(_Leaf):
    """An integer in a range (Kubernetes' int32 unless told int64); a float such as 1.0 is not one."""

    def __init__(self, bounds: tuple[int, int] = INT32, *, nullable: bool = True) -> None:
        self.bounds = bounds
        self.expected = f"a whole number from {bounds[0]} to {bounds[1]}"
        super().__init__(nullable=nullable)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.bounds[0] <= value <= self.bounds[1]


_PORT_NUMBER = Whole(INT32)


class NumberOrText(_Leaf):
    """An int32 or a string (``IntOrString``: a port number or a port name)."""

    expected = f"a port number or name (a whole number from {INT32[0]} to {INT32[1]}, or a string)"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) or _PORT_NUMBER.accepts(value)


class Quantity(_Leaf):
    expected = QUANTITY_FORM

    def accepts(self, value: Any) -> bool:
        try:
            parse_quantity(value)
        except ValueError:
            return False
        return True

    def wrong(self, value: Any) -> ValidationError:
        shown = f"{value[:40]!r}" if isinstance(value, str) else describe(value)
        return ValidationError(f"expected {self.expected}, got {shown}")


class Map(_Leaf):
    """An object whose values are all accepted by ``values`` (labels, annotations, resources)."""

    def __init__(self, values: _Leaf, *, nullable: bool = True) -> None:
        self.values = values
        self.expected = f"an object of {'strings' if isinstance(values, Text) else 'quantities'}"
        super().__init__(nullable=nullable)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, Mapping)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, Mapping):
            raise self.wrong(value)
        errors = {MapKey(k): [str(self.values.wrong(v).messages[0])]
                  for k, v in value.items() if not self.values.accepts(v)}
        if errors:
            raise ValidationError(errors)
        return value


class Items(fields.List):  # type: ignore[type-arg]
    """A list whose items are all accepted by ``inner`` (never null)."""

    def __init__(self, inner: fields.Field, *, nullable: bool = True) -> None:  # type: ignore[type-arg]
        inner.allow_none = False
        self.expected = "a list"
        super().__init__(inner, allow_none=nullable, error_messages=_null("a list"))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, list):
            raise ValidationError(f"expected a list, got {describe(value)}")
        return super()._deserialize(value, attr, data, **kwargs)


class Object(fields.Nested):
    """An object with the fields of ``schema`` checked (the others ignored)."""

    def __init__(self, schema: type[Schema], *, nullable: bool = True) -> None:
        super().__init__(schema, allow_none=nullable, error_messages=_null("an object"))

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     partial: bool | Sequence[str] | AbstractSet[str] | None = None, **kwargs: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValidationError(f"expected an object, got {describe(value)}")
        return super()._deserialize(value, attr, data, partial, **kwargs)


# --- the shape --------------------------------------------------------------------------------

class _Shape(Schema):
    class Meta:
        unknown = EXCLUDE


class _KeyRef(_Shape):
    name = Text()
    key = Text()
    optional = Flag()


class _FieldRef(_Shape):
    fieldPath = Text()
    apiVersion = Text()


class _ResourceRef(_Shape):
    resource = Text()
    containerName = Text()
    divisor = Quantity()


class _EnvSource(_Shape):
    configMapKeyRef = Object(_KeyRef)
    secretKeyRef = Object(_KeyRef)
    fieldRef = Object(_FieldRef)
    resourceFieldRef = Object(_ResourceRef)


class _EnvVar(_Shape):
    name = Text()
    value = Text()
    valueFrom = Object(_EnvSource)


class _NameRef(_Shape):
    name = Text()
    optional = Flag()


class _EnvFrom(_Shape):
    prefix = Text()
    configMapRef = Object(_NameRef)
    secretRef = Object(_NameRef)


class _Resources(_Shape):
    limits = Map(Quantity())
    requests = Map(Quantity())


class _ContainerPort(_Shape):
    containerPort = Whole()
    hostPort = Whole()
    name = Text()
    protocol = Text()
    hostIP = Text()


class _Header(_Shape):
    name = Text()
    value = Text()


class _HttpGet(_Shape):
    port = NumberOrText()
    path = Text()
    scheme = Text()
    host = Text()
    httpHeaders = Items(Object(_Header))


class _TcpSocket(_Shape):
    port = NumberOrText()
    host = Text()


class _Exec(_Shape):
    command = Items(Text())


class _Grpc(_Shape):
    port = Whole()
    service = Text()


class _Sleep(_Shape):
    seconds = Whole(INT64)


class _Handler(_Shape):
    exec = Object(_Exec)
    httpGet = Object(_HttpGet)
    tcpSocket = Object(_TcpSocket)
    sleep = Object(_Sleep)


class _Probe(_Handler):
    grpc = Object(_Grpc)
    initialDelaySeconds = Whole()
    periodSeconds = Whole()
    timeoutSeconds = Whole()
    failureThreshold = Whole()
    successThreshold = Whole()
    terminationGracePeriodSeconds = Whole(INT64)


class _Lifecycle(_Shape):
    postStart = Object(_Handler)
    preStop = Object(_Handler)
    stopSignal = Text()


class _VolumeMount(_Shape):
    name = Text()
    mountPath = Text()
    subPath = Text()
    readOnly = Flag()


class _Container(_Shape):
    name = Text()
    image = Text()
    command = Items(Text())
    args = Items(Text())
    workingDir = Text()
    ports = Items(Object(_ContainerPort))
    env = Items(Object(_EnvVar))
    envFrom = Items(Object(_EnvFrom))
    resources = Object(_Resources)
    readinessProbe = Object(_Probe)
    livenessProbe = Object(_Probe)
    startupProbe = Object(_Probe)
    lifecycle = Object(_Lifecycle)
    volumeMounts = Items(Object(_VolumeMount))


class _KeyToPath(_Shape):
    key = Text()
    path = Text()
    mode = Whole()


class _ConfigMapVolume(_Shape):
    name = Text()
    items = Items(Object(_KeyToPath))
    defaultMode = Whole()
    optional = Flag()


class _SecretVolume(_ConfigMapVolume):
    secretName = Text()


class _DownwardItem(_Shape):
    path = Text()
    fieldRef = Object(_FieldRef)
    resourceFieldRef = Object(_ResourceRef)
    mode = Whole()


class _DownwardVolume(_Shape):
    items = Items(Object(_DownwardItem))
    defaultMode = Whole()


class _EmptyDir(_Shape):
    medium = Text()
    sizeLimit = Quantity()


class _TokenProjection(_Shape):
    path = Text()
    audience = Text()
    expirationSeconds = Whole(INT64)


class _Projection(_Shape):
    configMap = Object(_ConfigMapVolume)
    secret = Object(_SecretVolume)
    downwardAPI = Object(_DownwardVolume)
    serviceAccountToken = Object(_TokenProjection)


class _Projected(_Shape):
    sources = Items(Object(_Projection))
    defaultMode = Whole()


class _Volume(_Shape):
    name = Text()
    configMap = Object(_ConfigMapVolume)
    secret = Object(_SecretVolume)
    emptyDir = Object(_EmptyDir)
    downwardAPI = Object(_DownwardVolume)
    projected = Object(_Projected)


class _Requirement(_Shape):
    key = Text()
    operator = Text()
    values = Items(Text())


class _Term(_Shape):
    matchExpressions = Items(Object(_Requirement))
    matchFields = Items(Object(_Requirement))


class _NodeSelector(_Shape):
    nodeSelectorTerms = Items(Object(_Term))


class _Preferred(_Shape):
    weight = Whole()
    preference = Object(_Term)


class _NodeAffinity(_Shape):
    requiredDuringSchedulingIgnoredDuringExecution = Object(_NodeSelector)
    preferredDuringSchedulingIgnoredDuringExecution = Items(Object(_Preferred))


class _Affinity(_Shape):
    nodeAffinity = Object(_NodeAffinity)


class _Toleration(_Shape):
    key = Text()
    operator = Text()
    value = Text()
    effect = Text()
    tolerationSeconds = Whole(INT64)


class _Gate(_Shape):
    conditionType = Text()


class _Spec(_Shape):
    containers = Items(Object(_Container))
    initContainers = Items(Object(_Container))
    volumes = Items(Object(_Volume))
    nodeSelector = Map(Text())
    affinity = Object(_Affinity)
    tolerations = Items(Object(_Toleration))
    imagePullSecrets = Items(Object(_NameRef))
    readinessGates = Items(Object(_Gate))
    restartPolicy = Text()
    terminationGracePeriodSeconds = Whole(INT64)
    schedulerName = Text()
    nodeName = Text()
    serviceAccountName = Text()


class _Metadata(_Shape):
    name = Text()
    generateName = Text()
    namespace = Text()
    uid = Text()
    resourceVersion = Text()
    labels = Map(Text())
    annotations = Map(Text())
    finalizers = Items(Text())
    deletionTimestamp = Text()
    deletionGracePeriodSeconds = Whole(INT64)


class _Status(_Shape):
    phase = Text()
    hostIP = Text()
    startTime = Text()


class _Pod(_Shape):
    metadata = Object(_Metadata)
    spec = Object(_Spec)
    status = Object(_Status)


_POD = _Pod()
STORED_FIELDS = ("name", "namespace", "uid")


# What a scheduling decision reads (the extender's filter and prioritize): the metadata, the
# containers' resources and ports, the node selector and the node affinity. The extender judges
# every pod it has not seen on kube-scheduler's clock and reads nothing else; the pod came in
# through the webhook, which checks it whole.
class _SchedulingContainer(_Shape):
    name = Text()
    ports = Items(Object(_ContainerPort))
    resources = Object(_Resources)


class _SchedulingSpec(_Shape):
    containers = Items(Object(_SchedulingContainer))
    nodeSelector = Map(Text())
    affinity = Object(_Affinity)
    schedulerName = Text()


class _SchedulingPod(_Shape):
    metadata = Object(_Metadata)
    spec = Object(_SchedulingSpec)


_SCHEDULING = _SchedulingPod()


# --- the same shape, compiled to plain checks -------------------------------------------------
# marshmallow builds an error report for every field of every pod, and the extender and the
# webhook check a pod per request: about 0.2 ms of a ~1 ms answer. Nearly every pod passes, so
# the schema above is also compiled once into nested plain-Python checks that only say whether a
# pod passes; marshmallow runs only for a pod that does not, to name what is wrong. The property
# tests hold the two to the same verdict on every shape they generate.

Accepts = Callable[[Any], bool]
_ABSENT = object()


class _Source:
    """The text of one generated check: straight-line code, nested as the shape is, so that a
    pod is walked by one function rather than a call per field (the interpreter's calls are what
    a check spends its time on, and the extender makes one per pod it judges)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"Mapping": Mapping, "_ABSENT": _ABSENT}
        self._count = 0

    def var(self) -> str:
        self._count += 1
        return f"v{self._count}"

    def const(self, value: Any) -> str:
        name = f"c{len(self.names)}"
        self.names[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


def _leaf_test(leaf: _Leaf, x: str, src: _Source) -> str:
    """An expression true when ``x`` (not null) is what ``leaf`` accepts."""
    if isinstance(leaf, Text):
        return f"isinstance({x}, str)"
    if isinstance(leaf, Flag):
        return f"isinstance({x}, bool)"
    if isinstance(leaf, Whole):
        low, high = leaf.bounds
        return f"(isinstance({x}, int) and not isinstance({x}, bool) and {low} <= {x} <= {high})"
    if isinstance(leaf, NumberOrText):
        low, high = INT32
        return f"(isinstance({x}, str) or (isinstance({x}, int) and not isinstance({x}, bool) and {low} <= {x} <= {high}))"
    return f"{src.const(leaf.accepts)}({x})"  # a quantity: parsed


def _emit_field(field: fields.Field, x: str, indent: int, src: _Source, *,  # type: ignore[type-arg]
                nullable_seen: bool = False) -> None:
    """Lines that return False unless ``x`` (present; not null when ``nullable_seen``) is what
    ``field`` accepts."""
    if field.allow_none and not nullable_seen:
        src.emit(indent, f"if {x} is not None:")
        indent += 1
    if isinstance(field, Object):
        _emit_object(field.schema, x, indent, src)
    elif isinstance(field, Items):
        src.emit(indent, f"if not isinstance({x}, list): return False")
        if type(field.inner) is Text:  # join refuses anything but strings, in one call
            _emit_all_text(x, indent, src)
        else:
            item = src.var()
            src.emit(indent, f"for {item} in {x}:")
            _emit_field(field.inner, item, indent + 1, src)  # items are never null (allow_none False)
    elif isinstance(field, Map):
        src.emit(indent, f"if type({x}) is not dict and not isinstance({x}, Mapping): return False")
        if type(field.values) is Text:
            _emit_all_text(f"{x}.values()", indent, src)
        else:
            item = src.var()
            src.emit(indent, f"for {item} in {x}.values():")
            src.emit(indent + 1, f"if not {_leaf_test(field.values, item, src)}: return False")
    elif isinstance(field, _Leaf):
        src.emit(indent, f"if not {_leaf_test(field, x, src)}: return False")
    else:  # pragma: no cover - every field of the shape is one of the above
        raise TypeError(f"no compiled check for {type(field).__name__}")
    if field.allow_none and not nullable_seen:
        src.emit(indent, "pass")


def _emit_all_text(values: str, indent: int, src: _Source) -> None:
    """Lines that return False unless every item of ``values`` is a string."""
    src.emit(indent, "try:")
    src.emit(indent + 1, f"''.join({values})")
    src.emit(indent, "except TypeError:")
    src.emit(indent + 1, "return False")


def _emit_object(schema: Schema, x: str, indent: int, src: _Source) -> None:
    src.emit(indent, f"if type({x}) is not dict and not isinstance({x}, Mapping): return False")  # the ABC check is slow
    get = src.var()
    src.emit(indent, f"{get} = {x}.get")
    for name, field in schema.fields.items():
        value = src.var()
        if field.allow_none:  # absent and null alike: nothing to check
            src.emit(indent, f"{value} = {get}({name!r})")
            src.emit(indent, f"if {value} is not None:")
            _emit_field(field, value, indent + 1, src, nullable_seen=True)
        else:
            src.emit(indent, f"{value} = {get}({name!r}, _ABSENT)")
            src.emit(indent, f"if {value} is not _ABSENT:")
            _emit_field(field, value, indent + 1, src)
        src.emit(indent + 1, "pass")


def _compile_object(schema: Schema) -> Accepts:
    """The shape as one plain function that says whether a value passes (no report)."""
    src = _Source()
    src.emit(0, "def accepts(v0):")
    _emit_object(schema, "v0", 1, src)
    src.emit(1, "return True")
    exec("\n".join(src.lines), src.names)  # noqa: S102 - our own text, built from the shape above
    accepts: Accepts = src.names["accepts"]
    return accepts


_POD_PASSES: Accepts = _compile_object(_POD)
_SCHEDULING_PASSES: Accepts = _compile_object(_SCHEDULING)


def pod_passes(pod: Any, *, scheduling: bool = False) -> bool:
    """Whether every field of ``pod`` kube-vast reads (``scheduling``: a scheduling decision
    reads) has its shape: the verdict of :func:`pod_problems` (``stored`` aside) without
    building a report."""
    return (_SCHEDULING_PASSES if scheduling else _POD_PASSES)(pod)


# --- checking ---------------------------------------------------------------------------------

def _flatten(messages: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            yield from _flatten(value, (*path, key))
    elif isinstance(messages, list):
        for message in messages:
            yield from _flatten(message, path)
    else:
        yield path, str(messages)


def json_path(steps: tuple[Any, ...], prefix: str = "") -> str:
    """``("spec", "containers", 0, MapKey("cpu"))`` → ``spec.containers[0][cpu]``, after ``prefix``."""
    out = prefix
    for step in steps:
        if isinstance(step, (int, MapKey)):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else str(step)
    return out


def pod_problems(pod: Any, *, where: str = "", stored: bool = False,
                 scheduling: bool = False) -> list[tuple[str, str]]:
    """``(path, message)`` for each field of ``pod`` kube-vast reads that has the wrong shape (empty
    when none does). ``where`` prefixes every path (``Pod``, ``spec.template``). ``stored``: the pod
    was read from the API server, so its metadata names it (name, namespace and uid are set).
    ``scheduling``: only the fields a scheduling decision reads (the extender's)."""
    if not isinstance(pod, Mapping):
        return [(where or "pod", f"expected an object, got {describe(pod)}")]
    schema = _SCHEDULING if scheduling else _POD
    problems = ([] if pod_passes(pod, scheduling=scheduling)
                else [(json_path(steps, where), message) for steps, message in _flatten(schema.validate(pod))])
    if stored and not problems:
        meta = pod.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        problems = [(json_path(("metadata", key), where), f"expected a non-empty string, got {describe(meta.get(key))}")
                    for key in STORED_FIELDS if not (isinstance(meta.get(key), str) and meta.get(key))]
    return problems


def check_pod(pod: Any, *, where: str = "", stored: bool = False, scheduling: bool = False) -> Mapping[str, Any]:
    """``pod`` itself when every field kube-vast reads has its shape; else :class:`InvalidPod`
    naming them (see :func:`pod_problems`)."""
    problems = pod_problems(pod, where=where, stored=stored, scheduling=scheduling)
    if problems:
        raise InvalidPod(problems)
    assert isinstance(pod, Mapping)
    return pod
