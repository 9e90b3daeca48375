"""``kube-vast status``: instances of this cluster matched to their pods (no cluster)."""

from __future__ import annotations

import json
from dataclasses import replace

from kube_vast.status import as_json, fleet_status, market_notes, render_text
from tests.demo.pods import CLUSTER, CONTROLLER_ANNOTATIONS, UID, june_pod, served_pod
from vastmarket.instances import Instance


def instance(iid: int, uid: str, *, cluster: str = CLUSTER, **kw) -> Instance:
    base = dict(actual_status="running", cur_state="running", label=f"kv:{cluster}:{uid}", public_ip="203.0.113.45",
                dph_total=0.2, gpu_name="RTX 3060", num_gpus=1)
    base.update(kw)
    return Instance(id=iid, **base)


def other_pod(uid: str, name: str, **status) -> dict:
    pod = june_pod(status=status or None)
    pod["metadata"].update(uid=uid, name=name)
    return pod


def test_each_instance_of_this_cluster_is_shown_with_its_pod_price_state_and_health():
    pods = [served_pod(), other_pod("uid-2", "june-second", phase="Running",
                                    conditions=[{"type": "Ready", "status": "False", "message": "probe failed"}])]
    fleet = fleet_status([instance(7, "uid-2", actual_status="loading", dph_total=0.3, public_ip=None),
                          instance(5, UID)], pods, CLUSTER)
    assert [(r.instance_id, r.pod, r.state, r.health) for r in fleet.rows] == [
        (5, "default/june-6c9d7f-abcde", "running", "Ready"),
        (7, "default/june-second", "loading", "not Ready: probe failed"),
    ]
    lines = render_text(fleet, source="http://sim")
    assert lines[0] == f"Cluster {CLUSTER}: Vast instances labelled kv:{CLUSTER}:* at http://sim"
    assert lines[1].split() == ["INSTANCE", "STATE", "$/HOUR", "GPU", "ADDRESS", "POD", "OFFER", "INTERRUPTIBLE",
                                "BID", "MIN_BID", "SAVED", "HEALTH"]
    assert lines[2].split()[:6] == ["5", "running", "0.200", "RTX", "3060", "203.0.113.45"]
    assert lines[3].endswith("not Ready: probe failed") and " - " in lines[3]
    assert "Total: 2 instance(s), $0.500/hour" in lines


def test_instances_of_other_clusters_unlabelled_or_destroyed_ones_are_left_out():
    fleet = fleet_status([instance(1, UID, cluster="otherone"), instance(2, UID, label=None),
                          instance(3, UID, cur_state="unloaded", actual_status="exited"), instance(4, UID)],
                         [served_pod()], CLUSTER)
    assert [r.instance_id for r in fleet.rows] == [4]


def test_an_instance_without_a_pod_is_flagged_as_an_orphan():
    fleet = fleet_status([instance(9, "gone-uid")], [served_pod()], CLUSTER)
    assert fleet.orphans == fleet.rows and fleet.rows[0].health == "no pod (orphan)"
    text = "\n".join(render_text(fleet, source="s"))
    assert "ORPHAN: instance 9 serves pod uid gone-uid, which no longer exists" in text
    assert as_json(fleet, source="s")["orphans"] == [9]


def test_a_pod_that_recorded_a_launch_but_has_no_instance_is_waiting():
    waiting = june_pod(annotations=CONTROLLER_ANNOTATIONS)
    done = june_pod(annotations=CONTROLLER_ANNOTATIONS, status={"phase": "Failed"})
    done["metadata"]["uid"] = "other"
    done["metadata"]["annotations"]["vast.ai/launch"] = json.dumps({"label": f"kv:{CLUSTER}:other"})
    fleet = fleet_status([], [waiting, done, june_pod()], CLUSTER)
    assert fleet.waiting == ("default/june-6c9d7f-abcde",)
    assert render_text(fleet, source="s")[1:] == ["  no instances", "Total: 0 instance(s), $0.000/hour",
                                                  "waiting for an instance: default/june-6c9d7f-abcde"]


def test_a_terminating_pod_and_a_pod_without_conditions_read_as_such():
    deleting = served_pod()
    deleting["metadata"]["deletionTimestamp"] = "2025-01-02T03:04:05Z"
    fleet = fleet_status([instance(1, UID)], [deleting], CLUSTER)
    assert fleet.rows[0].health == "terminating"
    fresh = june_pod(status={"phase": "Pending"})
    assert fleet_status([instance(1, UID)], [fresh], CLUSTER).rows[0].health == "not Ready"


def test_the_json_form_carries_every_row_and_the_total():
    fleet = fleet_status([instance(5, UID, dph_total=None), instance(6, "x", dph_total=0.25)],
                         [served_pod()], CLUSTER)
    out = as_json(fleet, source="http://sim")
    assert json.loads(json.dumps(out)) == out
    assert out["total_per_hour"] == 0.25 and [i["instance_id"] for i in out["instances"]] == [5, 6]
    assert out["instances"][1]["orphan"] is True and out["instances"][0]["price"] is None


