"""``kube-vast explain POD``: why this pod got this offer (or none), and what happened since.

Contract
--------
- :func:`explain_pod` is pure: a pod and its Events (plain Kubernetes JSON dicts, as the API
  server returns them), the selection config, and optionally the current offers. It returns a
  JSON-ready report: the pod's placement (node, phase, readiness, hostIP), its requirements built
  layer by layer (built-in defaults → config file and ``VAST_*`` environment → pod spec →
  ``vast.ai/*`` annotations), the re-ranking of the current offers (rejection counts, the top
  offers with every term of their score, where the webhook's offer stands now), what the webhook
  chose (``vast.ai/offer-*``, ``vast.ai/selection``, ``vast.ai/selection-error``), what the
  controller did (``vast.ai/launch``, ``vast.ai/instance-id``, the offer it rented
  ``vast.ai/rented-offer-*`` and why it is not the webhook's, ``vast.ai/public-ip``,
  ``vast.ai/ports``, the finalizer), every port of the Services that select the pod (served at
  which host port, or why not) and the Events in time order.
- :func:`render_text` turns the report into lines for a terminal. Pure.
- :func:`gather` and :func:`gather_services` are the thin I/O: the pod, its Events and the
  Services of its namespace through the controller's Kubernetes gateway
  (:class:`controller.kube.KubeGateway`); this module never imports the client itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from controller.endpoints import service_ports, selects, unserved_ports
from vastmarket.config import SelectionConfig, Weights
from vastmarket.errors import RequirementError
from vastmarket.explain import offer_line
from vastmarket.requirements import Requirements, base_requirements, pod_needs, requirements_for
from vastmarket.selection import ScoringPolicy
from vastmarket.snapshot import OfferSnapshot

# The annotations the webhook writes (webhooks/mutation.py) and the controller writes
# (controller/reconciler.py). Read here as plain strings: explain only reports them.
OFFER_ID = "vast.ai/offer-id"
OFFER_FIELDS = ("vast.ai/offer-score", "vast.ai/offer-price", "vast.ai/offer-gpu", "vast.ai/offer-location",
                "vast.ai/offer-reliability", "vast.ai/selected-at")
SELECTION = "vast.ai/selection"
SELECTION_ERROR = "vast.ai/selection-error"
LAUNCH = "vast.ai/launch"
INSTANCE_ID = "vast.ai/instance-id"
PUBLIC_IP = "vast.ai/public-ip"
PORTS = "vast.ai/ports"
FINALIZER = "vast.ai/instance-cleanup"
RENTED_OFFER = "vast.ai/rented-offer-id"
RENTED_FIELDS = ("vast.ai/rented-offer-score", "vast.ai/rented-offer-price", "vast.ai/rented-offer-gpu",
                 "vast.ai/rented-offer-location", "vast.ai/rented-offer-reason")

NO_POD_IP = "- (none: kube-vast publishes its own EndpointSlices)"
LAYERS = ("built-in defaults", "config file and VAST_* environment", "pod spec", "vast.ai/* annotations")


@dataclass(frozen=True, slots=True)
class Offers:
    """The offers to re-rank against, and where they came from (``source``, ``age`` seconds)."""

    snapshot: OfferSnapshot
    source: str
    age: float


# --- small readers of plain dicts --------------------------------------------------------------

def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(pod.get("metadata")).get("annotations"))


def _json(text: Any) -> Any:
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"unparsed": text}


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in _mapping(pod.get("status")).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == kind:
            return c
    return None


def pod_ref(pod: Mapping[str, Any]) -> str:
    meta = _mapping(pod.get("metadata"))
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or '?'}"


# --- the parts of the report -------------------------------------------------------------------

def placement_facts(pod: Mapping[str, Any]) -> dict[str, Any]:
    """Where the pod is and how it is: node, scheduler, phase, readiness, hostIP and podIP."""
    spec, status = _mapping(pod.get("spec")), _mapping(pod.get("status"))
    ready = _condition(pod, "Ready")
    scheduled = _condition(pod, "PodScheduled")
    return {
        "pod": pod_ref(pod),
        "uid": _mapping(pod.get("metadata")).get("uid"),
        "node": spec.get("nodeName"),
        "scheduler": spec.get("schedulerName"),
        "phase": status.get("phase"),
        "ready": None if ready is None else ready.get("status") == "True",
        "ready_message": None if ready is None else ready.get("message"),
        "unschedulable": (scheduled.get("message") if scheduled is not None and scheduled.get("status") == "False"
                          else None),
        "host_ip": status.get("hostIP"),
        "pod_ip": status.get("podIP"),
        "deleting": bool(_mapping(pod.get("metadata")).get("deletionTimestamp")),
    }


def requirement_layers(config: SelectionConfig, pod: Mapping[str, Any]) -> list[tuple[str, Requirements]]:
    """The pod's requirements after each layer, lowest precedence first (see :data:`LAYERS`).
    Raises :class:`RequirementError` when the pod spec or an annotation is invalid."""
    return [
        (LAYERS[0], base_requirements(SelectionConfig())),
        (LAYERS[1], base_requirements(config)),
        (LAYERS[2], requirements_for(config, pod, annotations={})),
        (LAYERS[3], requirements_for(config, pod)),
    ]


def _changes(before: Requirements | None, after: Requirements) -> dict[str, Any]:
    out: dict[str, Any] = {}
    after_d = after.as_dict()
    before_d = before.as_dict() if before is not None else {}
    for key, value in after_d.items():
        if before is None or before_d.get(key) != value:
            out[key] = value
    if before is None or before.blacklist != after.blacklist:
        bl = after.blacklist
        if bl or before is not None:
            out["blacklist"] = {"hosts": sorted(bl.hosts), "machines": sorted(bl.machines),
                                "countries": sorted(bl.countries)}
    return out


def requirements_report(config: SelectionConfig, pod: Mapping[str, Any]) -> dict[str, Any]:
    try:
        layers = requirement_layers(config, pod)
    except RequirementError as exc:
        return {"error": str(exc)}
    needs = pod_needs(pod)
    steps = []
    previous: Requirements | None = None
    for name, req in layers:
        steps.append({"layer": name, "changes": _changes(previous, req)})
        previous = req
    final = layers[-1][1]
    annotations = {k: v for k, v in _annotations(pod).items()
                   if isinstance(k, str) and k.startswith("vast.ai/") and k not in _OUTPUTS}
    return {
        "summary": final.describe(),
        "final": final.as_dict(),
        "layers": steps,
        "pod": {"gpus": needs.num_gpus, "cpu": needs.cpu_cores, "ram_gb": round(needs.ram_gb, 3),
                "ports": list(needs.ports)},
        "annotations": dict(sorted(annotations.items())),
    }


_OUTPUTS = frozenset({OFFER_ID, *OFFER_FIELDS, SELECTION, SELECTION_ERROR, LAUNCH, INSTANCE_ID, PUBLIC_IP, PORTS,
                      RENTED_OFFER, *RENTED_FIELDS, "vast.ai/failed-hosts", "vast.ai/enabled"})


def _weights(policy: ScoringPolicy) -> dict[str, float]:
    return {f.name: round(getattr(policy.weights.normalised(), f.name), 4) for f in fields(Weights)}


def ranking_report(pod: Mapping[str, Any], requirements: Requirements, offers: Offers, policy: ScoringPolicy, *,
                   top: int) -> dict[str, Any]:
    """Re-rank the current offers for the pod's requirements; where the webhook's offer stands."""
    ranking = offers.snapshot.rank(requirements, policy)
    chosen_text = _annotations(pod).get(OFFER_ID)
    chosen = int(chosen_text) if isinstance(chosen_text, str) and chosen_text.isdigit() else None
    position = None
    if chosen is not None:
        ids = ranking.offer_ids()
        position = ids.index(chosen) + 1 if chosen in ids else None
    tops = []
    for s in ranking.top(top):
        entry = s.as_dict()
        entry["line"] = offer_line(s)
        tops.append(entry)
    return {
        "source": offers.source,
        "age_seconds": round(offers.age, 1),
        "seen": ranking.seen,
        "matched": ranking.passed,
        "rejected": dict(ranking.rejections),
        "rejected_reasons": ranking.rejection_phrases(),
        "summary": ranking.summary(),
        "weights": _weights(policy),
        "offers": tops,
        "webhook_offer": chosen,
        "webhook_offer_rank": position,
    }


def webhook_report(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What the admission webhook wrote on the pod (nothing when it never saw the pod)."""
    a = _annotations(pod)
    offer = a.get(OFFER_ID)
    return {
        "offer_id": int(offer) if isinstance(offer, str) and offer.isdigit() else None,
        **{key.removeprefix("vast.ai/").replace("-", "_"): a.get(key) for key in OFFER_FIELDS},
        "selection": _json(a.get(SELECTION)),
        "selection_error": a.get(SELECTION_ERROR),
        "seen_by_webhook": any(key in a for key in (OFFER_ID, SELECTION_ERROR)),
    }


