"""Admission with the real kube-apiserver and the real vast-scheduler: the webhook registered from
the shipped manifest (all four webhooks, with their matchConditions), the extender, the controller
(which registers the virtual node and rents), and the simulator as Vast.

- a Deployment (and a CronJob) whose pods Vast cannot run is refused by the create itself, with the
  message the pod would get; an UPDATE that breaks the template is refused, a scale is not;
- a pod without ``nvidia.com/gpu`` in an opted-in namespace is stored untouched, and one bound to
  the virtual node by hand is never rented (the controller's own check);
- a pod written for a GKE L4 node (``cloud.google.com/gke-accelerator: nvidia-l4``, also asking
  for ``ephemeral-storage``) is admitted with an L4 offer, bound to the virtual node by
  vast-scheduler, and an L4 is rented for it."""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster import create_namespace
from devcluster.controller_stack import host_ip, live_instances, wait_until
from devcluster.full_stack import vast_stack
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

NODE = "vast-gpu-node-adm"
CLUSTER = "admtest1"
OPTED_IN = {"vast.ai/enabled": "true"}
GPU = {"limits": {"nvidia.com/gpu": "1"}}


class Stack:
    def __init__(self, api, sim: SimulatorServer, team: str, plain: str) -> None:
        self.api, self.sim, self.team, self.plain = api, sim, team, plain
        self.core, self.apps, self.batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)


def container(name: str = "app", resources: dict | None = None) -> dict:
    return {"name": name, "image": "ghcr.io/example/speech:1.0", "ports": [{"containerPort": 8000}],
            "resources": dict(GPU if resources is None else resources)}


def template(*, labels: dict | None = None, containers: list | None = None, **spec) -> dict:
    return {"metadata": {"labels": {"app": "speech", **(labels or {})}},
            "spec": {"containers": containers or [container()], **spec}}


def deployment(name: str, tmpl: dict) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "speech"}}, "template": tmpl}}


def pod(name: str, tmpl: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **tmpl["metadata"]}, "spec": tmpl["spec"]}


def refusal(call) -> tuple[str, str]:
    """(webhook name, our message) of a create the webhook denied."""
    with pytest.raises(ApiException) as denied:
        call()
    assert denied.value.status == 400, denied.value.body
    message = json.loads(denied.value.body)["message"]
    head, sep, ours = message.partition(" denied the request: ")
    assert sep and head.startswith('admission webhook "'), message
    return head.removeprefix('admission webhook "').rstrip('"'), ours


@pytest.fixture(scope="module")
def stack(control_plane, kube_scheduler, tmp_path_factory):
    work = tmp_path_factory.mktemp("admission-workloads")
    api = control_plane.api_client()
    run = uuid.uuid4().hex[:6]
    team, plain, release = f"adm-{run}-team", f"adm-{run}", f"adm-{run}-release"
    for ns, labels in ((team, OPTED_IN), (plain, None), (release, None)):
        create_namespace(api, ns, labels=labels)
    ip = host_ip()
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)

    def active() -> bool:  # the apiserver picks the configurations up asynchronously
        probe = pod("probe", template(labels=OPTED_IN))
        if core.create_namespaced_pod(plain, probe, dry_run="All").spec.scheduler_name != "vast-scheduler":
            return False
        for ns, labels in ((team, {}), (plain, OPTED_IN)):
            try:
                apps.create_namespaced_deployment(ns, deployment("probe", template(
                    labels=labels, containers=[container("a"), container("b")])), dry_run="All")
                return False
            except ApiException as exc:
                if exc.status != 400:
                    raise
        return True

    try:
        with SimulatorServer(seed=21, offers=600, boot_seconds=(0.2, 0.4), host=ip, public_ip=ip) as sim, \
                vast_stack(control_plane, kube_scheduler, work, sim=sim, node=NODE, cluster_id=CLUSTER,
                           release_namespace=release, webhook_ready=active):
            yield Stack(api, sim, team, plain)
            # Pods on the virtual node carry the finalizer: let the controller clean up first.
            for ns in (team, plain):
                core.delete_collection_namespaced_pod(ns)
            wait_until(lambda: not core.list_namespaced_pod(team).items and not core.list_namespaced_pod(plain).items,
                       timeout=60)
            wait_until(lambda: not live_instances(sim, f"kv:{CLUSTER}:"), timeout=60)
    finally:
        for ns in (team, plain, release):
            core.delete_namespace(ns)


# --- templates refused at apply time ----------------------------------------------------------------

def test_a_deployment_whose_pods_vast_cannot_run_is_refused_at_create_with_the_pods_message(stack):
    two = template(containers=[container("vllm"), container("lora-sync", resources={})])
    webhook, message = refusal(lambda: stack.apps.create_namespaced_deployment(stack.team, deployment("vllm", two)))
    pod_webhook, pod_message = refusal(lambda: stack.core.create_namespaced_pod(stack.team, pod("vllm", two)))
    assert (webhook, pod_webhook) == ("template-namespace-label.webhook.kube-vast.io", "namespace-label.webhook.kube-vast.io")
    assert pod_message == "this pod cannot run on Vast: it has 2 containers ('vllm', 'lora-sync'); a Vast instance runs exactly one"
    assert message == f"spec.template: {pod_message}"
    with pytest.raises(ApiException) as missing:
        stack.apps.read_namespaced_deployment("vllm", stack.team)
    assert missing.value.status == 404, "nothing was stored"


