"""JSON request bodies, decoded the same way by the extender and the webhook: strict JSON (no
``NaN``/``Infinity``, no number beyond a float's range: Go's decoder refuses them too) nested at most :data:`MAX_DEPTH` levels, or
:class:`BadBody` with a message for the 400. The depth limit keeps every later step (copies, diffs,
the reply's encoding) far from Python's recursion limit; Kubernetes objects are nested a few dozen
levels at most (a CronJob's managedFields included).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 100
_KEPT = b'[]{}"'
_DROPPED = bytes(b for b in range(256) if b not in _KEPT)
_ONE_KIND = bytes.maketrans(b"{}", b"[]")  # a valid document's brackets pair up whatever their kind
_STRING = re.compile(b'"[^"]*"')


class BadBody(ValueError):
    """The body is not JSON kube-vast reads; the message says why."""


def _refuse_constant(name: str) -> Any:
    raise BadBody(f"the body is not JSON: {name} is not a JSON number")


def depth(raw: bytes) -> int:
    """How deeply the arrays and objects of a valid UTF-8 JSON document nest (0 for a scalar),
    counted up to ``MAX_DEPTH + 1``. All at C speed on ever shorter strings: escaped backslashes,
    then escaped quotes go; everything but quotes and brackets goes; empty strings, then the rest of
    the strings go (so do brackets inside them); braces become brackets, and each pass removes the
    innermost pairs."""
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw  # most bodies have no escape
    kept = unescaped.translate(_ONE_KIND, _DROPPED)
    brackets = _STRING.sub(b"", kept.replace(b'""', b""))
    levels = 0
    while brackets and levels <= MAX_DEPTH:
        brackets = brackets.replace(b"[]", b"")
        levels += 1
    return levels


def _few_openers(raw: bytes) -> bool:
    """Whether ``raw`` holds at most :data:`MAX_DEPTH` opening brackets, in strings or not: then
    it cannot nest deeper, and :func:`depth` need not run. Most request bodies have a few dozen
    (a Pod without managedFields, thousands of node names), and each is found by ``memchr``."""
    seen = 0
    for opener in (b"[", b"{"):
        at = raw.find(opener)
        while at >= 0:
            seen += 1
            if seen > MAX_DEPTH:
                return False
            at = raw.find(opener, at + 1)
    return True


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BadBody(f"the body is not JSON kube-vast reads: the number {text[:40]} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite)


def decode_json(raw: bytes) -> Any:
    """The JSON value of ``raw`` (UTF-8; ``None`` for an empty body), or :class:`BadBody`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"the body is not JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = _DECODER.decode(text or "null")
    except RecursionError:
        raise BadBody(f"the body is nested more than {MAX_DEPTH} levels deep") from None
    except BadBody:
        raise
    except ValueError as exc:
        raise BadBody(f"the body is not JSON: {exc}") from None
    if not _few_openers(raw) and depth(raw) > MAX_DEPTH:
        raise BadBody(f"the body is nested more than {MAX_DEPTH} levels deep")
    return value
