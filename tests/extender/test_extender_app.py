import copy
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extender.decisions import VirtualNodes
from extender.settings import ExtenderSettings
from vastmarket.snapshot import OfferSnapshot, SearchPause
from tests.unit.offer_factory import make_offer
from tests.extender.conftest import NOW, Harness, captured, market

RESULT_KEYS = {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}


def annotated(body, mapping):
    body = copy.deepcopy(body)
    body["Pod"]["metadata"]["annotations"] = dict(mapping)
    return body


def test_filter_in_the_node_names_form_answers_in_the_same_form(ext):
    reply = ext.post("filter", captured("filter-nodenames.json"))
    assert reply.status_code == 200
    data = reply.get_json()
    assert set(data) == RESULT_KEYS
    assert data["Nodes"] is None and data["Error"] == ""
    assert data["NodeNames"] == ["gpu-node-a", "vast-gpu-node-1", "cpu-node-b"]
    assert data["FailedNodes"] == {} and data["FailedAndUnresolvableNodes"] == {}


def test_filter_in_the_full_nodes_form_returns_the_passing_node_objects(ext):
    body = annotated(captured("filter-nodes.json"), {"vast.ai/gpu-type": "H100", "vast.ai/price-max": "0.5"})
    data = ext.post("filter", body).get_json()
    assert data["NodeNames"] is None
    assert [n["metadata"]["name"] for n in data["Nodes"]["items"]] == ["gpu-node-a", "cpu-node-b"]
    assert data["Nodes"]["items"][0] == body["Nodes"]["items"][0]
    assert set(data["FailedAndUnresolvableNodes"]) == {"vast-gpu-node-1", "vast-extra"}, "labels mark virtual nodes too"


def test_no_matching_offer_fails_the_virtual_node_with_the_rejection_counts(ext):
    body = annotated(captured("filter-nodenames.json"), {"vast.ai/gpu-type": "RTX3060", "vast.ai/price-max": "0.10"})
    data = ext.post("filter", body).get_json()
    assert data["NodeNames"] == ["gpu-node-a", "cpu-node-b"]
    assert data["FailedAndUnresolvableNodes"] == {
        "vast-gpu-node-1": "Vast: no offer matches: 5 seen; 5 over $0.10/h, 2 not RTX3060"}


def test_another_matching_offer_keeps_the_virtual_node_when_the_annotated_one_vanished(ext):
    body = annotated(captured("filter-nodenames.json"), {"vast.ai/gpu-type": "RTX3060", "vast.ai/offer-id": "999"})
    assert ext.post("filter", body).get_json()["NodeNames"][1] == "vast-gpu-node-1"


def test_a_stale_snapshot_fails_the_virtual_node_with_that_reason(ext):
    ext.now = NOW + 1000
    data = ext.post("filter", captured("filter-nodenames.json")).get_json()
    assert "stale" in data["FailedAndUnresolvableNodes"]["vast-gpu-node-1"]
    assert data["NodeNames"] == ["gpu-node-a", "cpu-node-b"]


def test_without_a_snapshot_the_virtual_node_fails_and_real_nodes_pass():
    ext = Harness()
    ext.snapshot = None
    data = ext.post("filter", captured("filter-nodenames.json")).get_json()
    assert data["NodeNames"] == ["gpu-node-a", "cpu-node-b"]
    assert "no Vast offer snapshot yet" in data["FailedAndUnresolvableNodes"]["vast-gpu-node-1"]


@pytest.mark.parametrize("cap", ["free", "1e-310", "0.00001"])
def test_an_invalid_annotation_fails_the_virtual_node_with_the_validation_message(cap):
    """A cap of 1e-310 once passed: 1 / cap overflowed, a free offer's score was NaN and
    prioritize answered 500 rounding it."""
    ext = Harness(snapshot=OfferSnapshot([make_offer(1, dph_total=0.0), make_offer(2, dph_total=0.1)],
                                         taken_at=NOW - 10))
    body = annotated(captured("filter-nodenames.json"), {"vast.ai/price-max": cap})
    reply = ext.post("filter", body)
    assert reply.status_code == 200
    reason = reply.get_json()["FailedAndUnresolvableNodes"]["vast-gpu-node-1"]
    assert f"vast.ai/price-max: invalid value '{cap}': expected a price" in reason
    reply = ext.post("prioritize", body)
    assert reply.status_code == 200
    assert {p["Host"]: p["Score"] for p in reply.get_json()}["vast-gpu-node-1"] == 0


def test_lowercase_keys_are_understood_like_go_does(ext):
    body = captured("filter-nodenames.json")
    lowered = {"pod": body["Pod"], "nodenames": body["NodeNames"], "nodes": None}
    assert ext.post("filter", lowered).get_json()["NodeNames"] == body["NodeNames"]


