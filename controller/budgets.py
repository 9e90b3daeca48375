"""Team budgets in the controller: accounting, the launch check (the hard stop), the published
state the webhook reads, and the per-namespace metrics.

:class:`BudgetKeeper` runs on the leader every ``interval`` seconds (:meth:`sync`): it lists the
VastBudgets, maps this cluster's live instances to namespaces by their pod (the instance label
carries the pod's uid), accrues each budget's spend from the instances' billed prices
(:func:`vastmarket.budgets.accrue`) and writes it to the budget's status with a conditional
update (its ``resourceVersion``: a write that lost a race is accrued again next time, from the
``accruedUpTo`` that did get written, so nothing is counted twice), publishes the budget state
beside the offer snapshot (:class:`vastmarket.budgets.BudgetStateFile`) and wakes pods held for
a budget whose namespace has room again.

:meth:`BudgetKeeper.reserve` is the reconciler's launch check: a rent goes out only while the
namespace's committed $/h (live instances, plus rents in flight or too recent for the fleet's
listing to show) plus the offer's price stays within every budget of the namespace. Until the
budgets have been read once, nothing is launched in a namespace (it could have a budget).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vastmarket.budgets import (
    DENY, Accrual, Billed, Budget, BudgetState, BudgetStateFile, InvalidBudget, NamespaceState, Refusal, Usage,
    accrue, refusals, rfc3339,
)

from . import status as pod_status_module
from .fleet import Fleet, pod_uid_of
from .kube import Conflict, KubeError, KubeGateway, NotFound

log = logging.getLogger("kube_vast.controller.budgets")

CONDITION = "VastBudgetAvailable"  # a pod condition: False while held for a budget
HELD_REASON = "BudgetExceeded"
OFFER_PRICE = "vast.ai/offer-price"  # the webhook's pick: what a pod waiting for its instance adds
NOT_READ_YET = "the namespace's VastBudgets have not been read yet"


@dataclass
class _Reservation:
    namespace: str
    price: float
    rented_at: float | None = None


@dataclass(frozen=True)
class _Held:
    key: str  # namespace/name
    namespace: str
    price: float


class BudgetGate:
    """What the reconciler asks before and after a rent. This one has no budgets (unit tests,
    and a controller without the CRD behave the same)."""

    def reserve(self, namespace: str, uid: str, price: float, *, key: str = "") -> Refusal | None:
        return None

    def release(self, uid: str) -> None:
        return None

    def rented(self, pod: Mapping[str, Any]) -> None:
        return None

    def fits(self, namespace: str, uid: str, price: float) -> Refusal | None:
        """Whether the pod's instance may cost ``price`` $/h (a raised bid), reserving nothing."""
        return None


NO_BUDGETS = BudgetGate()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def held_status(pod: Mapping[str, Any], message: str, now: str) -> dict[str, Any]:
    """The status of a pod held Pending for a budget: reason ``BudgetExceeded`` and the condition
    ``VastBudgetAvailable=False`` with the budget's message."""
    new = pod_status_module.pod_status(pod, phase="Pending", ready=False, public_ip=None, started_at=None,
                                       container_state="waiting", reason=HELD_REASON, message=message, now=now)
    new["conditions"] = _with_condition(new.get("conditions") or [], "False", HELD_REASON, message, now)
    return new


def _with_condition(conditions: Sequence[Mapping[str, Any]], value: str, reason: str, message: str,
                    now: str) -> list[dict[str, Any]]:
    out = [dict(c) for c in conditions if c.get("type") != CONDITION]
    old = next((c for c in conditions if c.get("type") == CONDITION), None)
    since = old.get("lastTransitionTime") if old is not None and old.get("status") == value else now
    out.append({"type": CONDITION, "status": value, "reason": reason, "message": message,
                "lastProbeTime": None, "lastTransitionTime": since})
    return out


def _released_conditions(pod: Mapping[str, Any], now: str) -> list[dict[str, Any]] | None:
    """The pod's conditions with ``VastBudgetAvailable`` turned True, when it was False."""
    conditions = _mapping(pod.get("status")).get("conditions") or []
    if not any(_mapping(c).get("type") == CONDITION and _mapping(c).get("status") == "False" for c in conditions):
        return None
    return _with_condition([_mapping(c) for c in conditions], "True", "Launched",
                           "the namespace's budgets had room: the instance was rented", now)


