"""The chart's part of team budgets: the VastBudget CRD (validated by the real API server), the
read-only role aggregated into view/edit/admin, and the Grafana dashboard's ConfigMap. That the
dashboard's queries name metrics the components export is tested against the running components
in tests/cluster/test_budgets_e2e.py."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster import create_namespace
from devcluster.helpers import install_crd

from .helm import CHART, template

CRD_FILE = CHART / "crds" / "vastbudgets.vast.ai.yaml"
DASHBOARD_FILE = CHART / "dashboards" / "kube-vast-budgets.json"


def test_the_dashboards_are_configmaps_for_grafanas_sidecar_only_when_enabled(render):
    maps = [m for m in render("tuned").of_kind("ConfigMap") if "kube-vast-budgets.json" in (m.get("data") or {})]
    assert len(maps) == 1
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert maps[0]["metadata"]["labels"]["team"] == "ml-platform"
    assert json.loads(maps[0]["data"]["kube-vast-budgets.json"]) == json.loads(DASHBOARD_FILE.read_text())
    assert not [m for m in render("existing-secret").of_kind("ConfigMap")
                if "kube-vast-budgets.json" in (m.get("data") or {})]


def test_the_dashboard_is_a_grafana_dashboard_of_prometheus_queries():
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    panels = dashboard["panels"]
    assert dashboard["uid"] == "kube-vast-budgets" and len({p["id"] for p in panels}) == len(panels)
    titles = " | ".join(p["title"] for p in panels)
    for wanted in ("Spend this month by namespace", "Spend per hour by namespace", "by GPU model", "Committed $/h"):
        assert wanted in titles
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"]
        assert all(t["expr"].strip() and "kube_vast_" in t["expr"] for t in p["targets"])
        assert set(p["gridPos"]) == {"x", "y", "w", "h"}


def test_the_crd_ships_in_crds_and_helm_installs_it_with_the_release(tmp_path):
    crds = [d for d in template({"simulator": {"enabled": True}}, tmp_dir=tmp_path, extra=["--include-crds"]).docs
            if d["kind"] == "CustomResourceDefinition"]
    assert [c["metadata"]["name"] for c in crds] == ["vastbudgets.vast.ai"]
    version = crds[0]["spec"]["versions"][0]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:3] == ["Max $/h", "Committed $/h", "Instances"] and "Spend" in columns and "On Exceed" in columns
    assert version["subresources"] == {"status": {}}


def test_viewers_of_a_namespace_may_read_its_budgets_and_nobody_gains_write(render):
    role = next(r for r in render("existing-secret").of_kind("ClusterRole") if r["metadata"]["name"].endswith("-vastbudgets-view"))
    labels = role["metadata"]["labels"]
    assert all(labels[f"rbac.authorization.k8s.io/aggregate-to-{r}"] == "true" for r in ("view", "edit", "admin"))
    assert role["rules"] == [{"apiGroups": ["vast.ai"], "resources": ["vastbudgets"], "verbs": ["get", "list", "watch"]}]


@pytest.fixture(scope="module")
def budgets_api(control_plane) -> Any:
    api = control_plane.api_client()
    install_crd(api, CRD_FILE)
    custom = client.CustomObjectsApi(api)
    ns = f"budget-schema-{uuid.uuid4().hex[:6]}"
    create_namespace(api, ns)
    yield custom, ns
    client.CoreV1Api(api).delete_namespace(ns)


def _create(custom: Any, ns: str, spec: dict[str, Any]) -> Any:
    return custom.create_namespaced_custom_object("vast.ai", "v1alpha1", ns, "vastbudgets", {
        "apiVersion": "vast.ai/v1alpha1", "kind": "VastBudget",
        "metadata": {"name": f"b-{uuid.uuid4().hex[:6]}"}, "spec": spec})


@pytest.mark.cluster
@pytest.mark.parametrize("spec, message", [
    ({"maxPricePerHour": -1}, "spec.maxPricePerHour"),
    ({"maxInstances": "four"}, "spec.maxInstances"),
    ({"maxPricePerHour": 2, "onExceed": "later"}, 'supported values: "deny", "queue"'),
    ({"onExceed": "queue"}, "set at least one of maxPricePerHour, maxInstances, monthlyLimit"),
])
def test_the_api_server_refuses_a_budget_the_schema_does_not_allow_naming_the_field(budgets_api, spec, message):
    custom, ns = budgets_api
    with pytest.raises(ApiException) as caught:
        _create(custom, ns, spec)
    assert caught.value.status == 422 and message in json.loads(caught.value.body)["message"]


@pytest.mark.cluster
def test_a_valid_budget_is_stored_with_onexceed_defaulted_to_deny(budgets_api):
    custom, ns = budgets_api
    created = _create(custom, ns, {"maxPricePerHour": 2.5, "monthlyLimit": 300})
    assert created["spec"] == {"maxPricePerHour": 2.5, "monthlyLimit": 300, "onExceed": "deny"}
