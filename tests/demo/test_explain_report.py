"""``kube-vast explain``: the report and its text, from fake pods and Events (no cluster)."""

from __future__ import annotations

import json

import pytest

from kube_vast.explain import Offers, events_in_order, explain_pod, render_text
from tests.demo.pods import CONTROLLER_ANNOTATIONS, READY, WEBHOOK_ANNOTATIONS, event, june_pod, served_pod
from tests.unit.offer_factory import make_offer
from vastmarket.config import SelectionConfig, load_config
from vastmarket.snapshot import OfferSnapshot


def offers() -> Offers:
    snapshot = OfferSnapshot([
        make_offer(1, dph_total=0.30, geolocation="Texas, US"),
        make_offer(2, dph_total=0.20),
        make_offer(3, dph_total=0.90),                      # over the pod's $0.50 cap
        make_offer(4, gpu_name="RTX 4090", dph_total=0.40),  # not an RTX 3060
    ], taken_at=1000.0, source="test")
    return Offers(snapshot, "snapshot offers.json", 12.0)


def text(report) -> str:
    return "\n".join(render_text(report))


def test_requirements_are_built_layer_by_layer_with_the_annotations_last(tmp_path):
    cfg = tmp_path / "kube-vast.yaml"
    cfg.write_text("max_price_per_hour: 0.40\nmin_reliability: 0.95\n")
    report = explain_pod(june_pod(), [], config=load_config(str(cfg)), offers=None)
    layers = {step["layer"]: step["changes"] for step in report["requirements"]["layers"]}
    assert layers["config file and VAST_* environment"] == {"max_price": 0.40, "min_reliability": 0.95}
    assert layers["pod spec"] == {"min_cpu_cores": 2.0, "min_ram_gb": pytest.approx(8.59, abs=0.01),
                                  "direct_ports": 2}
    assert layers["vast.ai/* annotations"] == {"gpu_types": ["RTX3060"], "min_gpu_memory_gb": 12.0,
                                               "max_price": 0.50}
    assert report["requirements"]["summary"].startswith("RTX3060, 12GB+, <$0.50/hr, 95%+ reliability")
    out = text(report)
    assert "vast.ai/* annotations: gpu_types=RTX3060, min_gpu_memory_gb=12, max_price=0.5" in out
    assert "annotations: vast.ai/gpu-type=RTX3060, vast.ai/min-gpu-memory=12GB, vast.ai/price-max=0.50" in out


def test_an_invalid_annotation_is_the_verdict_and_nothing_is_ranked():
    pod = june_pod(annotations={"vast.ai/price-max": "free"})
    report = explain_pod(pod, [], config=SelectionConfig(), offers=offers())
    assert report["ranking"] is None
    assert "vast.ai/price-max" in report["requirements"]["error"] and "free" in report["requirements"]["error"]
    assert report["verdict"].startswith("invalid requirements: ")
    assert "Requirements: INVALID" in text(report)


def test_the_current_offers_are_re_ranked_with_every_score_term_and_the_webhooks_choice_marked():
    report = explain_pod(served_pod(), [], config=SelectionConfig(), offers=offers())
    ranking = report["ranking"]
    assert (ranking["seen"], ranking["matched"]) == (4, 2)
    assert ranking["rejected"] == {"gpu_type": 1, "price": 1}
    assert [o["id"] for o in ranking["offers"]] == [2, 1]
    assert set(ranking["offers"][0]["terms"]) == {"price", "performance", "gpu_match", "location", "availability"}
    assert ranking["weights"] == {"price": 0.3, "performance": 0.25, "gpu_match": 0.2, "location": 0.15,
                                  "availability": 0.1}
    assert (ranking["webhook_offer"], ranking["webhook_offer_rank"]) == (2, 1)
    out = text(report)
    assert "Offers now (snapshot offers.json, 12s old): 4 seen, 2 match" in out
    assert "1 over $0.50/h" in out and "1 not RTX3060" in out
    assert "1. Instance 2: Score" in out and "<- the webhook's choice" in out
    assert "price 0.60×0.30" in out
    assert "the webhook's offer 2 is #1 of 2 now" in out


