"""``make demo`` end to end: the scripted path, an interruption mid-flow (SIGTERM), and the kept
demo cluster used as a user would (``kube-vast explain``, ``kube-vast status``), ended with
Ctrl-C (SIGINT). Each run starts its own control plane, simulator and components; afterwards no
process may mention the demo's work directory and the simulator ledger must hold no live
instance (the demo's summary line, computed from the ledger)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from demo.stack import processes_mentioning
from devcluster import wait_for
from vastmarket.client import VastClient, broad_query
from vastmarket.instances import RentRequest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
KUBE_VAST = [sys.executable, "-m", "kube_vast.cli"]
CLEAN = re.compile(r"summary: result=(?P<result>\w+) instances_rented=(?P<rented>\d+) live_instances=0 "
                   r"processes_left=0 elapsed=\d+s")


class DemoRun:
    """``python -m demo`` as a child process, its output collected line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "demo", *args], cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     env={**os.environ, "KUBE_VAST_KEEP_LOGS": ""})
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 240) -> re.Match[str]:
        """The first output line matching ``pattern``; fails when the demo exits without it."""
        wanted = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if found := wanted.search(line):
                        return found
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines))
                self._changed.wait(0.5)

    def finish(self, timeout: float = 240) -> int:
        """Wait for the exit code and the last line of output."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)  # the demo's children never hold its stdout: EOF comes at exit
        return code

    @property
    def work_dir(self) -> str:
        return self.wait_for(r"work directory (/\S+)")[1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def assert_nothing_left(run: DemoRun) -> None:
    assert processes_mentioning(run.work_dir) == []
    assert not Path(run.work_dir).exists(), "the work directory of a clean run is removed"


def test_the_scripted_demo_shows_the_whole_flow_in_the_guides_words_and_leaves_nothing_behind():
    run = DemoRun()
    try:
        code = run.finish(timeout=300)
    finally:
        run.kill()
    out = run.text
    assert code == 0, out
    assert re.search(r"controller \| \[VAST\] Searching for instances matching: RTX3060, 12GB\+, <\$0\.50/hr, "
                     r"95%\+ reliability", out), out
    assert re.search(r"\[VAST\] Found \d+ candidates, filtering\.\.\.", out)
    assert re.search(r"\[VAST\] After filtering: \d+ instances remain", out)
    assert re.search(r"  - Instance \d+: Score 0\.\d\d \(RTX3060, \$0\.\d\d/hr, [A-Z-]+, \d+\.\d% reliability\)", out)
    assert re.search(r"\[VAST\] Selected instance \d+ - launching\.\.\.", out)
    assert re.search(r"pod june-\S+ scheduled on vast-gpu-node-1 by vast-scheduler", out)
    assert re.search(r"instance \d+ rented on offer \d+: RTX 3060, \$0\.\d+/h", out)
    assert "[VAST] Instance ready, updating service endpoints:" in out
    stt = re.search(r"  - june-stt\.default\.svc\.cluster\.local:8001 → (\d+\.\d+\.\d+\.\d+):(\d+)", out)
    tts = re.search(r"  - june-tts\.default\.svc\.cluster\.local:8000 → (\d+\.\d+\.\d+\.\d+):(\d+)", out)
    assert stt and tts, out
    assert f"GET http://{tts[1]}:{tts[2]}/healthz (june-tts.default.svc.cluster.local) → HTTP 200" in out
    assert f"GET http://{stt[1]}:{stt[2]}/healthz (june-stt.default.svc.cluster.local) → HTTP 200" in out
    assert "simulator ledger: instance(s)" in out and "destroyed; 0 live" in out
    summary = CLEAN.search(run.lines[-1])
    assert summary and summary["result"] == "ok" and summary["rented"] == "1", run.lines[-1]
    assert_nothing_left(run)


def test_sigterm_while_an_instance_boots_destroys_it_and_stops_everything():
    run = DemoRun()
    try:
        run.wait_for(r"\[VAST\] Selected instance \d+")
        run.proc.send_signal(signal.SIGTERM)
        code = run.finish(timeout=120)
    finally:
        run.kill()
    assert code == 130, run.text
    summary = CLEAN.search(run.lines[-1])
    assert summary and summary["result"] == "interrupted", run.text
    assert "SIGTERM: cleaning up" in run.text
    processes = processes_mentioning(run.work_dir)
    assert processes == []


def test_ctrl_c_while_the_control_plane_starts_leaves_no_process():
    run = DemoRun()
    try:
        work = run.work_dir
        wait_for(lambda: any("kube-apiserver" in p for p in processes_mentioning(work)), timeout=60,
                 description="kube-apiserver to be starting")  # and not ready yet: it takes seconds
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(timeout=120)
    finally:
        run.kill()
    assert code == 130, run.text
    summary = CLEAN.search(run.lines[-1])
    assert summary and summary["result"] == "interrupted" and summary["rented"] == "0", run.text
    assert processes_mentioning(run.work_dir) == []


@pytest.fixture(scope="module")
def kept_demo():
    """The demo in --keep mode, up and serving: (run, KUBECONFIG, VAST_API_URL, pod name)."""
    run = DemoRun("--keep")
    try:
        run.wait_for(r"stays up until Ctrl-C", timeout=300)
        env = {"KUBECONFIG": run.wait_for(r"export KUBECONFIG=(\S+)")[1],
               "VAST_API_URL": run.wait_for(r"export VAST_API_URL=(\S+)")[1]}
        pod = run.wait_for(r"kube-vast explain (june-\S+)")[1]
        yield run, env, pod
    finally:
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGINT)
            try:
                run.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                run.kill()


def kube_vast(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KUBE_VAST, *args], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60, check=False)


def test_kube_vast_explain_tells_why_the_demo_pod_got_its_offer_and_what_the_controller_did(kept_demo):
    run, env, pod = kept_demo
    done = kube_vast(env, "explain", pod, "--kubeconfig", env["KUBECONFIG"])
    assert done.returncode == 0, done.stderr
    out = done.stdout
    instance = re.search(r"served by Vast instance (\d+) at (\S+) \(offer (\d+)\); Ready", out)
    assert instance, out
    assert "node vast-gpu-node-1, scheduler vast-scheduler, phase Running, Ready" in out
    assert "Requirements: RTX3060, 12GB+, <$0.50/hr, 95%+ reliability, 2 ports" in out
    assert "vast.ai/* annotations: gpu_types=RTX3060, min_gpu_memory_gb=12, max_price=0.5, min_reliability=0.95" in out
    assert re.search(r"Offers now \(live search of http://\S+, 0s old\): \d+ seen, \d+ match", out)
    assert re.search(r"score 0\.\d+ = price 0\.\d\d×0\.30  performance 0\.\d\d×0\.25  gpu_match 1\.00×0\.20", out)
    assert f"the webhook's offer {instance[3]} is rented: this pod's instance {instance[1]} runs on it" in out
    assert f"chose offer {instance[3]}: score 0." in out
    reasons = re.findall(r"^  \S+Z +(?:Normal|Warning) +(\w+)", out, re.MULTILINE)
    assert [r for r in reasons if r in ("Scheduled", "LaunchRecorded", "Renting", "Rented", "InstanceRunning",
                                         "EndpointsUpdated")] == ["Scheduled", "LaunchRecorded", "Renting", "Rented",
                                                                  "InstanceRunning", "EndpointsUpdated"], out
    as_json = json.loads(kube_vast(env, "explain", pod, "--json").stdout)
    assert as_json["controller"]["instance_id"] == instance[1] and as_json["ranking"]["matched"] > 0


def test_kube_vast_status_lists_the_demo_instance_and_flags_an_orphan(kept_demo):
    run, env, pod = kept_demo
    first = kube_vast(env, "status", "--json")
    assert first.returncode == 0, first.stderr
    fleet = json.loads(first.stdout)
    assert [(i["pod"].split("/")[1], i["state"], i["health"]) for i in fleet["instances"]] == [(pod, "running", "Ready")]
    assert fleet["orphans"] == [] and fleet["total_per_hour"] == fleet["instances"][0]["price"]
    # An instance labelled for this cluster whose pod does not exist (the controller's reaper
    # would destroy it after its grace period; the test destroys it first).
    vast = VastClient(env["VAST_API_URL"])
    offer = next(o for o in vast.search_offers(broad_query(), limit=100).offers if o.direct_port_count)
    orphan = vast.rent(offer.id, RentRequest(image="busybox", label=f"kv:{fleet['cluster_id']}:no-such-pod"))
    try:
        done = kube_vast(env, "status")
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert re.search(rf"^  \d+ +running +0\.\d+ +RTX 3060 +\S+ +default/{pod} +\d+ +no +- +- +- +Ready$", out, re.MULTILINE), out
        assert re.search(rf"^  {orphan} +\S+ +\d+\.\d+ .* - +no pod \(orphan\)$", out, re.MULTILINE), out
        assert f"ORPHAN: instance {orphan} serves pod uid no-such-pod, which no longer exists" in out
        assert "Total: 2 instance(s)" in out
    finally:
        vast.destroy(orphan)


def test_ctrl_c_ends_the_kept_demo_cleanly(kept_demo):
    run, env, pod = kept_demo
    run.proc.send_signal(signal.SIGINT)
    code = run.finish(timeout=120)
    assert code == 0, run.text
    assert "SIGINT: ending the demo" in run.text
    summary = CLEAN.search(run.lines[-1])
    assert summary and summary["result"] == "ok", run.text
    assert_nothing_left(run)
