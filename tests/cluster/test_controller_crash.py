"""Money is never leaked nor doubled when the controller is SIGKILLed where it spends money: the
kills are aimed by what the controller is doing (after the intent is recorded, while the rent is
in flight, after the rent answered and before the pod is annotated, mid EndpointSlice write,
after a destroy was sent — :mod:`devcluster.chaos`), under the simulator's lost answers
(commit then fail, slow answers, listing lag). Each round checks that its kill landed where it
was aimed; the simulator's ledger is sampled all along.

This is the CI-sized run (12 rounds, every kill point at least once); ``make chaos`` runs 60."""

from __future__ import annotations

import pytest

from devcluster.chaos import KILL_POINTS, ChaosRun

pytestmark = pytest.mark.cluster

ROUNDS = 12


def test_killing_the_controller_at_every_step_that_spends_money_never_doubles_or_leaks(control_plane, tmp_path):
    lines: list[str] = []
    run = ChaosRun(control_plane.api_client(), control_plane.kubeconfig_for("admin", ["system:masters"]), tmp_path,
                   say=lines.append)
    report = run.run(ROUNDS)
    summary = "\n".join(lines + report.lines())
    assert len(report.landed) == ROUNDS, summary
    assert all(report.per_point[point] >= 1 for point in KILL_POINTS), summary
    assert report.samples > 100 and report.violating_samples == 0 and report.worst == 1, summary
    assert report.duplicates == 0 and report.rentals == report.pods + report.justified, summary
    assert report.live_after == 0, summary
    assert report.ok, summary