def test_a_webhook_offer_that_no_longer_matches_is_said_to_be_gone():
    pod = june_pod(annotations={**WEBHOOK_ANNOTATIONS, "vast.ai/offer-id": "99"})
    report = explain_pod(pod, [], config=SelectionConfig(), offers=offers())
    assert report["ranking"]["webhook_offer_rank"] is None
    assert "the webhook's offer 99 is no longer among the matching offers" in text(report)


def test_without_offers_the_report_says_how_to_re_rank():
    report = explain_pod(served_pod(), [], config=SelectionConfig(), offers=None)
    assert report["ranking"] is None
    assert "not re-ranked (give --snapshot FILE or --api-url URL" in text(report)


def test_the_webhooks_choice_and_its_runners_up_are_reported():
    out = text(explain_pod(served_pod(), [], config=SelectionConfig(), offers=None))
    assert ("chose offer 2: score 0.871, $0.2000/h, RTX 3060, US-CA, reliability 0.9800, "
            "at 2025-01-02T03:04:05Z") in out
    assert "then: 3 offers seen, 2 matched; rejected: price 1" in out
    assert "runner-up 1: score 0.8, $0.3/h, RTX 3060, US-TX" in out


def test_the_controllers_launch_instance_and_ports_are_reported():
    report = explain_pod(served_pod(), [], config=SelectionConfig(), offers=None)
    assert report["controller"]["instance_id"] == "4242" and report["controller"]["finalizer"]
    out = text(report)
    assert "launch recorded 2025-01-02T03:04:07Z as kv:c1a2b3c4:" in out
    assert "1 rent attempt(s), last offer 2, failed machines none" in out
    assert "instance 4242 at 203.0.113.45; container→host ports 8000→42351, 8001→42352" in out
    assert "finalizer vast.ai/instance-cleanup: present" in out
    assert "podIP - (none: kube-vast publishes its own EndpointSlices)" in out


@pytest.mark.parametrize("annotations, status, node, verdict", [
    ({**WEBHOOK_ANNOTATIONS, **CONTROLLER_ANNOTATIONS}, READY, "vast-gpu-node-1",
     "served by Vast instance 4242 at 203.0.113.45 (offer 2); Ready"),
    ({**WEBHOOK_ANNOTATIONS, **CONTROLLER_ANNOTATIONS},
     {"phase": "Running", "conditions": [{"type": "Ready", "status": "False", "message": "probe failed"}]},
     "vast-gpu-node-1", "Vast instance 4242 rented (offer 2), not Ready yet: probe failed"),
    ({"vast.ai/selection-error": "no offer matches: 3 seen; 3 over $0.50/h"}, None, None,
     "no offer at admission: no offer matches: 3 seen; 3 over $0.50/h"),
    (WEBHOOK_ANNOTATIONS, {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "message": "0/2 nodes are available"}]}, None,
     "not scheduled: 0/2 nodes are available"),
    ({}, None, None, "the webhook never chose an offer for this pod"),
    (WEBHOOK_ANNOTATIONS, None, None, "offer 2 chosen at admission; waiting for the vast-scheduler"),
    (WEBHOOK_ANNOTATIONS, None, "vast-gpu-node-1",
     "offer 2 chosen; on vast-gpu-node-1, waiting for the controller to rent it"),
])
def test_the_verdict_says_where_the_pod_stands(annotations, status, node, verdict):
    report = explain_pod(june_pod(annotations=annotations, status=status, node=node), [],
                         config=SelectionConfig(), offers=None)
    assert report["verdict"].startswith(verdict)
    assert render_text(report)[1] == f"  {report['verdict']}"


