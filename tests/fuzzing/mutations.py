"""Structural mutations of JSON documents: what a buggy client or an attacker sends.

A :class:`Mutant` is a real body (a captured AdmissionReview, ExtenderArgs, a Vast answer) with a
few nodes changed anywhere inside it: a value replaced by any JSON type (null, booleans, numbers
from 0 to int64's bounds and beyond, floats, empty and huge strings, unicode and lone surrogates,
quantity-like text, lists, objects), a key or item deleted, a node wrapped in a list or an object
or nested dozens of levels deep, a subtree copied over another (a container where a port goes),
a key renamed, an item duplicated, an object written with a key twice, or the text cut short.

The choices come from a :class:`Choices`: :class:`Draws` draws them from hypothesis (the tests in
``make test``: shrinking gives the smallest failing mutation), :class:`Rolls` from a seeded
``random.Random`` (``make fuzz``: hundreds of thousands of bodies, fast, reproducible by seed).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hypothesis import strategies as st


class Choices(Protocol):
    def below(self, n: int) -> int:
        """A number in ``range(n)`` (n ≥ 1)."""


class Draws:
    """Choices drawn from hypothesis (``st.data()``), so failures shrink."""

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        self._draw = draw

    def below(self, n: int) -> int:
        return int(self._draw(st.integers(0, n - 1))) if n > 1 else 0


class Rolls:
    """Choices rolled by a seeded ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def below(self, n: int) -> int:
        return self._rng.randrange(n) if n > 1 else 0


def pick(choices: Choices, items: Sequence[Any]) -> Any:
    return items[choices.below(len(items))]


class Twice(dict):  # type: ignore[type-arg]
    """An object written with one of its keys a second time (``extra``), as JSON allows and Go and
    Python read as the last value."""

    def __init__(self, base: dict[str, Any], extra: tuple[str, Any]) -> None:
        super().__init__(base)
        self.extra = extra


STRINGS = ["", " ", "x", "RTX3060", "true", "null", "0", "-1", "1.5", "1e99999999999", "9e999999", "1e-310", "4.9e-324", "NaN",
           "Infinity", "500m", "16Gi", "1Ei", "9" * 60, "\u2603 \U0001F680", "\ud800", "\x00\x1f", "a/b~0~1",
           "%s%n", "../../etc/passwd", "vast.ai/gpu-type", "nvidia.com/gpu", "x" * 5000, "é" * 70000]
NUMBERS = [0, 1, -1, 2, 7, 65535, 65536, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1,
           10**30, 10**400, 0.5, -0.0, 1.5e-300, 1.7e308, -1.7e308, 3.0]


def scalar(choices: Choices) -> Any:
    kind = choices.below(5)
    if kind == 0:
        return pick(choices, [None, True, False])
    if kind in (1, 2):
        return pick(choices, NUMBERS)
    return pick(choices, STRINGS)


def any_value(choices: Choices, document: Any) -> Any:
    """Any JSON value: a scalar, an empty or one-item list or object, or a subtree of ``document``."""
    kind = choices.below(8)
    if kind < 4:
        return scalar(choices)
    if kind == 4:
        return pick(choices, [[], {}, [None], {"": None}])
    if kind == 5:
        return [scalar(choices)]
    if kind == 6:
        return {pick(choices, ["name", "key", "value", "items", "x"]): scalar(choices)}
    return copy.deepcopy(node_at(document, pick(choices, [p for p in paths(document) if len(p) > 1] or [()])))


def paths(document: Any, *, skip: frozenset[str] = frozenset({"managedFields"})) -> list[tuple[Any, ...]]:
    """Every node's path (the root is ``()``), in a fixed order, except below the keys in ``skip``
    (bulk that nothing reads, which would soak up most mutations)."""
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    while stack:
        path, node = stack.pop()
        out.append(path)
        if isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in node.items() if k not in skip)
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in enumerate(node))
    return out


DEEPEST = 180  # beyond the services' limit (100 levels), well within Python's recursion limit