class BudgetKeeper(BudgetGate):
    def __init__(self, kube: KubeGateway, fleet: Fleet, virtual_nodes: Sequence[str], state: BudgetStateFile, *,
                 interval: float = 5.0, hold: float = 15.0, clock: Callable[[], float] = time.time) -> None:
        self.kube = kube
        self.fleet = fleet
        self.virtual_nodes = tuple(virtual_nodes)
        self.state_file = state
        self.interval = interval
        self.hold = hold  # a rent counts at its offer's price this long, whatever the listing shows
        self.clock = clock
        self.wake: Callable[[str], None] = lambda key: None  # reconcile this pod again (the work queue)
        self._lock = threading.Lock()
        self._budgets: list[Budget] = []
        self._read = False
        self._ns_of: dict[str, str] = {}  # pod uid → namespace
        self._reserved: dict[str, _Reservation] = {}
        self._held: dict[str, _Held] = {}  # pod uid → held for a budget
        self._waiting: dict[str, Usage] = {}  # namespace → admitted pods waiting for an instance
        self._prev: dict[str, tuple[float, dict[int, Billed]]] = {}  # namespace → (last sync, its instances)
        self._free: dict[str, Accrual] = {}  # namespaces without a budget: accrued since this controller started
        self._unread: set[str] = set()  # pods turned away before the first round: woken after it
        self.last_state: BudgetState | None = None

    # --- the launch check (reconciler threads) ---------------------------------------------------

    def reserve(self, namespace: str, uid: str, price: float, *, key: str = "") -> Refusal | None:
        now = self.clock()
        with self._lock:
            self._ns_of[uid] = namespace
            if not self._read:
                if key:
                    self._unread.add(key)
                return Refusal("", DENY, NOT_READ_YET)
            budgets = [b for b in self._budgets if b.namespace == namespace]
            if budgets:
                found = refusals(budgets, self._usage(namespace, now, excluding=uid), price, now=now)
                if found:
                    self._held[uid] = _Held(key, namespace, price)
                    return Refusal(found[0].budget, found[0].on_exceed, "; ".join(r.message for r in found))
            self._held.pop(uid, None)
            self._reserved[uid] = _Reservation(namespace, price)
            return None

    def fits(self, namespace: str, uid: str, price: float) -> Refusal | None:
        now = self.clock()
        with self._lock:
            budgets = [b for b in self._budgets if b.namespace == namespace]
            if not budgets:
                return None
            usage = self._usage(namespace, now, excluding=uid)
            found = refusals(budgets, usage, price, now=now)
        return Refusal(found[0].budget, found[0].on_exceed, "; ".join(r.message for r in found)) if found else None

    def release(self, uid: str) -> None:
        """After the launch step: a reservation whose rent did not go out is dropped."""
        with self._lock:
            r = self._reserved.get(uid)
            if r is not None and r.rented_at is None:
                del self._reserved[uid]

    def rented(self, pod: Mapping[str, Any]) -> None:
        """The rent went out (or may have): it counts until the listing surely shows it; the
        pod's ``VastBudgetAvailable`` condition, if False, turns True."""
        meta = _mapping(pod.get("metadata"))
        uid = str(meta.get("uid") or "")
        with self._lock:
            r = self._reserved.get(uid)
            if r is not None and r.rented_at is None:
                r.rented_at = self.clock()
            self._held.pop(uid, None)
        released = _released_conditions(pod, rfc3339(self.clock()))
        if released is not None:
            try:
                self.kube.patch_pod_status(str(meta.get("namespace")), str(meta.get("name")), {"conditions": released})
            except KubeError as exc:
                log.warning("pod=%s/%s condition %s not updated: %s", meta.get("namespace"), meta.get("name"),
                            CONDITION, exc)

    def _usage(self, namespace: str, now: float, *, excluding: str = "") -> Usage:
        """Committed $/h and instances of ``namespace`` now (lock held): the fleet's live instances
        of its pods, each pod at least at its reservation while that holds."""
        for uid, r in list(self._reserved.items()):
            if r.rented_at is not None and now - r.rented_at > self.hold:
                del self._reserved[uid]
        per_pod: dict[str, tuple[float, int]] = {}
        for inst in self.fleet.instances():
            owner = pod_uid_of(inst.label, self.fleet.cluster_id)
            if inst.gone or owner is None or owner == excluding or self._ns_of.get(owner) != namespace:
                continue
            price, count = per_pod.get(owner, (0.0, 0))
            per_pod[owner] = (price + (inst.dph_total or 0.0), count + 1)
        for uid, r in self._reserved.items():
            if r.namespace == namespace and uid != excluding:
                price, count = per_pod.get(uid, (0.0, 0))
                per_pod[uid] = (max(price, r.price), max(count, 1))
        waiting = self._waiting.get(namespace, Usage())
        return Usage(sum(p for p, _ in per_pod.values()), sum(c for _, c in per_pod.values()),
                     waiting.waiting, waiting.waiting_pods)

    # --- accounting (the leader's budget thread) -------------------------------------------------

    def run(self, stop: threading.Event, leading: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.sync() if leading.is_set() else self.mirror()
            except Exception:  # a bug: logged, and the next round tries again
                log.exception("budget accounting failed")
            # Until the first round (launches wait for it), look again soon.
            stop.wait(self.interval if self._read else min(self.interval, 0.2))

    def mirror(self) -> bool:
        """A standby replica: publish, for the webhook beside it, the state the leader last wrote
        into the budgets' status (committed $/h, live instances, spend); it accrues nothing."""
        read = self._list_budgets_and_pods()
        if read is None:
            return False
        listed_at, listed, pods = read
        now = self.clock()
        per_ns: dict[str, tuple[Usage, list[Budget]]] = {}
        for obj in listed or []:
            try:
                budget = Budget.from_object(obj)
            except InvalidBudget:
                continue
            st = _mapping(obj.get("status"))
            committed, count = st.get("committedPerHour"), st.get("liveInstances")
            usage, found = per_ns.get(budget.namespace, (Usage(), []))
            if isinstance(committed, (int, float)) and committed >= usage.committed:
                usage = Usage(float(committed), int(count) if isinstance(count, int) else usage.instances)
            per_ns[budget.namespace] = (usage, [*found, budget])
        with self._lock:
            waiting = self._waiting_from(pods)
        state = BudgetState(now, {ns: NamespaceState(replace(u, waiting=waiting.get(ns, Usage()).waiting,
                                                             waiting_pods=waiting.get(ns, Usage()).waiting_pods),
                                                     tuple(found))
                                  for ns, (u, found) in sorted(per_ns.items())}, listed_at)
        self.state_file.publish(state)
        self.last_state = state
        return True

    def sync(self) -> bool:
        """One round: read budgets and pods, accrue and write each budget's status, publish the
        state, wake held pods that now fit. False when the budgets could not be read."""
        if self.fleet.refreshed_at is None:
            return False  # the instances are not known yet: accruing now would skip their time
        read = self._list_budgets_and_pods()
        if read is None:
            return False
        listed_at, listed, pods = read
        budgets = []
        for obj in listed or []:
            try:
                budgets.append(Budget.from_object(obj))
            except InvalidBudget as exc:
                meta = _mapping(obj.get("metadata"))
                log.warning("vastbudget=%s/%s ignored: %s", meta.get("namespace"), meta.get("name"), exc)
        now = self.clock()
        with self._lock:
            # The pods that exist, plus those gone whose instances or rents still count.
            owners = {pod_uid_of(i.label, self.fleet.cluster_id) for i in self.fleet.instances()} | set(self._reserved)
            ns_of = {uid: ns for uid, ns in self._ns_of.items() if uid in owners}
            for p in pods:
                meta = _mapping(p.get("metadata"))
                ns_of[str(meta.get("uid"))] = str(meta.get("namespace"))
            self._ns_of = ns_of
            self._waiting = self._waiting_from(pods)
        billed = self._billed_by_namespace()
        written = [self._account(b, billed.get(b.namespace, {}), now) for b in budgets]
        with self._lock:
            self._budgets = written
            self._read = True
            unread, self._unread = self._unread, set()
            namespaces = {b.namespace for b in written} | set(billed) | set(self._waiting)
            state = BudgetState(now, {ns: NamespaceState(self._usage(ns, now),
                                                         tuple(b for b in written if b.namespace == ns))
                                      for ns in sorted(namespaces)}, listed_at)
            for ns in namespaces:
                if not any(b.namespace == ns for b in written):
                    prev = self._prev.get(ns)
                    self._free[ns] = accrue(self._free.get(ns, Accrual(accrued_up_to=now)),
                                            billed.get(ns, {}).values(), now,
                                            vanished=_vanished(prev, billed.get(ns, {})))
            self._prev = {ns: (now, dict(billed.get(ns, {}))) for ns in namespaces}
            held = list(self._held.items())
        self.state_file.publish(state)
        self.last_state = state
        for key in sorted(unread):
            self.wake(key)
        self._wake_fitting(held, now)
        return True

    def _list_budgets_and_pods(self) -> tuple[float, list[dict[str, Any]] | None, list[dict[str, Any]]] | None:
        """When the listing began, the VastBudgets (None: no CRD) and the pods that count against
        them; None (logged) when the cluster could not be read."""
        listed_at = self.clock()
        try:
            return listed_at, self.kube.list_vast_budgets(), self._pods()
        except KubeError as exc:
            log.warning("budgets not read: %s", exc)
            return None

    def _pods(self) -> list[dict[str, Any]]:
        pods, _ = self.kube.list_pods(field_selector="status.phase=Pending")
        seen = {str(_mapping(p.get("metadata")).get("uid")) for p in pods}
        for node in self.virtual_nodes:
            bound, _ = self.kube.list_pods(field_selector=f"spec.nodeName={node}")
            pods += [p for p in bound if str(_mapping(p.get("metadata")).get("uid")) not in seen]
        return pods

    def _waiting_from(self, pods: Iterable[Mapping[str, Any]]) -> dict[str, Usage]:
        """Per namespace, the pods admitted with an offer that have no instance yet (lock held)."""
        with_instance = {pod_uid_of(i.label, self.fleet.cluster_id) for i in self.fleet.instances() if not i.gone}
        out: dict[str, Usage] = {}
        for p in pods:
            meta, st = _mapping(p.get("metadata")), _mapping(p.get("status"))
            uid = str(meta.get("uid"))
            if meta.get("deletionTimestamp") or st.get("phase") != "Pending" or uid in with_instance \
                    or uid in self._reserved:
                continue
            try:
                price = float(_mapping(meta.get("annotations")).get(OFFER_PRICE) or "")
            except ValueError:
                continue
            ns = str(meta.get("namespace"))
            u = out.get(ns, Usage())
            out[ns] = replace(u, waiting=u.waiting + price, waiting_pods=u.waiting_pods + 1)
        return out

    def _billed_by_namespace(self) -> dict[str, dict[int, Billed]]:
        out: dict[str, dict[int, Billed]] = {}
        with self._lock:
            ns_of = dict(self._ns_of)
        for inst in self.fleet.instances():
            uid = pod_uid_of(inst.label, self.fleet.cluster_id)
            ns = ns_of.get(uid or "")
            if inst.gone or ns is None:
                continue
            out.setdefault(ns, {})[inst.id] = Billed.of(inst)
        return out

    def _account(self, budget: Budget, billed: Mapping[int, Billed], now: float) -> Budget:
        """Accrue one budget to ``now`` and write its status; the budget as it then stands."""
        prev = self._prev.get(budget.namespace)
        vanished = _vanished(prev, billed) if prev is not None and budget.accrual.accrued_up_to is not None \
            and abs(prev[0] - budget.accrual.accrued_up_to) < 1e-3 else []
        accrual = accrue(budget.accrual, billed.values(), now, vanished=vanished)
        with self._lock:
            usage = self._usage(budget.namespace, now)
        status = {**accrual.to_status(), "committedPerHour": round(usage.committed, 6),
                  "liveInstances": usage.instances, "lastReconciled": rfc3339(now)}
        try:
            written = self.kube.patch_vast_budget_status(budget.namespace, budget.name, status,
                                                         resource_version=budget.resource_version)
        except (Conflict, NotFound) as exc:
            log.info("vastbudget=%s not written (%s): accrued again next round", budget.ref, exc)
            return budget
        except KubeError as exc:
            log.warning("vastbudget=%s status not written: %s", budget.ref, exc)
            return budget
        version = str(_mapping(_mapping(written).get("metadata")).get("resourceVersion") or budget.resource_version)
        return replace(budget, accrual=accrual, resource_version=version)

    def _wake_fitting(self, held: Sequence[tuple[str, _Held]], now: float) -> None:
        for uid, h in held:
            with self._lock:
                budgets = [b for b in self._budgets if b.namespace == h.namespace]
                fits = not refusals(budgets, self._usage(h.namespace, now, excluding=uid), h.price, now=now)
            if fits:
                with self._lock:
                    self._held.pop(uid, None)  # held again by its next launch step if room went meanwhile
                if h.key:
                    self.wake(h.key)

    # --- metrics --------------------------------------------------------------------------------

    def spend(self, namespace: str) -> Accrual:
        """The namespace's spend this month: its budget that has counted longest, else what this
        controller counted since it started (a namespace without a VastBudget keeps no status)."""
        with self._lock:
            mine = [b.accrual for b in self._budgets if b.namespace == namespace]
            return max(mine, key=lambda a: a.spend) if mine else self._free.get(namespace, Accrual())


def _vanished(prev: tuple[float, Mapping[int, Billed]] | None, now: Mapping[int, Billed]) -> list[Billed]:
    if prev is None:
        return []
    return [b for iid, b in prev[1].items() if iid not in now]


class BudgetCollector(Collector):
    """Per-namespace Prometheus metrics from the keeper's last round."""

    def __init__(self, keeper: BudgetKeeper) -> None:
        self.keeper = keeper

    def collect(self) -> Iterable[Any]:
        committed = GaugeMetricFamily("kube_vast_namespace_committed_usd_per_hour",
                                      "$/h of the namespace's live Vast instances (their billed dph_total)",
                                      labels=["namespace"])
        instances = GaugeMetricFamily("kube_vast_namespace_instances", "Live Vast instances of the namespace",
                                      labels=["namespace"])
        waiting = GaugeMetricFamily("kube_vast_namespace_waiting_usd_per_hour",
                                    "$/h of the namespace's admitted pods waiting for an instance",
                                    labels=["namespace"])
        spend = CounterMetricFamily("kube_vast_namespace_spend_usd", "USD the namespace's instances billed this "
                                    "month (UTC), by GPU model", labels=["namespace", "gpu"])
        accrued = GaugeMetricFamily("kube_vast_namespace_spend_accrued_up_to_seconds",
                                    "The instant (epoch seconds) the namespace's spend is counted to",
                                    labels=["namespace"])
        max_price = GaugeMetricFamily("kube_vast_budget_max_usd_per_hour", "A VastBudget's maxPricePerHour",
                                      labels=["namespace", "budget"])
        max_instances = GaugeMetricFamily("kube_vast_budget_max_instances", "A VastBudget's maxInstances",
                                          labels=["namespace", "budget"])
        monthly = GaugeMetricFamily("kube_vast_budget_monthly_limit_usd", "A VastBudget's monthlyLimit",
                                    labels=["namespace", "budget"])
        state = self.keeper.last_state
        for ns, s in sorted((state.namespaces if state is not None else {}).items()):
            committed.add_metric([ns], s.usage.committed)
            instances.add_metric([ns], float(s.usage.instances))
            waiting.add_metric([ns], s.usage.waiting)
            accrual = self.keeper.spend(ns)
            for gpu, usd in sorted(accrual.by_gpu.items()) or [("none", 0.0)]:
                spend.add_metric([ns, gpu], usd)
            if accrual.accrued_up_to is not None:
                accrued.add_metric([ns], accrual.accrued_up_to)
            for b in s.budgets:
                if b.spec.max_price_per_hour is not None:
                    max_price.add_metric([ns, b.name], b.spec.max_price_per_hour)
                if b.spec.max_instances is not None:
                    max_instances.add_metric([ns, b.name], float(b.spec.max_instances))
                if b.spec.monthly_limit is not None:
                    monthly.add_metric([ns, b.name], b.spec.monthly_limit)
        yield from (committed, instances, waiting, spend, accrued, max_price, max_instances, monthly)
