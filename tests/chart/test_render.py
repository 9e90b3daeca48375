"""The chart rendered by the pinned helm: lint, every variant, the schema, and what the manifests
promise (the webhook configuration of the repository, an injected caBundle, the scheduler
configuration of the repository, command lines and environments the components accept, secure
pods, the API key only as a mounted file)."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from controller.main import LEASE_NAME
from controller.settings import settings_from as controller_settings
from extender.settings import settings_from as extender_settings
from kube_vast.cli import build_parser
from devcluster.binaries import REPO_ROOT
from vastmarket.config import SelectionConfig, config_from_mapping
from webhooks.settings import settings_from as webhook_settings

from .conftest import EXISTING_SECRET, VARIANTS
from .helm import HelmError, Rendered, lint, template

ROOT_WEBHOOK_MANIFEST = REPO_ROOT / "webhooks" / "mutating-webhook-configuration.yaml"
ROOT_SCHEDULER_CONFIG = REPO_ROOT / "scheduler-config.yaml"
KUBE_VAST_CONTAINERS = ("extender", "webhook", "controller")


def containers(rendered: Rendered, deployment: str = "kube-vast") -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in rendered.pod_specs()[deployment]["containers"]}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """The container's plain environment values (valueFrom entries are left out)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def mounts_of(container: dict[str, Any]) -> dict[str, str]:
    """mount path → volume name."""
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}


def volume(rendered: Rendered, name: str, deployment: str = "kube-vast") -> dict[str, Any]:
    return next(v for v in rendered.pod_specs()[deployment]["volumes"] if v["name"] == name)


def mounted_volume(container: dict[str, Any], path: str) -> str:
    """The volume holding ``path`` in the container (the longest mount path that contains it)."""
    candidates = [p for p in mounts_of(container) if path == p or path.startswith(p.rstrip("/") + "/")]
    assert candidates, f"{path} is on no volume of container {container['name']}"
    return mounts_of(container)[max(candidates, key=len)]


# --- lint, render, schema ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_chart_lints_cleanly(variant, values_dir):
    assert "0 chart(s) failed" in lint(VARIANTS[variant], tmp_dir=values_dir)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_renders_every_component(variant, render):
    rendered = render(variant)
    deployments = set(rendered.names("Deployment"))
    prefix = "gpu-burst" if variant == "tuned" else "kube-vast"
    expected = {prefix, f"{prefix}-scheduler"} | ({f"{prefix}-simulator"} if variant == "simulator" else set())
    assert deployments == expected
    assert {c["name"] for c in rendered.pod_specs()[prefix]["containers"]} == set(KUBE_VAST_CONTAINERS)
    assert len(rendered.of_kind("MutatingWebhookConfiguration")) == 1
    assert set(rendered.names("Service")) >= {f"{prefix}-extender", f"{prefix}-webhook"}


def test_without_a_vast_key_or_the_simulator_the_install_is_refused_with_what_to_set(values_dir):
    with pytest.raises(HelmError) as refused:
        template(None, tmp_dir=values_dir)
    message = str(refused.value)
    assert "vast.existingSecret.name" in message and "vast.apiKey" in message and "simulator.enabled" in message


@pytest.mark.parametrize("values, where", [
    ({"bogus": 1}, "additional properties 'bogus'"),
    ({"extender": {"prot": 8888}}, "at '/extender'"),
    ({"selection": {"gpu": {"preferred_type": ["RTX3060"]}}}, "at '/selection/gpu'"),
    ({"selection": {"budget": {"max_instance": 3}}}, "at '/selection/budget'"),
    ({"webhook": {"tls": {"certManager": {"issuerRef": {"nmae": "x"}}}}}, "at '/webhook/tls/certManager/issuerRef'"),
    ({"scheduler": {"livenessProbe": {"path": "/x"}}}, "at '/scheduler/livenessProbe'"),
    ({"vast": {"existingSecret": {"name": "s", "keys": "k"}}}, "at '/vast/existingSecret'"),
])
def test_the_schema_rejects_an_unknown_key_naming_where_it_is(values, where, values_dir):
    values = {**EXISTING_SECRET, **values} if "vast" not in values else values
    for run in (lambda: template(values, tmp_dir=values_dir), lambda: lint(values, tmp_dir=values_dir)):
        with pytest.raises(HelmError) as refused:
            run()
        assert where in str(refused.value)


