"""``make demo DEMO_FLAGS=--chart`` end to end, run as the Makefile runs it (``python -m demo
--chart``): the chart installed with helm onto a control plane with a real node, demo/june.yaml
through the release's webhook, vast-scheduler and controller to a simulator instance that answers
at the Services' EndpointSlices, then the operator guide's uninstall. The demo must end with
``result=ok``, the pod's instance (the only rental) destroyed, and nothing of it left on this
machine: no process naming its work directory, no work directory, and none of the node's network
namespace, interface, route, mounts, cgroups or state file (the checks of
tests/cluster/test_chart_install.py and tests/node).

Needs what tests/cluster/test_chart_install.py needs (root, containerd, runc, the CNI plugins, the
node binaries and images of tools/build-node.sh, the image archive of ``make image``, helm):
skipped locally without them, failed under ``CI=true``."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from demo.stack import processes_mentioning
from devcluster import node as node_module
from devcluster.binaries import find_binaries
from devcluster.chart_stack import image, scheduler_image
from devcluster.node import NodeNetwork, _cgroup_hierarchies
from tests.chart.helm import require_a_real_node
from tests.demo.test_demo import DemoRun

pytestmark = pytest.mark.cluster

SUMMARY = re.compile(r"summary: result=(?P<result>\w+) node_leftovers=(?P<node>\S+) processes_left=(?P<processes>\d+) "
                     r"elapsed=\d+s$")


@pytest.fixture()
def chart_demo_possible() -> None:
    require_a_real_node("the chart demo")


def line_index(lines: list[str], pattern: str) -> tuple[int, re.Match[str]]:
    """The first line matching ``pattern`` and its index; fails with the whole output otherwise."""
    wanted = re.compile(pattern)
    for i, line in enumerate(lines):
        if found := wanted.search(line):
            return i, found
    raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(lines))


def node_leftovers(work_dir: str, network: NodeNetwork) -> list[str]:
    """What :meth:`devcluster.node.Node.leftovers` lists, for a node known by its work directory
    and network (the demo's node object is gone with its process)."""
    out = [f"process {p}" for p in processes_mentioning(work_dir)]
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1]
        if point.startswith(work_dir) or network.netns in point:
            out.append(f"mount {point}")
    out += network.leftovers()
    out += [f"cgroup {c}" for h in _cgroup_hierarchies() if (c := h / f"kube-vast-node-{network.ident}").exists()]
    if (node_module.STATE_DIR / f"{network.ident}.json").exists():
        out.append(f"state file {node_module.STATE_DIR / f'{network.ident}.json'}")
    return out


def test_the_chart_demo_serves_june_from_the_release_then_uninstalls_leaving_no_instance_and_nothing_behind(
        chart_demo_possible: None) -> None:
    run = DemoRun("--chart")
    try:
        code = run.finish(timeout=420)
    finally:
        run.kill()
    lines, out = run.lines, run.text
    assert code == 0, out
    summary = SUMMARY.search(lines[-1])
    assert summary and summary.groupdict() == {"result": "ok", "node": "0", "processes": "0"}, out
    work_dir = run.wait_for(r"\(logs in (/\S+)\)")[1]

    # The release, deployed by helm onto the real node from the built images.
    installed, _ = line_index(lines, r"demo \| helm install kube-vast charts/kube-vast -n kube-vast "
                                     r"--set simulator\.enabled=true …: deployed in \d+s")
    kubelet = re.escape(find_binaries().kubernetes_version)
    _, node = line_index(lines, rf"node kube-vast-node-1: Ready, containerd://\S+, kubelet {kubelet}, "
                                r"InternalIP 198\.19\.(\d+)\.2, pods on (198\.18\.\d+\.0/24), "
                                r"network namespace kube-vast-node-([0-9a-f]{6})$")
    network = NodeNetwork(ident=node[3], block=int(node[1]))
    assert network.pod_cidr == node[2]
    release = re.findall(r"release pod (kube-vast\S*)-[0-9a-z]+-[0-9a-z]+: Ready on kube-vast-node-1, (\S+), "
                         r"image (\S+)$", out, re.MULTILINE)
    assert {deployment: image_ref.removeprefix("docker.io/library/") for deployment, _, image_ref in release} == {
        "kube-vast": image(), "kube-vast-scheduler": scheduler_image(), "kube-vast-simulator": image()}, out
    assert len(release) == 3, out
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(network.pod_cidr) for _, ip, _ in release), out

    # june through the release's webhook, vast-scheduler and controller to an answering instance.
    applied, _ = line_index(lines, r"applied demo/june\.yaml: service/june-tts created, service/june-stt created, "
                                   r"deployment\.apps/june created$")
    ready, pod = line_index(lines, r"pod june-\S+: webhook chose offer \d+ \(RTX 3060, \$0\.\d+/h, \S+\), "
                                   r"schedulerName vast-scheduler; bound to vast-gpu-node-1; instance (\d+) at \S+; "
                                   r"Ready$")
    instance = int(pod[1])
    served = []
    for service, container_port in (("june-tts", 8000), ("june-stt", 8001)):
        i, get = line_index(lines, rf"GET http://\S+/healthz \({service}\) → HTTP 200 (\{{.*)$")
        body = get[1]
        assert f'"instance_id": {instance}, "container_port": {container_port},' in body, out
        served.append(i)

    # The operator guide's uninstall: the workload first, its instance destroyed, then the release.
    deleted, _ = line_index(lines, r"deleted deployment june; waiting for the controller to destroy the instance$")
    destroyed, _ = line_index(lines, rf"simulator ledger: instance\(s\) {instance} destroyed; 0 live$")
    uninstalled, _ = line_index(lines, r"helm uninstall kube-vast; node vast-gpu-node-1 deleted; "
                                       r"no pod of the release left$")
    assert installed < applied < ready < min(served) and max(served) < deleted < destroyed < uninstalled, out

    # Nothing left on this machine.
    assert node_leftovers(work_dir, network) == []
    assert not Path(work_dir).exists(), "the work directory of a clean run is removed"
