"""Team budgets (the namespaced ``VastBudget`` resource), pure: what a budget allows, what a
namespace has committed and spent, and the budget state the controller publishes for the webhook.

* :class:`BudgetSpec` — ``maxPricePerHour``, ``maxInstances``, ``monthlyLimit`` (USD, calendar
  month UTC) and ``onExceed`` (``deny`` at admission, or ``queue``: admitted, held Pending until
  room frees), read defensively from the resource (the CRD's schema validates it first).
* :class:`Accrual` — a budget's spend this month and the monotonic ``accruedUpTo`` instant it is
  accrued to, as kept in the resource's status: :func:`accrue` adds what the namespace's
  instances billed between ``accruedUpTo`` and now, and moves ``accruedUpTo`` to now. A
  controller killed before it writes the status accrues the same interval again from the old
  instant (nothing forgotten); once written, that interval is never counted again (nothing
  doubled). A new month starts from zero at its first instant.
* :class:`Billed` — one live instance as billed: its ``dph_total`` (bids at their bid) while it
  is not stopped, only its disk (``storage_cost`` × GB / 720 h) while it is stopped (paused).
* :func:`refusals` — which budgets a pod adding ``price`` $/h would exceed, each with a message
  naming the budget, the limit, what is committed and what the pod adds.
* :class:`BudgetState` / :class:`BudgetStateFile` — what the controller publishes beside the offer
  snapshot (per namespace: committed $/h, live instances, $/h admitted and waiting, spend, the
  budgets), written atomically; the webhook reads it, never the Kubernetes API.

No I/O but the state file's read and atomic write.
"""

from __future__ import annotations

import calendar
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import KubeVastError
from .files import write_json_atomically
from .instances import Instance

GROUP = "vast.ai"
VERSION = "v1alpha1"
PLURAL = "vastbudgets"
KIND = "VastBudget"
DENY = "deny"
QUEUE = "queue"
ON_EXCEED = (DENY, QUEUE)
HOURS_PER_MONTH = 720.0  # Vast prices storage per GB per month of 30 days
STATE_FORMAT = 1
STATE_FILE = "budgets.json"  # beside the offer snapshot


class InvalidBudget(KubeVastError):
    """A VastBudget whose spec cannot be read (the CRD's schema should have refused it)."""


def _number(spec: Mapping[str, Any], key: str, *, integer: bool = False) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidBudget(f"spec.{key}: expected a number of 0 or more, got {value!r}")
    if integer and int(value) != value:
        raise InvalidBudget(f"spec.{key}: expected a whole number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    max_price_per_hour: float | None = None
    max_instances: int | None = None
    monthly_limit: float | None = None
    on_exceed: str = DENY

    @classmethod
    def from_json(cls, spec: Any) -> BudgetSpec:
        if not isinstance(spec, Mapping):
            raise InvalidBudget("spec: expected an object")
        on_exceed = spec.get("onExceed", DENY)
        if on_exceed not in ON_EXCEED:
            raise InvalidBudget(f"spec.onExceed: expected deny or queue, got {on_exceed!r}")
        instances = _number(spec, "maxInstances", integer=True)
        return cls(max_price_per_hour=_number(spec, "maxPricePerHour"),
                   max_instances=None if instances is None else int(instances),
                   monthly_limit=_number(spec, "monthlyLimit"), on_exceed=str(on_exceed))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"onExceed": self.on_exceed}
        if self.max_price_per_hour is not None:
            out["maxPricePerHour"] = self.max_price_per_hour
        if self.max_instances is not None:
            out["maxInstances"] = self.max_instances
        if self.monthly_limit is not None:
            out["monthlyLimit"] = self.monthly_limit
        return out


def month_of(ts: float) -> str:
    """``2026-12`` for an epoch instant (UTC)."""
    return time.strftime("%Y-%m", time.gmtime(ts))


def month_start(ts: float) -> float:
    t = time.gmtime(ts)
    return float(calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)))


def rfc3339(ts: float) -> str:
    """An instant with milliseconds, UTC: ``2026-12-01T18:09:56.123Z``."""
    millis = round(ts * 1000)
    whole, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def parse_rfc3339(text: Any) -> float | None:
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    body = text[:-1]
    whole, _, frac = body.partition(".")
    try:
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        return seconds + (float(f"0.{frac}") if frac else 0.0)
    except ValueError:
        return None


SEARCH_STORAGE_GB = 8.0  # the disk Vast prices into a search's dph_total when the search names none


def rental_price(dph_total: float | None, dph_base: float | None, disk_gb: float) -> float:
    """What a rental of an offer with ``disk_gb`` of disk will be billed, $/h: the offer's
    ``dph_total`` prices :data:`SEARCH_STORAGE_GB` of disk, so more disk adds its share of the
    storage part (``dph_total - dph_base``)."""
    total = dph_total or 0.0
    if dph_base is None or total <= dph_base:
        return total
    return total + max(0.0, disk_gb - SEARCH_STORAGE_GB) * (total - dph_base) / SEARCH_STORAGE_GB


