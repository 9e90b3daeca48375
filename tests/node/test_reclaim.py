"""A node whose owner was SIGKILLed (no teardown ran) is removed by the next node's start
(devcluster.node.reclaim_abandoned): its processes (found by its cgroup tree), its cgroups, its
network namespace, veth link and route, and its state file; a node whose owner lives is left
alone. Needs root (network namespaces, cgroups); skipped locally without, failed under CI=true."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from devcluster import node as node_module
from devcluster.binaries import running_in_ci
from devcluster.node import NodeNetwork, _cgroup_hierarchies, reclaim_abandoned


@pytest.fixture()
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if os.geteuid() != 0:
        if running_in_ci():
            pytest.fail("CI=true and not root: the node reclaim is not tested", pytrace=False)
        pytest.skip("!!! NODE RECLAIM NOT TESTED: not root")
    monkeypatch.setattr(node_module, "STATE_DIR", tmp_path / "state")
    yield tmp_path / "state"


def abandoned_node(state_dir: Path, owner: int) -> tuple[NodeNetwork, subprocess.Popen[bytes], list[Path]]:
    """A node as one whose owner died leaves it: recorded, its network up, a container process in
    its cgroup tree (a new cpuset cgroup takes no task until given cpus: the others hold it)."""
    net = NodeNetwork.pick()
    state_dir.mkdir(exist_ok=True)
    (state_dir / f"{net.ident}.json").write_text(json.dumps(
        {"owner": owner, "ident": net.ident, "block": net.block, "mnt_ns": None}))
    net.create()
    cgroups = []
    sleeper = subprocess.Popen(["sleep", "600"])
    placed = 0
    for h in _cgroup_hierarchies():
        d = h / f"kube-vast-node-{net.ident}" / "kubepods" / "pod-x"
        d.mkdir(parents=True)
        cgroups.append(h / f"kube-vast-node-{net.ident}")
        try:
            (d / "cgroup.procs").write_text(str(sleeper.pid))
            placed += 1
        except OSError:
            continue
    assert placed, "the process could not be placed in any of the node's cgroups"
    return net, sleeper, cgroups


@pytest.fixture()
def cleanup() -> Iterator[list[tuple[NodeNetwork, subprocess.Popen[bytes]]]]:
    made: list[tuple[NodeNetwork, subprocess.Popen[bytes]]] = []
    yield made
    for net, sleeper in made:
        sleeper.kill()
        sleeper.wait()
        node_module._remove_cgroup_tree(f"/kube-vast-node-{net.ident}")
        net.delete()


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_an_abandoned_node_is_removed_whole(state_dir: Path, cleanup):
    net, sleeper, cgroups = abandoned_node(state_dir, owner=dead_pid())
    cleanup.append((net, sleeper))
    assert net.leftovers() and all(c.is_dir() for c in cgroups)
    assert reclaim_abandoned() == [net.ident]
    assert sleeper.wait(10) == -9
    assert net.leftovers() == []
    assert not [c for c in cgroups if c.exists()]
    assert not list(state_dir.glob("*.json"))


def test_a_node_whose_owner_lives_is_left_alone(state_dir: Path, cleanup):
    net, sleeper, cgroups = abandoned_node(state_dir, owner=os.getpid())
    cleanup.append((net, sleeper))
    assert reclaim_abandoned() == []
    assert sleeper.poll() is None
    assert net.leftovers() and all(c.is_dir() for c in cgroups)
    assert list(state_dir.glob("*.json"))
