"""The scheduler-extender wire format (``k8s.io/kube-scheduler/extender/v1``).

The Go structs have no JSON tags, so the keys are the Go field names: ``Pod``, ``Nodes``,
``NodeNames``, ``FailedNodes``, ``FailedAndUnresolvableNodes``, ``Error``, ``Host``, ``Score``.
Go decodes keys case-insensitively, so lowercase requests are accepted here too. Pure functions;
a request that cannot be understood raises :class:`BadRequest` (HTTP 400), and so does a Pod with
a field the extender reads in the wrong shape (:func:`vastmarket.pods.check_pod` with
``scheduling``: the metadata, the containers' resources and ports, the node selector and
affinity; the message names its path, ``Pod.spec.containers[0].ports``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _quote  # what json.dumps quotes strings with
from dataclasses import dataclass
from typing import Any

from vastmarket.errors import InvalidPod
from vastmarket.pods import check_pod


class BadRequest(ValueError):
    """The body is not a valid ExtenderArgs; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ExtenderArgs:
    pod: Mapping[str, Any]
    names: Sequence[str]  # as decoded (not copied: thousands of names), never changed
    nodes: tuple[Mapping[str, Any], ...] | None  # set when the request used the full Nodes form

    def has_name(self, name: str) -> bool:
        """Whether ``name`` is one of the node names: one pass over the list (a search of the
        names joined first costs as much as it saves)."""
        return name in self.names

    def positions(self, name: str) -> tuple[int, ...]:
        """Where ``name`` is among the node names, in order (nowhere, or usually once): one pass
        over the names, as :meth:`has_name` makes."""
        found: list[int] = []
        names = self.names
        try:
            at = names.index(name)
            while True:
                found.append(at)
                at = names.index(name, at + 1)
        except ValueError:
            return tuple(found)


def _field(body: Mapping[str, Any], name: str) -> Any:
    if name in body:
        return body[name]
    lowered = name.lower()
    for key, value in body.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def decode_args(body: Any, *, validate: bool = True) -> ExtenderArgs:
    """The ExtenderArgs of ``body``. ``validate=False`` leaves the Pod's fields to
    :func:`validate_pod`, for when they are read: a request naming no virtual node only passes
    names through, and most of kube-scheduler's requests name none of them."""
    if not isinstance(body, Mapping):
        raise BadRequest("the body must be a JSON object (ExtenderArgs)")
    pod = _field(body, "Pod")
    if not isinstance(pod, Mapping):
        raise BadRequest("ExtenderArgs.Pod must be a Pod object")
    if validate:
        validate_pod(pod)
    names = _field(body, "NodeNames")
    nodes = _field(body, "Nodes")
    if names is not None:
        # in C, as this check must stay cheap at thousands of names: join refuses anything but
        # strings, all() an empty one
        if not (isinstance(names, list) and _all_names(names)):
            raise BadRequest("ExtenderArgs.NodeNames must be a list of node names")
        return ExtenderArgs(pod, names, None)
    if nodes is not None:
        items = nodes.get("items") if isinstance(nodes, Mapping) else None
        if not isinstance(items, list):
            raise BadRequest("ExtenderArgs.Nodes must be a NodeList with an 'items' list")
        found: list[str] = []
        for idx, node in enumerate(items):
            meta = node.get("metadata") if isinstance(node, Mapping) else None
            name = meta.get("name") if isinstance(meta, Mapping) else None
            if not isinstance(name, str) or not name:
                raise BadRequest(f"ExtenderArgs.Nodes.items[{idx}] has no metadata.name")
            found.append(name)
        return ExtenderArgs(pod, tuple(found), tuple(items))
    raise BadRequest("ExtenderArgs carries neither NodeNames nor Nodes")


def _all_names(items: list[Any]) -> bool:
    """Whether every item is a non-empty string."""
    try:
        "".join(items)
    except TypeError:
        return False
    return all(items)


def validate_pod(pod: Mapping[str, Any]) -> None:
    """:class:`BadRequest` naming the path of a field the extender reads (a scheduling decision's:
    :func:`vastmarket.pods.check_pod`) in the wrong shape."""
    try:
        check_pod(pod, where="Pod", scheduling=True)
    except InvalidPod as exc:
        raise BadRequest(f"invalid pod: {exc}") from None


def encode_filter_result(args: ExtenderArgs, passed: Sequence[str], failed: Mapping[str, str],
                         unresolvable: Mapping[str, str]) -> dict[str, Any]:
    """ExtenderFilterResult in the form the request used (names or full nodes)."""
    result: dict[str, Any] = {
        "Nodes": None,
        "NodeNames": None,
        "FailedNodes": dict(failed),
        "FailedAndUnresolvableNodes": dict(unresolvable),
        "Error": "",
    }
    if args.nodes is None:
        result["NodeNames"] = passed  # a list or a tuple: the same JSON array
    else:
        keep = set(passed)
        result["Nodes"] = {"metadata": {}, "items": [n for n, name in zip(args.nodes, args.names) if name in keep]}
    return result


def encode_priorities(scores: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    """HostPriorityList."""
    return [{"Host": host, "Score": score} for host, score in scores]


def priorities_body(names: Sequence[str], virtual_at: Sequence[int], virtual_score: int, real_score: int) -> bytes:
    """The HostPriorityList of :func:`encode_priorities` as compact JSON (the bytes ``json.dumps``
    gives), built from each name quoted once: at thousands of nodes this is most of prioritize.
    ``virtual_at``: the positions (ascending) of the names scored ``virtual_score``; every other
    name is scored ``real_score``."""
    if not names:
        return b"[]"
    real = f',"Score":{int(real_score)}}}'
    between = real + ',{"Host":'  # one entry's end and the next one's start
    if virtual_score == real_score or not virtual_at:
        return "".join(('[{"Host":', between.join(map(_quote, names)), real, "]")).encode()
    # runs of real nodes between the few virtual ones, each run joined in one go, and all the
    # pieces in one more (no copy of the whole reply per piece)
    other = f',"Score":{int(virtual_score)}}}'
    pieces: list[str] = []
    start = 0
    for at in virtual_at:
        if at > start:
            pieces += (',{"Host":', between.join(map(_quote, names[start:at])), real)
        pieces += (',{"Host":', _quote(names[at]), other)
        start = at + 1
    if start < len(names):
        pieces += (',{"Host":', between.join(map(_quote, names[start:])), real)
    pieces[0] = '[{"Host":'
    pieces.append("]")
    return "".join(pieces).encode()
