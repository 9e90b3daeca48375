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
3. extra instances for one pod (an uncertain rent that did go through) are destroyed, keeping one;
4. the finalizer is removed only after the instance is confirmed gone.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from vastmarket.config import SelectionConfig
from vastmarket.errors import OfferGone, RequirementError, VastError, VastRejected, VastUnavailable
from vastmarket.explain import endpoint_lines, selection_log
from vastmarket.instances import Instance
from vastmarket.placement import annotated_offer_id
from vastmarket.requirements import requirements_for
from vastmarket.selection import ScoredOffer, ScoringPolicy
from vastmarket.client import VastClient

from . import endpoints, health, status, translate
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
                 clock: Callable[[], float] = time.time) -> None:
        self.kube = kube
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
        self.on_event: Callable[[str], None] = lambda reason: None
        self.booting: set[str] = set()  # pods waiting for their instance to run ("ns/name")
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
        alive = [i for i in instances if not i.dead]
        dead = [i for i in instances if i.dead]
        for inst in dead:
            self._destroy(inst.id)
        if dead and not alive:
            why = f"instance {dead[0].id} is {dead[0].actual_status}"
            if self._was_serving(pod):
                self._lost(pod, why)
                return None
            return self._rent_failed(pod, self._launch_record(pod), dead[0].machine_id, "InstanceFailed", why)
        if len(alive) > 1:
            alive = self._dedupe(pod, alive)
        if not alive:
            if self._was_serving(pod):
                self._lost(pod, "the Vast instance disappeared")
                return None
            return self._launch(pod)
        inst = alive[0]
        if str(inst.id) != _annotations(pod).get(A_INSTANCE):
            pod = self._patch_annotations(pod, {A_INSTANCE: str(inst.id)})
        if not inst.running:
            return self._wait_for_boot(pod, inst)
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
        meta = _meta(pod)
        uid = meta["uid"]
        label = self.label(uid)
        # After a crash between renting and annotating, Vast knows the instance by its label.
        adopted = [i for i in self.vast.list_instances(label=label) if not i.gone]
        if adopted:
            for inst in adopted:
                self.fleet.remember(inst)
            self._event(pod, "InstanceAdopted", f"found instance {adopted[0].id} already rented for this pod")
            return RETRY_SOON
        try:
            spec = translate.launch_spec(pod, lookup=self.lookup, default_disk_gb=self.config.defaults.min_disk_gb)
            req = requirements_for(self.config, pod)
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
        chosen = self._claim(ranking, annotated_offer_id(pod) if not attempts else None)
        if chosen is None:
            self._pending(pod, "NoMatchingOffer", ranking.summary(), warning=True)
            return RETRY_LATER
        offer = chosen.offer
        price = offer.dph_total or 0.0
        refusal = self._reserve(uid, price)
        if refusal:
            self._pending(pod, "BudgetExceeded", f"renting offer {offer.id} at ${price:.3f}/h would exceed the "
                                                 f"budget ({refusal})", warning=True)
            return RETRY_LATER
        try:
            return self._rent(pod, record, chosen, ranking, spec, req, label)
        finally:
            with self._lock:
                self._reserved.pop(uid, None)

    def _claim(self, ranking: Any, wanted: int | None) -> ScoredOffer | None:
        """The best offer (the webhook's pick when it still matches) that no other launch took in
        the last few minutes: concurrent launches must not race for one offer."""
        now = self.clock()
        with self._lock:
            for offer_id, at in list(self._claimed.items()):
                if now - at > 300:
                    del self._claimed[offer_id]
            candidates = [ranking.find(wanted)] if wanted is not None else []
            candidates += list(ranking.top(50))
            for scored in candidates:
                if scored is not None and scored.offer.id not in self._claimed:
                    self._claimed[scored.offer.id] = now
                    return scored  # type: ignore[no-any-return]
        return None

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

    def _rent(self, pod: dict[str, Any], record: dict[str, Any], chosen: ScoredOffer, ranking: Any,
              spec: translate.LaunchSpec, req: Any, label: str) -> float:
        offer = chosen.offer
        price = offer.dph_total or 0.0
        record.update(attempts=int(record.get("attempts", 0)) + 1, offerId=offer.id, machineId=offer.machine_id, rentAt=now_rfc3339())
        pod = self._patch_annotations(pod, {A_LAUNCH: json.dumps(record, separators=(",", ":"))})
        for line in selection_log(ranking, selected_suffix=" - launching..."):
            log.info("pod=%s %s", pod_ref(pod), line)
        self._event(pod, "Renting", f"renting offer {offer.id}: {offer.gpu_display}, ${price:.3f}/h, "
                                    f"{offer.location.label}, score {chosen.score:.2f}")
        try:
            request = spec.rent_request(label)
        except translate.LaunchError as exc:
            self._pending(pod, exc.reason, str(exc), warning=True)
            return RETRY_LATER
        try:
            instance_id = self.vast.rent(offer.id, request)
        except OfferGone as exc:
            return self._rent_failed(pod, record, offer.machine_id, "OfferGone", str(exc))
        except VastRejected as exc:
            return self._rent_failed(pod, record, offer.machine_id, "RentRejected", str(exc))
        except VastUnavailable as exc:
            self._event(pod, "RentUncertain" if exc.uncertain else "VastUnavailable", str(exc), warning=True)
            return 2.0 if exc.uncertain else RETRY_LATER
        pod = self._patch_annotations(pod, {A_INSTANCE: str(instance_id)})
        self._event(pod, "Rented", f"instance {instance_id} rented on offer {offer.id}")
        inst = self.vast.get_instance(instance_id)
        if inst is not None:
            self.fleet.remember(inst)
            billed = inst.dph_total
            if billed is not None and billed > req.max_price * (1 + self.settings.price_tolerance):
                self._destroy(instance_id)
                return self._rent_failed(pod, record, offer.machine_id, "PriceMismatch",
                                         f"instance {instance_id} is billed ${billed:.3f}/h, over the "
                                         f"${req.max_price:.2f}/h cap (offer said ${price:.3f}/h); destroyed")
        return RETRY_SOON

    def _rent_failed(self, pod: Mapping[str, Any], record: dict[str, Any], machine: int | None,
                     reason: str, message: str) -> float:
        failed = [m for m in record.get("failedMachines", []) if isinstance(m, int)]
        if machine is not None and machine not in failed:
            failed.append(machine)
        record["failedMachines"] = failed[-50:]
        self._patch_annotations(pod, {A_LAUNCH: json.dumps(record, separators=(",", ":")), A_INSTANCE: None})
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
        self._write_status(pod, status.pod_status(
            pod, phase="Pending", ready=False, public_ip=None, started_at=None, container_state="waiting",
            reason="ContainerCreating", message=f"Vast instance {inst.id} is {state}", now=now_rfc3339()))
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
                state.observe(result.ok, now, result.message)
        if state.ready != was_ready:
            if state.ready:
                self._event(pod, "InstanceHealthy", f"{probe.describe()} passes at {ip}")
            else:
                self._event(pod, "InstanceUnhealthy", f"{probe.describe()} failed {state.consecutive_failures} "
                                                      f"times: {state.last_message}; out of its Services", warning=True)
        ports_text = json.dumps({str(k): v for k, v in sorted(inst.ports.items())}, separators=(",", ":"))
        first_time = _annotations(pod).get(A_PUBLIC_IP) != ip or _annotations(pod).get(A_PORTS) != ports_text
        if first_time:
            pod = self._patch_annotations(pod, {A_PUBLIC_IP: ip, A_PORTS: ports_text})
            self._event(pod, "InstanceRunning", f"instance {inst.id} running at {ip}")
        started_at = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self._write_status(pod, status.pod_status(
            pod, phase="Running", ready=state.ready, public_ip=ip, started_at=started_at,
            container_state="running", now=now_rfc3339(),
            message=None if state.ready else state.last_message))
        self._sync_endpoints(pod, ip, inst.ports, state.ready)
        return min(self.settings.resync, max(probe.period_seconds, 0.2))

    def _sync_endpoints(self, pod: Mapping[str, Any], ip: str, host_ports: Mapping[int, int], ready: bool) -> None:
        meta = _meta(pod)
        ns = meta["namespace"]
        services = self.kube.list_services(ns)
        existing = self.kube.list_endpoint_slices(ns, f"{endpoints.POD_UID_LABEL}={meta['uid']}")
        node = (pod.get("spec") or {}).get("nodeName", "")
        to_apply, to_delete = endpoints.plan_slices(services, pod, existing, public_ip=ip,
                                                    host_ports=host_ports, ready=ready, node_name=node)
        for body in to_apply:
            self.kube.apply_endpoint_slice(ns, body)
        for name in to_delete:
            self.kube.delete_endpoint_slice(ns, name)
        if to_apply and ready:
            lines = [m for svc in services if endpoints.selects(svc, pod)
                     for m in endpoints.mappings(svc, pod, public_ip=ip, host_ports=host_ports)]
            if lines:
                for line in endpoint_lines(lines):
                    log.info("pod=%s %s", pod_ref(pod), line)
                self._event(pod, "EndpointsUpdated", "; ".join(f"{s}:{p} → {i}:{h}" for s, p, i, h in lines))

    def _lost(self, pod: Mapping[str, Any], why: str) -> None:
        meta = _meta(pod)
        self._event(pod, "InstanceLost", f"{why}; failing the pod so that its owner replaces it", warning=True)
        self._write_status(pod, status.failed_status(pod, reason="InstanceLost", message=why, now=now_rfc3339()))
        self._delete_slices(meta["namespace"], meta["uid"])

    # --- teardown -------------------------------------------------------------------------------

    def _destroy(self, instance_id: int) -> None:
        self.vast.destroy(instance_id)
        self.fleet.forget(instance_id)

    def _delete_slices(self, namespace: str, uid: str) -> None:
        for s in self.kube.list_endpoint_slices(namespace, f"{endpoints.POD_UID_LABEL}={uid}"):
            self.kube.delete_endpoint_slice(namespace, s["metadata"]["name"])

    def teardown(self, pod: Mapping[str, Any], *, delete_pod: bool) -> float | None:
        """Destroy the pod's instance(s), confirm they are gone, remove its slices and finalizer."""
        meta = _meta(pod)
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]
        if FINALIZER not in (meta.get("finalizers") or []):
            if delete_pod:
                self.kube.delete_pod(ns, name, uid=uid)
            return None
        ids = {i.id for i in self.fleet.for_pod(uid)}
        ids |= {i.id for i in self.vast.list_instances(label=self.label(uid)) if not i.gone}
        annotated = _annotations(pod).get(A_INSTANCE)
        if annotated and annotated.isdigit():
            ids.add(int(annotated))
        for iid in sorted(ids):
            self._destroy(iid)
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


def safe_reconcile(reconciler: Reconciler, namespace: str, name: str) -> float | None:
    """Run one reconcile; Kubernetes and Vast errors are logged and retried later, never raised."""
    try:
        return reconciler.reconcile(namespace, name)
    except (KubeError, VastError) as exc:
        log.warning("pod=%s/%s reconcile failed, retrying: %s", namespace, name, exc)
        return 2.0