def rented_offer(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The offer the controller rented (``vast.ai/rented-offer-*``; before those existed, or after a
    crash between renting and recording, the last offer of ``vast.ai/launch``) and, when it is
    not the webhook's pick, why. ``None`` when nothing was rented."""
    a = _annotations(pod)
    text = a.get(RENTED_OFFER)
    if not (isinstance(text, str) and text.isdigit()):
        launch = _json(a.get(LAUNCH))
        offer = launch.get("offerId") if isinstance(launch, Mapping) and a.get(INSTANCE_ID) else None
        if not isinstance(offer, int):
            return None
        text = str(offer)
    out: dict[str, Any] = {"id": int(text)}
    out.update({key.removeprefix("vast.ai/rented-offer-"): a.get(key) for key in RENTED_FIELDS})
    webhook = a.get(OFFER_ID)
    out["webhook_offer"] = int(webhook) if isinstance(webhook, str) and webhook.isdigit() else None
    out["differs"] = out["webhook_offer"] is not None and out["webhook_offer"] != out["id"]
    return out


def controller_report(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What the controller recorded on the pod: the launch intent, the instance, the offer it
    rented, its address."""
    a = _annotations(pod)
    ports = _json(a.get(PORTS))
    return {
        "launch": _json(a.get(LAUNCH)),
        "instance_id": a.get(INSTANCE_ID),
        "rented": rented_offer(pod),
        "public_ip": a.get(PUBLIC_IP),
        "ports": ports if isinstance(ports, Mapping) else None,
        "finalizer": FINALIZER in (_mapping(pod.get("metadata")).get("finalizers") or []),
    }


def services_report(pod: Mapping[str, Any], services: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every port of the Services that select the pod: the container port it targets, the host
    port that serves it (from ``vast.ai/ports``), or why it is not served."""
    host_ports = _host_ports(pod)
    running = bool(_annotations(pod).get(PUBLIC_IP))
    problems = {(p.service, p.port): why for p, why in unserved_ports(services, pod, host_ports)}
    rows = []
    for service in services:
        if not selects(service, pod):
            continue
        for port in service_ports(service, pod):
            problem = problems.get((port.service, port.port))
            if problem is not None and not running and port.container_port is not None and port.protocol == "TCP":
                problem = "no host port yet: the instance reports its ports once it runs"
            rows.append({"service": port.service, "port": port.port, "name": port.name, "target": port.target,
                         "container_port": port.container_port,
                         "host_port": host_ports.get(port.container_port) if problem is None and
                         port.container_port is not None else None,
                         "problem": problem})
    return rows


def _host_ports(pod: Mapping[str, Any]) -> dict[int, int]:
    raw = _json(_annotations(pod).get(PORTS))
    out: dict[int, int] = {}
    for key, value in (raw.items() if isinstance(raw, Mapping) else ()):
        if str(key).isdigit() and isinstance(value, int):
            out[int(key)] = value
    return out


def event_time(event: Mapping[str, Any]) -> str:
    """The best timestamp of a core/v1 Event (events.k8s.io writers set ``eventTime`` only)."""
    series = _mapping(event.get("series"))
    # An Event seen once: its eventTime (microseconds) orders it among Events of the same second;
    # a repeated one: the time of its last occurrence.
    once = not series and int(event.get("count") or 1) <= 1
    for value in ((event.get("eventTime") if once else None), series.get("lastObservedTime"),
                  event.get("lastTimestamp"), event.get("eventTime"),
                  event.get("firstTimestamp"), _mapping(event.get("metadata")).get("creationTimestamp")):
        if isinstance(value, str) and value:
            return value
    return ""


def events_in_order(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The pod's Events oldest first (ties: by name, which is stable), reduced to what a reader needs."""
    rows: list[dict[str, Any]] = []
    for e in events:
        source = _mapping(e.get("source")).get("component") or e.get("reportingComponent") or ""
        count = int(e.get("count") or _mapping(e.get("series")).get("count") or 1)
        rows.append({"time": event_time(e), "type": e.get("type") or "", "reason": e.get("reason") or "",
                     "message": e.get("message") or e.get("note") or "", "count": count, "source": source,
                     "_name": _mapping(e.get("metadata")).get("name") or ""})
    rows.sort(key=lambda r: (_sortable(r["time"]), r["_name"]))
    for r in rows:
        del r["_name"]
    return rows


def _sortable(stamp: str) -> str:
    """RFC 3339 UTC stamps (as the API server writes them) with and without fractions in one
    order: ``…:05Z`` < ``…:05.1Z`` < ``…:05.100001Z``."""
    base, _, fraction = stamp.rstrip("Z").partition(".")
    return f"{base}.{fraction[:6].ljust(6, '0')}"


def verdict(report: Mapping[str, Any]) -> str:
    """One sentence: where this pod stands."""
    place, hook, ctl = report["placement"], report["webhook"], report["controller"]
    reqs = report["requirements"]
    if "error" in reqs:
        return f"invalid requirements: {reqs['error']}"
    rented = ctl["rented"]
    offer = f"offer {rented['id']}" if rented else f"offer {hook['offer_id'] or '?'}"
    if rented and rented["differs"]:
        offer += f", not the webhook's {rented['webhook_offer']}" + (f": {rented['reason']}" if rented["reason"] else "")
    unserved = [s for s in report.get("services") or [] if s["problem"]]
    if ctl["instance_id"] and place["ready"]:
        served = (f"served by Vast instance {ctl['instance_id']} at {ctl['public_ip'] or '?'} "
                  f"({offer}); Ready")
        if unserved:
            served += "; " + ", ".join(f"Service {s['service']} port {s['port']}" for s in unserved) + " not served"
        return served
    if ctl["instance_id"]:
        return (f"Vast instance {ctl['instance_id']} rented ({offer}), not Ready yet: "
                f"{place['ready_message'] or place['phase']}")
    if hook["selection_error"]:
        return f"no offer at admission: {hook['selection_error']}"
    if place["unschedulable"]:
        return f"not scheduled: {place['unschedulable']}"
    if not hook["seen_by_webhook"]:
        return ("the webhook never chose an offer for this pod (not opted in with vast.ai/enabled: \"true\", "
                "or the webhook was unavailable: failurePolicy Ignore)")
    if place["node"] is None:
        return f"offer {hook['offer_id']} chosen at admission; waiting for the vast-scheduler"
    return f"offer {hook['offer_id']} chosen; on {place['node']}, waiting for the controller to rent it"


def explain_pod(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]], *, config: SelectionConfig,
                offers: Offers | None, top: int = 3,
                services: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The whole report (see the module docstring). ``services``: those of the pod's namespace."""
    reqs = requirements_report(config, pod)
    ranking: dict[str, Any] | None = None
    if offers is not None and "error" not in reqs:
        ranking = ranking_report(pod, requirements_for(config, pod), offers, ScoringPolicy.from_config(config),
                                 top=top)
    report: dict[str, Any] = {
        "placement": placement_facts(pod),
        "requirements": reqs,
        "ranking": ranking,
        "webhook": webhook_report(pod),
        "controller": controller_report(pod),
        "services": services_report(pod, services),
        "events": events_in_order(events),
    }
    report["verdict"] = verdict(report)
    return report


# --- text ----------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "any"
    if isinstance(value, Mapping):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _terms_line(offer: Mapping[str, Any], weights: Mapping[str, float]) -> str:
    terms = "  ".join(f"{name} {value:.2f}×{weights.get(name, 0):.2f}" for name, value in offer["terms"].items())
    mods = "".join(f"  {name} {add:+.2f}" for name, add in (offer.get("modifiers") or {}).items())
    return f"score {offer['score']:.3f} = {terms}{mods}"


def _standing(ranking: Mapping[str, Any], ctl: Mapping[str, Any]) -> str:
    """Where the webhook's offer stands in the re-ranking."""
    rank, offer = ranking["webhook_offer_rank"], ranking["webhook_offer"]
    if rank:
        return f"#{rank} of {ranking['matched']} now"
    rented = ctl["rented"]
    if ctl["instance_id"] and rented and rented["id"] == offer:
        return f"rented: this pod's instance {ctl['instance_id']} runs on it"
    return "no longer among the matching offers (rented, gone, or the requirements changed)"


def render_text(report: Mapping[str, Any]) -> list[str]:
    place, reqs, ranking = report["placement"], report["requirements"], report["ranking"]
    hook, ctl = report["webhook"], report["controller"]
    ready = {True: "Ready", False: "not Ready", None: "readiness unknown"}[place["ready"]]
    lines = [
        f"Pod {place['pod']} (uid {place['uid']})",
        f"  {report['verdict']}",
        f"  node {place['node'] or '(not scheduled)'}, scheduler {place['scheduler'] or 'default-scheduler'}, "
        f"phase {place['phase'] or '?'}, {ready}" + (", being deleted" if place["deleting"] else ""),
        f"  hostIP {place['host_ip'] or '-'}, podIP {place['pod_ip'] or NO_POD_IP}",
        "",
    ]
    if "error" in reqs:
        lines += ["Requirements: INVALID", f"  {reqs['error']}", ""]
    else:
        lines.append(f"Requirements: {reqs['summary']}")
        for n, step in enumerate(reqs["layers"]):
            shown = {k: v for k, v in step["changes"].items() if n or v}  # the defaults: only what is set
            changes = ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()) or "no change"
            lines.append(f"  {step['layer']}: {changes}")
        if reqs["annotations"]:
            lines.append("  annotations: " + ", ".join(f"{k}={v}" for k, v in reqs["annotations"].items()))
        lines.append("")
    if ranking is None:
        lines += ["Offers now: not re-ranked (give --snapshot FILE or --api-url URL, or set VAST_API_URL)", ""]
    else:
        lines.append(f"Offers now ({ranking['source']}, {ranking['age_seconds']:.0f}s old): "
                     f"{ranking['seen']} seen, {ranking['matched']} match")
        if ranking["rejected_reasons"]:
            lines.append("  rejected (an offer failing several requirements counts under each):")
            lines += [f"    {phrase}" for phrase in ranking["rejected_reasons"]]
        for n, offer in enumerate(ranking["offers"], 1):
            mark = "   <- the webhook's choice" if offer["id"] == ranking["webhook_offer"] else ""
            lines.append(f"  {n}. {offer['line']}{mark}")
            lines.append(f"     {_terms_line(offer, ranking['weights'])}")
        if ranking["webhook_offer"] is not None:
            lines.append(f"  the webhook's offer {ranking['webhook_offer']} is {_standing(ranking, ctl)}")
        lines.append("")
    lines.append("Webhook (at admission):")
    if hook["offer_id"] is not None:
        lines.append(f"  chose offer {hook['offer_id']}: score {hook['offer_score']}, ${hook['offer_price']}/h, "
                     f"{hook['offer_gpu']}, {hook['offer_location']}, reliability {hook['offer_reliability']}, "
                     f"at {hook['selected_at']}")
        sel = hook["selection"]
        if isinstance(sel, Mapping) and "seen" in sel:
            rejected = ", ".join(f"{k} {v}" for k, v in (sel.get("rejected") or {}).items()) or "none"
            lines.append(f"  then: {sel['seen']} offers seen, {sel.get('matched')} matched; rejected: {rejected}")
            for r in sel.get("runnersUp") or []:
                lines.append(f"  runner-up {r.get('id')}: score {r.get('score')}, ${r.get('price')}/h, "
                             f"{r.get('gpu')}, {r.get('location')}")
    if hook["selection_error"]:
        lines.append(f"  vast.ai/selection-error: {hook['selection_error']}")
    if not hook["seen_by_webhook"]:
        lines.append("  nothing recorded: the webhook did not judge this pod")
    lines += ["", "Controller:"]
    launch = ctl["launch"]
    if isinstance(launch, Mapping):
        failed = launch.get("failedMachines") or []
        lines.append(f"  launch recorded {launch.get('since', '?')} as {launch.get('label', '?')}: "
                     f"{launch.get('attempts', 0)} rent attempt(s), last offer {launch.get('offerId', '-')}, "
                     f"failed machines {', '.join(map(str, failed)) or 'none'}")
    else:
        lines.append("  no launch recorded (vast.ai/launch): the controller has not acted on this pod")
    rented = ctl["rented"]
    if rented:
        lines.append(f"  rented offer {rented['id']}: score {rented['score'] or '?'}, ${rented['price'] or '?'}/h, "
                     f"{rented['gpu'] or '?'}, {rented['location'] or '?'}")
        if rented["differs"]:
            lines.append(f"  not the webhook's offer {rented['webhook_offer']}: {rented['reason'] or 'reason not recorded'}")
    if ctl["instance_id"]:
        ports = ", ".join(f"{c}→{h}" for c, h in (ctl["ports"] or {}).items())
        if not ports:
            ports = ("none: the instance maps them once it runs" if not ctl["public_ip"]
                     else "none (the pod asked for no port)")
        lines.append(f"  instance {ctl['instance_id']} at {ctl['public_ip'] or '(no public IP yet)'}; "
                     f"container→host ports {ports}")
    lines.append(f"  finalizer {FINALIZER}: {'present' if ctl['finalizer'] else 'absent'}")
    if report.get("services"):
        lines += ["", "Services selecting the pod:"]
        for s in report["services"]:
            where = (f"container port {s['container_port']} → {ctl['public_ip']}:{s['host_port']}"
                     if s["host_port"] is not None else f"NOT SERVED: {s['problem']}")
            lines.append(f"  {s['service']}:{s['port']}" + (f" ({s['name']})" if s["name"] else "") + f" {where}")
    lines += ["", "Events (oldest first):"]
    if not report["events"]:
        lines.append("  none")
    for e in report["events"]:
        count = f" (x{e['count']})" if e["count"] > 1 else ""
        lines.append(f"  {e['time'] or '?':<27} {e['type']:<7} {e['reason']:<20} {e['message']}{count}")
    return lines


# --- I/O -----------------------------------------------------------------------------------------

class PodNotFound(LookupError):
    pass


def gather_services(kube: Any, namespace: str) -> list[dict[str, Any]]:
    """The Services of the pod's namespace (:func:`services_report` picks those that select it)."""
    return list(kube.list_services(namespace))


def gather(kube: Any, namespace: str, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The pod and its Events, read through a :class:`controller.kube.KubeGateway`."""
    pod = kube.get_pod(namespace, name)
    if pod is None:
        raise PodNotFound(f"pod {namespace}/{name} not found")
    uid = pod["metadata"]["uid"]
    listed = kube._call(f"list events of pod {namespace}/{name}", kube.core.list_namespaced_event, namespace,
                        field_selector=f"involvedObject.uid={uid}")
    return pod, list(listed.get("items") or [])
