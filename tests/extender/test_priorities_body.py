"""The prioritize reply built from quoted names is byte for byte what json.dumps gives for the
HostPriorityList, whatever the names and scores."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from extender.protocol import encode_priorities, priorities_body

names_strategy = st.lists(st.text(min_size=1, max_size=12), max_size=30, unique=True)


@settings(max_examples=300, deadline=None)
@given(names=names_strategy, data=st.data(), virtual_score=st.integers(0, 10), real_score=st.integers(0, 10))
def test_the_prioritize_reply_is_the_json_of_the_host_priority_list(names: list[str], data: st.DataObject,
                                                                     virtual_score: int, real_score: int) -> None:
    virtual = frozenset(data.draw(st.lists(st.sampled_from(names), unique=True)) if names else [])
    expected = encode_priorities([(n, virtual_score if n in virtual else real_score) for n in names])
    body = priorities_body(names, virtual, virtual_score, real_score)
    assert body == json.dumps(expected, separators=(",", ":")).encode()
    assert json.loads(body) == expected