@pytest.mark.parametrize("values", [
    {"webhook": {"failurePolicy": "Sometimes"}},
    {"webhook": {"timeoutSeconds": 31}},
    {"image": {"tag": "latest"}},
    {"virtualNodes": []},
    {"virtualNodes": ["Not_A_Node"]},
    {"extender": {"burstPolicy": "cheapest"}},
    {"scheduler": {"name": "Vast Scheduler"}},
    {"selection": {"modifiers": [{"add": 0.1}]}},
    {"selection": {"weights": {"price": -1}}},
    {"controller": {"clusterId": "far-too-long-for-a-label"}},
])
def test_the_schema_rejects_a_wrong_value(values, values_dir):
    with pytest.raises(HelmError, match="values don't meet the specifications"):
        template({**EXISTING_SECRET, **values}, tmp_dir=values_dir)


@pytest.mark.parametrize("values, message", [
    ({"scheduler": {"replicaCount": 2, "leaderElection": {"enabled": False}}}, "needs scheduler.leaderElection"),
    ({"deployment": {"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}}, "not both"),
    ({"deployment": {"serviceAccount": {"create": False}}}, "deployment.serviceAccount.name is required"),
])
def test_contradictory_values_are_refused_with_the_reason(values, message, values_dir):
    with pytest.raises(HelmError, match=message):
        template({**EXISTING_SECRET, **values}, tmp_dir=values_dir)


def test_generated_names_stay_within_kubernetes_limits_for_a_long_release_name(render):
    release = "gpu-burst-for-the-ml-platform-team-in-eu-west-1-prod1"  # 53: Helm's longest release name
    assert len(release) == 53
    rendered = render("simulator", release=release, namespace="ml")
    for doc in rendered.docs:
        limit = 63 if doc["kind"] in ("Service", "Deployment") else 253
        assert len(doc["metadata"]["name"]) <= limit, doc["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", doc["metadata"]["name"])


# --- the webhook ---------------------------------------------------------------------------------


def _without_comments_and_ca(webhooks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(webhooks)
    for w in out:
        w["clientConfig"].pop("caBundle", None)
    return out


def test_the_webhook_configuration_carries_the_settings_of_the_repository_manifest(render):
    shipped = yaml.safe_load(ROOT_WEBHOOK_MANIFEST.read_text())
    rendered = render("existing-secret").one("MutatingWebhookConfiguration")
    assert rendered["metadata"]["name"] == shipped["metadata"]["name"] == "kube-vast-webhook"
    assert _without_comments_and_ca(rendered["webhooks"]) == _without_comments_and_ca(shipped["webhooks"])


def test_failure_policy_timeout_and_excluded_namespaces_come_from_values(render):
    hook = render("tuned").one("MutatingWebhookConfiguration")
    for entry in hook["webhooks"]:
        assert entry["failurePolicy"] == "Fail" and entry["timeoutSeconds"] == 5
        [names] = [e["values"] for e in entry["namespaceSelector"]["matchExpressions"]
                   if e["key"] == "kubernetes.io/metadata.name"]
        assert names == ["kube-system", "kube-vast", "monitoring"]  # the release namespace, kube-system once
        assert entry["clientConfig"]["service"] == {"name": "gpu-burst-webhook", "namespace": "kube-vast",
                                                    "path": "/mutate", "port": 443}


def test_the_generated_ca_bundle_is_the_ca_that_signed_the_webhooks_serving_certificate(render):
    rendered = render("existing-secret", release="rel", namespace="infra")
    secret = rendered.one("Secret", "rel-kube-vast-webhook-tls")
    hook = rendered.one("MutatingWebhookConfiguration")
    bundles = {w["clientConfig"]["caBundle"] for w in hook["webhooks"]}
    assert bundles == {secret["data"]["ca.crt"]}
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                           cert.signature_hash_algorithm)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "rel-kube-vast-webhook.infra.svc" in names  # what the API server calls
    assert cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3000)
    # The webhook serves the Secret as mounted files (a renewed certificate is reloaded).
    webhook = containers(rendered, "rel-kube-vast")["webhook"]
    tls_volume = mounted_volume(webhook, env_of(webhook)["KUBE_VAST_TLS_CERT"])
    assert volume(rendered, tls_volume, "rel-kube-vast")["secret"]["secretName"] == "rel-kube-vast-webhook-tls"
    assert not any("subPath" in m for m in webhook["volumeMounts"])


@pytest.mark.parametrize("variant, issuer", [("cert-manager", ("Issuer", "kube-vast-webhook-selfsign")),
                                             ("cert-manager-cluster-issuer", ("ClusterIssuer", "internal-ca"))])
def test_with_cert_manager_the_ca_bundle_is_injected_never_pasted(variant, issuer, render):
    rendered = render(variant)
    hook = rendered.one("MutatingWebhookConfiguration")
    assert all("caBundle" not in w["clientConfig"] for w in hook["webhooks"])
    namespace, name = hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    certificate = rendered.one("Certificate", name)
    assert certificate["metadata"]["namespace"] == namespace == "kube-vast"
    assert "kube-vast-webhook.kube-vast.svc" in certificate["spec"]["dnsNames"]
    assert (certificate["spec"]["issuerRef"]["kind"], certificate["spec"]["issuerRef"]["name"]) == issuer
    assert rendered.names("Issuer") == (["kube-vast-webhook-selfsign"] if issuer[0] == "Issuer" else [])
    assert volume(rendered, "tls")["secret"]["secretName"] == certificate["spec"]["secretName"]
    assert all(s["type"] != "kubernetes.io/tls" for s in rendered.of_kind("Secret"))  # nothing generated


def test_values_have_no_place_for_a_ca_bundle():
    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        if isinstance(node, list):
            return {k for v in node for k in keys(v)}
        return set()

    chart = REPO_ROOT / "charts" / "kube-vast"
    for document in (yaml.safe_load((chart / "values.yaml").read_text()),
                     json.loads((chart / "values.schema.json").read_text())):
        assert not {k for k in keys(document) if "cabundle" in k.lower()}


# --- vast-scheduler ------------------------------------------------------------------------------


def test_the_chart_copy_of_the_scheduler_config_is_the_repository_file_byte_for_byte():
    copy_ = REPO_ROOT / "charts" / "kube-vast" / "files" / "scheduler-config.yaml"
    assert copy_.read_bytes() == ROOT_SCHEDULER_CONFIG.read_bytes(), \
        "charts/kube-vast/files/scheduler-config.yaml differs: cp scheduler-config.yaml charts/kube-vast/files/"


def scheduler_config(rendered: Rendered, fullname: str) -> dict[str, Any]:
    cm = rendered.one("ConfigMap", f"{fullname}-scheduler")
    return yaml.safe_load(cm["data"]["scheduler-config.yaml"])


def test_the_scheduler_config_is_the_repository_file_with_the_releases_extender_and_lease(render):
    rendered = render("existing-secret", release="gpu", namespace="infra")
    config = scheduler_config(rendered, "gpu-kube-vast")
    expected = yaml.safe_load(ROOT_SCHEDULER_CONFIG.read_text())
    expected["extenders"][0]["urlPrefix"] = "http://gpu-kube-vast-extender.infra.svc:8888"
    expected["leaderElection"].update(resourceNamespace="infra", resourceName="gpu-kube-vast-scheduler")
    assert config == expected
    # The extender Service is what the URL names, and it selects the kube-vast pods.
    service = rendered.one("Service", "gpu-kube-vast-extender")
    assert service["spec"]["ports"][0]["port"] == 8888
    pod_labels = rendered.one("Deployment", "gpu-kube-vast")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_scheduler_runs_the_profile_the_webhook_sets(render):
    for variant in ("existing-secret", "tuned"):
        rendered = render(variant)
        fullname = "gpu-burst" if variant == "tuned" else "kube-vast"
        [profile] = scheduler_config(rendered, fullname)["profiles"]
        webhook = env_of(containers(rendered, fullname)["webhook"])
        assert webhook["KUBE_VAST_SCHEDULER_NAME"] == profile["schedulerName"]
    assert scheduler_config(render("tuned"), "gpu-burst")["leaderElection"] == {"leaderElect": False}


def test_the_scheduler_image_is_the_pinned_kubernetes_version(render):
    from devcluster.binaries import read_versions

    [container] = render("existing-secret").pod_specs()["kube-vast-scheduler"]["containers"]
    assert container["image"] == f"registry.k8s.io/kube-scheduler:{read_versions()['KUBERNETES_VERSION']}"
    assert "--config=/etc/kubernetes/vast-scheduler/scheduler-config.yaml" in container["command"]


# --- the kube-vast pod: command lines, environment, files ------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_kube_vast_command_line_is_accepted_by_the_cli(variant, render):
    rendered = render(variant)
    for name, spec in rendered.pod_specs().items():
        for c in spec["containers"]:
            if c["name"] == "kube-scheduler":
                continue
            args = [re.sub(r"\$\((\w+)\)", "10.0.0.7", a) for a in c["args"]]  # $(POD_IP)
            parsed = build_parser().parse_args(args)
            assert parsed.command == c["name"], f"{name}/{c['name']} runs {parsed.command}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_components_accept_the_environment_the_chart_gives_them(variant, render):
    rendered = render(variant)
    fullname = "gpu-burst" if variant == "tuned" else "kube-vast"
    c = containers(rendered, fullname)
    ext = extender_settings(env_of(c["extender"]))
    hook = webhook_settings(env_of(c["webhook"]))
    ctl = controller_settings(env_of(c["controller"]))
    nodes = tuple(VARIANTS[variant].get("virtualNodes", ["vast-gpu-node-1"]))
    assert ctl.virtual_nodes == nodes and ext.virtual.names == frozenset(nodes)
    assert ctl.namespace == hook.release_namespace == "kube-vast"
    # One snapshot, on the shared emptyDir: the controller writes it, the others read it.
    assert ext.snapshot_path == hook.snapshot_path == ctl.snapshot_path
    volumes = {mounted_volume(c[n], str(ext.snapshot_path)) for n in KUBE_VAST_CONTAINERS}
    assert volumes == {"snapshot"} and "emptyDir" in volume(rendered, "snapshot", fullname)
    assert {m["readOnly"] for n in ("extender", "webhook") for m in c[n]["volumeMounts"] if m["name"] == "snapshot"} == {True}
    # One selection config, from the ConfigMap.
    assert ext.config_path == hook.config_path == ctl.config_path
    for n in KUBE_VAST_CONTAINERS:
        config_volume = mounted_volume(c[n], str(ext.config_path))
        assert volume(rendered, config_volume, fullname)["configMap"]["name"] == f"{fullname}-selection"
    cert, key = hook.require_tls()
    assert mounted_volume(c["webhook"], str(cert)) == mounted_volume(c["webhook"], str(key)) == "tls"
    if variant == "tuned":
        assert ext.burst_policy == "cost-first" and hook.deny_without_offer
        assert ctl.cluster_id == "prod-eu-1" and ctl.reaper_dry_run and ctl.poll_interval == 60
        assert ctl.refresh_interval == 120
        assert hook.scheduler_name == "gpu-burst-scheduler"
    # values.yaml's defaults are the components' own.
    from webhooks.settings import WebhookSettings

    assert hook.gpu_runtime_classes == WebhookSettings().gpu_runtime_classes
    from controller.settings import ControllerSettings

    defaults = ControllerSettings()
    for attr in ("node_gpus", "budget_interval", "host_unreachable_grace", "uncertain_rent_wait", "vast_read_timeout",
                 "vast_pacing", "fleet_interval", "boot_timeout", "reaper_grace", "unreachable_after"):
        assert getattr(ctl, attr) == getattr(defaults, attr), attr


def test_every_environment_variable_the_chart_sets_is_one_kube_vast_reads(render):
    sources = "\n".join(p.read_text() for pkg in ("kube_vast", "extender", "webhooks", "controller", "vastmarket",
                                                 "vastsim", "serving")
                        for p in (REPO_ROOT / pkg).rglob("*.py"))
    known = set(re.findall(r"\b((?:KUBE_VAST|VAST)_[A-Z_]+)\b", sources))
    for variant in VARIANTS:
        for name, spec in render(variant).pod_specs().items():
            for c in spec["containers"]:
                for e in c.get("env", []):
                    if e["name"].startswith(("KUBE_VAST_", "VAST_")):
                        assert e["name"] in known, f"{variant}: {name}/{c['name']} sets {e['name']}, which nothing reads"


def test_the_selection_configmap_is_a_valid_config_and_by_default_the_built_in_one(render):
    default = render("existing-secret").one("ConfigMap", "kube-vast-selection")["data"]["kube-vast.yaml"]
    assert config_from_mapping(yaml.safe_load(default)) == SelectionConfig()
    example = render("tuned").one("ConfigMap", "gpu-burst-selection")["data"]["kube-vast.yaml"]
    from vastmarket.config import load_config

    assert config_from_mapping(yaml.safe_load(example)) == load_config(REPO_ROOT / "examples" / "kube-vast.yaml")


def test_a_selection_change_rolls_the_pods(render, values_dir):
    before = render("existing-secret").one("Deployment", "kube-vast")["spec"]["template"]["metadata"]["annotations"]
    changed = template({**EXISTING_SECRET, "selection": {"max_price_per_hour": 0.5}}, tmp_dir=values_dir)
    after = changed.one("Deployment", "kube-vast")["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/selection"] != after["checksum/selection"]


# --- the Vast API key ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant, secret, key", [("existing-secret", "vast-api", "token"),
                                                  ("api-key", "kube-vast-vast", "api-key")])
