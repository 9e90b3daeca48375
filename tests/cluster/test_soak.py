"""The soak, CI-sized (``make soak`` runs it for 10 minutes): 20 pods of a ReplicaSet over a
churning market (prices moving, offers vanishing, instances going offline, 429 storms, pods
deleted, a host partitioned past the controller's grace, the controller SIGKILLed about every
minute), the ledger sampled throughout. No sample may show two live instances for a pod; no pod
may be rented for twice beyond the replacements the faults justify; after teardown and a reaper
cycle nothing may be live. Without a host network (not root) it runs without the partition and
says so; under ``CI=true`` the partition must run."""

from __future__ import annotations

import os

import pytest

from devcluster import hostnet
from devcluster.soak import Soak

pytestmark = pytest.mark.cluster

MINUTES = float(os.environ.get("KUBE_VAST_CI_SOAK_MINUTES") or 2)


def test_a_two_minute_soak_keeps_every_money_invariant(control_plane, controller_manager, tmp_path, capsys):
    network = hostnet.shared_network()
    if network is None and hostnet.must_have_network():
        pytest.fail(f"CI=true and no host network for the soak's partition: {hostnet.why_not()}", pytrace=False)
    lines: list[str] = []
    soak = Soak(control_plane.api_client(), control_plane.kubeconfig_for("admin", ["system:masters"]), tmp_path,
                minutes=MINUTES, network=network, network_note=hostnet.describe(), say=lines.append)
    report = soak.run()
    with capsys.disabled():
        print(f"\n[kube-vast] {report.line()}")
    assert report.samples > MINUTES * 60, report.line()
    assert (report.violating, report.max_live, report.duplicates, report.orphans) == (0, 1, 0, 0), \
        (report.line(), report.duplicate_labels)
    assert report.served >= 20 and report.pods >= 20, report.line()
    assert report.churn["controller kills"] >= 1 and report.churn["price moves"] >= 5, report.line()
    assert report.churn["partitions"] == (1 if network is not None else 0), report.line()
    assert report.failed <= report.churn["instances offline"], report.line()  # only a lost host fails a pod