def depth(node: Any) -> int:
    """How deeply lists and objects nest in ``node`` (0 for a scalar)."""
    deepest = 0
    stack = [(node, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level + 1)
            stack.extend((v, level + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def node_at(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def _set(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node_at(document, path[:-1])[path[-1]] = value
    return document


OPERATIONS = ("replace", "replace", "replace", "delete", "wrap", "nest", "splice", "rename", "duplicate", "twice")


def mutate_once(document: Any, choices: Choices) -> Any:
    """``document`` (changed in place where possible) with one node mutated."""
    path = pick(choices, paths(document))
    operation = pick(choices, OPERATIONS)
    node = node_at(document, path)
    room = DEEPEST - len(path)
    if operation == "replace":
        value = any_value(choices, document)
        return _set(document, path, value if depth(value) < room else scalar(choices))
    if operation == "delete" and path:
        parent = node_at(document, path[:-1])
        del parent[path[-1]]
        return document
    if operation == "wrap" and depth(node) + 1 < room:
        return _set(document, path, pick(choices, [[node], {"x": node}, [node, node]]))
    if operation == "nest":
        for _ in range(min(pick(choices, [2, 10, 60, 99, 150]), room - depth(node) - 1)):
            node = [node]
        return _set(document, path, node)
    if operation == "splice":  # a subtree from elsewhere (not the whole document or a top-level field)
        other = node_at(document, pick(choices, [p for p in paths(document) if len(p) > 1] or [()]))
        return _set(document, path, copy.deepcopy(other) if depth(other) < room else scalar(choices))
    if operation == "rename" and path and isinstance(path[-1], str):
        parent = node_at(document, path[:-1])
        key = path[-1]
        new = pick(choices, [key.lower(), key.upper(), key + " ", "", key[:-1], "\ud800" + key])
        parent[new] = parent.pop(key)
        return document
    if operation == "duplicate" and isinstance(node, list) and node:
        node.append(copy.deepcopy(node[choices.below(len(node))]))
        return document
    if operation == "twice" and isinstance(node, dict) and node:
        key = pick(choices, sorted(node))
        return _set(document, path, Twice(node, (key, any_value(choices, document))))
    return _set(document, path, scalar(choices))


def write(document: Any, *, twice: bool = True) -> str:
    """JSON text of ``document``, with the keys of ``Twice`` objects written twice (``twice``: there
    may be one; else the whole text is written at C speed)."""
    if not twice:
        return json.dumps(document)
    if isinstance(document, dict):  # loops, not comprehensions: one frame per level
        pairs = [*document.items(), document.extra] if isinstance(document, Twice) else list(document.items())
        members = []
        for key, value in pairs:
            members.append(f"{json.dumps(key)}:{write(value)}")
        return "{" + ",".join(members) + "}"
    if isinstance(document, list):
        items = []
        for value in document:
            items.append(write(value))
        return "[" + ",".join(items) + "]"
    if isinstance(document, str):
        return json.dumps(document)
    if isinstance(document, float) and document != document:
        return "NaN"
    return json.dumps(document)


def _has_twice(node: Any) -> bool:
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, Twice):
            return True
        if isinstance(node, (dict, list)):
            stack.extend(node.values() if isinstance(node, dict) else node)
    return False


def as_read(document: Any) -> Any:
    """``document`` as a JSON reader sees it: of a key written twice, the last value."""
    if isinstance(document, dict):
        read = {key: as_read(value) for key, value in document.items()}
        if isinstance(document, Twice):
            read[document.extra[0]] = as_read(document.extra[1])
        return read
    if isinstance(document, list):
        return [as_read(value) for value in document]
    return document


@dataclass(frozen=True)
class Mutant:
    """A mutated body: ``raw`` is what is sent; ``document`` what it says, as a JSON reader sees it
    (``None`` when the text was damaged: ``damage`` says how)."""

    raw: bytes
    document: Any
    damage: str = ""


def mutant(original: Any, choices: Choices, *, most: int = 4) -> Mutant:
    """``original`` (not changed) with 1 to ``most`` mutations; now and then the text is cut short
    or gets a byte that is not UTF-8."""
    document = copy.deepcopy(original)
    for _ in range(1 + choices.below(most)):
        document = mutate_once(document, choices)
    twice = _has_twice(document)
    raw = write(document, twice=twice).encode()
    document = as_read(document) if twice else document
    damage = choices.below(40)
    if damage == 0:
        cut = choices.below(len(raw)) if raw else 0
        return Mutant(raw[:cut], None, f"cut at byte {cut}")
    if damage == 1:
        at = choices.below(len(raw)) if raw else 0
        return Mutant(raw[:at] + pick(choices, [b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80"]) + raw[at:], None,
                      f"bad byte at {at}")
    return Mutant(raw, document)


@st.composite
def mutants(draw: Callable[[Any], Any], original: Any, *, most: int = 4) -> Mutant:
    """A hypothesis strategy of :func:`mutant` of ``original``."""
    return mutant(original, Draws(draw), most=most)