def test_the_api_key_reaches_only_the_controller_and_only_as_a_mounted_file(variant, secret, key, render):
    rendered = render(variant)
    c = containers(rendered)
    path = env_of(c["controller"])["VAST_API_KEY_FILE"]
    key_volume = volume(rendered, mounted_volume(c["controller"], path))
    assert key_volume["secret"]["secretName"] == secret
    assert key_volume["secret"]["items"] == [{"key": key, "path": Path(path).name}]
    for spec in rendered.pod_specs().values():
        for container in spec["containers"]:
            assert "VAST_API_KEY" not in env_of(container)
            assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in container.get("env", []))
            if container is not c["controller"]:
                assert key_volume["name"] not in mounts_of(container).values()
    if variant == "api-key":
        created = rendered.one("Secret", "kube-vast-vast")
        assert base64.b64decode(created["data"]["api-key"]).decode() == VARIANTS["api-key"]["vast"]["apiKey"]
        # The only place the key appears is that Secret's data.
        assert rendered.text.count(created["data"]["api-key"]) == 1
        assert VARIANTS["api-key"]["vast"]["apiKey"] not in rendered.text
    else:
        assert rendered.of_kind("Secret") == [s for s in rendered.of_kind("Secret") if s["type"] == "kubernetes.io/tls"]


