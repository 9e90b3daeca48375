"""Team budgets end to end: the real kube-apiserver with the chart's VastBudget CRD, vast-scheduler
with the extender, the webhook registered from its manifest, the controller as a real process and
the simulator as Vast.

Two namespaces with different budgets get 20 pods in one ``kubectl apply``: team A's budget
denies at admission, team B's queues. The simulator's ledger is sampled all along: the committed
$/h of each namespace (the billed ``dph_total`` of its live instances) never exceeds its budget.
Pods over budget are denied with the budget's message, or admitted and held Pending with the
``VastBudgetAvailable`` condition; held pods launch once room frees. The per-namespace spend the
controller exports agrees with the ledger's billed prices × time within 1 %, and a controller
SIGKILL neither resets nor double counts it. The chart's dashboard queries only metrics the
controller and the webhook really export.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devcluster import create_namespace
from devcluster.binaries import REPO_ROOT, find_binaries
from devcluster.helpers import install_crd
from devcluster.controller_stack import host_ip, wait_until
from devcluster.full_stack import VastStack, vast_stack
from vastmarket.budgets import GROUP, PLURAL, VERSION, parse_rfc3339
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

NODE = "vast-gpu-node-budget"
CLUSTER = "budget01"
CRD = REPO_ROOT / "charts/kube-vast/crds/vastbudgets.vast.ai.yaml"
DASHBOARD = REPO_ROOT / "charts/kube-vast/dashboards/kube-vast-budgets.json"
LIMIT_A = 0.50  # team A: deny
LIMIT_B = 0.30  # team B: queue
PODS = 10       # per namespace


@dataclass
class Budgets:
    api: Any
    stack: VastStack
    sim: SimulatorServer
    work: Path
    kubeconfig: Path
    team_a: str
    team_b: str
    release: str
    samples: list[tuple[float, list[tuple[str, float]]]] = field(default_factory=list)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(find_binaries().kubectl), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=120)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def budget(self, namespace: str, name: str = "gpus") -> dict[str, Any]:
        return client.CustomObjectsApi(self.api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


@pytest.fixture(scope="module")
def budgets(control_plane, kube_scheduler, tmp_path_factory) -> Iterator[Budgets]:
    work = tmp_path_factory.mktemp("budgets-e2e")
    api = control_plane.api_client()
    install_crd(api, CRD)
    suffix = uuid.uuid4().hex[:5]
    team_a, team_b, release = f"team-a-{suffix}", f"team-b-{suffix}", f"kv-budgets-{suffix}"
    for ns in (team_a, team_b, release):
        create_namespace(api, ns)
    custom = client.CustomObjectsApi(api)
    for ns, name, spec in ((team_a, "gpus", {"maxPricePerHour": LIMIT_A, "monthlyLimit": 500, "onExceed": "deny"}),
                           (team_b, "gpus", {"maxPricePerHour": LIMIT_B, "onExceed": "queue"}),
                           (team_b, "count", {"maxInstances": 8, "onExceed": "queue"})):  # several budgets all apply
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "VastBudget", "metadata": {"name": name}, "spec": spec})
    ip = host_ip()
    try:
        with SimulatorServer(seed=14, offers=600, boot_seconds=(0.2, 0.4), host=ip, public_ip=ip) as sim, \
                vast_stack(control_plane, kube_scheduler, work, sim=sim, node=NODE, cluster_id=CLUSTER,
                           release_namespace=release, probe_namespace=team_a,
                           controller_env={"KUBE_VAST_BUDGET_INTERVAL": "0.5", "VAST_GPU_TYPE": "RTX3060,RTX4090",
                                           "VAST_MAX_PRICE_PER_HOUR": "0.60", "VAST_MAX_INSTANCES": "40",
                                           "VAST_MAX_TOTAL_PRICE_PER_HOUR": "40",
                                           "KUBE_VAST_NODE_GPUS": "64"}) as stack:
            yield Budgets(api, stack, sim, work, control_plane.kubeconfig_for("admin", ["system:masters"]),
                          team_a, team_b, release)
    finally:
        core = client.CoreV1Api(api)
        for ns in (team_a, team_b):
            for pod in core.list_namespaced_pod(ns).items:  # the controller is gone: nothing removes finalizers
                if pod.metadata.finalizers:
                    core.patch_namespaced_pod(pod.metadata.name, ns, {"metadata": {"finalizers": None}})
        for ns in (team_a, team_b, release):
            core.delete_namespace(ns)


def manifest(b: Budgets) -> str:
    pods = []
    for ns in (b.team_a, b.team_b):
        for i in range(PODS):
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"infer-{i}", "namespace": ns, "labels": {"vast.ai/enabled": "true"},
                                      "annotations": {"vast.ai/price-max": "0.40"}},
                         "spec": {"nodeSelector": {"kubernetes.io/hostname": NODE}, "terminationGracePeriodSeconds": 1,
                                  "containers": [{"name": "c", "image": "ghcr.io/example/infer:1",
                                                  "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})
    return yaml.safe_dump_all(pods)


class LedgerSampler:
    """The simulator's ledger, sampled in the background: (time, [(label, dph_total) of live instances])."""

    def __init__(self, sim: SimulatorServer, into: list[tuple[float, list[tuple[str, float]]]]) -> None:
        self.sim, self.into = sim, into
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            rows = self.sim.state()["instances"]
            self.into.append((time.time(), [(r["label"], float(r["dph_total"])) for r in rows
                                            if not r["destroyed"] and (r["label"] or "").startswith(f"kv:{CLUSTER}:")]))
            self.stop.wait(0.05)

    def __enter__(self) -> LedgerSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def condition(pod: Any, kind: str) -> Any:
    return next((c for c in (pod.status.conditions or []) if c.type == kind), None)


