"""The soak: 20 pods (a ReplicaSet on the virtual node, behind a Service) kept running for a
while over a churning market, with the money invariants sampled throughout.

What churns, each on its own jittered schedule (:data:`SCHEDULE`):

- prices moving (``Market.move_prices``), offers vanishing at rent time (404/410), instances
  going offline (the pod fails visibly, its ReplicaSet replaces it), 429 storms on rent, list and
  get, pods deleted (their instances torn down, the ReplicaSet makes new ones);
- a partition of a serving host (``vastsim.hostnet``: its link goes down) for longer than the
  controller's host-unreachable grace, then healed — when this machine can make a host network
  (root; else the soak says so and runs without);
- the controller SIGKILLed about every minute and started again.

Sampled throughout (:class:`devcluster.ledger.LedgerSampler`): at most one live instance per pod
at every sample. At the end: rentals per pod equal one plus the replacements the faults justify
(an instance that went offline, or was live on a host while it was cut off); after teardown and
one reaper cycle nothing is live (orphans). One line sums it up::

    soak: 10.0 min, 20 pods: 88 pods (served 80, visibly failed 8, neither 0); rentals 97 (justified
    replacements 9), duplicates 0, orphans 0, max live per pod 1 (5412 samples, 0 violating);
    churn: 10 kills, 2 partitions, ...

``python -m devcluster.soak --minutes 10`` (``make soak``, ``SOAK_MINUTES``) starts its own
control plane; the ``cluster`` test ``tests/cluster/test_soak.py`` runs a 2-minute soak on the
test session's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from devcluster.background import BackgroundLoop
from devcluster.controller_stack import ControllerProcess, host_ip, reaper_sweeps, wait_until
from devcluster.helpers import create_namespace, pod_ready
from devcluster.ledger import LedgerSampler, live, rental_audit
from vastsim import SimulatorServer
from vastsim.hostnet import HostNetwork

NODE = "vast-gpu-node-soak"
PODS = 20
GRACE = 8.0  # KUBE_VAST_HOST_UNREACHABLE_GRACE of the soak's controller
SAMPLE_INTERVAL = 0.1

# Seconds between two churn actions of each kind (uniform in [low, high]).
SCHEDULE: dict[str, tuple[float, float]] = {
    "price moves": (6.0, 14.0),
    "vanished offers": (12.0, 28.0),
    "instances offline": (30.0, 60.0),
    "429 storms": (25.0, 50.0),
    "pod deletions": (35.0, 65.0),
    "controller kills": (45.0, 75.0),
}
PARTITION_SECONDS = GRACE + 12.0  # long enough for the controller to replace what it cannot reach


@dataclass
class SoakReport:
    minutes: float
    pods_wanted: int
    pods: int = 0
    served: int = 0
    failed: int = 0
    rentals: int = 0
    justified: int = 0
    duplicates: int = 0
    orphans: int = 0
    max_live: int = 0
    samples: int = 0
    violating: int = 0
    churn: dict[str, int] = field(default_factory=dict)
    network: str = ""
    duplicate_labels: list[str] = field(default_factory=list)
    failed_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def neither(self) -> int:
        return self.pods - self.served - self.failed

    @property
    def ok(self) -> bool:
        return self.duplicates == 0 and self.orphans == 0 and self.max_live <= 1 and self.violating == 0 \
            and self.samples > 0

    def line(self) -> str:
        churn = ", ".join(f"{n} {kind}" for kind, n in self.churn.items())
        why = ", ".join(f"{reason} {n}" for reason, n in sorted(self.failed_reasons.items()))
        return (f"soak: {self.minutes:.1f} min, {self.pods_wanted} pods: {self.pods} pods (served {self.served}, "
                f"visibly failed {self.failed}{f' ({why})' if why else ''}, neither {self.neither}); "
                f"rentals {self.rentals} (justified "
                f"replacements {self.justified}), duplicates {self.duplicates}, orphans {self.orphans}, max live per "
                f"pod {self.max_live} ({self.samples} samples, {self.violating} violating); churn: {churn}")


class SoakFailure(RuntimeError):
    pass


@dataclass(frozen=True)
class _Cut:
    host: str
    start: float
    end: float


class PodWatcher(BackgroundLoop):
    """Polls the soak's pods: which were ever Ready (served) and which failed, with their reason."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        super().__init__("soak-pods")
        self.core = core
        self.namespace = namespace
        self.seen: dict[str, str] = {}  # uid -> name
        self.served: set[str] = set()
        self.failed: dict[str, str] = {}  # uid -> reason

    def poll(self) -> list[Any]:
        pods = self.core.list_namespaced_pod(self.namespace).items
        for p in pods:
            if p.metadata is None or p.metadata.uid is None or p.status is None:
                continue  # the API server fills these in on every pod it returns
            uid = p.metadata.uid
            self.seen[uid] = p.metadata.name or ""
            if pod_ready(p):
                self.served.add(uid)
            if p.status.phase == "Failed":
                self.failed[uid] = p.status.reason or "Failed"
        return list(pods)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the API server busy for a moment: poll again
                continue


