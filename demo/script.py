"""The demo's script: start the stack, apply the june example, narrate what happens, clean up.

Exit codes: 0 when the whole flow ran and everything was cleaned up (also when ``--keep`` is
ended with Ctrl-C or SIGTERM); 1 when a step failed (the logs are kept and their path printed);
130 when interrupted before the flow finished. The last line is always the summary::

    summary: result=ok instances_rented=1 live_instances=0 processes_left=0 elapsed=41s

``--chaos`` (:mod:`demo.chaos`) runs three replicas while the controller is SIGKILLed at random
moments, and ends with what the simulator's ledger shows (one rental per pod, nothing live); the
summary then also says ``chaos_kills=N pods=N duplicates=N max_live_per_pod=N``, and the result
is ``failed`` unless the ledger is clean.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, utils

from controller.kube import KubeGateway
from devcluster.components import KUBE_VAST
from devcluster.ledger import LedgerSampler
from devcluster.processes import ProcessDied

from .chaos import MIN_KILLS, REPLICAS, Killer, LedgerReport, ledger_report
from .console import Console
from .stack import VIRTUAL_NODE, MissingBinaries, Stack, processes_mentioning

EXAMPLE = Path(__file__).with_name("june.yaml")
APP = "june"
NAMESPACE = "default"
T = TypeVar("T")


def raw(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a Kubernetes client method; the API server's JSON as plain dicts (no models)."""
    return json.loads(method(*args, _preload_content=False, **kwargs).data or b"null")


def _ready(obj: dict[str, Any]) -> bool:
    """A node's or a pod's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM while the demo runs."""


