"""One pod bound to a virtual node → exactly one running, healthy Vast instance, its status and
its endpoints; and nothing left behind when the pod goes.

Each call of :meth:`Reconciler.reconcile` observes (the pod, this cluster's instances carrying
the pod's label), decides, does at most one step that costs money, and returns when to look
again. Crash safety comes from the order of writes:

1. the finalizer ``vast.ai/instance-cleanup`` and the ``vast.ai/launch`` annotation (the intent)
   are on the pod *before* anything is rented;
2. every rental carries the label ``kv:<cluster>:<pod uid>``, and before renting the controller
   asks Vast for instances with that label and adopts one instead — so a controller killed
   between renting and writing ``vast.ai/instance-id`` finds its instance again;
3. a rent whose outcome is unknown (its answer lost, the controller killed while it was in
   flight or before the id was written) leaves a ``renting`` marker in the intent, and no second
   rent goes out until the label has been looked for during ``uncertain_rent_wait``
   (:mod:`controller.uncertain`: Vast's list may lag a new rental); extra instances for one pod,
   which this should never leave, are still destroyed, keeping one;
4. the finalizer is removed only after the instance is confirmed gone;
5. a container restart (:mod:`controller.completion`) writes its ``vast.ai/restart`` record before
   each stop or start, so an exit is counted once; a deleted pod's grace period is read from its
   ``deletionTimestamp`` (:mod:`controller.termination`), so a restarted controller finishes the
   drain and destroys the instance.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from vastmarket.budgets import rental_price
from vastmarket.config import SelectionConfig
from vastmarket.errors import OfferGone, RequirementError, VastError, VastRejected
from vastmarket.explain import endpoint_lines, selection_log
from vastmarket.instances import Instance
from vastmarket.placement import annotated_offer_id
from vastmarket.requirements import GPU_RESOURCE, requests_gpu, requirements_for
from vastmarket.selection import ScoredOffer, ScoringPolicy
from vastmarket.client import VastClient
from vastmarket.pacing import CreateQueue, create_slot_message

from . import completion, endpoints, health, interruptions, status, termination, translate, uncertain
from . import intake
from .budgets import NO_BUDGETS, BudgetGate, held_status
from .checkpoints import INERT, Checkpoints
from . import replacement
from .fleet import Fleet, OfferSource, instance_label
from .kube import KubeError, KubeGateway, now_rfc3339
from .settings import ControllerSettings

log = logging.getLogger("kube_vast.controller")

FINALIZER = "vast.ai/instance-cleanup"
A_LAUNCH = "vast.ai/launch"
A_INSTANCE = "vast.ai/instance-id"
A_PUBLIC_IP = "vast.ai/public-ip"
A_PORTS = "vast.ai/ports"
A_FAILED_HOSTS = "vast.ai/failed-hosts"
# The offer the controller rented (the webhook's pick stays in vast.ai/offer-*), and why it is not
# the webhook's when it differs.
A_RENTED_OFFER = "vast.ai/rented-offer-id"
A_RENTED_SCORE = "vast.ai/rented-offer-score"
A_RENTED_PRICE = "vast.ai/rented-offer-price"
A_RENTED_GPU = "vast.ai/rented-offer-gpu"
A_RENTED_LOCATION = "vast.ai/rented-offer-location"
A_RENTED_REASON = "vast.ai/rented-offer-reason"
CLAIM_SECONDS = 300  # an offer a launch took is not offered to another launch for this long

RETRY_SOON = 0.5
RETRY_LATER = 15.0


def _meta(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod.get("metadata") or {}


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(pod).get("annotations") or {}


def pod_ref(pod: Mapping[str, Any]) -> str:
    m = _meta(pod)
    return f"{m.get('namespace')}/{m.get('name')}"


class _Lookup:
    """ConfigMap and Secret reads for env resolution (the :class:`translate.RefLookup`)."""

    def __init__(self, kube: KubeGateway) -> None:
        self.kube = kube

    def configmap(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.kube.get_configmap(namespace, name)

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.kube.get_secret(namespace, name)


class Reconciler:
    def __init__(self, kube: KubeGateway, vast: VastClient, fleet: Fleet, offers: OfferSource,
                 settings: ControllerSettings, config: SelectionConfig, *,
                 clock: Callable[[], float] = time.time, checkpoint: Checkpoints = INERT) -> None:
        self.kube = kube
        self.checkpoint = checkpoint
        self.vast = vast
        self.fleet = fleet
        self.offers = offers
        self.settings = settings
        self.config = config
        self.policy = ScoringPolicy.from_config(config)
        self.clock = clock
        self.lookup = _Lookup(kube)
        self._health: dict[str, health.HealthState] = {}
        self._written_status: dict[str, str] = {}
        self._last_event: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._reserved: dict[str, float] = {}  # pod uid → $/h of a rent in flight (budget)
        self._claimed: dict[int, float] = {}  # offer id → when a launch took it (not offered twice)
        self._holding = False  # replacements of unreachable hosts held: too many at once
        self._unserved_warned: dict[tuple[str, str, int], None] = {}  # (pod uid, Service, port), oldest first
        self.on_event: Callable[[str], None] = lambda reason: None
        self.interruptions = interruptions.Interruptions(self)  # outbid interruptible instances
        self.budgets: BudgetGate = NO_BUDGETS  # team budgets (controller/budgets.py): the launch check
        self.booting: set[str] = set()  # pods waiting for their instance to run ("ns/name")
        self.create_slots = CreateQueue(0.0)  # Vast's create rate limit, oldest pod first (main sets it)
        budget = config.budget
        self.max_spend = settings.max_total_price_per_hour or budget.max_total_price_per_hour
        self.max_instances = settings.max_instances if settings.max_instances is not None else budget.max_instances

    @property
    def cluster_id(self) -> str:
        return self.fleet.cluster_id

    def label(self, pod_uid: str) -> str:
        return instance_label(self.cluster_id, pod_uid)

    # --- entry point ----------------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str) -> float | None:
        """Bring one pod one step closer to its goal; returns seconds until it should be looked at
        again (None: only on the next change)."""
        pod = self.kube.get_pod(namespace, name)
        if pod is None:
            return None
        bad = intake.unreadable(pod)
        if bad is not None:
            return self._unreadable(namespace, name, pod, bad)
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self.settings.virtual_nodes:
            return None
        meta = _meta(pod)
        if meta.get("deletionTimestamp"):
            return self.teardown(pod, delete_pod=True)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return self.teardown(pod, delete_pod=False)
        if FINALIZER not in (meta.get("finalizers") or []):
            pod = self._record_intent(pod)
        return self._drive(pod)

    def _unreadable(self, namespace: str, name: str, pod: Mapping[str, Any], bad: intake.Unreadable) -> float | None:
        """A pod with a field kube-vast reads in the wrong shape (:mod:`controller.intake`):
        nothing is rented for it; a deleted or finished one still gives back its instances."""
        if bad.node not in self.settings.virtual_nodes:
            return None
        if not bad.named:
            log.warning("pod=%s/%s %s", namespace, name, bad.message)
            return None
        self._event(pod, intake.INVALID_POD, bad.message, warning=True)  # logged once, with the Event
        if bad.deleted or bad.finished:
            return self.teardown(intake.teardown_view(pod), delete_pod=bad.deleted)
        return None

    # --- steps ----------------------------------------------------------------------------------

    def _record_intent(self, pod: dict[str, Any]) -> dict[str, Any]:
        meta = _meta(pod)
        launch = {"label": self.label(meta["uid"]), "since": now_rfc3339(), "attempts": 0, "failedMachines": []}
        patch = {"metadata": {
            "resourceVersion": meta.get("resourceVersion"),
            "finalizers": [*(meta.get("finalizers") or []), FINALIZER],
            "annotations": {A_LAUNCH: json.dumps(launch, separators=(",", ":"))},
        }}
        updated = self.kube.patch_pod(meta["namespace"], meta["name"], patch)
        self.checkpoint("intent-recorded", pod=pod_ref(pod))
        self._event(updated, "LaunchRecorded", f"launching on Vast as {launch['label']}")
        return updated

    def _launch_record(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        try:
            record = json.loads(_annotations(pod).get(A_LAUNCH, "{}"))
        except ValueError:
            record = {}
        return record if isinstance(record, dict) else {}

    def _patch_annotations(self, pod: Mapping[str, Any], values: Mapping[str, str | None]) -> dict[str, Any]:
        meta = _meta(pod)
        return self.kube.patch_pod(meta["namespace"], meta["name"], {"metadata": {"annotations": dict(values)}})

    def _instances_for(self, pod: Mapping[str, Any]) -> list[Instance]:
        """Every instance carrying the pod's label that is not destroyed (dead ones included:
        an exited instance still bills for storage until it is destroyed)."""
        uid = _meta(pod)["uid"]
        found = {i.id: i for i in self.fleet.for_pod(uid)}
        annotated = _annotations(pod).get(A_INSTANCE)
        if annotated and annotated.isdigit() and int(annotated) not in found:
            inst = self.vast.get_instance(int(annotated))
            if inst is not None and not inst.gone and inst.label == self.label(uid):
                self.fleet.remember(inst)
                found[inst.id] = inst
        return list(found.values())

    def _drive(self, pod: dict[str, Any]) -> float | None:
        instances = self._instances_for(pod)
        replacing = replacement.Replacing.read(self._launch_record(pod))
        if replacing is not None:  # first: the old instance goes before anything else is decided
            return self._replace(pod, replacing, instances)
        restart = completion.Restart.read(_annotations(pod))
        outbid = interruptions.paused_bid(instances, self._launch_record(pod))
        if outbid is not None and not (restart is not None and restart.active_for(outbid.id)):
            wait, pod = self.interruptions.step(pod, outbid)
            if wait is not None:
                return wait
        dead = [i for i in instances if _dead_for_good(i, restart)]
        alive = [i for i in instances if not _dead_for_good(i, restart)]
        for inst in dead:
            self._destroy(inst.id)
        had_run = self._was_serving(pod) or restart is not None
        if dead and not alive:
            why = f"instance {dead[0].id} is {dead[0].actual_status}"
            if had_run:
                self._lost(pod, why)
                return None
            return self._rent_failed(pod, self._launch_record(pod), dead[0].machine_id, "InstanceFailed", why)
        if len(alive) > 1:
            alive = self._dedupe(pod, alive)
        if not alive:
            if had_run:
                self._lost(pod, "the Vast instance disappeared")
                return None
            return self._launch(pod)
        inst = alive[0]
        record = self._launch_record(pod)
        if uncertain.RENTING in record:  # the rent's outcome is known now: this instance
            pod = self._patch_annotations(pod, {A_INSTANCE: str(inst.id),
                                                A_LAUNCH: _encode(uncertain.without_marker(record))})
        elif str(inst.id) != _annotations(pod).get(A_INSTANCE):
            pod = self._patch_annotations(pod, {A_INSTANCE: str(inst.id)})
        if inst.container_exited or (restart is not None and restart.active_for(inst.id)):
            return self._container_ended(pod, inst, restart)
        if not inst.running:
            return self._wait_for_boot(pod, inst)
        pod = self.interruptions.settled(pod, inst)  # VastInterrupted False once a replacement runs
        return self._serve(pod, inst)

    def _dedupe(self, pod: Mapping[str, Any], instances: list[Instance]) -> list[Instance]:
        annotated = _annotations(pod).get(A_INSTANCE)
        keep = sorted(instances, key=lambda i: (str(i.id) != annotated, not i.running, i.id))[0]
        for extra in instances:
            if extra.id != keep.id:
                self._destroy(extra.id)
                self._event(pod, "DuplicateDestroyed", f"destroyed extra instance {extra.id}; keeping {keep.id}", warning=True)
        return [keep]

    def _was_serving(self, pod: Mapping[str, Any]) -> bool:
        return bool(_annotations(pod).get(A_PUBLIC_IP))

    # --- launching ------------------------------------------------------------------------------

    def _launch(self, pod: dict[str, Any]) -> float | None:
        if not requests_gpu(pod):  # defence in depth: the webhook leaves such pods to the cluster
            self._pending(pod, "NoGPURequested", f"the pod requests no {GPU_RESOURCE}: kube-vast never rents "
                                                 "a Vast instance for it", warning=True)
            return None
        meta = _meta(pod)
        uid = meta["uid"]
        label = self.label(uid)
        if uncertain.PendingRent.read(self._launch_record(pod)) is None:  # first the turn to rent, then any call
            turn = self.create_slots.ask(uid, str(meta.get("creationTimestamp") or ""), self.clock())
            if not turn.granted:
                if turn.announce:  # once, when the wait is longer than gathering a first slot
                    self._pending(pod, "WaitingForCreateSlot", create_slot_message(turn, self.create_slots.interval))
                return turn.wait
        # After a crash between renting and annotating, Vast knows the instance by its label.
        adopted = [i for i in self.vast.list_instances(label=label) if not i.gone]
        if adopted:
            for inst in adopted:
                self.fleet.remember(inst)
            self._event(pod, "InstanceAdopted", f"found instance {adopted[0].id} already rented for this pod")
            return RETRY_SOON
        wait, pod = self._await_uncertain_rent(pod)
        if wait is not None:
            return wait
        try:
            spec = translate.launch_spec(pod, lookup=self.lookup, services=self.kube.list_services(meta["namespace"]),
                                         default_disk_gb=self.config.defaults.min_disk_gb)
            req = requirements_for(self.config, pod)
            # Ports the Services and probes add need direct ports too, or Vast refuses the rent.
            req = replace(req, direct_ports=max(req.direct_ports, len(spec.ports)))
        except translate.LaunchError as exc:
            self._pending(pod, exc.reason, str(exc), warning=True)
            return RETRY_LATER
        except RequirementError as exc:
            self._pending(pod, "InvalidRequirements", str(exc), warning=True)
            return RETRY_LATER
        for warning in spec.warnings:
            self._event(pod, warning.reason, warning.message, warning=True)
        record = self._launch_record(pod)
        failed = {int(m) for m in record.get("failedMachines", []) if isinstance(m, int)}
        attempts = int(record.get("attempts", 0))
        if attempts >= self.settings.max_launch_attempts:
            record["attempts"] = 0  # the next round starts after a pause, with failed hosts still avoided
            self._patch_annotations(pod, {A_LAUNCH: json.dumps(record, separators=(",", ":"))})
            self._pending(pod, "LaunchAttemptsExhausted",
                          f"{attempts} rentals failed; trying again in {RETRY_LATER:.0f}s", warning=True)
            return RETRY_LATER
        snapshot = self.offers.fresh(10.0) if attempts or failed else (self.offers.latest() or self.offers.fresh(10.0))
        if snapshot is None:
            self._pending(pod, "NoOfferSnapshot", "no Vast offers known yet", warning=True)
            return RETRY_LATER
        if failed:
            req = replace(req, blacklist=replace(req.blacklist, machines=req.blacklist.machines | failed))
        ranking = snapshot.rank(req, self.policy)
        webhook_offer = annotated_offer_id(pod)
        chosen, skipped = self._claim(ranking, webhook_offer if not attempts else None)
        if chosen is None:
            self._pending(pod, "NoMatchingOffer", ranking.summary(), warning=True)
            return RETRY_LATER
        kept = "the webhook chose it at admission and it still matches"
        choice = _Choice(chosen, webhook_offer, _why_not(webhook_offer, chosen, skipped, ranking, record),
                         kept if chosen.offer.id == webhook_offer and not attempts
                         else _why_not((ranking.best or chosen).offer.id, chosen, skipped, ranking, record))
        offer = chosen.offer
        price = offer.dph_total or 0.0
        bid = interruptions.launch_bid(offer, req, margin=self.config.interruptible.bid_margin)
        if req.interruptible:  # rented as a bid, a margin over min_bid (controller.interruptions)
            if bid is None:
                with self._lock:
                    self._claimed.pop(offer.id, None)
                self._pending(pod, "NoMatchingOffer", f"offer {offer.id} has no min_bid under the bid-max of "
                                                      f"${req.max_price:.2f}/h", warning=True)
                return RETRY_LATER
            price = bid.total
        held = self.budgets.reserve(meta["namespace"], uid, rental_price(price, offer.dph_base, spec.disk_gb),
                                    key=pod_ref(pod))
        if held is not None:
            with self._lock:
                self._claimed.pop(offer.id, None)  # free for a pod whose budget has room
            if not held.budget:
                self.create_slots.give_back(uid, self.clock())  # not the pod's doing: it keeps its place in line
                return 2.0  # the budgets are not read yet
            self._event(pod, "BudgetExceeded", held.message, warning=True)
            self._write_status(pod, held_status(pod, held.message, now_rfc3339()))
            return RETRY_LATER  # or sooner: the budget keeper wakes the pod when room frees
        refusal = self._reserve(uid, price)
        if refusal:
            self.budgets.release(uid)
            self._pending(pod, "BudgetExceeded", f"renting offer {offer.id} at ${price:.3f}/h would exceed the "
                                                 f"budget ({refusal})", warning=True)
            return RETRY_LATER
        try:
            return self._rent(pod, record, choice, ranking, spec, req, label, bid=bid if req.interruptible else None)
        finally:
            with self._lock:
                self._reserved.pop(uid, None)
            self.budgets.release(uid)

    def _await_uncertain_rent(self, pod: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
        """While a rent of this pod's may have gone through unseen (:mod:`controller.uncertain`),
        when to look for its instance again; None when there is no such rent, or once the wait is
        over (the marker is then removed: the rent was not made). And the pod as written."""
        record = self._launch_record(pod)
        pending = uncertain.PendingRent.read(record)
        if pending is None:
            return None, pod
        wait = self.settings.uncertain_rent_wait
        now = self.clock()
        if pending.sent_at is None:  # unreadable: the wait starts now
            pending = uncertain.PendingRent(pending.offer_id, now)
            record[uncertain.RENTING] = pending.encode()
            pod = self._patch_annotations(pod, {A_LAUNCH: _encode(record)})
        left = pending.remaining(now, wait)
        if left > 0:
            self.fleet.hurry()
            until = uncertain.PendingRent(None, pending.deadline(wait)).encode()["sentAt"]
            self._pending(pod, "RentUncertain", f"the rent of offer {pending.offer_id} may have gone through: "
                                                f"no instance labelled {self.label(_meta(pod)['uid'])} found yet; "
                                                f"looking again until {until} before renting again")
            return min(2.0, left), pod
        record = uncertain.without_marker(record)
        record["lastFailure"] = {"reason": "RentNotFound", "offerId": pending.offer_id}
        pod = self._patch_annotations(pod, {A_LAUNCH: _encode(record)})
        self._event(pod, "RentNotFound", f"no instance appeared within {wait:.0f}s of the uncertain rent of offer "
                                         f"{pending.offer_id}: it was not made", warning=True)
        return None, pod

    def _claim(self, ranking: Any, wanted: int | None) -> tuple[ScoredOffer | None, set[int]]:
        """The best offer (the webhook's pick when it still matches) that no other launch took in
        the last few minutes: concurrent launches must not race for one offer. Also the ids of the
        better offers skipped because another launch holds them."""
        now = self.clock()
        skipped: set[int] = set()
        with self._lock:
            for offer_id, at in list(self._claimed.items()):
                if now - at > CLAIM_SECONDS:
                    del self._claimed[offer_id]
            if wanted is not None and wanted in self._claimed:
                skipped.add(wanted)  # held by another launch, whether or not it still matches
            candidates = [ranking.find(wanted)] if wanted is not None else []
            candidates += list(ranking.top(50))
            for scored in candidates:
                if scored is None:
                    continue
                if scored.offer.id in self._claimed:
                    skipped.add(scored.offer.id)
                    continue
                self._claimed[scored.offer.id] = now
                return scored, skipped
        return None, skipped

    def _reserve(self, uid: str, price: float) -> str | None:
        """Reserve budget for one rent; returns why not when the caps would be exceeded."""
        with self._lock:
            spend, count = self.fleet.hourly_spend(excluding=uid)
            others = {k: v for k, v in self._reserved.items() if k != uid}
            spend += sum(others.values())
            count += len(others)
            if count + 1 > self.max_instances or spend + price > self.max_spend + 1e-9:
                return (f"now {count} instances at ${spend:.3f}/h; caps {self.max_instances} instances, "
                        f"${self.max_spend:.2f}/h")
            self._reserved[uid] = price
            return None

    def _rent(self, pod: dict[str, Any], record: dict[str, Any], choice: _Choice, ranking: Any,
              spec: translate.LaunchSpec, req: Any, label: str, *, bid: interruptions.Bid | None = None) -> float:
        chosen = choice.scored
        offer = chosen.offer
        price = (offer.dph_total or 0.0) if bid is None else bid.total
        try:
            request = spec.rent_request(label)
        except translate.LaunchError as exc:
            self._pending(pod, exc.reason, str(exc), warning=True)
            return RETRY_LATER
        if bid is not None:
            request = replace(request, price=bid.price)
        record.update(attempts=int(record.get("attempts", 0)) + 1, offerId=offer.id, machineId=offer.machine_id,
                      rentAt=now_rfc3339())
        record[uncertain.RENTING] = uncertain.PendingRent(offer.id, self.clock()).encode()  # before it goes out
        pod = self._patch_annotations(pod, {A_LAUNCH: _encode(record)})
        for line in selection_log(ranking, selected_suffix=" - launching...", selected=chosen, why=choice.why_not_best):
            log.info("pod=%s %s", pod_ref(pod), line)
        differs = f"; not the webhook's offer {choice.webhook_offer}: {choice.why_not_webhook}" \
            if choice.why_not_webhook and choice.webhook_offer is not None else ""
        bidding = "" if bid is None else f" (interruptible: bid ${bid.price:.4f}/h over min_bid ${offer.min_bid}/h)"
        self._event(pod, "Renting", f"renting offer {offer.id}: {offer.gpu_display}, ${price:.3f}/h{bidding}, "
                                    f"{offer.location.label}, score {chosen.score:.2f}{differs}")
        self.checkpoint("rent-sending", pod=pod_ref(pod), offer=offer.id)
        try:
            instance_id = self.vast.rent(offer.id, request)
        except OfferGone as exc:
            return self._rent_failed(pod, record, offer.machine_id, "OfferGone", str(exc))
        except VastError as exc:
            if _outcome_unknown(exc):  # the marker stays: the next looks search before any rent
                self.budgets.rented(pod)  # it may have been made: counted against the budget
                self._event(pod, "RentUncertain", f"{exc}; looking for an instance labelled {label} for up to "
                                                  f"{self.settings.uncertain_rent_wait:.0f}s before renting again",
                            warning=True)
                return 2.0
            if isinstance(exc, VastRejected):
                return self._rent_failed(pod, record, offer.machine_id, "RentRejected", str(exc))
            self._patch_annotations(pod, {A_LAUNCH: _encode(uncertain.without_marker(record))})
            self._event(pod, "VastUnavailable", str(exc), warning=True)
            return RETRY_LATER
        self.checkpoint("rent-answered", pod=pod_ref(pod), offer=offer.id, instance=instance_id)
        self.budgets.rented(pod)
        pod = self._patch_annotations(pod, {A_INSTANCE: str(instance_id), **choice.annotations(),
                                            A_LAUNCH: _encode(uncertain.without_marker(record)),
                                            interruptions.A_BID: None if bid is None else f"{bid.price:g}"})
        self._event(pod, "Rented", f"instance {instance_id} rented on offer {offer.id}")
        inst = self.vast.get_instance(instance_id)
        if inst is not None:
            self.fleet.remember(inst)
            billed = inst.dph_total
            cap = req.max_price if bid is None else min(req.max_price, bid.total)  # a bid: billed at the bid
            if billed is not None and billed > cap * (1 + self.settings.price_tolerance):
                self._destroy(instance_id)
                return self._rent_failed(pod, record, offer.machine_id, "PriceMismatch",
                                         f"instance {instance_id} is billed ${billed:.3f}/h, over the "
                                         f"${cap:.3f}/h cap (offer said ${price:.3f}/h); destroyed")
        return RETRY_SOON

    def _rent_failed(self, pod: Mapping[str, Any], record: dict[str, Any], machine: int | None,
                     reason: str, message: str) -> float:
        failed = [m for m in record.get("failedMachines", []) if isinstance(m, int)]
        if machine is not None and machine not in failed:
            failed.append(machine)
        record["failedMachines"] = failed[-50:]
        record["lastFailure"] = {"reason": reason, "offerId": record.get("offerId")}
        record.pop(uncertain.RENTING, None)  # refused for certain, or the instance is known and failed
        self._patch_annotations(pod, {A_LAUNCH: _encode(record), A_INSTANCE: None})
        self._event(pod, reason, f"{message}; failing over to the next offer", warning=True)
        return 0.0

    def _instance_failed(self, pod: Mapping[str, Any], inst: Instance, why: str) -> float | None:
        self._destroy(inst.id)
        if self._was_serving(pod):
            self._lost(pod, why)
            return None
        record = self._launch_record(pod)
        return self._rent_failed(pod, record, inst.machine_id, "InstanceFailed", why)

    def _wait_for_boot(self, pod: Mapping[str, Any], inst: Instance) -> float:
        started = self.fleet.first_seen(inst.id) or self.clock()
        waited = self.clock() - started
        if waited > self.settings.boot_timeout:
            return self._instance_failed(pod, inst, f"instance {inst.id} not running after {waited:.0f}s "
                                                    f"(status {inst.actual_status})") or 0.0
        self.fleet.hurry()
        with self._lock:
            self.booting.add(pod_ref(pod))
        state = inst.actual_status or "provisioning"
        # A pod whose instance is being replaced (controller.replacement) stays Running, not ready.
        running = (pod.get("status") or {}).get("phase") == "Running"
        booting = status.pod_status(
            pod, phase="Running" if running else "Pending", ready=False, public_ip=None, started_at=None,
            container_state="waiting", reason="ContainerCreating", message=f"Vast instance {inst.id} is {state}",
            now=now_rfc3339())
        if running:
            booting.update(reason=None, message=None)
        self._write_status(pod, booting)
        return 1.0

    # --- serving --------------------------------------------------------------------------------

    def _serve(self, pod: dict[str, Any], inst: Instance) -> float:
        uid = _meta(pod)["uid"]
        with self._lock:
            self.booting.discard(pod_ref(pod))
        ip = inst.public_ip
        if not ip:
            return self._wait_for_boot(pod, inst)
        probe = health.probe_for(pod)
        with self._lock:
            state = self._health.setdefault(uid, health.HealthState(probe, now=self.clock()))
        now = self.clock()
        was_ready = state.ready
        if state.due(now):
            host_port = inst.ports.get(probe.container_port) if probe.container_port else None
            if probe.kind == "none":
                state.observe(True, now, "no port to probe; running counts as healthy")
            elif host_port is None:
                state.observe(False, now, f"container port {probe.container_port} is not mapped by Vast")
            else:
                result = health.check(probe, ip, host_port)
                state.observe(result.ok, now, result.message, reachable=result.reachable)
        if state.ready != was_ready:
            if state.ready:
                self._event(pod, "InstanceHealthy", f"{probe.describe()} passes at {ip}")
            else:
                self._event(pod, "InstanceUnhealthy", f"{probe.describe()} failed {state.consecutive_failures} "
                                                      f"times: {state.last_message}; out of its Services", warning=True)
        if replacement.due(state, now, self.settings.host_unreachable_grace) and not self._replacements_held(pod):
            return self._begin_replacement(pod, inst, state)
        ports_text = json.dumps({str(k): v for k, v in sorted(inst.ports.items())}, separators=(",", ":"))
        first_time = _annotations(pod).get(A_PUBLIC_IP) != ip or _annotations(pod).get(A_PORTS) != ports_text
        if first_time:
            pod = self._patch_annotations(pod, {A_PUBLIC_IP: ip, A_PORTS: ports_text})
            self._event(pod, "InstanceRunning", f"instance {inst.id} running at {ip}")
        # The Services first, then the status: a pod seen Ready is already in its Services'
        # EndpointSlices (what `kubectl wait --for=condition=Ready` and then a request expect), and
        # one seen unready has already left them.
        self._sync_endpoints(pod, ip, inst.ports, state.ready)
        started_at = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self._write_status(pod, status.pod_status(
            pod, phase="Running", ready=state.ready, public_ip=ip, started_at=started_at,
            container_state="running", now=now_rfc3339(),
            message=None if state.ready else state.last_message))
        return min(self.settings.resync, max(probe.period_seconds, 0.2))

    def _sync_endpoints(self, pod: Mapping[str, Any], ip: str, host_ports: Mapping[int, int], ready: bool) -> None:
        meta = _meta(pod)
        ns = meta["namespace"]
        services = self.kube.list_services(ns)
        existing = self.kube.list_endpoint_slices(ns, f"{endpoints.POD_UID_LABEL}={meta['uid']}")
        node = (pod.get("spec") or {}).get("nodeName", "")
        to_apply, to_delete = endpoints.plan_slices(services, pod, existing, public_ip=ip,
                                                    host_ports=host_ports, ready=ready, node_name=node)
        for n, body in enumerate(to_apply, start=1):
            self.kube.apply_endpoint_slice(ns, body)
            self.checkpoint("endpointslice-write", pod=pod_ref(pod), slice=body["metadata"]["name"], written=n,
                            of=len(to_apply))
        for name in to_delete:
            self.kube.delete_endpoint_slice(ns, name)
        self._warn_unserved(pod, services, host_ports)
        if to_apply and ready:
            lines = [m for svc in services if endpoints.selects(svc, pod)
                     for m in endpoints.mappings(svc, pod, public_ip=ip, host_ports=host_ports)]
            if lines:
                for line in endpoint_lines(lines):
                    log.info("pod=%s %s", pod_ref(pod), line)
                self._event(pod, "EndpointsUpdated", "; ".join(f"{s}:{p} → {i}:{h}" for s, p, i, h in lines))

    def _warn_unserved(self, pod: Mapping[str, Any], services: list[dict[str, Any]],
                       host_ports: Mapping[int, int]) -> None:
        """A Warning Event, once per (pod, Service, port), for each port of a selecting Service that
        the instance does not serve (a Service created after the rental, a named targetPort that
        matches nothing)."""
        uid = _meta(pod)["uid"]
        for port, why in endpoints.unserved_ports(services, pod, host_ports):
            key = (uid, port.service, port.port)
            with self._lock:
                if key in self._unserved_warned:
                    continue
                self._unserved_warned[key] = None
                while len(self._unserved_warned) > 10_000:
                    del self._unserved_warned[next(iter(self._unserved_warned))]
            self._event(pod, "ServicePortNotServed", f"{port.describe()}: {why}", warning=True)

    def _lost(self, pod: Mapping[str, Any], why: str) -> None:
        """The host is gone (offline, no heartbeat, the instance disappeared): the pod fails, as
        on a lost node, and its owner replaces it. A container that merely exited is not lost."""
        meta = _meta(pod)
        self._event(pod, "InstanceLost", f"{why}; failing the pod so that its owner replaces it", warning=True)
        self._write_status(pod, status.failed_status(pod, reason="InstanceLost", message=why, now=now_rfc3339()))
        self._delete_slices(meta["namespace"], meta["uid"])

    # --- an unreachable host (controller.replacement) -------------------------------------------

    def _replacements_held(self, pod: Mapping[str, Any]) -> bool:
        """Too many hosts unreachable at once: this controller's own network is suspect. When such
        a hold ends, every host still unreachable gets a whole grace again, from then on (hosts
        come back one by one)."""
        now = self.clock()
        with self._lock:
            probed = len(self._health)
            unreachable = sum(1 for s in self._health.values() if s.unreachable_since is not None)
            if not replacement.held(unreachable, probed):
                if not self._holding:
                    return False
                self._holding = False
                for state in self._health.values():
                    if state.unreachable_since is not None:
                        state.unreachable_since = now
                return True
            self._holding = True
        self._event(pod, "ReplacementHeld", f"{unreachable} of {probed} instances are unreachable at once: this "
                                            "controller's own network is the likelier cause; no instance is "
                                            "replaced until fewer are", warning=True)
        return True

    def _begin_replacement(self, pod: dict[str, Any], inst: Instance, state: health.HealthState) -> float:
        """The host of the pod's serving instance stayed unreachable past the grace: record the
        replacement (before anything is destroyed), then go on with it."""
        since = replacement.unreachable_for(state, self.clock()) or 0.0
        why = (f"host {inst.public_ip} of instance {inst.id} unreachable for {since:.0f}s "
               f"(KUBE_VAST_HOST_UNREACHABLE_GRACE {self.settings.host_unreachable_grace:g}s): {state.last_message}")
        replacing = replacement.Replacing(inst.id, inst.machine_id, why)
        pod = self._patch_annotations(pod, {A_LAUNCH: _encode(replacement.begin(self._launch_record(pod), replacing))})
        self._event(pod, "HostUnreachable", f"{why}; destroying it and renting a replacement", warning=True)
        return self._replace(pod, replacing, [inst])

    def _replace(self, pod: dict[str, Any], replacing: replacement.Replacing, instances: list[Instance]) -> float:
        """Destroy the instance being replaced until Vast confirms it gone, then clear its
        annotations so that the pod launches again (see controller.replacement)."""
        old = next((i for i in instances if i.id == replacing.instance_id), None)
        if old is not None and not old.gone:
            self._endpoints_not_ready(pod)
            try:
                self._destroy(old.id)
            except VastRejected as exc:
                if exc.error != "no_such_instance":
                    raise
            after = self.vast.get_instance(old.id)
            if after is not None and not after.gone:
                log.warning("pod=%s instance %d still %s after destroy; will retry", pod_ref(pod), old.id,
                            after.actual_status)
                return 2.0
        meta = _meta(pod)
        record = replacement.finish(self._launch_record(pod))
        pod = self._patch_annotations(pod, {A_LAUNCH: _encode(record), A_INSTANCE: None, A_PUBLIC_IP: None,
                                            A_PORTS: None, completion.A_RESTART: None})
        with self._lock:
            self._health.pop(meta["uid"], None)
        self._event(pod, "InstanceReplaced", f"instance {replacing.instance_id} destroyed; launching a replacement "
                                             f"(its machine {replacing.machine_id} is avoided)", warning=True)
        now = now_rfc3339()
        last = {"exitCode": status.LOST_EXIT_CODE, "reason": replacing.cause, "message": replacing.reason,
                "startedAt": status.started_at(pod), "finishedAt": now}
        self._write_status(pod, status.restarting_status(
            pod, reason="ContainerCreating", message=f"replacing instance {replacing.instance_id}",
            last_terminated=last, restart_count=status.restart_count(pod) + 1, now=now))
        return 0.0

    # --- a container that ended (controller.completion) -----------------------------------------

    def _container_ended(self, pod: dict[str, Any], seen: Instance,
                         restart: completion.Restart | None) -> float | None:
        """The container exited, or is being restarted. Judged from a fresh read of the instance,
        never from a listing alone (a listing may predate the last stop or start)."""
        if restart is not None and restart.active_for(seen.id):
            self.fleet.hurry()
            planned = completion.restart_step(restart, seen, now=self.clock(), boot_timeout=self.settings.boot_timeout)
            if planned.action is completion.Action.WAIT and planned.record is None:
                return planned.seconds
        inst = self.vast.get_instance(seen.id)
        if inst is None or inst.gone:
            self.fleet.forget(seen.id)
            return RETRY_SOON  # the next look sees it gone
        self.fleet.remember(inst)
        if inst.host_lost:
            return RETRY_SOON  # the next look fails the pod: InstanceLost
        if restart is not None and restart.active_for(inst.id):
            return self._restart_step(pod, inst, restart)
        if not inst.container_exited:
            return RETRY_SOON  # the listing was older than the instance
        return self._judge_exit(pod, inst, restart)

    def _judge_exit(self, pod: dict[str, Any], inst: Instance, restart: completion.Restart | None) -> float | None:
        """A new exit of the container: the pod ends (Succeeded or Failed, for good) or the
        container restarts on the same instance, by the pod's restartPolicy."""
        exit = completion.ContainerExit.of(inst)
        policy = completion.restart_policy(pod)
        verdict = completion.verdict(policy, exit)
        if verdict is completion.Verdict.RESTART:
            return self._begin_restart(pod, inst, restart, exit, policy)
        meta = _meta(pod)
        name = _container_name(pod)
        ok = verdict is completion.Verdict.SUCCEEDED
        self._event(pod, "ContainerExited", f"container {name} {exit.describe()}: pod {verdict.value} "
                                            f"(restartPolicy {policy}); instance {inst.id} will be destroyed",
                    warning=not ok)
        unknown = exit.code is None
        self._write_status(pod, status.terminated_status(
            pod, phase=verdict.value, exit_code=exit.exit_code, reason=exit.reason, message=exit.message or None,
            now=now_rfc3339(), pod_reason="ExitCodeUnknown" if unknown else None,
            pod_message=(f"Vast reported that container {name} exited but not with which code "
                         f"(status_msg {exit.message!r}); counted as a failure") if unknown else None))
        self._delete_slices(meta["namespace"], meta["uid"])
        return 0.0  # the next look finds the pod finished and destroys the instance

    def _begin_restart(self, pod: dict[str, Any], inst: Instance, restart: completion.Restart | None,
                       exit: completion.ContainerExit, policy: str) -> float:
        now = self.clock()
        record = completion.begin_restart(restart, inst.id, exit, restarts_so_far=status.restart_count(pod), now=now,
                                          base_backoff=self.settings.restart_backoff,
                                          started_at=status.started_at(pod), finished_at=now_rfc3339())
        pod = self._patch_annotations(pod, {completion.A_RESTART: record.encode()})  # first: counted once
        with self._lock:
            self._health.pop(_meta(pod)["uid"], None)
        self._endpoints_not_ready(pod)
        self._event(pod, "BackOff", f"container {_container_name(pod)} {exit.describe()}; restarting it on "
                                    f"instance {inst.id} in {record.not_before - now:.0f}s (restart {record.count}, "
                                    f"restartPolicy {policy})", warning=True)
        self._write_restarting(pod, record, inst, now)
        self.vast.stop(inst.id)
        return RETRY_SOON

    def _restart_step(self, pod: dict[str, Any], inst: Instance, restart: completion.Restart) -> float | None:
        now = self.clock()
        step = completion.restart_step(restart, inst, now=now, boot_timeout=self.settings.boot_timeout)
        if step.action is completion.Action.EXITED:
            return self._judge_exit(pod, inst, restart)
        if step.action is completion.Action.LOST:
            self._lost(pod, f"instance {inst.id} did not run again within {self.settings.boot_timeout:.0f}s "
                            f"of restarting its container")
            return None
        record = step.record or restart
        if step.record is not None:
            pod = self._patch_annotations(pod, {completion.A_RESTART: record.encode()})  # the record first
        if step.action is completion.Action.STOP:
            self.vast.stop(inst.id)
        elif step.action is completion.Action.START:
            self.vast.start(inst.id)
        elif step.action is completion.Action.STARTED:
            self._event(pod, "Started", f"container {_container_name(pod)} started again on instance {inst.id} "
                                        f"(restart {record.count})")
            self._write_status(pod, status.pod_status(
                pod, phase="Running", ready=False, public_ip=inst.public_ip, started_at=now_rfc3339(),
                container_state="running", now=now_rfc3339(), restart_count=record.count))
            return RETRY_SOON
        self._write_restarting(pod, record, inst, now)
        return step.seconds

    def _write_restarting(self, pod: Mapping[str, Any], record: completion.Restart, inst: Instance,
                          now: float) -> None:
        meta = _meta(pod)
        name = _container_name(pod)
        if record.step == "stopping":
            reason = "CrashLoopBackOff"
            message = (f"back-off {completion.backoff(record.count, self.settings.restart_backoff):g}s "
                       f"restarting failed container={name} pod={meta['name']}_{meta['namespace']}({meta['uid']})")
        else:
            reason, message = "ContainerCreating", f"Vast instance {inst.id} is starting the container again"
        self._write_status(pod, status.restarting_status(pod, reason=reason, message=message,
                                                         last_terminated=record.last, restart_count=record.count,
                                                         now=now_rfc3339()))

    def _endpoints_not_ready(self, pod: Mapping[str, Any]) -> None:
        """Take the pod out of its Services (its slices stay, not ready; terminating when the pod
        is being deleted, serving while its health check last passed)."""
        annotations = _annotations(pod)
        ip = annotations.get(A_PUBLIC_IP)
        if not ip:
            return
        try:
            ports = {int(k): int(v) for k, v in json.loads(annotations.get(A_PORTS) or "{}").items()}
        except (ValueError, TypeError, AttributeError):
            ports = {}
        with self._lock:
            state = self._health.get(_meta(pod)["uid"])
        serving = bool(state is not None and state.ready and _meta(pod).get("deletionTimestamp"))
        self._sync_endpoints(pod, ip, ports, serving)

    # --- teardown -------------------------------------------------------------------------------

    def _destroy(self, instance_id: int) -> None:
        self.vast.destroy(instance_id)
        self.fleet.forget(instance_id)

    def _delete_slices(self, namespace: str, uid: str) -> None:
        for s in self.kube.list_endpoint_slices(namespace, f"{endpoints.POD_UID_LABEL}={uid}"):
            self.kube.delete_endpoint_slice(namespace, s["metadata"]["name"])

    def teardown(self, pod: dict[str, Any], *, delete_pod: bool) -> float | None:
        """Destroy the pod's instance(s), confirm they are gone, remove its slices and finalizer. A
        deleted pod's running instance is first drained (:meth:`_drain`): out of its Services,
        stopped, and destroyed once stopped or when its grace period is over."""
        meta = _meta(pod)
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]
        if FINALIZER not in (meta.get("finalizers") or []):
            if delete_pod:
                self.kube.delete_pod(ns, name, uid=uid)
            return None
        ids = {i.id for i in self.fleet.for_pod(uid)}
        listed = {i.id: i for i in self.vast.list_instances(label=self.label(uid)) if not i.gone}
        ids |= set(listed)
        annotated = _annotations(pod).get(A_INSTANCE)
        if annotated and annotated.isdigit():
            ids.add(int(annotated))
        if not ids:
            wait, pod = self._await_uncertain_rent(pod)
            if wait is not None:
                return wait  # an instance may yet show up: the finalizer stays until it is found or ruled out
            meta = _meta(pod)
        if delete_pod and ids:
            wait = self._drain(pod, sorted(ids), listed)
            if wait is not None:
                return wait
        for iid in sorted(ids):
            self._destroy(iid)
            self.checkpoint("destroy-sent", pod=pod_ref(pod), instance=iid)
            after = self.vast.get_instance(iid)
            if after is not None and not after.gone:
                log.warning("pod=%s instance %d still %s after destroy; will retry", pod_ref(pod), iid,
                            after.actual_status)
                return 2.0
            self._event(pod, "InstanceDestroyed", f"instance {iid} destroyed")
        self._delete_slices(ns, uid)
        remaining = [f for f in (meta.get("finalizers") or []) if f != FINALIZER]
        self.kube.patch_pod(ns, name, {"metadata": {"resourceVersion": meta.get("resourceVersion"),
                                                    "finalizers": remaining or None}})
        with self._lock:
            self.booting.discard(pod_ref(pod))
            self._health.pop(uid, None)
            self._written_status.pop(uid, None)
            self._last_event.pop(uid, None)
        if delete_pod:
            self.kube.delete_pod(ns, name, uid=uid)  # as the kubelet does once the pod has stopped
        return None

    def _drain(self, pod: Mapping[str, Any], ids: list[int], listed: Mapping[int, Instance]) -> float | None:
        """Graceful termination (:mod:`controller.termination`): out of the Services first, then
        SIGTERM (Vast's stop), then wait until every instance is stopped or the grace is over.
        Returns when to look again, or None when the instances may be destroyed now."""
        end = termination.deadline(pod, max_grace=self.settings.max_grace_period)
        now = self.clock()
        if end is not None and now < end:
            self._endpoints_not_ready(pod)
        waiting = False
        for iid in ids:
            inst = listed.get(iid) or self.vast.get_instance(iid)
            if inst is None or inst.gone:
                continue
            action = termination.drain_step(inst, now=now, deadline=end)
            if action is termination.Drain.STOP:
                try:
                    self.vast.stop(iid)
                except VastRejected as exc:
                    if exc.error == "no_such_instance":
                        continue
                    raise
                self._event(pod, "Killing", f"Stopping container {_container_name(pod)}: instance {iid} gets "
                                            f"SIGTERM, and is destroyed once stopped or after "
                                            f"{(end or now) - now:.0f}s")
            if action is not termination.Drain.DESTROY:
                waiting = True
        if not waiting or end is None:
            return None
        return max(0.2, min(1.0, end - now))

    # --- status and events ----------------------------------------------------------------------

    def _pending(self, pod: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self._event(pod, reason, message, warning=warning)
        self._write_status(pod, status.pod_status(
            pod, phase="Pending", ready=False, public_ip=None, started_at=None, container_state="waiting",
            reason=reason, message=message, now=now_rfc3339()))

    def _write_status(self, pod: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        meta = _meta(pod)
        fingerprint = json.dumps({k: v for k, v in new.items() if k != "conditions"}, sort_keys=True, default=str) + \
            json.dumps([(c.get("type"), c.get("status"), c.get("reason")) for c in new.get("conditions", [])])
        with self._lock:
            if self._written_status.get(meta["uid"]) == fingerprint:
                return
        self.kube.patch_pod_status(meta["namespace"], meta["name"], new)
        with self._lock:
            self._written_status[meta["uid"]] = fingerprint

    def _event(self, pod: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        uid = _meta(pod).get("uid", "")
        with self._lock:
            if self._last_event.get(uid) == (reason, message):
                return
            self._last_event[uid] = (reason, message)
        (log.warning if warning else log.info)("pod=%s %s: %s", pod_ref(pod), reason, message)
        self.on_event(reason)
        self.kube.event(pod, reason, message, type_="Warning" if warning else "Normal")


@dataclass(frozen=True, slots=True)
class _Choice:
    """The offer a launch takes, and why it is not the webhook's pick or the best one."""

    scored: ScoredOffer
    webhook_offer: int | None
    why_not_webhook: str | None
    why_not_best: str | None

    def annotations(self) -> dict[str, str | None]:
        """``vast.ai/rented-offer-*``: what was rented, and (only when it differs from the webhook's
        ``vast.ai/offer-id``) why."""
        o = self.scored.offer
        return {
            A_RENTED_OFFER: str(o.id),
            A_RENTED_SCORE: f"{self.scored.score:.3f}",
            A_RENTED_PRICE: "" if o.dph_total is None else f"{o.dph_total:.4f}",
            A_RENTED_GPU: f"{o.num_gpus}x {o.gpu_name}" if o.num_gpus > 1 else o.gpu_name,
            A_RENTED_LOCATION: o.location.label,
            A_RENTED_REASON: self.why_not_webhook,
        }


def _why_not(wanted: int | None, chosen: ScoredOffer, skipped: set[int], ranking: Any,
             record: Mapping[str, Any]) -> str | None:
    """Why the launch took ``chosen`` and not offer ``wanted`` (``None``: it took it)."""
    if wanted is None:
        return "no offer was recorded at admission (vast.ai/offer-id)"
    if wanted == chosen.offer.id:
        return None
    failure = record.get("lastFailure")
    if int(record.get("attempts", 0)) and isinstance(failure, Mapping):
        return (f"failing over after {failure.get('reason')} on offer {failure.get('offerId')}; "
                "hosts that failed are avoided")
    if wanted in skipped:
        return f"offer {wanted} is held by another pod's launch (for up to {CLAIM_SECONDS} s)"
    if ranking.find(wanted) is None:
        return f"offer {wanted} no longer matches (rented, gone from the market, or the requirements changed)"
    return f"offer {wanted} is not the best match now"


def _encode(record: Mapping[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _outcome_unknown(exc: VastError) -> bool:
    """Whether Vast may have made the rental that raised ``exc``: the client says so (a 5xx, a
    connection lost after the request went out, an answer after the read timeout, an answer
    without the id), or a 5xx reached here all the same. A refusal (4xx) or a call that never
    reached Vast (connect failure, 429s) made nothing."""
    return exc.uncertain or (isinstance(exc, VastRejected) and exc.status >= 500)


def _dead_for_good(inst: Instance, restart: completion.Restart | None) -> bool:
    """A state that never leads to running again and is not the container's own end: the host is
    lost, or the instance is stopped by someone else. An exited container (judged by the pod's
    restartPolicy) and an instance this controller is restarting are not."""
    if inst.host_lost or inst.gone:
        return True
    if inst.container_exited or (restart is not None and restart.active_for(inst.id)):
        return False
    return inst.dead


def _container_name(pod: Mapping[str, Any]) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("name") or "")


def safe_reconcile(reconciler: Reconciler, namespace: str, name: str) -> float | None:
    """Run one reconcile; Kubernetes and Vast errors are logged and retried later, never raised.
    Anything else is a bug: logged with its traceback and retried later, so that it never ends
    the worker (which would leave every other pod waiting)."""
    try:
        return reconciler.reconcile(namespace, name)
    except (KubeError, VastError) as exc:
        log.warning("pod=%s/%s reconcile failed, retrying: %s", namespace, name, exc)
        return 2.0
    except Exception:
        log.exception("pod=%s/%s reconcile failed with a bug, retrying in %.0fs", namespace, name, RETRY_LATER)
        return RETRY_LATER
