"""The node names of a request: refused unless each is a non-empty string, and a virtual node is
found among them exactly, never as a part of a name or of two names side by side."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extender.protocol import BadRequest, decode_args

VIRTUAL = "vast-gpu-node-1"
# names that hold the virtual node's name, or a piece of it, without being it
LOOKALIKES = ["vast-gpu-node-10", "xvast-gpu-node-1", "vast-gpu", "-node-1", "vast-gpu-node-", "1", "node-1"]
names = st.lists(st.sampled_from([VIRTUAL, *LOOKALIKES]) | st.text(min_size=1, max_size=6), max_size=12)


@settings(max_examples=500, deadline=None)
@given(names=names, probe=st.sampled_from([VIRTUAL, *LOOKALIKES]))
def test_a_name_is_found_exactly_when_it_is_one_of_the_names(names, probe):
    args = decode_args({"Pod": {}, "NodeNames": names}, validate=False)
    assert args.has_name(probe) is (probe in names)
    assert args.positions(probe) == tuple(i for i, name in enumerate(names) if name == probe)


def test_two_names_side_by_side_that_spell_the_virtual_node_are_not_it():
    args = decode_args({"Pod": {}, "NodeNames": ["a", "vast-gpu", "-node-1", "b"]}, validate=False)
    assert not args.has_name(VIRTUAL)
    assert args.has_name("vast-gpu") and not args.has_name("c")


@pytest.mark.parametrize("bad", [["a", ""], ["a", 3], ["a", None], ["a", ["b"]], "a,b", 7])
def test_node_names_that_are_not_non_empty_strings_are_refused(bad):
    with pytest.raises(BadRequest, match="NodeNames must be a list of node names"):
        decode_args({"Pod": {}, "NodeNames": bad}, validate=False)