def test_each_row_names_the_rented_offer_and_why_it_is_not_the_webhooks():
    elsewhere = served_pod()
    elsewhere["metadata"]["annotations"].update({
        "vast.ai/rented-offer-id": "1",
        "vast.ai/rented-offer-reason": "failing over after OfferGone on offer 2; hosts that failed are avoided"})
    as_picked = other_pod("uid-2", "june-second")
    as_picked["metadata"]["annotations"].update({"vast.ai/offer-id": "7", "vast.ai/rented-offer-id": "7"})
    fleet = fleet_status([instance(5, UID), instance(6, "uid-2")], [elsewhere, as_picked], CLUSTER)
    assert [(r.offer, r.webhook_offer) for r in fleet.rows] == [(1, 2), (7, None)]
    lines = render_text(fleet, source="s")
    assert "1 (not 2)" in lines[2] and lines[3].split()[7] == "7"  # "RTX 3060" is two words
    assert ("instance 5 was rented from offer 1, not the webhook's offer 2: failing over after OfferGone on "
            "offer 2; hosts that failed are avoided") in lines
    assert as_json(fleet, source="s")["instances"][0]["offer_reason"].startswith("failing over")


def test_without_rented_offer_annotations_the_launch_record_names_the_offer():
    fleet = fleet_status([instance(5, UID)], [served_pod()], CLUSTER)
    assert (fleet.rows[0].offer, fleet.rows[0].webhook_offer) == (2, None)


def test_the_offer_market_shows_whether_searches_are_paused_and_until_when():
    node = {"metadata": {"name": "vast-gpu-node-1"}, "status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"},
        {"type": "OfferSearchPaused", "status": "True", "reason": "SearchQuotaExceeded",
         "message": "Vast's search quota is used up; no search before 2026-12-02T00:00:00Z (in 3600s)"}]}}
    plain = {"metadata": {"name": "vast-gpu-node-2"}, "status": {"conditions": []}}
    fleet = replace(fleet_status([], [], CLUSTER), market=market_notes([node, plain]))
    text = "\n".join(render_text(fleet, source="http://vast"))
    assert ("Offer market (vast-gpu-node-1): PAUSED (SearchQuotaExceeded): Vast's search quota is used up; "
            "no search before 2026-12-02T00:00:00Z (in 3600s)") in text
    assert "vast-gpu-node-2" not in text
    assert as_json(fleet, source="http://vast")["market"] == [
        {"node": "vast-gpu-node-1", "paused": True, "reason": "SearchQuotaExceeded",
         "message": "Vast's search quota is used up; no search before 2026-12-02T00:00:00Z (in 3600s)"}]


def test_an_interruptible_instance_shows_its_bid_the_min_bid_now_and_what_it_saves():
    spot = other_pod("uid-2", "june-spot", phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    spot["metadata"]["annotations"]["vast.ai/bid"] = "0.11"
    # Storage: 0.036 $/GB/month × 20 GB / 720 h = 0.001 $/h; on demand 0.3 + 0.001; billed 0.111.
    bid = instance(7, "uid-2", dph_total=0.111, is_bid=True, min_bid=0.1, dph_base=0.3, storage_cost=0.036,
                   disk_space=20.0)
    fleet = fleet_status([instance(5, UID), bid], [served_pod(), spot], CLUSTER)
    assert [(r.interruptible, r.bid, r.min_bid) for r in fleet.rows] == [(False, None, None), (True, 0.11, 0.1)]
    assert fleet.rows[1].saved is not None and abs(fleet.rows[1].saved - 0.19) < 1e-9
    lines = render_text(fleet, source="s")
    header = lines[1].split()
    on_demand = dict(zip(header, lines[2].split()[:4] + lines[2].split()[5:]))  # "RTX 3060" is two words
    spot_row = dict(zip(header, lines[3].split()[:4] + lines[3].split()[5:]))
    assert (on_demand["INTERRUPTIBLE"], on_demand["BID"], on_demand["MIN_BID"], on_demand["SAVED"]) == ("no", "-", "-", "-")
    assert (spot_row["INTERRUPTIBLE"], spot_row["BID"], spot_row["MIN_BID"], spot_row["SAVED"]) == \
        ("yes", "0.110", "0.100", "0.190")
    assert "Interruptible: 1 instance(s) on bids, saving $0.190/hour against on-demand" in lines
    out = as_json(fleet, source="s")
    assert out["saved_per_hour"] == 0.19 and out["instances"][1]["bid"] == 0.11
    # Without the pod's record, the bid is the billed price less the storage.
    assert fleet_status([bid], [], CLUSTER).rows[0].bid == 0.11