def test_events_are_listed_oldest_first_whichever_timestamp_they_carry():
    events = [
        event("EndpointsUpdated", "june-tts:8000 → 203.0.113.45:42351", at="2025-01-02T03:04:09.500000Z", name="e3"),
        event("Renting", "renting offer 2", at="2025-01-02T03:04:07.100000Z", name="e2"),
        # A kubelet-style event: only the old timestamps, whole seconds.
        {**event("Scheduled", "assigned default/june to vast-gpu-node-1", at="", name="e1"),
         "eventTime": None, "firstTimestamp": "2025-01-02T03:04:06Z", "lastTimestamp": "2025-01-02T03:04:07Z",
         "count": 2, "source": {"component": "vast-scheduler"}},
    ]
    rows = events_in_order(events)
    assert [r["reason"] for r in rows] == ["Scheduled", "Renting", "EndpointsUpdated"]
    assert rows[0]["count"] == 2 and rows[0]["source"] == "vast-scheduler"
    out = text(explain_pod(served_pod(), events, config=SelectionConfig(), offers=None))
    assert out.index("Scheduled") < out.index("Renting") < out.index("EndpointsUpdated")
    assert "assigned default/june to vast-gpu-node-1 (x2)" in out


def test_events_of_one_second_are_ordered_by_their_event_time():
    # The controller's core/v1 Events: whole-second first/lastTimestamp, microsecond eventTime.
    def core_event(reason: str, micro: str, name: str, count: int = 1) -> dict:
        return {**event(reason, "m", at="", name=name), "eventTime": f"2025-01-02T03:04:07.{micro}Z",
                "firstTimestamp": "2025-01-02T03:04:07Z", "lastTimestamp": "2025-01-02T03:04:07Z", "count": count}

    rows = events_in_order([core_event("Rented", "900000", "a"), core_event("LaunchRecorded", "100000", "b"),
                            core_event("Renting", "500000", "c")])
    assert [r["reason"] for r in rows] == ["LaunchRecorded", "Renting", "Rented"]
    # A repeated Event is placed by its last occurrence, not by its first eventTime.
    repeated = {**core_event("InstanceHealthy", "000001", "d", count=2), "lastTimestamp": "2025-01-02T03:04:09Z"}
    rows = events_in_order([repeated, {**core_event("Rented", "000000", "e"), "eventTime": "2025-01-02T03:04:08.5Z"}])
    assert [r["reason"] for r in rows] == ["Rented", "InstanceHealthy"]


def test_a_pod_without_events_says_none():
    assert render_text(explain_pod(june_pod(), [], config=SelectionConfig(), offers=None))[-1] == "  none"


def test_the_report_is_plain_json():
    report = explain_pod(served_pod(), [event("Rented", "instance 4242", at="2025-01-02T03:04:08.1Z", name="e")],
                         config=SelectionConfig(), offers=offers())
    assert json.loads(json.dumps(report)) == report


def test_event_times_with_and_without_fractions_sort_as_times():
    stamps = ["2025-01-02T03:04:05.100001Z", "2025-01-02T03:04:05.1Z", "2025-01-02T03:04:05Z",
              "2025-01-02T03:04:04.999Z"]
    rows = events_in_order([event(str(n), "m", at=at, name=f"e{n}") for n, at in enumerate(stamps)])
    assert [r["time"] for r in rows] == sorted(stamps, key=lambda s: (s[:19], float("0" + s[19:-1] or "0")))


def test_the_webhooks_offer_rented_by_this_pod_is_said_to_be_its_instance():
    snapshot = OfferSnapshot([make_offer(1, dph_total=0.30)], taken_at=1000.0)  # offer 2 left the market
    out = text(explain_pod(served_pod(), [], config=SelectionConfig(), offers=Offers(snapshot, "s", 0.0)))
    assert "the webhook's offer 2 is rented: this pod's instance 4242 runs on it" in out