def test_in_simulator_mode_the_controller_rents_from_the_releases_simulator_without_a_key(render):
    rendered = render("simulator")
    env = env_of(containers(rendered)["controller"])
    service = rendered.one("Service", "kube-vast-simulator")
    assert env["VAST_API_URL"] == f"http://kube-vast-simulator.kube-vast.svc:{service['spec']['ports'][0]['port']}"
    assert "VAST_API_KEY_FILE" not in env
    pod = rendered.one("Deployment", "kube-vast-simulator")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    [sim] = pod["spec"]["containers"]
    assert "--public-ip=$(POD_IP)" in sim["args"] and "--host=0.0.0.0" in sim["args"]


def test_outside_simulator_mode_the_controller_calls_the_configured_vast_api(render):
    env = env_of(containers(render("existing-secret"))["controller"])
    assert env["VAST_API_URL"] == "https://console.vast.ai"
    assert "Simulator" not in {d["kind"] for d in render("existing-secret").docs}
    assert not [n for n in render("existing-secret").names("Deployment") if n.endswith("-simulator")]


# --- pods: secure, probed, available --------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_pod_runs_non_root_with_a_read_only_root_and_no_privileges(variant, render):
    for name, spec in render(variant).pod_specs().items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        for c in spec["containers"]:
            sc = c["securityContext"]
            where = f"{name}/{c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], where
            assert not sc.get("privileged"), where
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"], where
            image = c["image"]
            assert "@sha256:" in image or not image.endswith(":latest") and ":" in image.rsplit("/", 1)[-1], where