def test_a_trailing_slash_is_served_without_a_redirect(ext):
    reply = ext.http.post("/filter/", data=json.dumps(captured("filter-nodenames.json")))
    assert reply.status_code == 200


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"), (b"[]", "JSON object"), (b"{}", "Pod must be a Pod object"),
    (b'{"Pod": 5, "NodeNames": []}', "Pod must be a Pod object"),
    (b'{"Pod": {}, "NodeNames": "n1"}', "NodeNames must be a list"),
    (b'{"Pod": {}, "NodeNames": [1, 2]}', "NodeNames must be a list"),
    (b'{"Pod": {}, "NodeNames": ["n1", ""]}', "NodeNames must be a list"),
    (b'{"Pod": {}, "NodeNames": ["n1", null, "n2"]}', "NodeNames must be a list"),
    (b'{"Pod": {}, "NodeNames": ["n1", ["n2"]]}', "NodeNames must be a list"),
    (b'{"Pod": {}, "Nodes": {"items": 3}}', "NodeList with an 'items' list"),
    (b'{"Pod": {}, "Nodes": {"items": [{"metadata": {}}]}}', "items[0] has no metadata.name"),
    (b'{"Pod": {}}', "neither NodeNames nor Nodes"), (b"\xff\xfe", "not JSON"), (b"", "must be a JSON object"),
])
@pytest.mark.parametrize("verb", ["filter", "prioritize"])
def test_malformed_bodies_get_400_with_a_message(ext, verb, raw, message):
    reply = ext.post(verb, None, raw=raw)
    assert reply.status_code == 400
    assert message in reply.get_json()["error"]


def test_prioritize_local_first_ranks_real_nodes_above_the_virtual_node(ext):
    data = ext.post("prioritize", captured("filter-nodenames.json")).get_json()
    scores = {d["Host"]: d["Score"] for d in data}
    assert scores["gpu-node-a"] == 10 and scores["cpu-node-b"] == 10
    assert 1 <= scores["vast-gpu-node-1"] <= 5
    assert [set(d) for d in data] == [{"Host", "Score"}] * 3


def test_prioritize_cost_first_lets_a_good_cheap_offer_win():
    ext = Harness(ExtenderSettings(burst_policy="cost-first", real_node_score=5))
    scores = {d["Host"]: d["Score"] for d in ext.post("prioritize", captured("filter-nodenames.json")).get_json()}
    assert scores["gpu-node-a"] == 5 and scores["vast-gpu-node-1"] > 5


def test_prioritize_scores_a_virtual_node_without_an_offer_zero(ext):
    body = annotated(captured("filter-nodenames.json"), {"vast.ai/gpu-type": "H100", "vast.ai/price-max": "0.5"})
    scores = {d["Host"]: d["Score"] for d in ext.post("prioritize", body).get_json()}
    assert scores["vast-gpu-node-1"] == 0


def test_readyz_follows_the_snapshot_freshness():
    ext = Harness()
    assert ext.http.get("/readyz").status_code == 200
    ext.now = NOW + 1000
    reply = ext.http.get("/readyz")
    assert reply.status_code == 503 and "stale" in reply.get_json()["reason"]
    ext.snapshot = None
    assert ext.http.get("/readyz").status_code == 503
    assert ext.http.get("/healthz").status_code == 200


def test_metrics_count_requests_decisions_and_snapshot_age(ext):
    ext.post("filter", captured("filter-nodenames.json"))
    ext.post("filter", None, raw=b"bad")
    text = ext.http.get("/metrics").get_data(as_text=True)
    assert 'kube_vast_extender_requests_total{outcome="ok",verb="filter"} 1.0' in text
    assert 'kube_vast_extender_requests_total{outcome="bad_request",verb="filter"} 1.0' in text
    assert 'kube_vast_extender_virtual_node_decisions_total{result="pass"} 1.0' in text
    assert "kube_vast_offer_snapshot_age_seconds 10.0" in text


def test_the_same_pod_refiltered_logs_the_selection_table_once(ext, caplog):
    caplog.set_level(logging.DEBUG, logger="kube_vast.extender")
    body = captured("filter-nodenames.json")
    for _ in range(5):
        ext.post("filter", body)
    assert caplog.text.count("[VAST] Searching for instances matching") == 1
    # the pod's annotated offer 1 still matches, so it is the one chosen, not the top offer 2
    assert caplog.text.count("[VAST] Selected instance 1 (not the top offer 2: the offer the pod's "
                             "vast.ai/offer-id names, still matching)") == 1
    caplog.clear()
    ext.post("filter", annotated(body, {"vast.ai/price-max": "0.10"}))
    assert "[VAST] Searching for instances matching" in caplog.text, "a changed decision is logged again"


def test_at_info_a_new_decision_is_one_line_and_the_table_is_left_to_debug(ext, caplog):
    """On kube-scheduler's path, once per new pod: the decision and its reason, not the table
    (the controller logs that when it launches)."""
    caplog.set_level(logging.INFO, logger="kube_vast.extender")
    body = captured("filter-nodenames.json")
    for _ in range(3):
        ext.post("filter", body)
    decisions = [r.getMessage() for r in caplog.records if "node=vast-gpu-node-1 passes:" in r.getMessage()]
    assert len(decisions) == 1 and "offer 1 (score " in decisions[0] and "offers match" in decisions[0]
    assert "[VAST]" not in caplog.text
    ext.post("filter", annotated(body, {"vast.ai/price-max": "0.01"}))
    [failed] = [r.getMessage() for r in caplog.records if "node=vast-gpu-node-1 fails:" in r.getMessage()]
    assert "no offer matches" in failed and "over $0.01/h" in failed, "a failure says why in full"