RENTED_ELSEWHERE = {
    "vast.ai/rented-offer-id": "1", "vast.ai/rented-offer-score": "0.802", "vast.ai/rented-offer-price": "0.3000",
    "vast.ai/rented-offer-gpu": "RTX 3060", "vast.ai/rented-offer-location": "US-TX",
    "vast.ai/rented-offer-reason": "offer 2 is held by another pod's launch (for up to 300 s)",
}


def test_the_rented_offer_and_why_it_is_not_the_webhooks_are_in_the_header_and_the_controller_section():
    pod = served_pod()
    pod["metadata"]["annotations"].update(RENTED_ELSEWHERE)
    report = explain_pod(pod, [], config=SelectionConfig(), offers=offers())
    assert report["controller"]["rented"]["id"] == 1 and report["controller"]["rented"]["differs"]
    assert report["verdict"] == ("served by Vast instance 4242 at 203.0.113.45 (offer 1, not the webhook's 2: "
                                 "offer 2 is held by another pod's launch (for up to 300 s)); Ready")
    out = text(report)
    assert "  rented offer 1: score 0.802, $0.3000/h, RTX 3060, US-TX" in out
    assert "  not the webhook's offer 2: offer 2 is held by another pod's launch (for up to 300 s)" in out
    assert "the webhook's offer 2 is #1 of 2 now" in out
    assert "vast.ai/rented-offer" not in "".join(report["requirements"]["annotations"])


def test_the_webhooks_offer_rented_is_not_called_different():
    pod = served_pod()
    pod["metadata"]["annotations"].update({"vast.ai/rented-offer-id": "2"})
    report = explain_pod(pod, [], config=SelectionConfig(), offers=None)
    assert not report["controller"]["rented"]["differs"]
    assert report["verdict"] == "served by Vast instance 4242 at 203.0.113.45 (offer 2); Ready"
    assert "not the webhook's" not in text(report)


def service(name: str, *ports: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": "june"}, "ports": list(ports)}}


def test_every_port_of_a_selecting_service_says_where_it_is_served_or_why_not():
    services = [
        service("june-tts", {"name": "http", "port": 80, "targetPort": "tts"}),
        service("metrics", {"port": 9100, "targetPort": 9100}, {"port": 9101, "targetPort": "prom"}),
        {**service("other", {"port": 1, "targetPort": 1}), "spec": {"selector": {"app": "else"},
                                                                   "ports": [{"port": 1}]}},
    ]
    report = explain_pod(served_pod(), [], config=SelectionConfig(), offers=None, services=services)
    rows = {(r["service"], r["port"]): r for r in report["services"]}
    assert set(rows) == {("june-tts", 80), ("metrics", 9100), ("metrics", 9101)}
    assert (rows[("june-tts", 80)]["container_port"], rows[("june-tts", 80)]["host_port"]) == (8000, 42351)
    assert "Vast cannot add a port to a running instance" in rows[("metrics", 9100)]["problem"]
    assert rows[("metrics", 9101)]["problem"] == "targetPort 'prom' names no container port of the pod"
    out = text(report)
    assert "  june-tts:80 (http) container port 8000 → 203.0.113.45:42351" in out
    assert "  metrics:9100 NOT SERVED: container port 9100 is not mapped by the Vast instance" in out
    assert "not yet mapped" not in out
    assert report["verdict"].endswith("; Service metrics port 9100, Service metrics port 9101 not served")


def test_before_the_instance_runs_a_services_port_waits_for_its_host_port():
    pod = june_pod(annotations={**WEBHOOK_ANNOTATIONS, "vast.ai/instance-id": "4242"})
    report = explain_pod(pod, [], config=SelectionConfig(), offers=None,
                         services=[service("june-tts", {"port": 80, "targetPort": 8000})])
    assert report["services"][0]["problem"] == "no host port yet: the instance reports its ports once it runs"
    assert "container→host ports none: the instance maps them once it runs" in text(report)
