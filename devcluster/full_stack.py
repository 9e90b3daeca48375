"""The whole kube-vast stack on a running control plane, as the end-to-end tests need it: the
controller (which publishes the offer snapshot and registers the virtual node), the extender read by
a vast-scheduler, and the webhook registered from its shipped manifest — started in that order,
waited for, and always stopped (the webhook configurations removed first, so that no other test's
pods meet a webhook that is gone). Virtual nodes left by other tests' controllers are deleted
first, and this stack's own at the end.

    with vast_stack(control_plane, kube_scheduler, work, sim=sim, node=NODE, cluster_id=CLUSTER,
                    release_namespace=release, probe_namespace=ns) as stack:
        ...  # stack.ctl, stack.ext, stack.hook
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vastsim import SimulatorServer

from .components import Extender, Webhook, register_manifest, wait_until
from .controller_stack import ControllerProcess
from .pki import webhook_serving_cert

# A pod the webhook sends to vast-scheduler once its configuration is active (asked with dry run).
PROBE_POD = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "probe", "labels": {"vast.ai/enabled": "true"}},
             "spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


VIRTUAL_NODE_LABEL = "type=virtual-kubelet"


@dataclass
class VastStack:
    ctl: ControllerProcess
    ext: Extender | None = None
    hook: Webhook | None = None
    registered: list[str] = field(default_factory=list)


def _node_ready(core: Any, node: str) -> bool:
    nodes = core.list_node(field_selector=f"metadata.name={node}").items
    return bool(nodes) and any(c.type == "Ready" and c.status == "True" for c in nodes[0].status.conditions or [])


def _delete_virtual_nodes(core: Any, *, keep: str | None) -> None:
    for stale in core.list_node(label_selector=VIRTUAL_NODE_LABEL).items:
        if stale.metadata.name != keep:
            core.delete_node(stale.metadata.name)


@contextmanager
def vast_stack(control_plane: Any, kube_scheduler: Callable[..., Any] | None, work: Path, *,
               sim: SimulatorServer, node: str, cluster_id: str, release_namespace: str,
               probe_namespace: str | None = None, webhook: bool = True,
               webhook_ready: Callable[[], bool] | None = None,
               controller_env: dict[str, str] | None = None) -> Iterator[VastStack]:
    """Start the stack against ``sim``; ``kube_scheduler`` is the fixture's factory (None: no
    extender, no scheduler). With ``webhook``, the manifest's webhooks are registered and waited
    for: by ``webhook_ready`` if given, else until a dry-run GPU pod in ``probe_namespace`` is
    sent to vast-scheduler."""
    from kubernetes import client

    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    # Virtual nodes other tests' controllers registered outlive them (no node lifecycle controller
    # runs): vast-scheduler would place this stack's pods there, where nothing runs them.
    _delete_virtual_nodes(core, keep=node)
    snapshot = work / "offers.json"
    stack = VastStack(ControllerProcess(work, kubeconfig=control_plane.kubeconfig_for("admin", ["system:masters"]),
                                        sim_url=sim.url, snapshot=snapshot, node=node,
                                        namespace=release_namespace, cluster_id=cluster_id,
                                        env=controller_env).start())
    try:
        assert stack.ctl.process is not None  # start() made it
        stack.ctl.process.wait_until(lambda: snapshot.exists(), timeout=60, what="publish the offer snapshot")
        if kube_scheduler is not None:
            stack.ext = Extender(work, snapshot, extra=("--virtual-node", node)).start()
            kube_scheduler(stack.ext.url)
        if webhook:
            cert = webhook_serving_cert(work)
            stack.hook = Webhook(work, snapshot, cert, extra=("--release-namespace", release_namespace)).start()
            stack.registered = register_manifest(api, url=f"{stack.hook.url}/mutate", ca_pem=cert.ca_pem,
                                                 release_namespace=release_namespace)
            if webhook_ready is None:
                namespace = probe_namespace or "default"

                def webhook_ready() -> bool:
                    sent = core.create_namespaced_pod(namespace, PROBE_POD, dry_run="All")  # type: ignore[arg-type]  # a dict body, sent as is
                    return sent.spec is not None and sent.spec.scheduler_name == "vast-scheduler"

            wait_until(webhook_ready, timeout=60)
        wait_until(lambda: _node_ready(core, node), timeout=60)
        yield stack
    finally:
        for name in stack.registered:
            client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(name)
        for component in (stack.hook, stack.ext):
            if component is not None:
                component.stop()
        stack.ctl.stop()
        _delete_virtual_nodes(core, keep=None)
