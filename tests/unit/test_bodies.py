"""JSON request bodies as the extender and the webhook decode them (serving.bodies)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.bodies import MAX_DEPTH, BadBody, decode_json, depth


@pytest.mark.parametrize("raw, value", [(b"", None), (b"null", None), (b'{"a": [1, 2.5, "x"]}', {"a": [1, 2.5, "x"]}),
                                        (b'"\\ud800"', "\ud800"), (b"1e308", 1e308)])
def test_json_decodes_as_usual(raw, value):
    assert decode_json(raw) == value


@pytest.mark.parametrize("raw, message", [
    (b"NaN", "NaN is not a JSON number"), (b'{"a": Infinity}', "Infinity is not a JSON number"),
    (b"[-Infinity]", "-Infinity is not a JSON number"), (b'{"q": 1e400}', "the number 1e400 is out of range"),
    (b'{"a": "\xff"}', "not UTF-8"), (b"\xef\xbb\xbf{}", "not JSON"), (b'{"a": ', "not JSON"),
    (b"[" * 101 + b"]" * 101, f"nested more than {MAX_DEPTH} levels"),
    (b"[" * 100_000 + b"]" * 100_000, f"nested more than {MAX_DEPTH} levels"),
])
def test_what_go_would_not_decode_and_deep_nesting_are_refused_with_a_message(raw, message):
    with pytest.raises(BadBody, match=message):
        decode_json(raw)


def test_a_hundred_levels_are_read():
    assert depth(b"[" * 100 + b"]" * 100) == 100
    assert decode_json(b'{"a":' * 99 + b"[]" + b"}" * 99) is not None


@pytest.mark.parametrize("raw, levels", [
    (b'"[[[["', 0), (b'["]]", "[["]', 1), (b'{"k": "\\\\", "[": ["\\"]"]}', 2), (b'[{"a\\"[": {}}]', 3),
    (b'[[], [[]], {"x": [[["\\\\\\""]]]}]', 5),
])
def test_brackets_in_strings_and_escapes_do_not_count(raw, levels):
    json.loads(raw)
    assert depth(raw) == levels


def true_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max([true_depth(v) for v in value.values()] or [0])
    if isinstance(value, list):
        return 1 + max([true_depth(v) for v in value] or [0])
    return 0


tricky = st.text(alphabet='[]{}"\\ ax\u00e9\u2603', max_size=6)
documents = st.recursive(st.none() | st.integers() | tricky,
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky, inner, max_size=3),
                         max_leaves=30)


@settings(max_examples=500, deadline=None)
@given(document=documents, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_depth_is_the_nesting_of_any_document(document, ascii_only, indent):
    raw = json.dumps(document, ensure_ascii=ascii_only, indent=indent).encode()
    assert depth(raw) == true_depth(document)


@settings(max_examples=200, deadline=None)
@given(levels=st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2), inner=documents, ascii_only=st.booleans())
def test_a_body_is_refused_exactly_when_it_nests_too_deep_however_few_or_many_its_brackets(levels, inner,
                                                                                        ascii_only):
    """A body with at most MAX_DEPTH opening brackets (strings included) is let through without
    the full depth count; one with more is counted. Either way the answer is the true depth's."""
    document: Any = inner
    for k in range(levels):
        document = [document] if k % 2 else {"k": document}
    raw = json.dumps(document, ensure_ascii=ascii_only).encode()
    if true_depth(document) > MAX_DEPTH:
        with pytest.raises(BadBody, match="nested more than"):
            decode_json(raw)
    else:
        assert decode_json(raw) == document
