"""``kube-vast status``: this cluster's Vast instances, their pods, prices, health, and the $/hour.

Contract
--------
- :func:`fleet_status` is pure: the account's instances (:class:`vastmarket.instances.Instance`,
  as ``VastClient.list_instances`` returns them), the cluster's pods (plain Kubernetes JSON
  dicts) and the cluster id. An instance belongs to this cluster when its Vast label starts with
  ``kv:<cluster id>:`` (the controller's :func:`controller.fleet.instance_label`); the rest of the
  label is the UID of the pod it serves. Destroyed instances are left out. An instance whose pod
  does not exist is an *orphan* (the controller's reaper destroys it after its grace period). Pods
  that recorded a launch (``vast.ai/launch``) for this cluster but have no live instance are
  listed as *waiting*. Each row names the offer the instance was rented from (the pod's
  ``vast.ai/rented-offer-id``, else the last offer of its ``vast.ai/launch``) and, when that is
  not the webhook's pick (``vast.ai/offer-id``), which one the webhook chose and why they differ
  (``vast.ai/rented-offer-reason``). An interruptible instance shows its bid (the pod's
  ``vast.ai/bid``, else its billed price less its storage), the machine's ``min_bid`` now, and the
  $/hour it saves against the same machine on demand (``dph_base`` plus storage, less what it
  is billed).
- :func:`market_notes` is pure too: the ``OfferSearchPaused`` condition of each virtual node, that
  is whether the offers the cluster places pods on are fresh or searches are paused (Vast's
  search quota) and until when.
- :func:`render_text` and :func:`as_json` present the result. Pure.
- :func:`gather` is the thin I/O: the pods through :class:`controller.kube.KubeGateway`, the
  instances through :class:`vastmarket.client.VastClient`; :func:`virtual_nodes` the nodes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from controller.fleet import label_prefix, pod_uid_of
from controller.node import MARKET_CONDITION, VIRTUAL_NODE_LABEL
from vastmarket.bids import instance_bid
from vastmarket.instances import Instance

LAUNCH = "vast.ai/launch"
OFFER_ID = "vast.ai/offer-id"
RENTED_OFFER = "vast.ai/rented-offer-id"
RENTED_REASON = "vast.ai/rented-offer-reason"
BID = "vast.ai/bid"  # the controller's bid on the pod's instance (controller.interruptions)


@dataclass(frozen=True, slots=True)
class InstanceRow:
    instance_id: int
    state: str                 # Vast's actual_status ("provisioning" while it is still null)
    price: float | None        # billed $/hour (dph_total)
    gpu: str
    address: str               # public IP, or "-"
    pod: str | None            # namespace/name, None for an orphan
    pod_uid: str
    health: str                # Ready, not Ready: <why>, no pod (orphan)
    offer: int | None = None   # the offer it was rented from, as the pod records it
    webhook_offer: int | None = None  # the webhook's pick, when the rented offer is another
    offer_reason: str | None = None   # why they differ
    interruptible: bool = False       # rented as a bid (vastmarket.bids)
    bid: float | None = None          # $/hour for its GPUs
    min_bid: float | None = None      # the machine's minimum bid now
    saved: float | None = None        # $/hour against on-demand

    @property
    def orphan(self) -> bool:
        return self.pod is None

    @property
    def offer_cell(self) -> str:
        if self.offer is None:
            return "-"
        return f"{self.offer} (not {self.webhook_offer})" if self.webhook_offer is not None else str(self.offer)


@dataclass(frozen=True, slots=True)
class MarketNote:
    """A virtual node's ``OfferSearchPaused`` condition."""

    node: str
    paused: bool
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class FleetStatus:
    cluster_id: str
    rows: tuple[InstanceRow, ...]
    waiting: tuple[str, ...]   # pods with a recorded launch and no live instance
    market: tuple[MarketNote, ...] = ()

    @property
    def total_per_hour(self) -> float:
        return sum(r.price or 0.0 for r in self.rows)

    @property
    def saved_per_hour(self) -> float:
        return sum(r.saved or 0.0 for r in self.rows if r.interruptible)

    @property
    def orphans(self) -> tuple[InstanceRow, ...]:
        return tuple(r for r in self.rows if r.orphan)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _health(pod: Mapping[str, Any]) -> str:
    meta, status = _mapping(pod.get("metadata")), _mapping(pod.get("status"))
    if meta.get("deletionTimestamp"):
        return "terminating"
    if status.get("phase") in ("Succeeded", "Failed"):
        return f"{status['phase']}" + (f": {status.get('reason')}" if status.get("reason") else "")
    for c in status.get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == "Ready":
            if c.get("status") == "True":
                return "Ready"
            why = c.get("message") or c.get("reason")
            return f"not Ready: {why}" if why else "not Ready"
    return "not Ready"