def held(pod: Any) -> bool:
    c = condition(pod, "VastBudgetAvailable")
    return pod.status.phase == "Pending" and c is not None and c.status == "False"


def ledger_spend(rows: list[Mapping[str, Any]], label_prefixes: set[str], until: float) -> float:
    """The simulator's bill for these pods' instances up to ``until``: billed price × time."""
    total = 0.0
    for r in rows:
        if not any((r["label"] or "").startswith(p) for p in label_prefixes):
            continue
        end = min(until, r["destroyed_at"] if r["destroyed_at"] is not None else until)
        total += float(r["dph_total"]) * max(0.0, end - float(r["created_at"])) / 3600.0
    return total


def metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_twenty_pods_in_two_namespaces_stay_within_their_budgets_denied_or_queued_then_launched(budgets):
    b = budgets
    core = client.CoreV1Api(b.api)
    state = b.work / "budgets.json"
    wait_until(lambda: state.exists() and {b.team_a, b.team_b} <= set(json.loads(state.read_text())["namespaces"]),
               timeout=30)
    path = b.work / "pods.yaml"
    path.write_text(manifest(b))
    with LedgerSampler(b.sim, b.samples):
        applied = b.kubectl("apply", "-f", str(path), check=False)

        # Team A: denied at admission once its budget is taken, with the budget's message.
        denied = re.findall(r'admission webhook "[^"]+" denied the request: (.*)',
                            applied.stderr)
        created_a = [p.metadata.name for p in core.list_namespaced_pod(b.team_a).items]
        assert denied and created_a, applied.stdout + applied.stderr
        assert len(denied) + len(created_a) == PODS
        assert all(m.startswith(f"over budget (denied): VastBudget {b.team_a}/gpus: maxPricePerHour $0.50/h would "
                                "be exceeded: committed $") and "this pod would add $" in m for m in denied), denied
        # Team B: every pod admitted; those over budget with a warning naming each budget they
        # exceed (its "count" budget first once that is exceeded too: budgets are listed by name).
        assert len(core.list_namespaced_pod(b.team_b).items) == PODS
        queued = [line for line in applied.stderr.splitlines()
                  if line.startswith("Warning: over budget (queued: admitted and held Pending until room frees): ")]
        assert any(f"VastBudget {b.team_b}/gpus: maxPricePerHour $0.30/h would be exceeded" in line
                   for line in queued), applied.stderr

        def settled() -> bool:
            pods = core.list_namespaced_pod(b.team_b).items
            return sum(p.status.phase == "Running" for p in pods) >= 1 and \
                sum(p.status.phase == "Running" or held(p) for p in pods) == PODS and any(held(p) for p in pods)

        wait_until(settled, timeout=90)
        pods_b = core.list_namespaced_pod(b.team_b).items
        waiting = [p for p in pods_b if held(p)]
        message = condition(waiting[0], "VastBudgetAvailable").message
        assert message.startswith(f"VastBudget {b.team_b}/gpus: maxPricePerHour $0.30/h would be exceeded: committed $")
        assert waiting[0].status.reason == "BudgetExceeded"
        wait_until(lambda: all(p.status.phase in ("Running", "Pending") for p in core.list_namespaced_pod(b.team_a).items)
                   and any(p.status.phase == "Running" for p in core.list_namespaced_pod(b.team_a).items), timeout=60)

        # kubectl get vastbudgets: the printer columns.
        table = b.kubectl("get", "vastbudgets", "-n", b.team_b).stdout
        assert re.split(r"\s{2,}", table.splitlines()[0].strip())[:8] == [
            "NAME", "MAX $/H", "COMMITTED $/H", "INSTANCES", "SPEND", "MONTHLY LIMIT", "ON EXCEED", "AGE"], table
        wait_until(lambda: (b.budget(b.team_b).get("status") or {}).get("liveInstances", 0) >= 1, timeout=30)

        # Room frees: the running pods of team B go; held ones launch, their condition turns True.
        running = [p.metadata.name for p in pods_b if p.status.phase == "Running"]
        for name in running:
            core.delete_namespaced_pod(name, b.team_b)
        launched = wait_until(lambda: [p for p in core.list_namespaced_pod(b.team_b).items
                                       if p.metadata.name in {w.metadata.name for w in waiting}
                                       and p.status.phase == "Running"], timeout=90)
        assert condition(launched[0], "VastBudgetAvailable").status == "True"

    uids = {p.metadata.uid: p.metadata.namespace for ns in (b.team_a, b.team_b)
            for p in core.list_namespaced_pod(ns).items}
    uids.update({p.metadata.uid: b.team_b for p in pods_b})
    worst = {b.team_a: 0.0, b.team_b: 0.0}
    for _, live in b.samples:
        per_ns = {b.team_a: 0.0, b.team_b: 0.0}
        for label, price in live:
            ns = uids.get(label.rsplit(":", 1)[-1])
            assert ns is not None, label
            per_ns[ns] += price
        for ns, committed in per_ns.items():
            worst[ns] = max(worst[ns], committed)
    assert len(b.samples) > 50
    assert 0 < worst[b.team_a] <= LIMIT_A + 1e-9 and 0 < worst[b.team_b] <= LIMIT_B + 1e-9, worst


