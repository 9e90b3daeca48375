"""Team budgets at admission, through the webhook app: decided from the budget state file the
controller publishes (no Kubernetes API), denying or queueing with the budget's message, and
counting the pods this process admitted since the state was published."""

from __future__ import annotations

import copy
from typing import Any

from prometheus_client import CollectorRegistry

from vastmarket.budgets import Budget, BudgetSpec, BudgetState, BudgetStateFile, NamespaceState, Usage
from vastmarket.config import SelectionConfig
from webhooks.app import create_app
from webhooks.budgets import QUEUED_ANNOTATION, BudgetTracker
from webhooks.settings import WebhookSettings

from .conftest import NOW, captured, market, patched

NS = "ml-inference"  # the captured review's namespace; its pod gets the RTX 3060 offer at $0.19/h


class BudgetHook:
    def __init__(self, tmp_path: Any) -> None:
        self.now = NOW
        self.file = BudgetStateFile(tmp_path / "budgets.json")
        self.tracker = BudgetTracker(self.file, clock=lambda: self.now, interval=0.0)
        app = create_app(WebhookSettings(max_snapshot_age=120), config=SelectionConfig(), snapshots=market,
                         clock=lambda: self.now, registry=CollectorRegistry(), budgets=self.tracker)
        self.http = app.test_client()

    def publish(self, usage: Usage, *, listed_ago: float | None = None, **spec: Any) -> None:
        self.now += 1
        budgets = (Budget(NS, "team", BudgetSpec.from_json(spec)),) if spec else ()
        self.file.publish(BudgetState(self.now, {NS: NamespaceState(usage, budgets)},
                                      None if listed_ago is None else self.now - listed_ago))

    def review(self, *, dry_run: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        body = copy.deepcopy(captured("pod-create-generatename"))
        body["request"]["dryRun"] = dry_run
        reply = self.http.post("/mutate", json=body)
        assert reply.status_code == 200
        return body, reply.get_json()


def test_a_pod_whose_offer_would_exceed_a_deny_budget_is_denied_with_the_budget_limit_committed_and_addition(tmp_path):
    hook = BudgetHook(tmp_path)
    hook.publish(Usage(0.85, 3), maxPricePerHour=1.0)
    _, reply = hook.review()
    response = reply["response"]
    assert response["allowed"] is False and response["status"]["code"] == 403
    assert response["status"]["message"] == (
        "over budget (denied): VastBudget ml-inference/team: maxPricePerHour $1.00/h would be exceeded: "
        "committed $0.85/h (3 instances), this pod would add $0.19/h")


def test_a_pod_that_fits_is_admitted_and_the_next_ones_count_it_until_the_next_publish(tmp_path):
    hook = BudgetHook(tmp_path)
    hook.publish(Usage(0.5, 1), maxPricePerHour=1.0)
    assert hook.review()[1]["response"]["allowed"] is True   # 0.5 + 0.19
    assert hook.review(dry_run=True)[1]["response"]["allowed"] is True  # a dry run counts nothing
    assert hook.review()[1]["response"]["allowed"] is True   # 0.69 + 0.19
    denied = hook.review()[1]["response"]  # 0.88 + 0.19 > 1.0
    assert denied["allowed"] is False
    assert "+ $0.38/h admitted and waiting (2 pods)" in denied["status"]["message"]
    hook.publish(Usage(0.5, 1), maxPricePerHour=1.0)  # the new state counts them itself (or they went)
    assert hook.review()[1]["response"]["allowed"] is True


def test_a_state_whose_pods_were_listed_before_a_pod_was_admitted_does_not_forget_that_pod(tmp_path):
    hook = BudgetHook(tmp_path)
    hook.publish(Usage(0.5, 1), maxPricePerHour=1.0)
    assert hook.review()[1]["response"]["allowed"] is True   # 0.5 + 0.19
    assert hook.review()[1]["response"]["allowed"] is True   # 0.69 + 0.19
    hook.publish(Usage(0.5, 1), listed_ago=2.0, maxPricePerHour=1.0)  # listed before both were admitted
    assert hook.review()[1]["response"]["allowed"] is False  # 0.88 + 0.19


def test_a_queue_budget_admits_the_pod_marked_queued_with_a_warning(tmp_path):
    hook = BudgetHook(tmp_path)
    hook.publish(Usage(0.9, 2), maxPricePerHour=1.0, onExceed="queue")
    body, reply = hook.review()
    response = reply["response"]
    assert response["allowed"] is True
    assert any("over budget (queued" in w and "maxPricePerHour $1.00/h" in w for w in response["warnings"])
    pod = patched(body, reply)
    assert "VastBudget ml-inference/team" in pod["metadata"]["annotations"][QUEUED_ANNOTATION]
    assert pod["spec"]["schedulerName"] == "vast-scheduler"


def test_without_a_budget_or_a_published_state_pods_are_admitted(tmp_path):
    hook = BudgetHook(tmp_path)
    assert hook.review()[1]["response"]["allowed"] is True
    hook.publish(Usage(50.0, 40))  # the namespace has instances but no VastBudget
    assert hook.review()[1]["response"]["allowed"] is True


def test_the_tally_is_kept_per_namespace_with_a_budget_and_emptied_by_a_state_that_counts_the_pods(tmp_path):
    """Each admission's view costs the namespaces, not the pods admitted: a webhook whose
    controller publishes nothing for a while must not slow down with every pod it admits."""
    now = [NOW]
    file = BudgetStateFile(tmp_path / "budgets.json")
    tracker = BudgetTracker(file, clock=lambda: now[0], interval=0.0)
    for _ in range(1000):  # no state yet: no budget is known, nothing to count against
        tracker.charge(NS, 0.19)
    assert tracker.view().admitted == {}
    now[0] += 1
    file.publish(BudgetState(now[0], {NS: NamespaceState(Usage(0.0, 0), (
        Budget(NS, "team", BudgetSpec.from_json({"maxPricePerHour": 1000.0})),))}, None))
    assert tracker.view().state is not None
    for _ in range(5000):
        now[0] += 0.001
        tracker.charge(NS, 0.19)
        tracker.charge("no-budget-here", 0.19)
    usd, pods = tracker.view().admitted[NS]
    assert pods == 5000 and abs(usd - 950.0) < 1e-6 and set(tracker.view().admitted) == {NS}
    now[0] += 1
    file.publish(BudgetState(now[0], {NS: NamespaceState(Usage(950.0, 5000), ())}, None))
    assert tracker.view().admitted == {}