class Demo:
    def __init__(self, *, keep: bool, seed: int, offers: int, timeout: float, keep_logs: bool,
                 console: Console | None = None, chaos: bool = False) -> None:
        self.keep = keep
        self.chaos = chaos
        self.seed = seed
        self.killer: Killer | None = None
        self.sampler: LedgerSampler | None = None
        self.pod_names: dict[str, str] = {}  # uid → name, for the ledger report
        self.report: LedgerReport | None = None
        self.timeout = timeout
        self.keep_logs = keep_logs
        self.console = console or Console()
        self.work = Path(tempfile.mkdtemp(prefix="kube-vast-demo-"))
        self.stack = Stack(self.work, self.console, seed=seed, offers=offers)
        self.started = time.monotonic()
        self.rented: set[int] = set()
        self.hurry = False
        self.ready = False
        self.phase = "run"
        self.leftover: list[int] = []

    def say(self, text: str) -> None:
        self.stack.catch_up()
        self.console.say("demo", text)

    # --- waiting ----------------------------------------------------------------------------------

    def wait(self, what: str, predicate: Callable[[], T | None], timeout: float | None = None) -> T:
        """Poll ``predicate`` until it returns something truthy; fail with ``what`` after the
        timeout, or at once with its log tail when one of the demo's processes died."""
        deadline = time.monotonic() + (timeout or self.timeout)
        delay = 0.05
        while True:
            self.stack.check_alive()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout or self.timeout:.0f}s waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    # --- the flow ---------------------------------------------------------------------------------

    def start(self) -> None:
        s = self.stack
        self.say(f"work directory {self.work} (component logs in logs/, control plane in control-plane/logs/)")
        s.check_binaries()
        t = time.monotonic()
        cp = s.start_control_plane()
        self.say(f"control plane up in {time.monotonic() - t:.1f}s: etcd, kube-apiserver at {cp.url}, "
                 "kube-controller-manager")
        sim = s.start_simulator()
        self.say(f"Vast simulator at {sim.url}: {self.stack.offers} offers (seed {self.stack.seed}); "
                 f"{s.hosts}")
        s.start_controller()
        self.say(f"kube-vast controller started (cluster id {s.cluster_id}); waiting for its offer snapshot "
                 f"and the virtual node")
        self.wait("the controller's offer snapshot", s.snapshot.exists)
        kube = s.kube()
        node = self.wait(f"node {VIRTUAL_NODE} Ready", lambda: self._ready_node(kube))
        taints = ", ".join(f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in node["spec"].get("taints") or [])
        self.say(f"node {VIRTUAL_NODE}: Ready, labels type={node['metadata']['labels'].get('type')}, "
                 f"taint {taints}, nvidia.com/gpu {node['status']['capacity'].get('nvidia.com/gpu')}")
        ext = s.start_extender()
        s.start_scheduler()
        self.say(f"kube-scheduler 'vast-scheduler' started from scheduler-config.yaml, extender at {ext.url}")
        hook = s.start_webhook()
        core = client.CoreV1Api(s.api())
        self.wait("the webhook to be called by the API server", lambda: self._webhook_active(core))
        self.say(f"webhook at {hook.url}/mutate, registered from webhooks/mutating-webhook-configuration.yaml")

    @staticmethod
    def _ready_node(kube: KubeGateway) -> dict[str, Any] | None:
        node = kube.get_node(VIRTUAL_NODE)
        return node if node is not None and _ready(node) else None

    @staticmethod
    def _webhook_active(core: client.CoreV1Api) -> bool:
        probe = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "webhook-probe", "labels": {"vast.ai/enabled": "true"}},
                 "spec": {"containers": [{"name": "c", "image": "x",
                                          "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
        created = raw(core.create_namespaced_pod, NAMESPACE, probe, dry_run="All")
        return bool(created["spec"].get("schedulerName") == "vast-scheduler")

    def apply_example(self) -> None:
        api = self.stack.api()
        docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
        for doc in docs:
            utils.create_from_dict(api, doc)  # type: ignore[no-untyped-call]
        names = ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in docs)
        self.say(f"applied {EXAMPLE.relative_to(Path.cwd()) if EXAMPLE.is_relative_to(Path.cwd()) else EXAMPLE}: "
                 f"{names}")

    def follow_the_pod(self) -> None:
        kube = self.stack.kube()
        pod = self.wait("the Deployment's pod", lambda: self._june_pod(kube))
        name = pod["metadata"]["name"]
        a = pod["metadata"].get("annotations") or {}
        if "vast.ai/offer-id" in a:
            self.say(f"pod {NAMESPACE}/{name} admitted by the webhook: offer {a['vast.ai/offer-id']} "
                     f"({a.get('vast.ai/offer-gpu')}, ${float(a.get('vast.ai/offer-price') or 0):.3f}/h, "
                     f"{a.get('vast.ai/offer-location')}, score {a.get('vast.ai/offer-score')}), "
                     f"schedulerName {pod['spec'].get('schedulerName')}")
        else:
            self.say(f"pod {NAMESPACE}/{name} admitted without an offer: {a.get('vast.ai/selection-error')}")

        def read(condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
            current = kube.get_pod(NAMESPACE, name)
            return current if current is not None and condition(current) else None

        pod = self.wait("the pod to be scheduled", lambda: read(lambda p: bool(p["spec"].get("nodeName"))))
        self.say(f"pod {name} scheduled on {pod['spec']['nodeName']} by {pod['spec'].get('schedulerName')}")
        label = f"kv:{self.stack.cluster_id}:{pod['metadata']['uid']}"

        def instance(running: bool) -> Any:
            for i in self.stack.live_instances():
                if i["label"] == label and (not running or i["actual_status"] == "running"):
                    return i
            return None

        inst = self.wait("the Vast instance", lambda: instance(False), timeout=max(self.timeout, 60))
        self.rented.add(inst["id"])
        self.say(f"instance {inst['id']} rented on offer {inst['offer_id']}: {inst['gpu_name']}, "
                 f"${inst['dph_total']:.3f}/h, state {inst['actual_status'] or 'provisioning'} (label {label})")
        inst = self.wait("the instance to run", lambda: instance(True))
        ports = ", ".join(f"{k.split('/')[0]}→{v[0]['HostPort']}" for k, v in sorted((inst["ports"] or {}).items()))
        self.say(f"instance {inst['id']}: state running at {inst.get('host') or self.stack.ip}, ports {ports}")
        pod = self.wait("the pod to be Ready", lambda: read(_ready))
        status = pod["status"]
        self.say(f"pod {name}: {status['phase']}, Ready on {pod['spec']['nodeName']}; hostIP {status.get('hostIP')} "
                 f"(the instance's public IP), podIP {status.get('podIP') or 'empty (on purpose)'}")
        endpoints: dict[str, tuple[str, int]] = {}
        for service in ("june-tts", "june-stt"):
            address, port, slice_name = self.wait(f"the EndpointSlice of {service}",
                                                  lambda: self._ready_slice(kube, service))
            endpoints[service] = (address, port)
            self.say(f"EndpointSlice {slice_name} of Service {service}: {address}:{port} ready")
        for service, (address, port) in endpoints.items():
            url = f"http://{address}:{port}/healthz"
            with urllib.request.urlopen(url, timeout=5) as reply:
                body = reply.read().decode(errors="replace").strip()
                self.say(f"GET {url} ({service}.{NAMESPACE}.svc.cluster.local) → HTTP {reply.status} {body}")

    @staticmethod
    def _june_pod(kube: KubeGateway) -> dict[str, Any] | None:
        pods, _ = kube.list_pods(label_selector=f"app={APP}")
        return next((p for p in pods if not p["metadata"].get("deletionTimestamp")), None)

    @staticmethod
    def _ready_slice(kube: KubeGateway, service: str) -> tuple[str, int, str] | None:
        for s in kube.list_endpoint_slices(NAMESPACE, f"kubernetes.io/service-name={service}"):
            for e in s.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready") and s.get("ports"):
                    return str(e["addresses"][0]), int(s["ports"][0]["port"]), str(s["metadata"]["name"])
        return None

    def run_chaos(self) -> None:
        """``--chaos``: june at three replicas while the controller is SIGKILLed at random moments;
        the supervisor starts it again each time. The ledger is sampled from here to the end."""
        s = self.stack
        assert s.sim is not None
        sim = s.sim
        self.sampler = LedgerSampler(lambda: sim.state()["instances"], f"kv:{s.cluster_id}:").start()
        self.killer = Killer(self.console, lambda: s.controller, seed=self.seed).start()
        self.say(f"chaos: the controller is SIGKILLed every {self.killer.low:g}-{self.killer.high:g}s at random "
                 f"(seed {self.seed}) until the example is torn down; the demo starts it again each time")
        client.AppsV1Api(s.api()).patch_namespaced_deployment_scale(APP, NAMESPACE, {"spec": {"replicas": REPLICAS}})
        self.say(f"scaled june to {REPLICAS} replicas")
        kube = s.kube()

        def all_ready() -> list[dict[str, Any]] | None:
            pods, _ = kube.list_pods(label_selector=f"app={APP}")
            pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return pods if len(pods) == REPLICAS and all(_ready(p) for p in pods) else None

        pods = self.wait(f"{REPLICAS} pods of june Ready", all_ready, timeout=max(self.timeout, 240))
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            meta = pod["metadata"]
            self.pod_names[meta["uid"]] = meta["name"]
            self.say(f"pod {meta['name']}: Ready at {pod['status'].get('hostIP')}, instance "
                     f"{(meta.get('annotations') or {}).get('vast.ai/instance-id')}")
        self.killer.phase = "serving"
        killer = self.killer
        self.wait(f"{MIN_KILLS} kills of the controller", lambda: killer.kills >= MIN_KILLS,
                  timeout=max(self.timeout, 120))
        self.wait(f"{REPLICAS} pods of june Ready after the last kill", all_ready, timeout=max(self.timeout, 240))
        self.say(f"all {REPLICAS} pods Ready after {killer.kills} kills of the controller")

    def chaos_report(self) -> None:
        """Stop the kills and show what the simulator's ledger says."""
        s = self.stack
        if self.killer is not None:
            self.killer.stop()
            # a kill late in the teardown is still answered by a restart before the report
            try:
                self.wait("the controller started again after the last kill", s.supervisor.settled,
                          timeout=max(self.timeout, 60))
            except (TimeoutError, Interrupted) as exc:
                self.say(f"the controller was not started again after the last kill: {exc}")
        if self.sampler is None or s.sim is None:
            return
        self.sampler.stop()
        rows = s.sim.state()["instances"]
        self.rented.update(int(r["id"]) for r in rows if str(r.get("label") or "").startswith(f"kv:{s.cluster_id}:"))
        self.report = ledger_report(rows, f"kv:{s.cluster_id}:", self.pod_names, max_live=self.sampler.worst,
                                    samples=self.sampler.samples)
        restarts = s.supervisor.components["controller"].restarts if "controller" in s.supervisor.components else 0
        self.say(f"chaos: the controller was SIGKILLed {self.killer.kills if self.killer else 0} times and started "
                 f"again {restarts} times")
        for line in self.report.lines():
            self.say(line)

    def show_status(self) -> None:
        """``kube-vast status`` against the demo cluster, as a user would run it."""
        assert self.stack.control_plane is not None and self.stack.sim is not None
        argv = [*KUBE_VAST, "status", "--kubeconfig", str(self.stack.control_plane.kubeconfig_path),
                "--api-url", self.stack.sim.url]
        self.say("$ kube-vast status")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        self.console.say("status", (done.stdout + done.stderr).rstrip())

    def hold(self) -> None:
        """``--keep``: leave everything running until Ctrl-C (or SIGTERM)."""
        cp, sim = self.stack.control_plane, self.stack.sim
        assert cp is not None and sim is not None
        pod = self._pod_name()
        for line in [
            "The demo cluster stays up until Ctrl-C. In another terminal:",
            f"  export KUBECONFIG={cp.kubeconfig_path}",
            f"  export VAST_API_URL={sim.url}",
            "  kubectl get nodes; kubectl get pods -o wide",
            "  kubectl get endpointslices -l kubernetes.io/service-name=june-tts -o yaml",
            "  .venv/bin/kube-vast status",
            f"  .venv/bin/kube-vast explain {pod}",
            "  kubectl scale deployment june --replicas=2    # a second pod, a second instance",
        ]:
            self.say(line)
        self.ready = True
        while True:
            self.stack.check_alive()
            time.sleep(1.0)

    def _pod_name(self) -> str:
        pod = self._june_pod(self.stack.kube())
        return str(pod["metadata"]["name"]) if pod else "<pod>"

    # --- cleaning up ------------------------------------------------------------------------------

    def clean_up(self) -> None:
        """Scale june to zero (the controller destroys the instances, checked in the simulator's
        ledger), delete the example, then stop every process and the simulator."""
        s = self.stack
        if s.control_plane is not None and s.control_plane.apiserver is not None and s.controller is not None:
            self.phase = "teardown"
            if self.killer is not None:
                self.killer.phase = "teardown"
            try:
                self._tear_down_the_example()
            except Interrupted:
                self.say("interrupted again: stopping without waiting for the instances")
            except Exception as exc:  # noqa: BLE001 - report and go on stopping everything
                self.say(f"cleaning up the example failed: {type(exc).__name__}: {exc}")
        if self.chaos:
            self.chaos_report()
        self.phase = "stopping"  # signals are only noted from here on: nothing may cut the stop short
        self.leftover = [i["id"] for i in s.live_instances()]
        self.rented.update(self.leftover)
        t = time.monotonic()
        s.stop()
        self.say(f"stopped the components, the control plane and the simulator in {time.monotonic() - t:.1f}s")

    def _tear_down_the_example(self) -> None:
        s = self.stack
        api = s.api()
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        if self.rented or s.live_instances():
            self.say("cleaning up: scaling june to 0 replicas; the controller destroys the instances")
            try:
                apps.patch_namespaced_deployment_scale(APP, NAMESPACE, {"spec": {"replicas": 0}})
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            for inst in s.live_instances():
                self.rented.add(inst["id"])
            self.wait("the instances to be destroyed", lambda: not s.live_instances(),
                      timeout=180 if self.chaos else 60)
            self.say(f"simulator ledger: instance(s) {', '.join(map(str, sorted(self.rented)))} destroyed; "
                     "0 live")
        for delete, name in ((apps.delete_namespaced_deployment, APP), (core.delete_namespaced_service, "june-tts"),
                             (core.delete_namespaced_service, "june-stt")):
            try:
                delete(name, NAMESPACE)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        kube = s.kube()
        self.wait("the pods to be gone", lambda: not kube.list_pods(label_selector=f"app={APP}")[0], timeout=30)

    # --- main -------------------------------------------------------------------------------------

    def run(self) -> int:
        result, code = "ok", 0
        with _signals(self):
            try:
                self.start()
                self.apply_example()
                if self.chaos:
                    self.run_chaos()
                else:
                    self.follow_the_pod()
                self.show_status()
                if self.keep:
                    self.hold()
            except Interrupted as exc:
                if self.keep and self.ready:
                    self.say(f"{exc}: ending the demo")
                else:
                    result, code = "interrupted", 130
                    self.say(f"{exc}: cleaning up")
            except (TimeoutError, ProcessDied, MissingBinaries) as exc:
                result, code = "failed", 1
                self.say(f"FAILED: {exc}")
            except Exception as exc:  # noqa: BLE001 - a bug or an API error: clean up, then show it all
                result, code = "failed", 1
                self.say("FAILED:\n" + traceback.format_exc().rstrip())
            finally:
                self.clean_up()
        left = processes_mentioning(str(self.work))
        for line in left:
            self.say(f"still running: {line}")
        if left or self.leftover or (self.chaos and not (self.report and self.report.clean)):
            result, code = ("failed", 1) if result == "ok" else (result, code)
        if code == 1 or self.keep_logs:
            self.say(f"logs kept in {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)
            self.say(f"removed {self.work} (KUBE_VAST_KEEP_LOGS=1 keeps it)")
        chaos = "" if not self.chaos or self.report is None else (
            f" chaos_kills={self.killer.kills if self.killer else 0} pods={self.report.pods} "
            f"duplicates={self.report.duplicates} max_live_per_pod={self.report.max_live_per_pod}")
        self.say(f"summary: result={result} instances_rented={len(self.rented)} live_instances={len(self.leftover)} "
                 f"processes_left={len(left)} elapsed={time.monotonic() - self.started:.0f}s{chaos}")
        return code


@contextmanager
def _signals(demo: Demo) -> Iterator[None]:
    """SIGINT and SIGTERM interrupt the flow; during the clean-up a second one skips the wait for
    the instances; once the processes are being stopped, signals are only noted (nothing may cut
    the stop short). The handler never prints: the console's lock may be held by the main thread."""

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if demo.phase == "run" or (demo.phase == "teardown" and not demo.hurry):
            demo.hurry = demo.phase == "teardown"
            raise Interrupted(name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", default=os.environ.get("KUBE_VAST_DEMO_KEEP", "") == "1",
                        help="leave the cluster running until Ctrl-C (also KUBE_VAST_DEMO_KEEP=1)")
    parser.add_argument("--seed", type=int, default=1, help="the simulator's offer set (default 1)")
    parser.add_argument("--offers", type=int, default=2000, help="offers on the simulated market (default 2000)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds each step may take (default 60)")
    parser.add_argument("--chaos", action="store_true",
                        help=f"run {REPLICAS} replicas while the controller is SIGKILLed at random moments; end with "
                             "what the simulator's ledger shows (one rental per pod, nothing live)")
    parser.add_argument("--chart", action="store_true",
                        help="install kube-vast with its Helm chart onto a real local node (root; make image) "
                             "and run the flow through the chart's own components")
    args = parser.parse_args(argv)
    keep_logs = os.environ.get("KUBE_VAST_KEEP_LOGS", "").strip().lower() in ("1", "true", "yes")
    if args.chart:
        from demo import chart

        return chart.main(keep=args.keep, timeout=args.timeout, keep_logs=keep_logs)
    return Demo(keep=args.keep, seed=args.seed, offers=args.offers, timeout=args.timeout,
                keep_logs=keep_logs, chaos=args.chaos).run()


if __name__ == "__main__":
    sys.exit(main())