def lease_expired(b: Budgets) -> bool:
    """The killed leader's Lease has run out (nobody renews it)."""
    lease = client.CoordinationV1Api(b.api).read_namespaced_lease("kube-vast-controller", b.release)
    renewed = lease.spec.renew_time.timestamp()
    return time.time() > renewed + lease.spec.lease_duration_seconds


def _spend_agrees(b: Budgets, namespace: str) -> tuple[float, float, float, float]:
    """(status spend, the ledger's at its accruedUpTo, exported spend, the ledger's at the instant
    the exported spend is counted to)."""
    core = client.CoreV1Api(b.api)
    prefixes = {f"kv:{CLUSTER}:{p.metadata.uid}" for p in core.list_namespaced_pod(namespace).items}
    status = b.budget(namespace)["status"]
    until = parse_rfc3339(status["accruedUpTo"])
    assert until is not None
    scraped = metrics(b.stack.ctl.metrics())
    exported = sum(v for k, v in scraped.items()
                   if k.startswith("kube_vast_namespace_spend_usd_total{") and f'namespace="{namespace}"' in k)
    exported_until = scraped[f'kube_vast_namespace_spend_accrued_up_to_seconds{{namespace="{namespace}"}}']
    rows = b.sim.state()["instances"]
    return (float(status["spendThisMonth"]), ledger_spend(rows, prefixes, until), exported,
            ledger_spend(rows, prefixes, exported_until))


