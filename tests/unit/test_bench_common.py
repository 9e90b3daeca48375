"""The benchmarks' shared helpers (bench/common.py): percentiles, the readiness wait against a
real server process on loopback, the controller's production intervals, the EndpointSlices that
count as ready."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from bench.common import (Server, bound_pod, free_port, machine_lines, met, pct, percentiles, production_intervals,
                          ready_pod_uid, wait_for_file, wait_ready)


def test_percentiles_are_nearest_rank_as_bench_load_computes_them() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {50: 50.0, 90: 90.0, 99: 99.0}
    assert percentiles([3.0, 1.0, 2.0], (0, 100)) == {0: 1.0, 100: 3.0}
    assert percentiles(values, (99,))[99] == pct(values, 99)


def test_the_report_header_names_the_machine_and_the_date_and_targets_read_met_or_not() -> None:
    machine, date = machine_lines()
    assert machine.startswith("machine: ") and " cores (nproc " in machine and "Python 3." in machine
    assert date.startswith("date: 20")
    assert (met(True), met(False)) == ("met", "NOT met")


def test_a_server_is_waited_for_until_it_answers_and_one_that_exited_fails_at_once(tmp_path: Path) -> None:
    port = free_port()
    server = Server("http.server", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                                    "--directory", str(tmp_path)], port, tmp_path / "server.log")
    try:
        server.wait_ready(path="/", timeout=60)
    finally:
        server.stop()
    assert server.proc.poll() is not None
    gone = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    gone.wait(30)
    with pytest.raises(RuntimeError, match="exited with 3"):
        wait_ready(free_port(), gone, name="gone", timeout=60)


def test_production_intervals_replace_the_harness_values_of_the_flags_named() -> None:
    argv = ["kube-vast", "controller", "--poll-interval", "2", "--resync", "0.5", "--boot-timeout", "20"]
    production_intervals(argv, {"--poll-interval": "30", "--boot-timeout": "600"})
    assert argv == ["kube-vast", "controller", "--poll-interval", "30", "--resync", "0.5", "--boot-timeout", "600"]


def test_a_slice_counts_for_its_pod_once_an_endpoint_of_it_is_ready() -> None:
    def slice_(uid: str | None, *ready: bool) -> client.V1EndpointSlice:
        return client.V1EndpointSlice(
            address_type="IPv4", metadata=client.V1ObjectMeta(labels={"vast.ai/pod-uid": uid} if uid else {}),
            endpoints=[client.V1Endpoint(addresses=["192.0.2.1"], conditions=client.V1EndpointConditions(ready=r))
                       for r in ready])
    assert ready_pod_uid(slice_("u1", False, True)) == "u1"
    assert ready_pod_uid(slice_("u1", False)) is None
    assert ready_pod_uid(slice_("u1")) is None
    assert ready_pod_uid(slice_(None, True)) is None


def test_a_bound_pod_is_on_the_node_with_one_gpu_and_a_readiness_probe() -> None:
    pod = bound_pod("p", node="vast-gpu-node-1", app="bench")
    container = pod["spec"]["containers"][0]
    assert pod["spec"]["nodeName"] == "vast-gpu-node-1" and pod["metadata"]["labels"] == {"app": "bench"}
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"} and container["readinessProbe"]


def test_waiting_for_a_file_says_whether_it_came(tmp_path: Path) -> None:
    there = tmp_path / "offers.json"
    there.write_text("{}")
    assert wait_for_file(there, timeout=1) is True
    assert wait_for_file(tmp_path / "never.json", timeout=0.3) is False
