"""The filter and prioritize replies built from quoted names are byte for byte what json.dumps
gives for the ExtenderFilterResult and the HostPriorityList, whatever the names, failures and
scores."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from extender.protocol import decode_args, encode_filter_result, encode_priorities, filter_body, priorities_body

names_strategy = st.lists(st.text(min_size=1, max_size=12), max_size=30, unique=True)
# names that are prefixes of each other, or carry the reply's own syntax in them
tricky_names = st.lists(st.sampled_from(["a", "ab", "a\",\"Score\":10}", "b\\", "{\"Host\":\"a\"", "é", "a,b"]),
                        max_size=12)


def assert_json_of_the_list(names: list[str], data: st.DataObject, virtual_score: int, real_score: int) -> None:
    """The reply for ``names``, some of them virtual (drawn), is byte for byte json.dumps of the list."""
    virtual = frozenset(data.draw(st.lists(st.sampled_from(names), unique=True)) if names else [])
    expected = encode_priorities([(n, virtual_score if n in virtual else real_score) for n in names])
    body = priorities_body(names, [i for i, n in enumerate(names) if n in virtual], virtual_score, real_score)
    assert body == json.dumps(expected, separators=(",", ":")).encode()
    assert json.loads(body) == expected


scores = st.integers(0, 10)


@settings(max_examples=300, deadline=None)
@given(names=names_strategy, data=st.data(), virtual_score=scores, real_score=scores)
def test_the_prioritize_reply_is_the_json_of_the_host_priority_list(names: list[str], data: st.DataObject,
                                                                     virtual_score: int, real_score: int) -> None:
    assert_json_of_the_list(names, data, virtual_score, real_score)


@settings(max_examples=300, deadline=None)
@given(names=tricky_names, data=st.data(), virtual_score=scores, real_score=scores)
def test_names_that_look_like_the_reply_or_repeat_get_their_own_scores(names: list[str], data: st.DataObject,
                                                                      virtual_score: int, real_score: int) -> None:
    assert_json_of_the_list(names, data, virtual_score, real_score)


reasons = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20), max_size=3)


@settings(max_examples=300, deadline=None)
@given(names=names_strategy | tricky_names, failed=reasons, unresolvable=reasons, data=st.data())
def test_the_filter_reply_is_the_json_of_the_filter_result(names: list[str], failed: dict[str, str],
                                                           unresolvable: dict[str, str], data: st.DataObject) -> None:
    args = decode_args({"Pod": {}, "NodeNames": names}, validate=False)
    passed = data.draw(st.sampled_from([names, tuple(names[1:]), []]))
    expected = json.dumps(encode_filter_result(args, passed, failed, unresolvable), separators=(",", ":")).encode()
    assert filter_body(args, passed, failed, unresolvable) == expected
    assert json.loads(expected)["NodeNames"] == list(passed)


def test_the_filter_reply_in_the_nodes_form_carries_the_nodes_that_passed() -> None:
    nodes = [{"metadata": {"name": n}} for n in ("a", "b", "c")]
    args = decode_args({"Pod": {}, "Nodes": {"items": nodes}}, validate=False)
    reply = json.loads(filter_body(args, ("a", "c"), {}, {"b": "Vast: no offer"}))
    assert reply["Nodes"]["items"] == [nodes[0], nodes[2]] and reply["NodeNames"] is None
    assert reply["FailedAndUnresolvableNodes"] == {"b": "Vast: no offer"}