def test_the_exported_spend_agrees_with_the_ledger_and_a_sigkill_neither_resets_nor_doubles_it(budgets):
    b = budgets
    ns = b.team_a  # its pods ran throughout (team B's were deleted: their drain bills storage only)
    status = b.budget(ns)["status"]
    before = parse_rfc3339(status["accruedUpTo"])
    assert before is not None and float(status["spendThisMonth"]) > 0
    spend, ledger, exported, exported_ledger = _spend_agrees(b, ns)
    assert spend == pytest.approx(ledger, rel=0.01)
    assert exported == pytest.approx(exported_ledger, rel=0.01)

    b.stack.ctl.kill()
    killed_at = time.time()
    wait_until(lambda: lease_expired(b), timeout=30)  # down for a whole lease; billing goes on meanwhile
    b.stack.ctl.start()
    wait_until(lambda: (parse_rfc3339(b.budget(ns)["status"]["accruedUpTo"]) or 0) > killed_at + 5, timeout=60)
    spend, ledger, exported, exported_ledger = _spend_agrees(b, ns)
    assert spend == pytest.approx(ledger, rel=0.01), "the spend was reset or counted twice across the SIGKILL"
    assert exported == pytest.approx(exported_ledger, rel=0.01)


def _dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"]["query"])
    names: set[str] = set()
    for expr in exprs:
        bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
        bare = re.sub(r"\b(by|without)\s*\([^)]*\)", "", bare)
        names |= {n for n in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if n.startswith("kube_vast_")}
    return names


def exported_names(text: str) -> set[str]:
    """Every metric name an exposition offers: its samples', and each family's (a counter's with
    ``_total``) even while it has no sample yet (no interruptible instance, say)."""
    names = {name.split("{", 1)[0] for name in metrics(text)}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names |= {name, f"{name}_total"} if kind == "counter" else {name}
    return names


def test_the_dashboards_queries_name_only_metrics_the_controller_and_webhook_export(budgets):
    b = budgets
    assert b.stack.hook is not None
    exported = exported_names(b.stack.ctl.metrics()) | exported_names(b.stack.hook._get("/metrics"))
    assert "kube_vast_namespace_spend_usd_total" in {name.split("{", 1)[0] for name in metrics(b.stack.ctl.metrics())}
    wanted = _dashboard_metrics()
    assert len(wanted) >= 8
    assert wanted <= exported, sorted(wanted - exported)


def test_kube_vast_status_by_namespace_shows_each_namespaces_instances_held_pods_budgets_and_spend(budgets):
    import sys

    b = budgets
    base = [sys.executable, "-m", "kube_vast.cli", "status", "--by-namespace", "--kubeconfig", str(b.kubeconfig),
            "--api-url", b.sim.url, "--cluster-id", CLUSTER]
    done = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = {r["namespace"]: r for r in json.loads(done.stdout)["namespaces"]}
    core = client.CoreV1Api(b.api)
    for ns, limit in ((b.team_a, LIMIT_A), (b.team_b, LIMIT_B)):
        row = report[ns]
        running = sum(p.status.phase == "Running" for p in core.list_namespaced_pod(ns).items)
        assert row["instances"] >= running >= 1 and 0 < row["per_hour"] <= limit + 1e-9, row
        assert all(bu["spend_this_month"] > 0 for bu in row["budgets"]), row
    assert [bu["name"] for bu in report[b.team_b]["budgets"]] == ["count", "gpus"]
    assert report[b.team_b]["budgets"][0]["max_instances"] == 8
    assert report[b.team_a]["budgets"][0]["on_exceed"] == "deny"
    assert report[b.team_a]["held"] == sum(held(p) for p in core.list_namespaced_pod(b.team_a).items)
    text = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert re.search(rf"^  {b.team_b}\s+\d+\s+[\d.]+\s+\d+\s+\d+\s+count\s+8 instances\s+queue\s+\$[\d.]+$",
                     text.stdout, re.M), text.stdout
    assert re.search(rf"^\s+gpus\s+\$0\.30/h\s+queue\s+\$[\d.]+$", text.stdout, re.M), text.stdout