@dataclass(frozen=True, slots=True)
class Billed:
    """One live instance as Vast bills it: ``rate`` $/h now (its ``dph_total``, or only its disk
    while stopped), ``committed`` $/h (its ``dph_total``: what it bills once running), since
    ``started_at`` (its rental; ``None`` when unknown)."""

    instance_id: int
    rate: float
    committed: float
    gpu: str
    started_at: float | None = None

    @classmethod
    def of(cls, inst: Instance) -> Billed:
        price = inst.dph_total or 0.0
        if inst.actual_status == "stopped" or inst.cur_state == "stopped":
            disk = (inst.storage_cost or 0.0) * (inst.disk_space or 0.0) / HOURS_PER_MONTH
            rate = min(price, disk) if price else disk
        else:
            rate = price
        return cls(inst.id, rate, price, inst.gpu_name or "unknown", inst.start_date)


@dataclass(frozen=True, slots=True)
class Accrual:
    """A budget's spend in ``month`` (USD, also by GPU model), accrued up to ``accrued_up_to``."""

    spend: float = 0.0
    month: str = ""
    accrued_up_to: float | None = None
    by_gpu: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_status(cls, status: Any) -> Accrual:
        """From the resource's status; anything unreadable reads as nothing accrued yet."""
        if not isinstance(status, Mapping):
            return cls()
        spend = status.get("spendThisMonth")
        by_gpu = status.get("spendByGPU")
        month = status.get("month")
        return cls(
            spend=float(spend) if isinstance(spend, (int, float)) and not isinstance(spend, bool)
            and math.isfinite(spend) and spend >= 0 else 0.0,
            month=month if isinstance(month, str) else "",
            accrued_up_to=parse_rfc3339(status.get("accruedUpTo")),
            by_gpu={str(k): float(v) for k, v in by_gpu.items() if isinstance(v, (int, float))}
            if isinstance(by_gpu, Mapping) else {},
        )

    def to_status(self) -> dict[str, Any]:
        # Unrounded: rounding at every write would add up over a month of writes.
        return {"spendThisMonth": self.spend, "month": self.month,
                "accruedUpTo": rfc3339(self.accrued_up_to) if self.accrued_up_to is not None else None,
                "spendByGPU": dict(sorted(self.by_gpu.items()))}


def accrue(accrual: Accrual, billed: Iterable[Billed], now: float, *,
           vanished: Iterable[Billed] = ()) -> Accrual:
    """``accrual`` plus what ``billed`` (the namespace's live instances now) cost from
    ``accrued_up_to`` (each from its rental when later; the month's start when later) to ``now``.
    ``vanished`` are instances live at ``accrued_up_to`` and gone by now: each is counted for half
    the interval (when in it it went is unknown). ``now`` never moves ``accrued_up_to`` back: an
    earlier ``now`` (another replica's clock) accrues nothing."""
    now = math.floor(now * 1000) / 1000  # what the status keeps (milliseconds): the next round starts there
    since = accrual.accrued_up_to
    if since is not None and now <= since:
        return accrual
    start_of_month = month_start(now)
    month = month_of(now)
    spend, by_gpu = (accrual.spend, dict(accrual.by_gpu)) if accrual.month == month else (0.0, {})
    floor = start_of_month if since is None else max(since, start_of_month)

    def add(b: Billed, hours: float) -> None:
        nonlocal spend
        cost = b.rate * max(0.0, hours)
        spend += cost
        by_gpu[b.gpu] = by_gpu.get(b.gpu, 0.0) + cost

    for b in billed:
        begin = floor if b.started_at is None else max(floor, b.started_at)
        if since is None and b.started_at is None:
            begin = now  # first look at a budget, rental time unknown: nothing known to count
        add(b, (now - begin) / 3600.0)
    if since is not None:
        for b in vanished:
            add(b, (now - floor) / 7200.0)
    return Accrual(spend=spend, month=month, accrued_up_to=now, by_gpu=by_gpu)


@dataclass(frozen=True, slots=True)
class Usage:
    """A namespace now: committed $/h and live instances, $/h admitted and waiting for an
    instance (``waiting``, pods ``waiting_pods``)."""

    committed: float = 0.0
    instances: int = 0
    waiting: float = 0.0
    waiting_pods: int = 0

    def with_pod(self, price: float) -> Usage:
        return replace(self, committed=self.committed + price, instances=self.instances + 1)


@dataclass(frozen=True, slots=True)
class Budget:
    """One VastBudget: where, its spec, its accrual (from its status) and its resource version."""

    namespace: str
    name: str
    spec: BudgetSpec
    accrual: Accrual = Accrual()
    resource_version: str = ""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Budget:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        return cls(str(meta.get("namespace") or ""), str(meta.get("name") or ""), BudgetSpec.from_json(obj.get("spec")),
                   Accrual.from_status(obj.get("status")), str(meta.get("resourceVersion") or ""))


@dataclass(frozen=True, slots=True)
class Refusal:
    budget: str  # namespace/name
    on_exceed: str
    message: str


def _money(x: float) -> str:
    """Cents, or tenths of a cent where they matter (a $0.065/h GPU)."""
    return f"${x:.2f}" if abs(x) >= 1 or abs(x * 100 - round(x * 100)) < 1e-6 else f"${x:.3f}"


