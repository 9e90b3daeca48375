"""A partition between this machine (the controller) and a Vast host, for real: the simulator's
hosts listen in a network namespace this test run made (vastsim.hostnet), each behind its own
veth link, and the partition takes the serving host's link down. The Vast API still reports the
instance running.

Expected, with the real API server and the controller as a process: the pod goes NotReady and
its endpoints not ready after the readiness probe's failure threshold; after
``KUBE_VAST_HOST_UNREACHABLE_GRACE`` a new instance on another host serves; when the link heals
the old instance is destroyed (its port refuses). Sampled throughout, on the simulator's ledger
and the pod's EndpointSlices: never two live instances for the pod, never two addresses serving
it. Skipped loudly where no namespace can be made (not root); under ``CI=true`` it must run."""

from __future__ import annotations

import json
import socket
import threading
import uuid

import pytest
from kubernetes import client

from devcluster import create_namespace
from devcluster.controller_stack import ControllerProcess, live_instances, wait_until
from devcluster.ledger import LedgerSampler, rental_audit
from vastsim import SimulatorServer

pytestmark = pytest.mark.cluster

NODE = "vast-gpu-node-partition"
CLUSTER = "part01"
GRACE = 6
FAILURE_THRESHOLD = 2


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "speech"}},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "ghcr.io/example/speech:1.0",
                                     "ports": [{"name": "http", "containerPort": 8000}],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                     "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                                        "periodSeconds": 1, "timeoutSeconds": 1,
                                                        "failureThreshold": FAILURE_THRESHOLD}}]}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "speech"},
           "spec": {"selector": {"app": "speech"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


class SliceSampler:
    """Samples the pod's EndpointSlices in a thread: the most distinct ready addresses at once."""

    def __init__(self, api, ns: str) -> None:
        self.discovery = client.DiscoveryV1Api(api)
        self.ns = ns
        self.samples = 0
        self.most_ready = 0
        self.seen: list[tuple[str, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> list[tuple[str, bool]]:
        found = []
        for s in self.discovery.list_namespaced_endpoint_slice(self.ns, label_selector="kubernetes.io/service-name=speech").items:
            for e in s.endpoints or []:
                found.append((e.addresses[0], bool(e.conditions and e.conditions.ready)))
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                found = self.read()
            except Exception:  # noqa: BLE001 - a sample that could not be read proves nothing
                continue
            self.samples += 1
            self.most_ready = max(self.most_ready, len({a for a, ready in found if ready}))
            for entry in found:
                if entry not in self.seen:
                    self.seen.append(entry)

    def __enter__(self) -> "SliceSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def ready(p) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))


def events(api, ns: str, name: str) -> list[tuple[str, str]]:
    items = client.EventsV1Api(api).list_namespaced_event(ns).items
    return [(e.reason, e.note or "") for e in items if e.regarding and e.regarding.name == name]


def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_a_partitioned_host_is_replaced_after_the_grace_and_the_old_instance_is_gone_when_it_heals(
        control_plane, host_network, tmp_path):
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    ns = f"part-{uuid.uuid4().hex[:6]}"
    create_namespace(api, ns)
    create_namespace(api, f"{ns}-system")
    with SimulatorServer(seed=23, offers=600, boot_seconds=(0.2, 0.5), network=host_network) as sim:
        ctl = ControllerProcess(tmp_path, kubeconfig=control_plane.kubeconfig_for("admin", ["system:masters"]),
                                sim_url=sim.url, snapshot=tmp_path / "offers.json", node=NODE,
                                namespace=f"{ns}-system", cluster_id=CLUSTER,
                                env={"KUBE_VAST_HOST_UNREACHABLE_GRACE": str(GRACE)}).start()
        prefix = f"kv:{CLUSTER}:"
        try:
            core.create_namespaced_service(ns, SERVICE)
            core.create_namespaced_pod(ns, pod("speech-0"))
            slices = SliceSampler(api, ns)
            with LedgerSampler(lambda: sim.state()["instances"], prefix) as ledger, slices:
                p = wait_until(lambda: (x := core.read_namespaced_pod("speech-0", ns)) and ready(x) and x, timeout=90)
                old = next(i for i in live_instances(sim, prefix))
                assert p.status.host_ip == old["host"] and old["host"] in [s.address for s in host_network.sites]
                wait_until(lambda: slices.read() == [(old["host"], True)], timeout=30)

                sim.partition(old["id"])
                # Out of service after the failure threshold, while the old instance still lives.
                wait_until(lambda: not ready(core.read_namespaced_pod("speech-0", ns)), timeout=30)
                wait_until(lambda: slices.read() == [(old["host"], False)], timeout=30)
                unhealthy = [note for reason, note in events(api, ns, "speech-0") if reason == "InstanceUnhealthy"]
                assert unhealthy and f"failed {FAILURE_THRESHOLD} times" in unhealthy[-1]
                assert "host unreachable" in unhealthy[-1]
                assert [i["id"] for i in live_instances(sim, prefix)] == [old["id"]], "not replaced before the grace"

                # After the grace: a new instance on another host serves.
                p = wait_until(lambda: (x := core.read_namespaced_pod("speech-0", ns)) and ready(x) and x, timeout=120)
                [new] = live_instances(sim, prefix)
                assert new["id"] != old["id"] and new["host"] != old["host"]
                assert p.metadata.annotations["vast.ai/instance-id"] == str(new["id"])
                assert p.status.host_ip == new["host"] and p.status.container_statuses[0].restart_count == 1
                assert p.status.container_statuses[0].last_state.terminated.reason == "HostUnreachable"
                wait_until(lambda: slices.read() == [(new["host"], True)], timeout=30)

                # The link heals: the old instance is destroyed, its port refuses; one instance serves.
                sim.heal()
                ledger_rows = {i["id"]: i for i in sim.state()["instances"]}
                assert ledger_rows[old["id"]]["destroyed"]
                assert ledger_rows[old["id"]]["destroyed_at"] <= ledger_rows[new["id"]]["created_at"]
                old_port = int(old["ports"]["8000/tcp"][0]["HostPort"])
                wait_until(lambda: refused(old["host"], old_port), timeout=30)
                assert ready(core.read_namespaced_pod("speech-0", ns))
            reasons = [r for r, _ in events(api, ns, "speech-0")]
            assert "HostUnreachable" in reasons and "InstanceReplaced" in reasons and "InstanceLost" not in reasons
            assert ledger.samples > 50 and ledger.violating_samples == 0 and ledger.worst == 1, ledger.violations
            assert slices.samples > 20 and slices.most_ready == 1, slices.seen
            [count] = rental_audit(sim.state()["instances"], prefix, justified=lambda i: i["id"] == old["id"])
            assert (count.rentals, count.duplicates) == (2, 0)

            core.delete_namespaced_pod("speech-0", ns)
            wait_until(lambda: not core.list_namespaced_pod(ns).items, timeout=60)
            assert live_instances(sim, prefix) == []
            record = json.loads(p.metadata.annotations["vast.ai/launch"])
            assert old["id"] not in (record.get("replacing") or {}).values()
        finally:
            ctl.stop()
