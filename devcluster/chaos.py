"""Crash testing tied to progress: the controller is SIGKILLed where it is doing something that
costs money — aimed by what it is doing, not by a timer — under the simulator's lost-answer
faults, while the ledger is sampled continuously (:mod:`devcluster.ledger`).

Kill points (:data:`KILL_POINTS`), each landed and checked the same way every round:

======================  =====================================================  ==========================================
kill point              how the kill is aimed                                  how the round proves it landed there
======================  =====================================================  ==========================================
``intent-recorded``     the controller pauses at checkpoint ``intent-recorded``  the pod has its finalizer and intent; the
                        for this pod (:mod:`controller.checkpoints`)           ledger has no rental for its label
``rent-in-flight``      the simulator holds the rent (``faults.hold``); the    the simulator received the rent, the ledger
                        kill comes once it has it; released as the controller  had no rental at the kill, the rental is made
                        starts again                                           after it
``rent-answered``       pause at ``rent-answered``: Vast answered, the pod is   the instance of the paused line is live in
                        not annotated yet                                      the ledger; the pod has no instance id
``endpointslice-write`` pause at ``endpointslice-write`` after the first of     exactly one of the pod's two slices exists
                        the pod's two EndpointSlices
``destroy-sent``        pause at ``destroy-sent`` during the deleted pod's      the paused line's instance is destroyed in
                        teardown                                               the ledger; the pod still has its finalizer
======================  =====================================================  ==========================================

Every pod's life is three rounds: a kill at one launch point (the first three), one mid
EndpointSlice write, one after the destroy was sent — each under a fault of
:data:`LAUNCH_FAULTS`, :data:`SERVING_FAULTS` or :data:`TEARDOWN_FAULTS`. After the kill the
controller is started again (the same identity: it takes its lease back at once) and must bring
the pod to its goal. Afterwards: no sample ever saw two live instances for a pod, each pod's
rentals equal one plus the replacements the faults justify (an injected fate), and after
teardown and one reaper cycle nothing is live.

``python -m devcluster.chaos --rounds 60`` (``make chaos``) starts its own control plane; the
``cluster`` test ``tests/cluster/test_controller_crash.py`` runs a CI-sized subset on the test
session's. The reusable pieces for other long runs (the soak, the demo): :class:`Aim` (where the
next pause lands), :func:`wait_paused`, and :class:`devcluster.ledger.LedgerSampler`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster.controller_stack import ControllerProcess, host_ip, reaper_sweeps, wait_until
from devcluster.helpers import create_namespace, pod_ready
from devcluster.ledger import LedgerSampler, live, rental_audit
from vastsim import SimulatorServer

KILL_POINTS: tuple[str, ...] = ("intent-recorded", "rent-in-flight", "rent-answered", "endpointslice-write",
                                "destroy-sent")
LAUNCH_POINTS = KILL_POINTS[:3]

# Timings (seconds). The controller's read timeout is shorter than a late answer; the
# uncertain-rent wait is longer than the listing lag plus a late answer.
READ_TIMEOUT = 3.0
LATE = 6.0
LAG = 3.0
UNCERTAIN_WAIT = 12.0
REAPER_GRACE = 3.0


@dataclass(frozen=True)
class Fault:
    """A fault a round runs under: ``apply`` sets it on the simulator before the round."""

    name: str
    apply: Callable[[SimulatorServer], None]


def _fault(name: str, apply: Callable[[SimulatorServer], None]) -> Fault:
    return Fault(name, apply)


FAULTS: dict[str, Fault] = {f.name: f for f in (
    _fault("none", lambda sim: None),
    _fault("create-503", lambda sim: sim.faults.commit_then_fail("create", status=503)),
    _fault("create-500", lambda sim: sim.faults.commit_then_fail("create", status=500)),
    _fault("create-drop", lambda sim: sim.faults.commit_then_fail("create", answer="drop")),
    _fault("create-late", lambda sim: sim.faults.commit_then_fail("create", answer="late", seconds=LATE)),
    _fault("slow-create", lambda sim: sim.faults.set_slow_answer("create", LATE)),
    _fault("listing-lag", lambda sim: sim.faults.set_listing_lag(LAG)),
    _fault("never-boots", lambda sim: sim.faults.fate_next("offline")),
    _fault("destroy-503", lambda sim: sim.faults.commit_then_fail("destroy", status=503)),
    _fault("destroy-500", lambda sim: sim.faults.commit_then_fail("destroy", status=500)),
    _fault("destroy-drop", lambda sim: sim.faults.commit_then_fail("destroy", answer="drop")),
    _fault("destroy-late", lambda sim: sim.faults.commit_then_fail("destroy", answer="late", seconds=LATE)),
)}

# (launch kill point, fault) in the order lives take them, the three launch points in turn;
# "a+b" is both faults at once. The first four lives (the CI-sized run) hit each launch point under
# a lost answer or a listing lag.
_INTENT = ("create-503+listing-lag", "create-drop+listing-lag", "create-late+listing-lag",
           "slow-create+listing-lag", "create-500+listing-lag", "never-boots+listing-lag", "create-drop")
_IN_FLIGHT = ("listing-lag", "none", "never-boots", "listing-lag", "none", "listing-lag", "none")
_ANSWERED = ("listing-lag", "none", "never-boots", "listing-lag", "none", "listing-lag", "none")
LAUNCH_FAULTS: tuple[tuple[str, str], ...] = tuple(
    pair for faults in zip(_INTENT, _IN_FLIGHT, _ANSWERED) for pair in zip(LAUNCH_POINTS, faults))
SERVING_FAULTS: tuple[str, ...] = ("none", "listing-lag")
TEARDOWN_FAULTS: tuple[str, ...] = ("destroy-503", "destroy-drop", "destroy-late", "destroy-500", "none",
                                    "listing-lag")


def apply_fault(sim: SimulatorServer, name: str) -> None:
    """Set the fault ``name`` (``a+b``: both) on the simulator."""
    for part in name.split("+"):
        FAULTS[part].apply(sim)


@dataclass(frozen=True)
class Round:
    pod: str
    point: str
    fault: str


def plan(rounds: int) -> list[list[Round]]:
    """Lives of three rounds each (a launch kill, a mid-write kill, a teardown kill), ``rounds``
    rounded up to a multiple of three."""
    lives = []
    launch = itertools.cycle(LAUNCH_FAULTS)
    serving = itertools.cycle(SERVING_FAULTS)
    teardown = itertools.cycle(TEARDOWN_FAULTS)
    for i in range((rounds + 2) // 3):
        pod = f"p{i:02d}"
        point, fault = next(launch)
        lives.append([Round(pod, point, fault), Round(pod, "endpointslice-write", next(serving)),
                      Round(pod, "destroy-sent", next(teardown))])
    return lives


@dataclass
class Landed:
    round: Round
    evidence: str
    seconds: float  # from the round's start to its goal after the restart


@dataclass
class ChaosReport:
    landed: list[Landed] = field(default_factory=list)
    samples: int = 0
    violating_samples: int = 0
    worst: int = 0
    pods: int = 0
    rentals: int = 0
    justified: int = 0
    duplicates: int = 0
    live_after: int = -1
    orphans_reaped: int = 0
    elapsed: float = 0.0

    @property
    def per_point(self) -> Counter[str]:
        return Counter(r.round.point for r in self.landed)

    @property
    def per_fault(self) -> Counter[str]:
        return Counter(part for r in self.landed for part in r.round.fault.split("+"))

    @property
    def ok(self) -> bool:
        return (self.violating_samples == 0 and self.worst <= 1 and self.duplicates == 0 and self.live_after == 0
                and self.rentals == self.pods + self.justified and set(self.per_point) == set(KILL_POINTS))

    def lines(self) -> list[str]:
        points = ", ".join(f"{p} {self.per_point.get(p, 0)}" for p in KILL_POINTS)
        faults = ", ".join(f"{f} {n}" for f, n in sorted(self.per_fault.items()))
        return [
            f"rounds: {len(self.landed)} kills, each landed where aimed; per kill point: {points}",
            f"faults: {faults}",
            f"ledger: {self.samples} samples, {self.violating_samples} with two live instances for a pod "
            f"(most live for one pod: {self.worst})",
            f"rentals: {self.rentals} = {self.pods} pods + {self.justified} replacements justified by injected "
            f"fates; duplicates {self.duplicates}",
            f"after teardown and one reaper cycle: {self.live_after} live (the reaper destroyed "
            f"{self.orphans_reaped})",
            f"result: {'ok' if self.ok else 'FAILED'} in {self.elapsed:.0f}s",
        ]


class ChaosFailure(AssertionError):
    pass


class Aim:
    """Where the controller pauses next: the ``KUBE_VAST_PAUSE_FILE`` it reads at each checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clear()

    def at(self, point: str, **context: str) -> None:
        self.path.write_text(" ".join([point, *(f"{k}={v}" for k, v in context.items())]) + "\n")

    def clear(self) -> None:
        self.path.write_text("")