def _pod_template() -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "soak"}},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "ghcr.io/example/speech:1.0",
                                     "ports": [{"name": "http", "containerPort": 8000}],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                     "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1,
                                                        "timeoutSeconds": 1, "failureThreshold": 2}}]}}


class Soak:
    def __init__(self, api: Any, kubeconfig: Path, workdir: Path, *, minutes: float, network: HostNetwork | None,
                 network_note: str, pods: int = PODS, seed: int = 1, say: Callable[[str], None] = print) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.minutes = minutes
        self.network = network
        self.network_note = network_note
        self.pods = pods
        self.rng = random.Random(seed)
        self.say = say
        self.churn: dict[str, int] = {kind: 0 for kind in (*SCHEDULE, "partitions")}
        self.cuts: list[_Cut] = []
        self.cuts_started = 0.0  # time.time() of the partition in progress
        self.offline: set[int] = set()

    # --- the run ----------------------------------------------------------------------------------

    def run(self) -> SoakReport:
        suffix = uuid.uuid4().hex[:6]
        ns, cluster = f"soak-{suffix}", f"soak{suffix}"
        create_namespace(self.api, ns)
        create_namespace(self.api, f"{ns}-system")
        ip = host_ip()
        place = {"network": self.network} if self.network is not None else {"public_ip": ip}
        with SimulatorServer(seed=self.rng.randrange(1000), offers=2000, boot_seconds=(0.5, 1.5), host=ip,
                             **place) as sim:
            ctl = ControllerProcess(self.workdir, kubeconfig=self.kubeconfig, sim_url=sim.url,
                                    snapshot=self.workdir / "offers.json", node=NODE, namespace=f"{ns}-system",
                                    cluster_id=cluster,
                                    env={"VAST_MAX_INSTANCES": str(self.pods * 3), "VAST_MAX_TOTAL_PRICE_PER_HOUR": "500",
                                         "KUBE_VAST_HOST_UNREACHABLE_GRACE": f"{GRACE:g}",
                                         "KUBE_VAST_CHECKPOINTS": "1", "KUBE_VAST_UNCERTAIN_RENT_WAIT": "12",
                                         "KUBE_VAST_VAST_READ_TIMEOUT": "3"}).start()
            prefix = f"kv:{cluster}:"
            watcher = PodWatcher(self.core, ns).start()
            try:
                with LedgerSampler(lambda: sim.state()["instances"], prefix, interval=SAMPLE_INTERVAL) as sampler:
                    self._start_workload(ns)
                    self._churn(sim, ctl, ns, prefix)
                    self._tear_down(sim, ctl, ns, prefix)
                rows = sim.state()["instances"]
                orphans = len(live(rows, prefix))
            finally:
                watcher.stop()
                ctl.stop()
        audit = rental_audit(rows, prefix, justified=self._justified)
        failed = set(watcher.failed)
        return SoakReport(
            # A pod that failed after serving counts once, as visibly failed.
            minutes=self.minutes, pods_wanted=self.pods, pods=len(watcher.seen), served=len(watcher.served - failed),
            failed=len(failed), rentals=sum(a.rentals for a in audit),
            justified=sum(min(a.justified, a.rentals - 1) for a in audit), duplicates=sum(a.duplicates for a in audit),
            orphans=orphans, max_live=sampler.worst, samples=sampler.samples, violating=sampler.violating_samples,
            churn=dict(self.churn), network=self.network_note,
            duplicate_labels=[a.label for a in audit if a.duplicates],
            failed_reasons=dict(Counter(watcher.failed.values())))

    def _start_workload(self, ns: str) -> None:
        self.core.create_namespaced_service(ns, {"metadata": {"name": "soak"}, "spec": {
            "selector": {"app": "soak"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})  # type: ignore[arg-type]  # a dict body, sent as is
        self.apps.create_namespaced_replica_set(ns, {"metadata": {"name": "soak"}, "spec": {
            "replicas": self.pods, "selector": {"matchLabels": {"app": "soak"}}, "template": _pod_template()}})  # type: ignore[arg-type]  # a dict body, sent as is
        self.say(f"soak: {self.pods} pods of ReplicaSet {ns}/soak on {NODE}; {self.network_note}")

    def _justified(self, instance: Mapping[str, Any]) -> bool:
        """A replacement the faults explain: the instance went offline, or was live on a host while
        that host was cut off (the controller replaces what it cannot reach)."""
        if instance.get("fate") is not None or instance["id"] in self.offline:
            return True
        for cut in self.cuts:
            ended = instance.get("destroyed_at")
            if instance.get("host") == cut.host and instance["created_at"] < cut.end and (ended is None or ended > cut.start):
                return True
        return False

    def _churn(self, sim: SimulatorServer, ctl: ControllerProcess, ns: str, prefix: str) -> None:
        start = time.monotonic()
        end = start + self.minutes * 60
        due = {kind: start + self.rng.uniform(*SCHEDULE[kind]) for kind in SCHEDULE}
        partitions = [start + f * self.minutes * 60 for f in ((0.35, 0.7) if self.minutes >= 6 else (0.4,))]
        if self.network is None:
            partitions = []
        cut: tuple[str, float] | None = None  # (host, when to heal)
        last_report = start
        while True:
            now = time.monotonic()
            if cut is not None and (now >= cut[1] or now >= end):
                sim.heal()
                self.cuts.append(_Cut(cut[0], self.cuts_started, time.time()))
                self.say(f"soak: healed host {cut[0]}")
                cut = None
            if now >= end:
                break
            if partitions and now >= partitions[0] and cut is None:
                partitions.pop(0)
                host = self._partition(sim, prefix)
                if host is not None:
                    cut = (host, now + PARTITION_SECONDS)
            for kind in SCHEDULE:
                if now >= due[kind]:
                    due[kind] = now + self.rng.uniform(*SCHEDULE[kind])
                    if self._act(kind, sim, ctl, ns, prefix):
                        self.churn[kind] += 1
            if ctl.process is not None and ctl.process.died_unexpectedly:
                raise SoakFailure(ctl.process.describe_failure("died on its own", lines=60))
            if now - last_report >= 60:
                last_report = now
                self.say(f"soak: {(now - start) / 60:.0f} min: " + ", ".join(f"{n} {k}" for k, n in self.churn.items()))
            time.sleep(0.2)

    def _serving(self, sim: SimulatorServer, prefix: str) -> list[Mapping[str, Any]]:
        return [i for i in live(sim.state()["instances"], prefix) if i["actual_status"] == "running"]

    def _partition(self, sim: SimulatorServer, prefix: str) -> str | None:
        serving = [i for i in self._serving(sim, prefix) if i.get("host")]
        if not serving:
            return None
        victim = self.rng.choice(serving)
        try:
            host = sim.partition(int(victim["id"]))
        except (KeyError, ValueError):
            return None
        self.cuts_started = time.time()
        self.churn["partitions"] += 1
        on_host = sum(1 for i in serving if i.get("host") == host)
        self.say(f"soak: partitioned host {host} ({on_host} serving instance(s)) for {PARTITION_SECONDS:g}s")
        return host

    def _act(self, kind: str, sim: SimulatorServer, ctl: ControllerProcess, ns: str, prefix: str) -> bool:
        rng = self.rng
        if kind == "price moves":
            sim.market.move_prices(fraction=0.1, spread=0.15, seed=rng.randrange(1 << 30))
        elif kind == "vanished offers":
            sim.faults.vanish_next_rent(count=rng.randint(1, 2), status=rng.choice((404, 410)))
        elif kind == "instances offline":
            serving = self._serving(sim, prefix)
            if not serving:
                return False
            victim = int(rng.choice(serving)["id"])
            self.offline.add(victim)
            try:
                sim.market.set_fate(victim, "offline")
            except KeyError:
                return False
        elif kind == "429 storms":
            for endpoint in ("create", "list_instances", "get_instance"):
                sim.faults.fail_next(endpoint, status=429, count=rng.randint(3, 8),
                                     body=rng.choice(("text", "detail", "error")))
        elif kind == "pod deletions":
            names = [p.metadata.name for p in self.core.list_namespaced_pod(ns).items
                     if p.metadata is not None and p.metadata.name and not p.metadata.deletion_timestamp]
            for name in rng.sample(names, min(2, len(names))):
                try:
                    self.core.delete_namespaced_pod(name, ns)
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise
        elif kind == "controller kills":
            ctl.kill()
            ctl.start()
        return True

    def _tear_down(self, sim: SimulatorServer, ctl: ControllerProcess, ns: str, prefix: str) -> None:
        sim.faults.clear()
        self.say("soak: tearing down: the ReplicaSet deleted, its pods with it")
        self.apps.delete_namespaced_replica_set("soak", ns, propagation_policy="Foreground")
        try:
            wait_until(lambda: not self.core.list_namespaced_pod(ns).items, timeout=240, interval=1.0)
        except TimeoutError:
            left = [p.metadata.name for p in self.core.list_namespaced_pod(ns).items if p.metadata is not None]
            raise SoakFailure(f"pods still there 240 s after teardown: {left}") from None
        swept = _sweeps(ctl)
        # One whole reaper cycle after the last pod went: two sweeps (one may have begun before).
        try:
            wait_until(lambda: _sweeps(ctl) >= swept + 2, timeout=60, interval=0.5)
        except TimeoutError:
            raise SoakFailure("no reaper sweep was logged after the teardown") from None


def _sweeps(ctl: ControllerProcess) -> int:
    return len(reaper_sweeps(ctl.log()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 10),
                        help="how long the market churns (default: SOAK_MINUTES, else 10)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    from devcluster.cluster import ControlPlane
    from devcluster.hostnet import describe, shared_network

    started = dt.datetime.now().astimezone()
    workdir = Path(tempfile.mkdtemp(prefix="kube-vast-soak-"))
    network = shared_network()
    with ControlPlane() as cp:
        cp.start_controller_manager()
        soak = Soak(cp.api_client(), cp.kubeconfig_for("admin", ["system:masters"]), workdir, minutes=args.minutes,
                    network=network, network_note=describe(), seed=args.seed, say=lambda line: print(line, flush=True))
        try:
            report = soak.run()
        except SoakFailure as exc:
            print(f"soak: FAILED: {exc}\n(controller logs in {workdir})", file=sys.stderr)
            return 1
    print(f"\nmake soak, {started:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores ({report.network}):")
    print(report.line())
    if not report.ok:
        print(f"soak: VIOLATIONS (controller logs in {workdir}); duplicate labels: {report.duplicate_labels}",
              file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
