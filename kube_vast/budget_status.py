"""``kube-vast status --by-namespace``: per namespace, what its Vast instances cost now, the pods
waiting or held for a budget, and each of its VastBudgets (limits, spend this month).

Contract
--------
- :func:`by_namespace` is pure: the :class:`kube_vast.status.FleetStatus` (instances with their
  pods), every pod (plain Kubernetes JSON dicts) and the VastBudget objects (``None`` when the
  CRD is not installed). Committed $/hour is the billed ``dph_total`` of a namespace's live
  instances; a pod is *held* while its ``VastBudgetAvailable`` condition is False (the
  controller's launch check); orphaned instances are listed under ``(orphans)``.
- :func:`render_text` and :func:`as_json` present it. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vastmarket.budgets import Accrual, BudgetSpec, InvalidBudget, month_of

from .status import FleetStatus

HELD_CONDITION = "VastBudgetAvailable"  # controller.budgets.CONDITION
ORPHANS = "(orphans)"


@dataclass(frozen=True, slots=True)
class BudgetRow:
    name: str
    max_price_per_hour: float | None
    max_instances: int | None
    monthly_limit: float | None
    on_exceed: str
    spend_this_month: float
    committed_per_hour: float | None  # as the controller last wrote it
    last_reconciled: str | None
    problem: str | None = None        # a spec the controller cannot read


@dataclass(frozen=True, slots=True)
class NamespaceRow:
    namespace: str
    instances: int
    per_hour: float
    waiting: int     # pods with a recorded launch and no instance yet
    held: int        # of which held for a budget
    budgets: tuple[BudgetRow, ...]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _held(pod: Mapping[str, Any]) -> bool:
    return any(_mapping(c).get("type") == HELD_CONDITION and _mapping(c).get("status") == "False"
               for c in _mapping(pod.get("status")).get("conditions") or [])


def _budget_row(obj: Mapping[str, Any], now: float) -> BudgetRow:
    meta, status = _mapping(obj.get("metadata")), _mapping(obj.get("status"))
    accrual = Accrual.from_status(status)
    spend = accrual.spend if accrual.month == month_of(now) else 0.0
    committed = status.get("committedPerHour")
    try:
        spec = BudgetSpec.from_json(obj.get("spec"))
        problem = None
    except InvalidBudget as exc:
        spec, problem = BudgetSpec(), str(exc)
    return BudgetRow(str(meta.get("name")), spec.max_price_per_hour, spec.max_instances, spec.monthly_limit,
                     spec.on_exceed, spend, float(committed) if isinstance(committed, (int, float)) else None,
                     status.get("lastReconciled") if isinstance(status.get("lastReconciled"), str) else None, problem)


def by_namespace(fleet: FleetStatus, pods: Sequence[Mapping[str, Any]],
                 budgets: Sequence[Mapping[str, Any]] | None, *, now: float) -> list[NamespaceRow]:
    per_hour: dict[str, float] = {}
    count: dict[str, int] = {}
    for r in fleet.rows:
        ns = r.pod.split("/", 1)[0] if r.pod else ORPHANS
        per_hour[ns] = per_hour.get(ns, 0.0) + (r.price or 0.0)
        count[ns] = count.get(ns, 0) + 1
    waiting: dict[str, int] = {}
    for name in fleet.waiting:
        ns = name.split("/", 1)[0]
        waiting[ns] = waiting.get(ns, 0) + 1
    held: dict[str, int] = {}
    for pod in pods:
        if _held(pod) and _mapping(pod.get("status")).get("phase") == "Pending":
            ns = str(_mapping(pod.get("metadata")).get("namespace"))
            held[ns] = held.get(ns, 0) + 1
    rows: dict[str, list[BudgetRow]] = {}
    for obj in budgets or []:
        rows.setdefault(str(_mapping(obj.get("metadata")).get("namespace")), []).append(_budget_row(obj, now))
    names = sorted(set(per_hour) | set(waiting) | set(held) | set(rows))
    return [NamespaceRow(ns, count.get(ns, 0), per_hour.get(ns, 0.0), waiting.get(ns, 0), held.get(ns, 0),
                         tuple(sorted(rows.get(ns, []), key=lambda b: b.name))) for ns in names]


def _limits(b: BudgetRow) -> str:
    parts = []
    if b.max_price_per_hour is not None:
        parts.append(f"${b.max_price_per_hour:.2f}/h")
    if b.max_instances is not None:
        parts.append(f"{b.max_instances} instances")
    if b.monthly_limit is not None:
        parts.append(f"${b.monthly_limit:.2f}/month")
    return ", ".join(parts) or "no limit"


def render_text(rows: Sequence[NamespaceRow], *, budgets_installed: bool) -> list[str]:
    header = ("NAMESPACE", "INSTANCES", "$/HOUR", "WAITING", "HELD", "BUDGET", "LIMITS", "ON EXCEED", "SPENT THIS MONTH")
    table: list[tuple[str, ...]] = [header]
    for r in rows:
        first = (r.namespace, str(r.instances), f"{r.per_hour:.3f}", str(r.waiting), str(r.held))
        if not r.budgets:
            table.append((*first, "-", "-", "-", "-"))
        for i, b in enumerate(r.budgets):
            cells = first if i == 0 else ("", "", "", "", "")
            table.append((*cells, b.name, b.problem or _limits(b), b.on_exceed, f"${b.spend_this_month:.4f}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = ["Vast instances and team budgets by namespace"]
    if len(table) == 1:
        lines.append("  no instances, waiting pods or budgets")
    else:
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table]
    lines.append(f"Total: {sum(r.instances for r in rows)} instance(s), ${sum(r.per_hour for r in rows):.3f}/hour")
    if not budgets_installed:
        lines.append("VastBudgets: the CRD is not installed (charts/kube-vast/crds/)")
    return lines


def as_json(rows: Sequence[NamespaceRow], *, budgets_installed: bool) -> dict[str, Any]:
    return {"namespaces": [asdict(r) for r in rows], "budgets_installed": budgets_installed,
            "total_per_hour": round(sum(r.per_hour for r in rows), 6)}
