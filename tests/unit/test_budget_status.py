"""``kube-vast status --by-namespace``, the pure part: instances and $/hour per namespace, pods
waiting or held for a budget, each VastBudget's limits and this month's spend."""

from __future__ import annotations

import calendar

from kube_vast.budget_status import ORPHANS, as_json, by_namespace, render_text
from kube_vast.status import fleet_status
from vastmarket.instances import Instance

NOW = float(calendar.timegm((2026, 12, 10, 12, 0, 0)))


def pod(uid: str, ns: str, *, held: bool = False, launch: bool = False) -> dict:
    conditions = [{"type": "VastBudgetAvailable", "status": "False"}] if held else []
    annotations = {"vast.ai/launch": f'{{"label":"kv:c1:{uid}"}}'} if launch else {}
    return {"metadata": {"uid": uid, "namespace": ns, "name": f"p-{uid}", "annotations": annotations},
            "status": {"phase": "Running" if not (held or launch) else "Pending", "conditions": conditions}}


def budget(ns: str, name: str, spec: dict, spend: float, month: str = "2026-12") -> dict:
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec,
            "status": {"spendThisMonth": spend, "month": month, "committedPerHour": 0.5,
                       "lastReconciled": "2026-12-10T11:59:59.000Z"}}


def test_each_namespace_shows_its_instances_held_pods_budgets_and_spend():
    instances = [Instance(1, "running", label="kv:c1:a1", dph_total=0.25), Instance(2, "running", label="kv:c1:a2",
                 dph_total=0.30), Instance(3, "running", label="kv:c1:b1", dph_total=1.0),
                 Instance(4, "running", label="kv:c1:gone", dph_total=0.1)]
    pods = [pod("a1", "team-a"), pod("a2", "team-a"), pod("a3", "team-a", held=True, launch=True),
            pod("b1", "team-b")]
    fleet = fleet_status(instances, pods, "c1")
    rows = by_namespace(fleet, pods, [budget("team-a", "gpus", {"maxPricePerHour": 0.6, "onExceed": "queue"}, 1.25),
                                      budget("team-a", "month", {"monthlyLimit": 100}, 9.0, month="2026-11")],
                        now=NOW)
    by_ns = {r.namespace: r for r in rows}
    assert set(by_ns) == {"team-a", "team-b", ORPHANS}
    a = by_ns["team-a"]
    assert (a.instances, round(a.per_hour, 3), a.waiting, a.held) == (2, 0.55, 1, 1)
    assert [(b.name, b.spend_this_month) for b in a.budgets] == [("gpus", 1.25), ("month", 0.0)]  # last month's
    assert by_ns["team-b"].budgets == () and by_ns[ORPHANS].instances == 1
    text = render_text(rows, budgets_installed=True)
    assert any(line.split()[:7] == ["team-a", "2", "0.550", "1", "1", "gpus", "$0.60/h"] for line in text), text
    assert any("month" in line and "$100.00/month" in line and "$0.0000" in line for line in text), text
    assert text[-1] == "Total: 4 instance(s), $1.650/hour"
    assert as_json(rows, budgets_installed=False)["budgets_installed"] is False
    assert "the CRD is not installed" in render_text(rows, budgets_installed=False)[-1]