def test_a_cronjob_opted_in_by_its_template_label_is_refused_for_a_claim_and_for_having_no_gpu(stack):
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template(
                labels=OPTED_IN, containers=[container(resources={})], restartPolicy="Never",
                volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}])}}}}
    webhook, message = refusal(lambda: stack.batch.create_namespaced_cron_job(stack.plain, cron))
    assert webhook == "template-label.webhook.kube-vast.io"
    assert message.startswith("spec.jobTemplate.spec.template: this pod cannot run on Vast: it requests no "
                              "nvidia.com/gpu, and kube-vast sends only GPU pods to Vast")
    assert "volume 'data' is a PersistentVolumeClaim: Vast cannot mount PersistentVolumeClaims" in message
    # Without the label, in a namespace that did not opt in, the same CronJob is none of kube-vast's business.
    del cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["vast.ai/enabled"]
    assert stack.batch.create_namespaced_cron_job(stack.plain, cron, dry_run="All").metadata.name == "nightly"


def test_an_update_that_breaks_the_template_is_refused_and_a_scale_is_not(stack):
    stack.apps.create_namespaced_deployment(stack.team, deployment("speech", template()))
    broken = {"spec": {"template": {"spec": {"initContainers": [{"name": "fetch", "image": "busybox"}]}}}}
    webhook, message = refusal(lambda: stack.apps.patch_namespaced_deployment("speech", stack.team, broken))
    assert webhook == "template-namespace-label.webhook.kube-vast.io"
    assert message == "spec.template: this pod cannot run on Vast: init containers ('fetch') cannot run on a Vast instance"
    scaled = stack.apps.patch_namespaced_deployment("speech", stack.team, {"spec": {"replicas": 0}})
    assert scaled.spec.replicas == 0


# --- only GPU pods go to Vast -------------------------------------------------------------------------

def test_a_pod_without_a_gpu_in_an_opted_in_namespace_is_untouched_and_never_rented(stack):
    plain = template(containers=[container("nginx", resources={})])
    stored = stack.core.create_namespaced_pod(stack.team, pod("plain", plain))
    assert stored.spec.scheduler_name == "default-scheduler"
    assert not [t for t in stored.spec.tolerations or [] if t.key == "virtual-kubelet.io/provider"]
    assert not [k for k in stored.metadata.annotations or {} if k.startswith("vast.ai/")]

    # Bound to the virtual node by hand, with every annotation of an offer: the controller still
    # keeps it Pending and rents nothing.
    forced = pod("forced", plain)
    forced["metadata"]["annotations"] = {"vast.ai/offer-id": "1"}
    forced["spec"] = {**forced["spec"], "nodeName": NODE,
                      "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]}
    created = stack.core.create_namespaced_pod(stack.team, forced)

    def warned() -> bool:
        events = stack.core.list_namespaced_event(stack.team, field_selector="involvedObject.name=forced").items
        return any(e.reason == "NoGPURequested" and e.type == "Warning" for e in events)

    wait_until(warned, timeout=60)
    assert stack.core.read_namespaced_pod("forced", stack.team).status.phase == "Pending"
    labels = [i["label"] for i in stack.sim.state()["instances"]]
    assert not [label for label in labels if label and label.endswith(created.metadata.uid)], "nothing rented"


# --- GPU node selectors -------------------------------------------------------------------------------

def test_a_pod_written_for_a_gke_l4_node_gets_an_l4_offer_and_is_bound_by_vast_scheduler(stack):
    l4 = template(containers=[container("vllm", resources={"limits": {"nvidia.com/gpu": "1"},
                                                           "requests": {"ephemeral-storage": "20Gi"}})],
                  nodeSelector={"cloud.google.com/gke-accelerator": "nvidia-l4", "kubernetes.io/os": "linux",
                                "kubernetes.io/hostname": NODE})
    created = stack.core.create_namespaced_pod(stack.team, pod("vllm-l4", l4))
    notes = created.metadata.annotations
    assert notes["vast.ai/offer-gpu"] == "L4", notes
    assert created.spec.scheduler_name == "vast-scheduler"
    assert created.spec.node_selector == {"kubernetes.io/os": "linux", "kubernetes.io/hostname": NODE}
    terms = created.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    assert [[(e.key, e.operator, e.values) for e in t.match_expressions] for t in terms] == [
        [("cloud.google.com/gke-accelerator", "In", ["nvidia-l4"])], [("vast.ai/virtual-node", "In", ["true"])]]

    bound = wait_until(lambda: (p := stack.core.read_namespaced_pod("vllm-l4", stack.team)).spec.node_name and p,
                       timeout=60)
    assert bound.spec.node_name == NODE
    scheduled = [c for c in bound.status.conditions or [] if c.type == "PodScheduled"]
    assert scheduled and scheduled[0].status == "True"
    rented = wait_until(lambda: [i for i in live_instances(stack.sim, f"kv:{CLUSTER}:{created.metadata.uid}")],
                        timeout=60)
    assert [i["gpu_name"] for i in rented] == ["L4"]
