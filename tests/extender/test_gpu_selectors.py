"""The extender reads a pod's cloud GPU node selectors as the webhook does: the virtual node
passes only while an offer with the selected GPU matches, and otherwise fails with a reason that
names the selector. The pod is the one the webhook stored (selectors already rewritten)."""

from __future__ import annotations

import copy

from tests.extender.conftest import NOW, Harness, captured, market
from tests.unit.offer_factory import make_offer
from vastmarket.snapshot import OfferSnapshot
from webhooks.mutation import Mutation, mutate

GKE_L4 = {"cloud.google.com/gke-accelerator": "nvidia-l4"}


def stored_pod_filter(node_selector: dict[str, str]) -> dict:
    """A filter call for a pod with ``node_selector``, as the webhook stored it."""
    body = copy.deepcopy(captured("filter-nodenames.json"))
    pod = body["Pod"]
    pod["metadata"]["annotations"] = {}
    pod["spec"]["nodeSelector"] = dict(node_selector)
    body["Pod"] = mutate(pod, Mutation(route_selectors=True))
    assert "nodeSelector" not in body["Pod"]["spec"] and body["Pod"]["spec"]["affinity"]
    return body


def test_the_virtual_node_passes_a_gke_l4_pod_only_while_an_l4_offer_matches():
    with_l4 = OfferSnapshot([*market().offers, make_offer(9, gpu_name="L4", gpu_ram_mb=23034, dph_total=0.4)],
                            taken_at=NOW - 10)
    data = Harness(snapshot=with_l4).post("filter", stored_pod_filter(GKE_L4)).get_json()
    assert "vast-gpu-node-1" in data["NodeNames"] and data["FailedAndUnresolvableNodes"] == {}

    data = Harness().post("filter", stored_pod_filter(GKE_L4)).get_json()
    assert data["NodeNames"] == ["gpu-node-a", "cpu-node-b"]
    assert data["FailedAndUnresolvableNodes"] == {"vast-gpu-node-1": (
        "Vast: no offer matches: 5 seen; 5 not L4, 1 over $1.00/h (the GPU is required by the pod's node selector "
        "cloud.google.com/gke-accelerator=nvidia-l4)")}


def test_the_prioritize_score_comes_from_the_selected_gpus_best_offer():
    with_l4 = OfferSnapshot([*market().offers, make_offer(9, gpu_name="L4", gpu_ram_mb=23034, dph_total=0.4)],
                            taken_at=NOW - 10)
    scores = Harness(snapshot=with_l4).post("prioritize", stored_pod_filter(GKE_L4)).get_json()
    assert {s["Host"]: s["Score"] for s in scores}["vast-gpu-node-1"] > 0
    scores = Harness().post("prioritize", stored_pod_filter(GKE_L4)).get_json()
    assert {s["Host"]: s["Score"] for s in scores}["vast-gpu-node-1"] == 0
