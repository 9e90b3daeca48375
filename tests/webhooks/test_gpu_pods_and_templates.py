"""Only GPU pods go to Vast; what a Vast instance cannot mount or run is refused or warned about;
cloud GPU node selectors become the offer's GPU; workload templates are refused at apply time with
the message their pods would get. Through the Flask app, from captured AdmissionReviews."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.unit.offer_factory import make_offer
from tests.webhooks.conftest import NOW, Harness, captured, patch_of, patched
from vastmarket.config import SelectionConfig
from vastmarket.requirements import requirements_for
from vastmarket.snapshot import OfferSnapshot
from webhooks.settings import WebhookSettings

POD = "pod-create-generatename"      # labelled vast.ai/enabled: "true" itself
NS_POD = "deployment-pod-create"     # no label: sent because its namespace opted in
L4_TERM = {"key": "cloud.google.com/gke-accelerator", "operator": "In", "values": ["nvidia-l4"]}


def pod_review(name: str = POD, **spec: Any) -> dict[str, Any]:
    """A captured pod CREATE with ``spec`` fields set and no vast.ai/* annotations (they would
    decide the GPU instead of the node selectors)."""
    review = captured(name)
    review["request"]["object"]["spec"].update(spec)
    review["request"]["object"]["metadata"]["annotations"] = {}
    return review


def container(review: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = review["request"]["object"]["spec"]["containers"][0]
    return found


def without_gpu(review: dict[str, Any]) -> dict[str, Any]:
    resources = container(review)["resources"]
    for section in ("limits", "requests"):
        resources.get(section, {}).pop("nvidia.com/gpu", None)
    return review


def denial(reply: dict[str, Any]) -> str:
    response = reply["response"]
    assert response["allowed"] is False, response
    message: str = response["status"]["message"]
    return message


def l4_market() -> OfferSnapshot:
    return OfferSnapshot([
        make_offer(1, gpu_name="RTX 3060", dph_total=0.10),
        make_offer(2, gpu_name="L4", gpu_ram_mb=23034, dph_total=0.35, geolocation="Texas, US"),
        make_offer(3, gpu_name="L4", gpu_ram_mb=23034, dph_total=0.48),
        make_offer(4, gpu_name="Tesla T4", gpu_ram_mb=15360, dph_total=0.12),
    ], taken_at=NOW - 10)


# --- only GPU pods ------------------------------------------------------------------------------

def test_a_pod_without_a_gpu_in_an_opted_in_namespace_is_left_untouched(hook):
    review = without_gpu(captured(NS_POD))
    assert hook.review(review)["response"] == {"uid": review["request"]["uid"], "allowed": True}
    assert hook.metric("kube_vast_webhook_requests_total", outcome="allowed_untouched") == 1
    assert hook.metric("kube_vast_webhook_selections_total", result="offer") == 0


def test_a_gpu_count_of_zero_is_no_gpu(hook):
    review = captured(NS_POD)
    for section in ("limits", "requests"):
        container(review)["resources"][section]["nvidia.com/gpu"] = "0"
    assert patch_of(hook.review(review)) == []


def test_a_pod_without_a_gpu_that_opted_in_itself_is_denied_with_every_reason(hook):
    review = without_gpu(captured(POD))
    review["request"]["object"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    message = denial(hook.review(review))
    assert message.startswith("this pod cannot run on Vast: it requests no nvidia.com/gpu, and kube-vast sends "
                              "only GPU pods to Vast (add resources.limits nvidia.com/gpu: 1, or remove the label "
                              'vast.ai/enabled: "true")')
    assert "it has 2 containers ('whisper', 'sidecar')" in message


# --- volumes and hooks --------------------------------------------------------------------------

@pytest.mark.parametrize("volume, says", [
    ({"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
     "volume 'models' is a PersistentVolumeClaim: Vast cannot mount PersistentVolumeClaims"),
    ({"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}},
     "volume 'scratch' is a generic ephemeral volume (a PersistentVolumeClaim per pod): Vast cannot mount"),
    ({"name": "host", "hostPath": {"path": "/data"}}, "volume 'host' is a hostPath: a Vast instance is not a cluster node"),
    ({"name": "share", "nfs": {"server": "nfs", "path": "/"}}, "volume 'share' (nfs) cannot be mounted on a Vast instance"),
])
def test_volumes_vast_cannot_mount_are_refused_at_admission(hook, volume, says):
    review = captured(POD)
    review["request"]["object"]["spec"]["volumes"].append(volume)
    assert says in denial(hook.review(review))


@pytest.mark.parametrize("volume", [
    {"name": "config", "configMap": {"name": "app"}},
    {"name": "creds", "secret": {"secretName": "app"}},
    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    {"name": "cache", "emptyDir": {}},
    {"name": "podinfo", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
    {"name": "bundle", "projected": {"sources": [{"configMap": {"name": "a"}}, {"secret": {"name": "b"}}]}},
])
def test_volumes_the_instance_gets_are_admitted_without_a_warning(hook, volume):
    review = captured(POD)
    review["request"]["object"]["spec"]["volumes"].append(volume)
    container(review)["volumeMounts"].append({"name": volume["name"], "mountPath": "/mnt/" + volume["name"]})
    response = hook.review(review)["response"]
    assert response["allowed"] is True and patch_of({"response": response})
    assert "warnings" not in response, "the service account token volume is there too, and not warned about"


# --- runtime classes ----------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", ["nvidia", "nvidia-cdi", "nvidia-legacy", "nvidia-experimental", None, ""])
def test_a_gpu_runtime_class_goes_to_vast(hook, runtime):
    """NVIDIA's GPU operator (containerd) and k3s write runtimeClassName: nvidia into GPU pods:
    it only gives the container its GPUs, which Vast's runtime does on every instance."""
    review = pod_review(runtimeClassName=runtime)
    reply = hook.review(review)
    assert reply["response"]["allowed"] is True and patch_of(reply), reply["response"]


@pytest.mark.parametrize("runtime", ["kata-qemu", "gvisor", "kata-qemu-nvidia-gpu-snp", 7])
def test_a_sandbox_or_confidential_runtime_class_is_denied_with_what_vast_runs(hook, runtime):
    message = denial(hook.review(pod_review(runtimeClassName=runtime)))
    assert message.startswith(f"this pod cannot run on Vast: runtimeClassName {runtime!r}")
    assert "asks for a container runtime a Vast instance does not have" in message
    assert "may go to Vast are nvidia, nvidia-cdi, nvidia-experimental, nvidia-legacy" in message
    assert 'label it vast.ai/enabled: "false"' in message
    assert hook.metric("kube_vast_webhook_selections_total", result="offer") == 0


def test_the_gpu_runtime_classes_are_the_operators_to_choose():
    own = Harness(WebhookSettings(max_snapshot_age=120, gpu_runtime_classes=frozenset({"nvidia-gpu"})))
    assert own.review(pod_review(runtimeClassName="nvidia-gpu"))["response"]["allowed"] is True
    message = denial(own.review(pod_review(runtimeClassName="nvidia")))
    assert "the GPU runtime classes that may go to Vast are nvidia-gpu " in message
    none = Harness(WebhookSettings(max_snapshot_age=120, gpu_runtime_classes=frozenset()))
    assert "may go to Vast are none " in denial(none.review(pod_review(runtimeClassName="nvidia")))
    assert none.review(pod_review())["response"]["allowed"] is True, "a pod naming no runtime class still goes"


def test_a_token_the_app_mounts_itself_is_admitted_with_a_warning_that_it_is_missing(hook):
    review = captured(POD)
    review["request"]["object"]["spec"]["volumes"].append(
        {"name": "vault-token", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "audience": "vault"}}]}})
    container(review)["volumeMounts"].append({"name": "vault-token", "mountPath": "/var/run/secrets/vault"})
    response = hook.review(review)["response"]
    assert response["allowed"] is True
    assert response["warnings"] == ["volume 'vault-token': its serviceAccountToken source is not created on the Vast "
                                    "instance (it cannot reach the cluster's API server)"]


@pytest.mark.parametrize("handler", [{"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}},
                                     {"httpGet": {"path": "/drain", "port": 9000}}, {"sleep": {"seconds": 5}}])
def test_a_pre_stop_hook_is_admitted_with_one_warning_that_it_cannot_run(hook, handler):
    review = captured(POD)
    container(review)["lifecycle"] = {"preStop": handler}
    response = hook.review(review)["response"]
    assert response["allowed"] is True
    [warning] = response["warnings"]
    kind = next(iter(handler))
    assert warning == (f"container 'whisper': preStop ({kind}) cannot run on a Vast instance (nothing runs beside "
                       "the container there); on deletion the container only gets SIGTERM and "
                       "terminationGracePeriodSeconds")


# --- GPU node selectors -------------------------------------------------------------------------

def test_a_gke_l4_pod_gets_an_l4_offer_and_constraints_the_virtual_node_satisfies():
    hook = Harness(snapshot=l4_market())
    review = pod_review(NS_POD, nodeSelector={"cloud.google.com/gke-accelerator": "nvidia-l4",
                                              "kubernetes.io/os": "linux"})
    reply = hook.review(review)
    pod = patched(review, reply)
    assert pod["metadata"]["annotations"]["vast.ai/offer-id"] == "2", "the cheapest L4, not the cheaper RTX 3060"
    assert pod["metadata"]["annotations"]["vast.ai/offer-gpu"] == "L4"
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"] == [{"matchExpressions": [L4_TERM]},
                                 {"matchExpressions": [{"key": "vast.ai/virtual-node", "operator": "In",
                                                        "values": ["true"]}]}]
    # The extender and explain read the same requirement from the stored pod; reinvoked, no patch.
    assert requirements_for(SelectionConfig(), pod).gpu_types == ("L4",)
    again = copy.deepcopy(review)
    again["request"]["object"] = pod
    assert patch_of(hook.review(again)) == []


def test_without_an_offer_for_the_selected_gpu_the_selection_error_names_the_selector():
    hook = Harness(snapshot=l4_market())
    review = pod_review(NS_POD, nodeSelector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    pod = patched(review, hook.review(review))
    error = pod["metadata"]["annotations"]["vast.ai/selection-error"]
    assert error.startswith("no offer matches: 4 seen; 4 not H100")
    assert error.endswith("(the GPU is required by the pod's node selector nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3)")
    assert pod["spec"]["affinity"]["nodeAffinity"], "routed to the virtual node anyway: the extender keeps it Pending"


def test_a_selector_that_cannot_be_translated_denies_the_pod_naming_it(hook):
    review = pod_review(POD, nodeSelector={"node.kubernetes.io/instance-type": "m5.large"})
    message = denial(hook.review(review))
    assert message.startswith("spec.nodeSelector[node.kubernetes.io/instance-type] (node.kubernetes.io/instance-type): "
                              "invalid value 'm5.large': expected a cloud GPU instance type kube-vast can translate")


# --- workload templates -------------------------------------------------------------------------

WORKLOADS = {
    "Deployment": ("apps", "deployments", ("spec", "template")),
    "StatefulSet": ("apps", "statefulsets", ("spec", "template")),
    "ReplicaSet": ("apps", "replicasets", ("spec", "template")),
    "Job": ("batch", "jobs", ("spec", "template")),
    "CronJob": ("batch", "cronjobs", ("spec", "jobTemplate", "spec", "template")),
}


def workload_review(kind: str, template: dict[str, Any], *, operation: str = "CREATE",
                    old_template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The captured Deployment CREATE, recast as ``kind`` with ``template`` at its place."""
    review = captured("deployment-create")
    group, resource, path = WORKLOADS[kind]
    request = review["request"]
    request["kind"] = {"group": group, "version": "v1", "kind": kind}
    request["resource"] = request["requestResource"] = {"group": group, "version": "v1", "resource": resource}
    request["operation"] = operation

    def build(t: dict[str, Any]) -> dict[str, Any]:
        obj = {"apiVersion": f"{group}/v1", "kind": kind, "metadata": copy.deepcopy(request["object"]["metadata"])}
        target = obj
        for step in path[:-1]:
            target = target.setdefault(step, {})
        target[path[-1]] = copy.deepcopy(t)
        return obj

    request["object"] = build(template)
    if operation == "UPDATE":
        request["oldObject"] = build(old_template if old_template is not None else template)
    return review


def deployment_template() -> dict[str, Any]:
    template: dict[str, Any] = captured("deployment-create")["request"]["object"]["spec"]["template"]
    return template


def pod_of(template: dict[str, Any]) -> dict[str, Any]:
    """A pod CREATE of what the template's controller would create."""
    review = captured(NS_POD)
    obj = review["request"]["object"]
    obj["metadata"]["labels"] = dict(template["metadata"].get("labels") or {})
    obj["metadata"]["annotations"] = dict(template["metadata"].get("annotations") or {})
    obj["spec"] = copy.deepcopy(template["spec"])
    return review


def broken(change: str) -> dict[str, Any]:
    template = deployment_template()
    spec = template["spec"]
    if change == "two containers":
        spec["containers"].append({"name": "lora-sync", "image": "busybox"})
    elif change == "init container":
        spec["initContainers"] = [{"name": "fetch", "image": "busybox"}]
    elif change == "bad annotation":
        template["metadata"]["annotations"]["vast.ai/price-max"] = "free"
    elif change == "claim":
        spec["volumes"] = [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}]
    elif change == "no gpu, own label":
        template["metadata"]["labels"]["vast.ai/enabled"] = "true"
        spec["containers"][0]["resources"]["limits"].pop("nvidia.com/gpu")
    elif change == "unknown instance type":
        spec["nodeSelector"] = {"node.kubernetes.io/instance-type": "m5.large"}
    elif change == "sandbox runtime":
        spec["runtimeClassName"] = "gvisor"
    return template


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
@pytest.mark.parametrize("change", ["two containers", "init container", "bad annotation", "claim",
                                    "no gpu, own label", "unknown instance type", "sandbox runtime"])
def test_a_workload_whose_pods_would_be_denied_is_denied_with_the_pods_message(hook, kind, change):
    template = broken(change)
    pod_message = denial(hook.review(pod_of(template)))
    message = denial(hook.review(workload_review(kind, template)))
    where = ".".join(WORKLOADS[kind][2])
    assert message == f"{where}: {pod_message}"
    assert hook.metric("kube_vast_webhook_requests_total", outcome="denied") == 2


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
def test_a_runnable_template_is_allowed_and_never_patched(hook, kind):
    template = deployment_template()
    template["spec"]["nodeSelector"] = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    template["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 3}}}
    response = hook.review(workload_review(kind, template))["response"]
    assert response["allowed"] is True and "patch" not in response
    where = ".".join(WORKLOADS[kind][2])
    assert [w.split(": ", 1)[0] for w in response["warnings"]] == [where], "the pod's warning, at the template"
    assert hook.metric("kube_vast_webhook_selections_total", result="offer") == 0, "offers are chosen per pod"


def test_a_statefulset_with_volume_claim_templates_is_denied_for_the_claims_its_pods_get(hook):
    review = workload_review("StatefulSet", deployment_template())
    review["request"]["object"]["spec"]["volumeClaimTemplates"] = [
        {"metadata": {"name": "models"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]
    pod = captured(NS_POD)  # what the StatefulSet controller creates: the claim as a volume
    pod["request"]["object"]["spec"]["volumes"].append(
        {"name": "models", "persistentVolumeClaim": {"claimName": "models-speech-0"}})
    assert denial(hook.review(review)) == f"spec.template: {denial(hook.review(pod))}"
    assert "volume 'models' is a PersistentVolumeClaim" in denial(hook.review(review))


def test_a_template_without_a_gpu_in_an_opted_in_namespace_is_allowed(hook):
    template = deployment_template()
    template["spec"]["containers"][0]["resources"] = {}
    template["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    assert hook.review(workload_review("Deployment", template))["response"]["allowed"] is True


def test_a_template_that_opted_out_is_not_reviewed(hook):
    template = broken("two containers")
    template["metadata"]["labels"]["vast.ai/enabled"] = "false"
    assert hook.review(workload_review("Deployment", template))["response"]["allowed"] is True


def test_an_update_that_keeps_the_template_is_allowed_even_if_it_would_be_denied(hook):
    template = broken("two containers")  # e.g. created before kube-vast was installed: scaling must work
    review = workload_review("Deployment", template, operation="UPDATE")
    review["request"]["object"]["spec"]["replicas"] = 5
    assert hook.review(review)["response"]["allowed"] is True


def test_an_update_that_changes_the_template_is_reviewed(hook):
    review = workload_review("Deployment", broken("two containers"), operation="UPDATE",
                             old_template=deployment_template())
    assert "it has 2 containers" in denial(hook.review(review))


@pytest.mark.parametrize("namespace", ["kube-system", "kube-vast"])
def test_workloads_in_excluded_namespaces_are_not_reviewed(hook, namespace):
    review = workload_review("Job", broken("two containers"))
    review["request"]["namespace"] = namespace
    assert hook.review(review)["response"]["allowed"] is True


def test_a_dry_run_of_a_workload_gets_the_same_answer():
    hook = Harness(WebhookSettings(max_snapshot_age=120, release_namespace="kube-vast", deny_without_offer=True))
    review = workload_review("Deployment", broken("claim"))
    dry = copy.deepcopy(review)
    dry["request"]["dryRun"] = True
    assert hook.review(dry)["response"]["status"] == hook.review(review)["response"]["status"]
