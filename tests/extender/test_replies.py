"""Every reply is the answer for its own node list and pod, whatever came before: lists alike
in length and in their first, middle and last names, pods whose virtual node passes or fails, any
order of requests. (The extender once kept encoded replies for lists that recur, probed by a few
of their names; it no longer does, and this keeps any such shortcut honest.)"""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.extender.conftest import Harness, captured

VIRTUAL = "vast-gpu-node-1"
# Lists of the same length whose first, middle and last names are the same: a probe of a few
# names cannot tell them apart, only the whole comparison can.
LISTS = [
    ["a", "b", VIRTUAL, "d", "z"],
    ["a", "c", VIRTUAL, "e", "z"],
    ["a", "b", VIRTUAL, "e", "z"],
    ["a", "x", "y", "w", "z"],
    ["a", VIRTUAL, "z"],
    [VIRTUAL],
]
FITS = {"vast.ai/gpu-type": "RTX3060", "vast.ai/price-max": "0.50"}
NO_OFFER = {"vast.ai/gpu-type": "RTX3060", "vast.ai/price-max": "0.05"}


def request(names: list[str], annotations: dict[str, str], uid: str) -> dict:
    body = copy.deepcopy(captured("filter-nodenames.json"))
    body["Pod"]["metadata"]["annotations"] = dict(annotations)
    body["Pod"]["metadata"]["uid"] = uid
    body["NodeNames"] = list(names)
    return body


def expected_filter(names: list[str], fits: bool) -> dict:
    passed = names if fits or VIRTUAL not in names else [n for n in names if n != VIRTUAL]
    unresolvable = {} if fits or VIRTUAL not in names else {VIRTUAL: "?"}
    return {"NodeNames": passed, "unresolvable": sorted(unresolvable)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(asks=st.lists(st.tuples(st.sampled_from(range(len(LISTS))), st.booleans(), st.sampled_from(["filter", "prioritize"])),
                     min_size=1, max_size=25))
def test_every_reply_is_the_answer_for_its_own_list_and_pod(asks):
    ext = Harness()
    for k, (which, fits, verb) in enumerate(asks):
        names = LISTS[which]
        reply = ext.post(verb, request(names, FITS if fits else NO_OFFER, uid=f"pod-{k}"))
        assert reply.status_code == 200
        data = reply.get_json()
        if verb == "filter":
            want = expected_filter(names, fits)
            assert data["NodeNames"] == want["NodeNames"]
            assert sorted(data["FailedAndUnresolvableNodes"]) == want["unresolvable"]
        else:
            assert [d["Host"] for d in data] == names
            scores = {d["Host"]: d["Score"] for d in data}
            if VIRTUAL in names:
                assert (scores[VIRTUAL] > 0) == fits  # no offer: 0; an offer: 1-5 (local-first)
            assert all(scores[n] == 10 for n in names if n != VIRTUAL)


def test_a_recurring_list_is_answered_from_the_kept_bytes_and_identically():
    ext = Harness()
    body = request(LISTS[0], FITS, uid="p1")
    first = ext.post("filter", body).data
    again = ext.post("filter", request(LISTS[0], FITS, uid="p2")).data
    assert again == first and json.loads(first)["NodeNames"] == LISTS[0]