def wait_paused(ctl: ControllerProcess, point: str, pod: str, *, timeout: float = 60.0) -> dict[str, str]:
    """The context of the ``checkpoint POINT paused pod=POD ...`` line once the running controller
    logged it."""
    assert ctl.process is not None
    path = ctl.process.log_path
    pattern = re.compile(rf"checkpoint {re.escape(point)} paused (pod={re.escape(pod)}\b.*)$", re.MULTILINE)

    def paused() -> dict[str, str] | None:
        text = path.read_text(errors="replace") if path.exists() else ""
        match = pattern.search(text)
        if match is None:
            if ctl.process is not None and ctl.process.proc is not None and ctl.process.proc.poll() is not None:
                raise ChaosFailure(f"the controller exited while {point} was awaited:\n{text[-3000:]}")
            return None
        return dict(w.split("=", 1) for w in match.group(1).split() if "=" in w)

    try:
        return wait_until(paused, timeout=timeout, interval=0.02)
    except TimeoutError:
        tail = path.read_text(errors="replace")[-3000:] if path.exists() else ""
        raise ChaosFailure(f"checkpoint {point} for {pod} not reached within {timeout:.0f}s:\n{tail}") from None


def _tail(ctl: ControllerProcess, chars: int = 3000) -> str:
    path = ctl.process.log_path if ctl.process is not None else None
    return path.read_text(errors="replace")[-chars:] if path is not None and path.exists() else ""


