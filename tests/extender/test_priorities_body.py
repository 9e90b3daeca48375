"""The prioritize reply built from quoted names is byte for byte what json.dumps gives for the
HostPriorityList, whatever the names and scores."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from extender.protocol import encode_priorities, priorities_body

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