def refusals(budgets: Iterable[Budget], usage: Usage, price: float, *, now: float,
             counting_waiting: bool = False) -> list[Refusal]:
    """The budgets that a pod adding ``price`` $/h (and one instance) to ``usage`` would exceed,
    each with why. With ``counting_waiting`` (admission) the pods admitted and waiting count as
    committed too."""
    committed = usage.committed + (usage.waiting if counting_waiting else 0.0)
    count = usage.instances + (usage.waiting_pods if counting_waiting else 0)
    waiting = f" + {_money(usage.waiting)}/h admitted and waiting ({usage.waiting_pods} pods)" \
        if counting_waiting and usage.waiting_pods else ""
    out: list[Refusal] = []
    for b in budgets:
        s = b.spec
        head = f"VastBudget {b.ref}"
        if s.max_price_per_hour is not None and committed + price > s.max_price_per_hour + 1e-9:
            out.append(Refusal(b.ref, s.on_exceed,
                               f"{head}: maxPricePerHour {_money(s.max_price_per_hour)}/h would be exceeded: "
                               f"committed {_money(usage.committed)}/h ({usage.instances} instances){waiting}, "
                               f"this pod would add {_money(price)}/h"))
        elif s.max_instances is not None and count + 1 > s.max_instances:
            out.append(Refusal(b.ref, s.on_exceed,
                               f"{head}: maxInstances {s.max_instances} would be exceeded: committed "
                               f"{usage.instances} instances ({_money(usage.committed)}/h){waiting}, "
                               f"this pod would add 1 ({_money(price)}/h)"))
        elif s.monthly_limit is not None:
            spent = b.accrual.spend if b.accrual.month == month_of(now) else 0.0
            if spent >= s.monthly_limit:
                out.append(Refusal(b.ref, s.on_exceed,
                                   f"{head}: monthlyLimit {_money(s.monthly_limit)} reached: {_money(spent)} spent "
                                   f"in {month_of(now)}; committed {_money(usage.committed)}/h, "
                                   f"this pod would add {_money(price)}/h"))
    return out


def verdict(found: Sequence[Refusal]) -> str | None:
    """``deny`` when any budget refusing says deny, else ``queue`` when one refuses; None: room."""
    if not found:
        return None
    return DENY if any(r.on_exceed == DENY for r in found) else QUEUE


# --- the published state --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NamespaceState:
    usage: Usage
    budgets: tuple[Budget, ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetState:
    """What the controller last knew, per namespace, at ``published_at``; the pods it counts as
    admitted and waiting are those it listed from ``pods_listed_at`` on (None: the same instant)."""

    published_at: float
    namespaces: Mapping[str, NamespaceState]
    pods_listed_at: float | None = None

    @property
    def counts_pods_until(self) -> float:
        return self.published_at if self.pods_listed_at is None else self.pods_listed_at

    def of(self, namespace: str) -> NamespaceState:
        return self.namespaces.get(namespace) or NamespaceState(Usage())

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_FORMAT, "publishedAt": self.published_at, "podsListedAt": self.pods_listed_at,
                "namespaces": {
            ns: {"committed": s.usage.committed, "instances": s.usage.instances, "waiting": s.usage.waiting,
                 "waitingPods": s.usage.waiting_pods,
                 "budgets": [{"name": b.name, "spec": b.spec.to_json(), "spend": b.accrual.spend,
                              "month": b.accrual.month} for b in s.budgets]}
            for ns, s in sorted(self.namespaces.items())}}

    @classmethod
    def from_json(cls, data: Any) -> BudgetState:
        try:
            if data.get("version") != STATE_FORMAT:
                raise InvalidBudget(f"budget state format {data.get('version')!r}: expected {STATE_FORMAT}")
            namespaces = {}
            for ns, s in data["namespaces"].items():
                budgets = tuple(Budget(ns, str(b["name"]), BudgetSpec.from_json(b["spec"]),
                                       Accrual(spend=float(b["spend"]), month=str(b["month"])))
                                for b in s["budgets"])
                namespaces[str(ns)] = NamespaceState(Usage(float(s["committed"]), int(s["instances"]),
                                                           float(s["waiting"]), int(s["waitingPods"])), budgets)
            listed = data.get("podsListedAt")
            return cls(float(data["publishedAt"]), namespaces, None if listed is None else float(listed))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidBudget(f"budget state file is damaged: {exc!r}") from None


class BudgetStateFile:
    """The state as one JSON file, replaced atomically (write + rename)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def beside(cls, snapshot: str | Path) -> BudgetStateFile:
        return cls(Path(snapshot).parent / STATE_FILE)

    def publish(self, state: BudgetState) -> None:
        write_json_atomically(self.path, state.to_json(), prefix=".budgets-")

    def load(self) -> BudgetState | None:
        """The state, or None when no file has been published."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InvalidBudget(f"{self.path}: cannot read the budget state: {exc.strerror}") from None
        try:
            return BudgetState.from_json(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidBudget(f"{self.path}: the budget state is not JSON: {exc}") from None

    def stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino)