def chaos_pod(name: str, node: str) -> dict[str, Any]:
    """A GPU pod bound to the virtual node, with two ports (two Services, so two EndpointSlices)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "chaos"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "ghcr.io/example/speech:1.0",
                                     "ports": [{"name": "a", "containerPort": 8000},
                                               {"name": "b", "containerPort": 8001}],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                     "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}]}}


def chaos_service(name: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "chaos"}, "ports": [{"port": port, "targetPort": port}]}}


class ChaosRun:
    """One run: a simulator, a controller that is killed and restarted, the pods of :func:`plan`."""

    def __init__(self, api: Any, kubeconfig: Path, workdir: Path, *, say: Callable[[str], None] = print,
                 node: str = "vast-gpu-node-chaos") -> None:
        from kubernetes import client

        self.api = api
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.say = say
        self.node = node
        suffix = uuid.uuid4().hex[:6]
        self.ns = f"chaos-{suffix}"
        self.cluster = f"chaos{suffix}"
        self.prefix = f"kv:{self.cluster}:"
        self.aim = Aim(workdir / "pause-at")

    # --- the pieces ---------------------------------------------------------------------------------
    def _pod(self, name: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_pod(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _label(self, pod: Any) -> str:
        return f"{self.prefix}{pod.metadata.uid}"

    def _ledger(self, sim: SimulatorServer, label: str) -> list[dict[str, Any]]:
        return [i for i in sim.state()["instances"] if i["label"] == label]

    def _slices(self, uid: str) -> list[Any]:
        return list(self.discovery.list_namespaced_endpoint_slice(self.ns, label_selector=f"vast.ai/pod-uid={uid}").items)

    def _ready(self, name: str) -> bool:
        pod = self._pod(name)
        if pod is None or not pod_ready(pod):
            return False
        slices = self._slices(pod.metadata.uid)
        return len(slices) == 2 and all(e.conditions and e.conditions.ready for s in slices for e in s.endpoints or [])

    def _restart(self, ctl: ControllerProcess) -> None:
        ctl.kill()
        ctl.start()

    def _wait(self, ctl: ControllerProcess, what: str, predicate: Callable[[], Any], timeout: float = 90.0) -> Any:
        """``predicate()``'s first truthy value; a controller that died or a timeout fails the run
        with the controller's log tail."""
        def probe() -> Any:
            proc = ctl.process.proc if ctl.process is not None else None
            if proc is not None and proc.poll() is not None:
                raise ChaosFailure(f"the controller exited while waiting for {what}:\n{_tail(ctl)}")
            return predicate()

        try:
            return wait_until(probe, timeout=timeout, interval=0.02)
        except TimeoutError:
            raise ChaosFailure(f"{what}: not within {timeout:.0f}s:\n{_tail(ctl)}") from None

    # --- one life: three rounds -----------------------------------------------------------------------
    def live_one(self, sim: SimulatorServer, ctl: ControllerProcess, life: list[Round]) -> list[Landed]:
        launch, serving, teardown = life
        name = launch.pod
        ref = f"{self.ns}/{name}"
        landed: list[Landed] = []

        # Round 1: a launch point.
        started = time.monotonic()
        apply_fault(sim, launch.fault)
        creates = sim.state()["counters"]["calls"].get("create", 0)
        if launch.point == "rent-in-flight":
            sim.faults.hold("create")
        else:
            self.aim.at(launch.point, pod=ref)
        self.core.create_namespaced_pod(self.ns, chaos_pod(name, self.node))  # type: ignore[arg-type]  # a dict body, sent as is
        if launch.point == "rent-in-flight":
            self._wait(ctl, f"{ref}: the rent reaching the simulator",
                       lambda: sim.state()["counters"]["calls"].get("create", 0) > creates)
            ctl.kill()
            killed_at = time.time()
            label = self._label(self._pod(name))
            rented_before = self._ledger(sim, label)
            self.aim.at("endpointslice-write", pod=ref)
            ctl.start()
            sim.faults.release("create")  # the rental is made now, as the new controller starts
            if rented_before:
                raise ChaosFailure(f"{ref}: rent-in-flight: instance(s) {rented_before} existed at the kill")
            made = self._wait(ctl, f"{ref}: the held rental", lambda: self._ledger(sim, label))
            if made[0]["created_at"] < killed_at:
                raise ChaosFailure(f"{ref}: rent-in-flight: the rental was made before the kill")
            evidence = (f"the rent reached the simulator and was held; no rental at the kill; instance "
                        f"{made[0]['id']} made {made[0]['created_at'] - killed_at:.2f}s after it")
        else:
            context = wait_paused(ctl, launch.point, ref)
            pod = self._pod(name)
            rentals = self._ledger(sim, self._label(pod))
            annotations = pod.metadata.annotations or {}
            if launch.point == "intent-recorded":
                if "vast.ai/instance-cleanup" not in (pod.metadata.finalizers or []) or "vast.ai/launch" not in annotations:
                    raise ChaosFailure(f"{ref}: intent-recorded: no finalizer or intent on the pod at the kill")
                if rentals:
                    raise ChaosFailure(f"{ref}: intent-recorded: already rented {rentals} at the kill")
                evidence = "finalizer and intent on the pod, nothing rented"
            else:
                instance = int(context["instance"])
                if [i["id"] for i in rentals if not i["destroyed"]] != [instance]:
                    raise ChaosFailure(f"{ref}: rent-answered: ledger {rentals} does not hold instance {instance}")
                if "vast.ai/instance-id" in annotations:
                    raise ChaosFailure(f"{ref}: rent-answered: the pod was annotated before the kill")
                evidence = f"instance {instance} live in the ledger, the pod not annotated"
            self.aim.at("endpointslice-write", pod=ref)
            self._restart(ctl)
        landed.append(Landed(launch, evidence, 0.0))

        # Round 2: mid EndpointSlice write.
        context = wait_paused(ctl, "endpointslice-write", ref, timeout=90)
        landed[-1].seconds = time.monotonic() - started
        started = time.monotonic()
        pod = self._pod(name)
        slices = self._slices(pod.metadata.uid)
        if (context.get("written"), context.get("of"), len(slices)) != ("1", "2", 1):
            raise ChaosFailure(f"{ref}: endpointslice-write: paused at {context}, {len(slices)} slice(s) exist")
        sim.faults.set_slow_answer("create", 0)  # the launch's faults are over
        sim.faults.set_listing_lag(0)
        apply_fault(sim, serving.fault)
        self.aim.clear()
        self._restart(ctl)
        self._wait(ctl, f"{ref}: ready with both EndpointSlices", lambda: self._ready(name))
        landed.append(Landed(serving, f"paused after slice {context.get('slice')}, 1 of 2 written", 0.0))
        landed[-1].seconds = time.monotonic() - started

        # Round 3: after the destroy was sent.
        started = time.monotonic()
        sim.faults.set_listing_lag(0)
        apply_fault(sim, teardown.fault)
        self.aim.at("destroy-sent", pod=ref)
        self.core.delete_namespaced_pod(name, self.ns)
        context = wait_paused(ctl, "destroy-sent", ref, timeout=90)
        instance = int(context["instance"])
        rows = {i["id"]: i for i in sim.state()["instances"]}
        pod = self._pod(name)
        if not rows.get(instance, {}).get("destroyed"):
            raise ChaosFailure(f"{ref}: destroy-sent: instance {instance} is not destroyed in the ledger")
        if pod is None or "vast.ai/instance-cleanup" not in (pod.metadata.finalizers or []):
            raise ChaosFailure(f"{ref}: destroy-sent: the pod was released before the kill")
        self.aim.clear()
        self._restart(ctl)
        self._wait(ctl, f"{ref}: gone", lambda: self._pod(name) is None)
        sim.faults.clear()
        landed.append(Landed(teardown, f"instance {instance} destroyed, the pod still held by its finalizer",
                             time.monotonic() - started))
        return landed

    def run(self, rounds: int) -> ChaosReport:
        begun = time.monotonic()
        report = ChaosReport()
        create_namespace(self.api, self.ns)
        create_namespace(self.api, f"{self.ns}-system")
        for svc, port in (("chaos-a", 8000), ("chaos-b", 8001)):
            self.core.create_namespaced_service(self.ns, chaos_service(svc, port))  # type: ignore[arg-type]  # a dict body, sent as is
        ip = host_ip()
        with SimulatorServer(seed=17, offers=600, boot_seconds=(0.2, 0.5), host=ip, public_ip=ip) as sim:
            ctl = ControllerProcess(
                self.workdir, kubeconfig=self.kubeconfig, sim_url=sim.url, snapshot=self.workdir / "offers.json",
                node=self.node, namespace=f"{self.ns}-system", cluster_id=self.cluster, identity="chaos",
                extra=("--reaper-grace", f"{REAPER_GRACE:g}", "--reaper-interval", "1"),
                env={"KUBE_VAST_CHECKPOINTS": "1", "KUBE_VAST_PAUSE_FILE": str(self.aim.path),
                     "KUBE_VAST_VAST_READ_TIMEOUT": f"{READ_TIMEOUT:g}",
                     "KUBE_VAST_UNCERTAIN_RENT_WAIT": f"{UNCERTAIN_WAIT:g}",
                     "VAST_MAX_INSTANCES": "40", "VAST_MAX_TOTAL_PRICE_PER_HOUR": "100"}).start()
            sampler = LedgerSampler(lambda: list(sim.state()["instances"]), label_prefix=self.prefix).start()
            try:
                for life in plan(rounds):
                    for landed in self.live_one(sim, ctl, life):
                        report.landed.append(landed)
                        self.say(f"round {len(report.landed):3d}  {landed.round.point:<20} {landed.round.fault:<12} "
                                 f"{landed.round.pod}  {landed.seconds:5.1f}s  {landed.evidence}")
                report.live_after, report.orphans_reaped = self._after_teardown(sim, ctl)
            finally:
                sampler.stop()
                ctl.stop()
            rows = sim.state()["instances"]
        report.samples, report.violating_samples, report.worst = sampler.samples, sampler.violating_samples, sampler.worst
        audit = rental_audit(rows, self.prefix)
        report.pods = len({life[0].pod for life in plan(rounds)})
        report.rentals = sum(c.rentals for c in audit)
        report.justified = sum(c.justified for c in audit)
        report.duplicates = sum(c.duplicates for c in audit)
        report.elapsed = time.monotonic() - begun
        return report

    def _after_teardown(self, sim: SimulatorServer, ctl: ControllerProcess) -> tuple[int, int]:
        """Live instances once every pod is gone and one reaper cycle (after its grace) has run."""
        assert ctl.process is not None
        path = ctl.process.log_path
        done = time.monotonic()

        def sweeps() -> list[int]:
            return reaper_sweeps(path.read_text(errors="replace") if path.exists() else "")

        before = len(sweeps())
        self._wait(ctl, "a reaper cycle after teardown",
                   lambda: time.monotonic() - done > REAPER_GRACE and len(sweeps()) > before + 1)
        return len(live(sim.state()["instances"], self.prefix)), sum(sweeps())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60,
                        help="kills in all, rounded up to a multiple of 3, at least 9 (default 60)")
    args = parser.parse_args(argv)
    from devcluster.cluster import ControlPlane

    if args.rounds < 9:
        parser.error("--rounds must be at least 9: three pods' lives hit every kill point")
    started = dt.datetime.now().astimezone()
    workdir = Path(tempfile.mkdtemp(prefix="kube-vast-chaos-"))
    with ControlPlane() as cp:
        run = ChaosRun(cp.api_client(), cp.kubeconfig_for("admin", ["system:masters"]), workdir,
                       say=lambda line: print(line, flush=True))
        try:
            report = run.run(args.rounds)
        except ChaosFailure as exc:
            print(f"chaos: FAILED: {exc}\n(controller logs in {workdir}, control plane's in {cp.logs_dir})",
                  file=sys.stderr)
            return 1
    print(f"\nmake chaos, {started:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores:")
    for line in report.lines():
        print(f"  {line}")
    if not report.ok:
        print(f"  (controller logs in {workdir}, control plane's in {cp.logs_dir})")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    cp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Aim", "ChaosFailure", "ChaosReport", "ChaosRun", "FAULTS", "KILL_POINTS", "Round", "plan",
           "wait_paused"]
