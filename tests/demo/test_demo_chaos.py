"""``make demo DEMO_FLAGS=--chaos``: the controller is SIGKILLed at random moments while three
replicas launch, serve and are scaled away; the demo restarts it each time with a back-off said
on the console, and ends with what the simulator's ledger shows: one rental per pod, at most one
live instance per pod at every sample, nothing left live."""

from __future__ import annotations

import re

import pytest

from demo.chaos import MIN_KILLS, REPLICAS
from tests.demo.test_demo import CLEAN, DemoRun, assert_nothing_left

pytestmark = pytest.mark.cluster

CHAOS = re.compile(r"chaos_kills=(?P<kills>\d+) pods=(?P<pods>\d+) duplicates=(?P<dup>\d+) "
                   r"max_live_per_pod=(?P<max>\d+)$")


def test_the_chaos_demo_survives_sigkills_of_the_controller_with_one_rental_per_pod_and_nothing_live():
    run = DemoRun("--chaos")
    try:
        code = run.finish(timeout=600)
    finally:
        run.kill()
    out = run.text
    assert code == 0, out
    kills = re.findall(r"chaos \| SIGKILL controller \(pid (\d+)\) during the (\w+): kill (\d+)", out)
    assert len(kills) >= MIN_KILLS, out
    assert len({pid for pid, _, _ in kills}) == len(kills), "each kill hits a new controller process"
    restarts = re.findall(r"demo \| controller was killed by SIGKILL; restarting it in (\d+)s \(back-off, restart (\d+)\)",
                          out)
    assert [int(n) for _, n in restarts] == list(range(1, len(kills) + 1)), out
    assert re.search(rf"demo \| all {REPLICAS} pods Ready after \d+ kills of the controller", out), out
    ledger = re.search(rf"simulator ledger: {REPLICAS} pods, {REPLICAS} rentals: one rental per pod \((.*)\)", out)
    assert ledger and len(re.findall(r"june-\S+: \d+", ledger[1])) == REPLICAS, out
    assert re.search(r"simulator ledger: at most 1 live instance per pod in \d+ samples; 0 live now", out), out
    summary = CLEAN.search(run.lines[-1])
    chaos = CHAOS.search(run.lines[-1])
    assert summary and summary["result"] == "ok" and summary["rented"] == str(REPLICAS), run.lines[-1]
    assert chaos and int(chaos["kills"]) == len(kills) and (chaos["pods"], chaos["dup"], chaos["max"]) == \
        (str(REPLICAS), "0", "1"), run.lines[-1]
    assert_nothing_left(run)