def _launch(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    raw = _mapping(_mapping(pod.get("metadata")).get("annotations")).get(LAUNCH)
    try:
        launch = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return {}
    return _mapping(launch)


def _launch_label(pod: Mapping[str, Any]) -> str | None:
    label = _launch(pod).get("label")
    return label if isinstance(label, str) else None


def _offers(pod: Mapping[str, Any] | None) -> tuple[int | None, int | None, str | None]:
    """(rented offer, the webhook's offer when different, why)."""
    if pod is None:
        return None, None, None
    annotations = _mapping(_mapping(pod.get("metadata")).get("annotations"))

    def number(value: Any) -> int | None:
        return int(value) if isinstance(value, str) and value.isdigit() else value if isinstance(value, int) else None

    rented = number(annotations.get(RENTED_OFFER))
    if rented is None:
        rented = number(_launch(pod).get("offerId"))
    webhook = number(annotations.get(OFFER_ID))
    if rented is None or webhook is None or webhook == rented:
        return rented, None, None
    reason = annotations.get(RENTED_REASON)
    return rented, webhook, reason if isinstance(reason, str) and reason else None


def _bid_columns(inst: Instance, pod: Mapping[str, Any] | None) -> dict[str, Any]:
    """interruptible, bid, min_bid and saved of one instance."""
    raw = _mapping(_mapping((pod or {}).get("metadata")).get("annotations")).get(BID)
    try:
        placed: float | None = float(raw) if isinstance(raw, str) and raw else None
    except ValueError:
        placed = None
    found = instance_bid(inst, placed=placed)
    if found is None:
        return {}
    return {"interruptible": True, "bid": found.bid, "min_bid": found.min_bid, "saved": found.saved}


def fleet_status(instances: Sequence[Instance], pods: Sequence[Mapping[str, Any]], cluster_id: str) -> FleetStatus:
    by_uid = {str(_mapping(p.get("metadata")).get("uid")): p for p in pods}
    rows = []
    served: set[str] = set()
    for inst in sorted(instances, key=lambda i: i.id):
        uid = pod_uid_of(inst.label, cluster_id)
        if uid is None or inst.gone:
            continue
        pod = by_uid.get(uid)
        meta = _mapping(pod.get("metadata")) if pod is not None else {}
        offer, webhook_offer, reason = _offers(pod)
        rows.append(InstanceRow(
            instance_id=inst.id, state=inst.actual_status or "provisioning", price=inst.dph_total,
            gpu=(f"{inst.num_gpus}x " if (inst.num_gpus or 1) > 1 else "") + (inst.gpu_name or "?"),
            address=inst.public_ip or "-",
            pod=f"{meta.get('namespace')}/{meta.get('name')}" if pod is not None else None,
            pod_uid=uid, health=_health(pod) if pod is not None else "no pod (orphan)",
            offer=offer, webhook_offer=webhook_offer, offer_reason=reason, **_bid_columns(inst, pod)))
        served.add(uid)
    prefix = label_prefix(cluster_id)
    waiting = []
    for pod in pods:
        meta = _mapping(pod.get("metadata"))
        label = _launch_label(pod)
        if label and label.startswith(prefix) and str(meta.get("uid")) not in served \
                and _mapping(pod.get("status")).get("phase") not in ("Succeeded", "Failed"):
            waiting.append(f"{meta.get('namespace')}/{meta.get('name')}")
    return FleetStatus(cluster_id, tuple(rows), tuple(sorted(waiting)))


def market_notes(nodes: Sequence[Mapping[str, Any]]) -> tuple[MarketNote, ...]:
    notes = []
    for node in nodes:
        for c in _mapping(node.get("status")).get("conditions") or []:
            if isinstance(c, Mapping) and c.get("type") == MARKET_CONDITION:
                notes.append(MarketNote(str(_mapping(node.get("metadata")).get("name")), c.get("status") == "True",
                                        str(c.get("reason") or ""), str(c.get("message") or "")))
    return tuple(notes)


def render_text(status: FleetStatus, *, source: str) -> list[str]:
    header = ("INSTANCE", "STATE", "$/HOUR", "GPU", "ADDRESS", "POD", "OFFER", "INTERRUPTIBLE", "BID", "MIN_BID",
              "SAVED", "HEALTH")

    def money(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    table = [header] + [
        (str(r.instance_id), r.state, money(r.price), r.gpu, r.address, r.pod or "-", r.offer_cell,
         "yes" if r.interruptible else "no", money(r.bid), money(r.min_bid), money(r.saved), r.health)
        for r in status.rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = [f"Cluster {status.cluster_id}: Vast instances labelled {label_prefix(status.cluster_id)}* at {source}"]
    if not status.rows:
        lines.append("  no instances")
    else:
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
                  for row in table]
    lines.append(f"Total: {len(status.rows)} instance(s), ${status.total_per_hour:.3f}/hour")
    bids = [r for r in status.rows if r.interruptible]
    if bids:
        lines.append(f"Interruptible: {len(bids)} instance(s) on bids, saving ${status.saved_per_hour:.3f}/hour "
                     "against on-demand")
    for r in status.rows:
        if r.webhook_offer is not None:
            lines.append(f"instance {r.instance_id} was rented from offer {r.offer}, not the webhook's offer "
                         f"{r.webhook_offer}: {r.offer_reason or 'reason not recorded'}")
    for r in status.orphans:
        lines.append(f"ORPHAN: instance {r.instance_id} serves pod uid {r.pod_uid}, which no longer exists; "
                     "the controller's reaper destroys it after its grace period")
    for pod in status.waiting:
        lines.append(f"waiting for an instance: {pod}")
    for note in status.market:
        state = "PAUSED" if note.paused else "searching"
        lines.append(f"Offer market ({note.node}): {state} ({note.reason}): {note.message}")
    return lines


def as_json(status: FleetStatus, *, source: str) -> dict[str, Any]:
    return {
        "cluster_id": status.cluster_id,
        "source": source,
        "instances": [{**asdict(r), "orphan": r.orphan} for r in status.rows],
        "total_per_hour": round(status.total_per_hour, 6),
        "saved_per_hour": round(status.saved_per_hour, 6),
        "orphans": [r.instance_id for r in status.orphans],
        "waiting": list(status.waiting),
        "market": [asdict(n) for n in status.market],
    }


def gather(kube: Any, vast: Any) -> tuple[list[Instance], list[dict[str, Any]]]:
    """The account's instances (``VastClient``) and every pod (``KubeGateway``). Instances are
    listed first, so a pod created meanwhile cannot make its new instance look orphaned."""
    instances = vast.list_instances()
    pods, _ = kube.list_pods()
    return instances, pods


def virtual_nodes(kube: Any) -> list[dict[str, Any]]:
    """The virtual nodes (``KubeGateway``), whose conditions tell how the offer market is watched."""
    nodes: list[dict[str, Any]] = kube.list_nodes(label_selector=f"{VIRTUAL_NODE_LABEL}=true")
    return nodes