def test_the_kube_vast_image_runs_as_the_user_the_dockerfile_creates(render):
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    [user] = re.findall(r"^USER\s+(\d+)", dockerfile, flags=re.M)
    for deployment in ("kube-vast", "kube-vast-simulator"):
        assert render("simulator").pod_specs()[deployment]["securityContext"]["runAsUser"] == int(user)


def test_only_the_controller_and_the_scheduler_get_a_kubernetes_api_token(render):
    specs = render("simulator").pod_specs()
    assert specs["kube-vast"]["automountServiceAccountToken"] is False
    assert specs["kube-vast-simulator"]["automountServiceAccountToken"] is False
    assert specs["kube-vast-scheduler"]["automountServiceAccountToken"] is True
    token_volumes = {v["name"] for v in specs["kube-vast"]["volumes"]
                     if any("serviceAccountToken" in s for s in v.get("projected", {}).get("sources", []))}
    with_token = {c["name"] for c in specs["kube-vast"]["containers"] if token_volumes & set(mounts_of(c).values())}
    assert with_token == {"controller"}
    controller = containers(render("simulator"))["controller"]
    assert mounted_volume(controller, "/var/run/secrets/kubernetes.io/serviceaccount/token") in token_volumes


def test_the_kube_vast_pod_has_two_replicas_probes_and_a_disruption_budget(render):
    rendered = render("existing-secret")
    deployment = rendered.one("Deployment", "kube-vast")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    c = containers(rendered)
    assert c["extender"]["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["extender"]["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["extender"]["ports"] == [{"name": "http", "containerPort": 8888, "protocol": "TCP"}]
    assert c["webhook"]["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    assert c["webhook"]["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    assert c["controller"]["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert "--metrics-port=9090" in c["controller"]["args"]
    webhook_service = rendered.one("Service", "kube-vast-webhook")
    assert webhook_service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for pdb_name, deployment_name in (("kube-vast", "kube-vast"), ("kube-vast-scheduler", "kube-vast-scheduler")):
        pdb = rendered.one("PodDisruptionBudget", pdb_name)
        labels = rendered.one("Deployment", deployment_name)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    tuned = render("tuned").one("PodDisruptionBudget", "gpu-burst")
    assert tuned["spec"]["maxUnavailable"] == 1 and "minAvailable" not in tuned["spec"]
    assert render("tuned").names("PodDisruptionBudget") == ["gpu-burst"]


# --- RBAC shape (what it grants is checked against the API server in test_rbac.py) ----------------


def test_rbac_on_nodes_and_leases_is_limited_to_the_virtual_nodes_by_name(render):
    rendered = render("several-nodes")
    nodes = VARIANTS["several-nodes"]["virtualNodes"]
    rules = rendered.one("ClusterRole", "kube-vast-controller")["rules"]
    for rule in rules:
        if rule["resources"] in (["nodes"], ["nodes/status"]) and rule["verbs"] != ["create"]:
            assert rule["resourceNames"] == nodes
    node_lease = rendered.one("Role", "kube-vast-controller-node-lease")
    assert node_lease["metadata"]["namespace"] == "kube-node-lease"
    assert [r.get("resourceNames") for r in node_lease["rules"]] == [None, nodes]
    leader = rendered.one("Role", "kube-vast-controller-leader")
    assert [r.get("resourceNames") for r in leader["rules"]] == [None, [LEASE_NAME]]
    assert [r["verbs"] for r in node_lease["rules"] + leader["rules"]] == [["create"], ["get", "update"]] * 2


def test_with_a_cluster_id_the_controller_cannot_read_namespaces(render):
    def namespace_rules(variant: str, name: str) -> list[dict[str, Any]]:
        return [r for r in render(variant).one("ClusterRole", name)["rules"] if r["resources"] == ["namespaces"]]

    assert namespace_rules("existing-secret", "kube-vast-controller") == [
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"], "verbs": ["get"]}]
    assert namespace_rules("tuned", "gpu-burst-controller") == []


def test_the_scheduler_is_bound_to_the_built_in_scheduler_roles_and_its_own_lease(render):
    rendered = render("existing-secret", release="gpu", namespace="infra")
    refs = {b["roleRef"]["name"] for b in rendered.of_kind("ClusterRoleBinding")
            if b["subjects"] == [{"kind": "ServiceAccount", "name": "gpu-kube-vast-scheduler", "namespace": "infra"}]}
    assert refs == {"system:kube-scheduler", "system:volume-scheduler"}
    role = rendered.one("Role", "gpu-kube-vast-scheduler-lease")
    assert role["metadata"]["namespace"] == "infra"
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "resourceNames": ["gpu-kube-vast-scheduler"], "verbs": ["get", "update"]}]
    reader = rendered.one("RoleBinding", "gpu-kube-vast-scheduler-authentication-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"]["name"] == "extension-apiserver-authentication-reader"