def test_only_configured_names_count_when_the_request_has_no_labels():
    ext = Harness(ExtenderSettings(virtual=VirtualNodes(names=frozenset({"vast-a"}), labels={})))
    body = annotated(captured("filter-nodenames.json"), {"vast.ai/price-max": "0.01"})
    body["NodeNames"] = ["vast-gpu-node-1", "vast-a"]
    data = ext.post("filter", body).get_json()
    assert data["NodeNames"] == ["vast-gpu-node-1"] and list(data["FailedAndUnresolvableNodes"]) == ["vast-a"]


# --- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
names = st.lists(st.sampled_from(["vast-gpu-node-1", "a", "b", "c", "vast-extra", "gpu-1"]) | st.text(min_size=1, max_size=6),
                 max_size=8)
annotation_values = st.dictionaries(
    st.sampled_from(["vast.ai/gpu-type", "vast.ai/price-max", "vast.ai/min-reliability", "vast.ai/region",
                     "vast.ai/min-gpu-memory", "vast.ai/offer-id", "vast.ai/bogus", "other"]),
    st.sampled_from(["RTX3060", "0.5", "95%", "US", "12GB", "x", "", "-1", "H100"]) | st.text(max_size=5),
    max_size=4)
EXT = Harness()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_values | st.fixed_dictionaries({"Pod": json_values, "NodeNames": json_values, "Nodes": json_values}))
def test_no_body_yields_a_server_error(body):
    for verb in ("filter", "prioritize"):
        assert EXT.post(verb, body).status_code in (200, 400)


@settings(max_examples=300, deadline=None)
@given(node_names=names, annotations=annotation_values, full=st.booleans())
def test_every_node_either_passes_or_fails_with_a_reason(node_names, annotations, full):
    pod = {"metadata": {"name": "p", "annotations": annotations},
           "spec": {"containers": [{"image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
    if full:
        body = {"Pod": pod, "NodeNames": None,
                "Nodes": {"metadata": {}, "items": [{"metadata": {"name": n}} for n in node_names]}}
    else:
        body = {"Pod": pod, "NodeNames": node_names, "Nodes": None}
    data = EXT.post("filter", body).get_json()
    passed = data["NodeNames"] if not full else [n["metadata"]["name"] for n in data["Nodes"]["items"]]
    failed = {**data["FailedNodes"], **data["FailedAndUnresolvableNodes"]}
    assert set(passed) | set(failed) == set(node_names)
    assert not set(passed) & set(failed)
    assert all(isinstance(reason, str) and reason for reason in failed.values())
    assert set(passed) <= set(node_names), "only names from the request"


@settings(max_examples=300, deadline=None)
@given(node_names=names, annotations=annotation_values)
def test_priorities_cover_every_node_with_scores_from_0_to_10(node_names, annotations):
    body = {"Pod": {"metadata": {"annotations": annotations}}, "NodeNames": node_names, "Nodes": None}
    data = EXT.post("prioritize", body).get_json()
    assert [d["Host"] for d in data] == node_names
    assert all(isinstance(d["Score"], int) and 0 <= d["Score"] <= 10 for d in data)


def test_a_snapshot_paused_by_the_search_quota_is_served_and_readyz_says_why():
    ext = Harness()
    ext.snapshot = market().paused(SearchPause("search_quota_exceeded", "Vast's search quota is used up",
                                               since=NOW - 5, until=NOW + 7200))
    ext.now = NOW + 3600  # an hour old, far past the 120 s limit: still the best offers there are
    reply = ext.http.get("/readyz")
    assert reply.status_code == 200
    body = reply.get_json()
    assert body["status"] == "ready" and body["snapshot"] == "stale"
    assert "Vast's search quota is used up" in body["reason"] and "no search before" in body["reason"]
    assert "kube_vast_offer_search_paused 1.0" in ext.http.get("/metrics").get_data(as_text=True)
    assert ext.post("filter", captured("filter-nodenames.json")).get_json()["NodeNames"][1] == "vast-gpu-node-1"
    ext.now = NOW + 7200 + 121  # the pause ended two minutes ago and nothing new came: too old now
    reply = ext.http.get("/readyz")
    assert reply.status_code == 503 and "search quota" in reply.get_json()["reason"]
    assert "kube_vast_offer_search_paused 0.0" in ext.http.get("/metrics").get_data(as_text=True)
    assert "vast-gpu-node-1" in ext.post("filter", captured("filter-nodenames.json")).get_json()[
        "FailedAndUnresolvableNodes"]
